"""Twins: a device's own shadow reads, batched when many devices ask at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.hub.conftest import started_hub
from tests.hub.test_service import make_device

from tether.bus import MemoryBus
from tether.core.model import DeviceState


async def test_devices_asking_at_once_share_one_read(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        devices = [await make_device(hub, f"t{i}") for i in range(30)]
        for i, device in enumerate(devices[:10]):
            await hub.twins.report(device, {"n": i})
        reads: list[list[str]] = []
        get_many = hub.store.states.get_many

        async def counting(device_ids: Sequence[str]) -> list[DeviceState]:
            reads.append(list(device_ids))
            return await get_many(device_ids)

        hub.store.states.get_many = counting  # type: ignore[method-assign]
        states = await asyncio.gather(*(hub.twins.own_state(d) for d in devices))
        assert len(reads) == 1
        assert sorted(reads[0]) == sorted(d.id for d in devices)
        assert [s.reported for s in states] == [{"n": i} for i in range(10)] + [{}] * 20
        # Nothing is cached: a report completed before the next read is in it.
        await hub.twins.report(devices[20], {"n": 20})
        assert (await hub.twins.own_state(devices[20])).reported == {"n": 20}
        assert len(reads) == 2


async def test_a_failed_read_reaches_every_caller(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        devices = [await make_device(hub, f"f{i}") for i in range(3)]

        async def failing(device_ids: Sequence[str]) -> list[DeviceState]:
            raise ConnectionError("database went away")

        hub.store.states.get_many = failing  # type: ignore[method-assign]
        outcomes = await asyncio.gather(
            *(hub.twins.own_state(d) for d in devices), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        with pytest.raises(ConnectionError):
            await hub.twins.own_state(devices[0])
