"""Control iD's edge under hostile input: ``/result``, ``/push`` and Monitor answer 200 or
400, never 5xx, and log no traceback.

Before the one JSON codec, a ``/result`` holding a lone surrogate was a 500 (the store
could not write it) and the command hung ``in_progress``; now it is refused with 400 and
the command fails with the reason, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import fresh_postgres_schema
from tests.dialects.controlid.test_e2e import finished, register
from tests.dialects.controlid.test_hostile import create, raw
from tests.fuzz import draw, hostile_body, server_errors
from tests.support import Running, running

DEVICE = "1038511"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def tether(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {"controlid": {"result_timeout": 30}}
        if request.param == "postgresql":
            options["database_url"] = await stack.enter_async_context(fresh_postgres_schema())
        server = await stack.enter_async_context(running(tmp_path, **options))
        await register(server, DEVICE)
        yield server


async def test_a_result_no_store_can_hold_is_400_and_fails_the_command(
    tether: Running,
) -> None:
    for n, body in enumerate(
        (b'{"response": {"name": "\\ud800"}}', b'{"response": "a\\u0000b"}', b"response=%00")
    ):
        made = await create(tether, "load_objects", {"object": "users"}, device=DEVICE)
        status, pushed = await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=u-{n}")
        assert status == 200
        assert b"load_objects" in pushed
        status, _ = await raw(
            tether,
            "POST",
            f"/result?deviceId={DEVICE}&uuid=u-{n}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert status == 400, body
        command = await finished(tether, made["id"])
        assert command["state"] == "failed", command
        assert "refused" in command["error"], command
    # Monitor bodies with the same content are refused too, and nothing is stored.
    status, _ = await raw(
        tether,
        "POST",
        f"/api/notifications/dao?deviceId={DEVICE}",
        data=b'{"device_id": ' + DEVICE.encode() + b', "x": "\\udfff"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400


DOORS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", f"/result?deviceId={DEVICE}", {"response": {"users": []}}),
    ("POST", f"/result?deviceId={DEVICE}", {"transactions_results": [{"response": "{}"}]}),
    ("POST", f"/api/notifications/dao?deviceId={DEVICE}", {"object_changes": [], "time": 1}),
    ("POST", "/api/notifications/operation_mode", {"device_id": int(DEVICE), "time": 1}),
]


async def test_hostile_corpus_gets_protocol_answers_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path, controlid={"result_timeout": 30}) as server:
        await register(server, DEVICE)
        await create(server, "load_objects", {"object": "users"}, device=DEVICE)
        status, _ = await raw(server, "GET", f"/push?deviceId={DEVICE}")
        assert status == 200
        failures = []
        for method, path, template in DOORS:
            for body in draw(hostile_body(template), 25):
                for kind in ("application/json", "application/x-www-form-urlencoded"):
                    status, _ = await raw(
                        server, method, path, data=body, headers={"Content-Type": kind}
                    )
                    if status >= 500:
                        failures.append((path, kind, body[:120], status))
        assert not failures, failures[:10]
        for query in (f"deviceId={2**64}", "deviceId=%00", f"deviceId={DEVICE}&uuid=%ud800"):
            status, _ = await raw(server, "GET", f"/push?{query}")
            assert status < 500, query
    assert not server_errors(caplog.records)
