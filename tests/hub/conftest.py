"""Hubs on real stores and buses, without HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tether.bus.base import Bus
from tether.core.access import Principal, user_principal
from tether.core.model import Role
from tether.hub.service import Hub
from tether.settings import Settings
from tether.store import Store

MakeHub = Callable[..., AbstractAsyncContextManager[Hub]]


@asynccontextmanager
async def started_hub(url: str, bus: Bus, tmp_path: Path, **settings: Any) -> AsyncIterator[Hub]:
    store = await Store.open(url)
    hub = Hub(store, bus, Settings(data_dir=tmp_path, jwt_secret="x" * 40, **settings))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
        await store.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/hub.db"


async def admin_of(hub: Hub) -> Principal:
    user = await hub.store.users.get_by_login("root")
    if user is None:
        user = await hub.store.users.create(
            login="root", role=Role.ADMIN, password_hash=None, now=hub.clock.now()
        )
    return user_principal(user)
