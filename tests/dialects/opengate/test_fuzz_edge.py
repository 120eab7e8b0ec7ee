"""OpenGate's south API under hostile input: a 400 error body, never 5xx, no traceback.

Before the one JSON codec, 1,000 levels of nesting in a collect or response body was a
500 with a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.opengate.conftest import og_device, south
from tests.fuzz import draw, hostile_body, server_errors
from tests.support import running


async def test_hostile_bodies_get_400_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path) as tether:
        key = await og_device(tether, "og-fz")
        made = await tether.call(
            "POST", "/api/v1/devices/og-fz/commands", json={"name": "REBOOT_EQUIPMENT"}, expect=201
        )
        response = {
            "version": "7.0",
            "operation": {"response": {"id": made["ref"], "resultCode": "SUCCESSFUL"}},
        }
        iot = {"version": "1.0.0", "datastreams": [{"id": "t", "datapoints": [{"value": 1}]}]}
        deep = b'{"version": "1.0.0", "datastreams": ' + b"[" * 1000 + b"]" * 1000 + b"}"
        async with tether.session.post(
            south(tether, "og-fz", "collect/iot"), data=deep, headers={"X-ApiKey": key}
        ) as answer:
            assert answer.status == 400
            assert "deeper than" in (await answer.json())["error"]["message"]
        doors: list[tuple[str, dict[str, Any]]] = [
            ("operation/response", response),
            ("collect/iot", iot),
            ("collect/dmm", {"version": "1.0.0", "event": {"id": "e", "device": {}}}),
        ]
        failures = []
        for tail, template in doors:
            for body in draw(hostile_body(template), 30):
                async with tether.session.post(
                    south(tether, "og-fz", tail), data=body, headers={"X-ApiKey": key}
                ) as answer:
                    if answer.status >= 500:
                        failures.append((tail, body[:120], answer.status))
        assert not failures, failures[:10]
    assert not server_errors(caplog.records)
