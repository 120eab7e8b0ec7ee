"""Fixtures of the store tests: every repository test runs on SQLite and PostgreSQL.

The PostgreSQL variant uses the shared ``postgres_url`` fixture (a fresh schema per
test, chosen through ``options=-csearch_path=...``), so it is skipped locally and
mandatory in CI when the server is down.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind
from tether.core.model import Device, Role
from tether.store import Store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``NOW`` shifted by ``seconds``."""
    return NOW + timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A directory that does not exist yet: the engine must create it.
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tether.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


async def add_device(store: Store, device_id: str, **fields: Any) -> Device:
    values: dict[str, Any] = {"name": device_id, "created_at": NOW, "updated_at": NOW}
    values.update(fields)
    return await store.devices.create(Device(id=device_id, **values))


def client_of(*network_ids: int) -> Principal:
    """A client user (id 999) granted these networks."""
    return Principal(
        kind=PrincipalKind.USER,
        actions=ALL_ACTIONS,
        user_id=999,
        role=Role.CLIENT,
        network_ids=frozenset(network_ids),
    )
