"""A stopping hub answers parked polls at once and parks no new ones (Hub.drain)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.hub.conftest import admin_of, started_hub
from tests.hub.test_service import make_device

from tether.bus import MemoryBus


async def test_drain_answers_parked_polls_empty_and_keeps_commands_queued(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        parked = asyncio.create_task(hub.delivery.poll("d", limit=5, max_in_flight=8, wait=60))
        while "d" not in hub.delivery.parked_devices():
            await asyncio.sleep(0.01)
        began = time.monotonic()
        hub.drain()
        assert await asyncio.wait_for(parked, 2) == []
        assert time.monotonic() - began < 1
        # A poll arriving while the server stops does not park; a command created meanwhile
        # is still handed out (nothing accepted is held back), and stays stored otherwise.
        assert await hub.delivery.poll("d", limit=5, max_in_flight=8, wait=60) == []
        made = await hub.commands.create(await admin_of(hub), "d", "x")
        handed = await hub.delivery.poll("d", limit=5, max_in_flight=8, wait=60)
        assert [c.id for c in handed] == [made.id]


async def test_park_returns_the_result_or_none_on_timeout_or_drain(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.05, ready.set_result, "item")
        assert await hub.park(ready, 5) == "item"
        assert await hub.park(loop.create_future(), 0.05) is None
        waiting = asyncio.create_task(hub.park(loop.create_future(), 60))
        await asyncio.sleep(0.05)
        hub.drain()
        assert await asyncio.wait_for(waiting, 2) is None
        # Once draining, a wait ends at once, unless its answer is already there.
        assert await hub.park(loop.create_future(), 60) is None
        done: asyncio.Future[str] = loop.create_future()
        done.set_result("late")
        assert await hub.park(done, 60) == "late"
