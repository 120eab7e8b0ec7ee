"""Durable state: one schema, Core-statement repositories, Alembic migrations.

:class:`Store` is the only thing the hub needs: ``await Store.open(url)`` builds the
engine for SQLite (the default) or PostgreSQL, brings the schema up to date, and exposes
one repository per aggregate. Repositories take and return core entities, read no
clock (``now`` is always passed in) and raise core errors, so nothing above this
package knows which database it runs on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tether.core.errors import Unavailable
from tether.store.engine import create_engine
from tether.store.migrate import upgrade
from tether.store.repos import (
    ApiKeyRepo,
    CommandBatchRepo,
    CommandRepo,
    ConfigRepo,
    DeviceRepo,
    DeviceTypeRepo,
    FirmwareRepo,
    MetaRepo,
    NetworkRepo,
    NewCommand,
    NewNotification,
    NotificationRepo,
    StateRepo,
    TransitionRequest,
    UserRepo,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "ApiKeyRepo",
    "CommandBatchRepo",
    "CommandRepo",
    "ConfigRepo",
    "DeviceRepo",
    "DeviceTypeRepo",
    "FirmwareRepo",
    "MetaRepo",
    "NetworkRepo",
    "NewCommand",
    "NewNotification",
    "NotificationRepo",
    "StateRepo",
    "Store",
    "TransitionRequest",
    "UserRepo",
    "create_engine",
    "upgrade",
]

_PING = text("SELECT 1")


class Store:
    """The repositories over one engine."""

    engine: AsyncEngine
    users: UserRepo
    networks: NetworkRepo
    device_types: DeviceTypeRepo
    devices: DeviceRepo
    api_keys: ApiKeyRepo
    commands: CommandRepo
    command_batches: CommandBatchRepo
    notifications: NotificationRepo
    states: StateRepo
    configs: ConfigRepo
    firmware: FirmwareRepo
    meta: MetaRepo

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.users = UserRepo(engine)
        self.networks = NetworkRepo(engine)
        self.device_types = DeviceTypeRepo(engine)
        self.devices = DeviceRepo(engine)
        self.api_keys = ApiKeyRepo(engine)
        self.commands = CommandRepo(engine)
        self.command_batches = CommandBatchRepo(engine)
        self.notifications = NotificationRepo(engine)
        self.states = StateRepo(engine)
        self.configs = ConfigRepo(engine)
        self.firmware = FirmwareRepo(engine)
        self.meta = MetaRepo(engine)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, pool_size: int | None = None) -> Store:
        """Connect to ``url`` and, unless ``migrate=False``, upgrade the schema to head.

        A database that cannot be reached raises :class:`~tether.core.errors.Unavailable`.
        """
        engine = create_engine(url, pool_size=pool_size)
        try:
            if migrate:
                await upgrade(engine)
        except (SQLAlchemyError, OSError) as error:
            await engine.dispose()
            raise Unavailable(f"cannot open the database: {error}") from error
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self.command_batches.close()
        await self.engine.dispose()

    async def ping(self) -> None:
        """One trivial round trip; ``Unavailable`` if the database does not answer."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(_PING)
        except (SQLAlchemyError, OSError) as error:
            raise Unavailable(f"database unavailable: {error}") from error

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
