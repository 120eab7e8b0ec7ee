"""Engine settings, the Store facade's lifecycle and the migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from tether.core.errors import Conflict, Unavailable
from tether.core.model import Role
from tether.store import Store
from tether.store.engine import create_engine
from tether.store.migrate import current_revision, downgrade, upgrade
from tether.store.schema import metadata

from .conftest import NOW

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Connection


def _diffs(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_matches_metadata(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diffs) == []
        assert await conn.run_sync(_tables) == {*metadata.tables, "alembic_version"}
    assert await current_revision(store.engine) == "0001"


async def test_upgrade_is_idempotent_and_reversible(store: Store) -> None:
    await upgrade(store.engine)
    await downgrade(store.engine, "base")
    assert await current_revision(store.engine) is None
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_tables) == {"alembic_version"}
    await upgrade(store.engine)
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diffs) == []


async def test_open_without_migrate_leaves_the_database_alone(db_url: str) -> None:
    store = await Store.open(db_url, migrate=False)
    try:
        assert await current_revision(store.engine) is None
        await store.ping()
    finally:
        await store.close()


async def test_ping_and_dialect(store: Store) -> None:
    await store.ping()
    assert store.is_sqlite == (store.engine.dialect.name == "sqlite")


async def test_sqlite_settings(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert store.is_sqlite
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10_000
        pool: Any = store.engine.pool
        assert pool.size() == 1
        assert pool._max_overflow == 0
    finally:
        await store.close()


async def test_unreachable_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        await Store.open("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    store = Store(create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    with pytest.raises(Unavailable):
        await store.ping()
    await store.close()


async def test_writes_survive_a_reopen_and_failed_writes_leave_nothing_open(db_url: str) -> None:
    store = await Store.open(db_url)
    try:
        user = await store.users.create(login="a", role=Role.ADMIN, password_hash=None, now=NOW)
        with pytest.raises(Conflict):
            await store.users.create(login="a", role=Role.ADMIN, password_hash=None, now=NOW)
        await store.meta.put("k", "v")
        async with store.engine.connect() as conn:
            in_transaction = await conn.run_sync(
                lambda sync: (
                    sync.connection.driver_connection.in_transaction if store.is_sqlite else False
                )
            )
            assert not in_transaction
    finally:
        await store.close()
    reopened = await Store.open(db_url)
    try:
        assert await reopened.users.get(user.id) == user
        assert await reopened.meta.get("k") == "v"
    finally:
        await reopened.close()


async def test_repositories_raise_unavailable_when_the_database_is_gone() -> None:
    store = await Store.open("postgresql+asyncpg://nobody@127.0.0.1:1/none", migrate=False)
    try:
        with pytest.raises(Unavailable):
            await store.devices.get("x")
        with pytest.raises(Unavailable):
            await store.meta.put("k", "v")
    finally:
        await store.close()
