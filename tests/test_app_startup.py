"""Start-up never hangs "starting" in silence, and one bad stored row never blocks it.

Before: an unexpected exception in the start-up task killed it with nothing in the log
and ``/readyz`` answered 503 forever; a stored timeout past ``datetime``'s range (which
the API used to accept) overflowed while re-arming deadlines and did exactly that.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from tests.conftest import fresh_postgres_schema
from tests.support import running
from tether.core.limits import DURATION_MAX
from tether.hub.service import Hub
from tether.store import schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def options(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgresql":
            yield {"database_url": await stack.enter_async_context(fresh_postgres_schema())}
        else:
            yield {}


async def test_a_stored_timeout_out_of_range_is_repaired_at_restart(
    tmp_path: Path, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, **options) as server:
        credential = await server.device("dev")
        made = await server.call(
            "POST", "/api/v1/devices/dev/commands", json={"name": "x", "timeout": 60}, expect=201
        )
        polled = await server.call(
            "GET", "/api/v1/device/dev/commands", token=credential, expect=200
        )
        assert [c["id"] for c in polled] == [made["id"]]
        # What a server without the bound could store (it accepted "timeout": 1e308).
        async with server.hub.store.engine.begin() as conn:
            await conn.execute(
                update(schema.commands)
                .where(schema.commands.c.id == made["id"])
                .values(timeout=1e308)
            )
    with caplog.at_level(logging.WARNING, logger="tether.hub"):
        async with running(tmp_path, **options) as server:  # waits until ready
            command = await server.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
            assert command["state"] == "delivered"
            assert len(server.hub.sweeper) >= 1  # its deadline is armed, at the bound
    warned = [r.getMessage() for r in caplog.records if "stored timeout" in r.getMessage()]
    assert warned, [r.getMessage() for r in caplog.records]
    assert str(made["id"]) in warned[0]
    assert str(int(DURATION_MAX)) in warned[0]


async def test_an_unexpected_start_up_failure_is_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_start = Hub.start
    attempts: list[int] = []

    async def flaky_start(self: Hub) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a fault nobody planned for")
        await real_start(self)

    monkeypatch.setattr(Hub, "start", flaky_start)
    with caplog.at_level(logging.ERROR, logger="tether"):
        async with running(tmp_path) as server:
            assert server.hub.started
    assert len(attempts) == 2
    failed = [r for r in caplog.records if "start-up failed" in r.getMessage()]
    assert failed, [r.getMessage() for r in caplog.records]
    assert failed[0].exc_info is not None  # the traceback is in the log
    assert "a fault nobody planned for" in failed[0].getMessage()
