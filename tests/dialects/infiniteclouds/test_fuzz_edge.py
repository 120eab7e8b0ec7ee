"""InfiniteClouds' edge under hostile input: the documented envelope with 400, never 5xx,
and no traceback, before and after authentication.

Before the one JSON codec, 1,000 levels of nesting made the (unauthenticated)
registration a 500, and a result for a command id past 64 bits was a 500 too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.infiniteclouds.test_cloud import REGISTER, assigned, failed, keepalive, post
from tests.fuzz import draw, hostile_body, server_errors
from tests.support import running

from tether.core import jsonc


async def test_hostile_bodies_get_the_envelope_with_400(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path) as app:
        deep = b'{"deviceType": "CE", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        assert "deeper than" in failed(*await post(app, deep), 400)
        token = await assigned(app)
        result = keepalive(statusType="commandResult", commandId=f"cmd_{2**64}", status="done")
        assert "commandId" in failed(*await post(app, result, token), 400)
        result["commandId"] = 2**64
        failed(*await post(app, jsonc.encode(result), token), 400)
        doors: list[tuple[dict[str, Any], str | None]] = [
            (REGISTER, None),
            (keepalive(), token),
            (keepalive(statusType="commandResult", commandId="cmd_1", status="done"), token),
        ]
        failures = []
        for template, bearer in doors:
            for body in draw(hostile_body(template), 30):
                status, answer = await post(app, body, bearer)
                if status >= 500:
                    failures.append((body[:120], status, answer))
        assert not failures, failures[:10]
    assert not server_errors(caplog.records)
