"""The notification writer isolates a row the store refuses: everyone else's post in the
same batch is stored and answered, and only the bad one fails, with a clear 400.

The bad rows reach the hub directly (the API's JSON codec refuses them at the edge), so
these tests prove the writer itself, on both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.hub.conftest import admin_of, started_hub

from tether.bus import MemoryBus
from tether.core.errors import BadRequest
from tether.hub.service import Hub

GOOD = 300


async def one_bad_among_many(hub: Hub, bad_name: str, bad_parameters: Any) -> None:
    admin = await admin_of(hub)
    devices = [await hub.directory.create_device(admin, id=f"d{i}", name=f"d{i}") for i in range(4)]
    posts = [
        hub.notifications.post_as_device(devices[i % 3], "reading", {"n": i}) for i in range(GOOD)
    ]
    bad = hub.notifications.post_as_device(devices[3], bad_name, bad_parameters)
    # Queued in one go, so the writer takes them as one batch with the bad row inside.
    outcomes = await asyncio.gather(
        *posts[: GOOD // 2], bad, *posts[GOOD // 2 :], return_exceptions=True
    )
    refused = outcomes.pop(GOOD // 2)
    assert isinstance(refused, BadRequest), refused
    assert "cannot be stored" in refused.message
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == []
    assert sorted(o.parameters["n"] for o in outcomes) == list(range(GOOD))
    # Every good one is in the store, and the writer still works.
    stored = await hub.store.notifications.list(device_ids=["d0", "d1", "d2"], take=1000)
    assert len(stored) == GOOD
    after = await hub.notifications.post_as_device(devices[3], "fine", None)
    assert after.id > 0


async def test_lone_surrogate_row_fails_alone_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await one_bad_among_many(hub, "monitor", {"x": "\ud800"})


@pytest.mark.parametrize(
    ("name", "parameters"), [("nul\x00name", None), ("monitor", {"x": "\ud800"})]
)
async def test_unstorable_row_fails_alone_postgres(
    tmp_path: Path, postgres_url: str, name: str, parameters: Any
) -> None:
    async with started_hub(postgres_url, MemoryBus(), tmp_path) as hub:
        await one_bad_among_many(hub, name, parameters)
