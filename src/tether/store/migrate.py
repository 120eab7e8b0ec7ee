"""Run the Alembic migrations from code, on the application's own engine.

The server upgrades its schema at start-up, so no ``alembic.ini`` ships or is needed:
the Alembic ``Config`` is built here, points at the ``migrations`` folder inside this
package, and receives the live connection through ``config.attributes`` (env.py uses it
instead of opening its own). On PostgreSQL the whole upgrade runs in one transaction
under an advisory lock, so several nodes starting together migrate exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

SCRIPT_LOCATION = "tether.store:migrations"
#: Arbitrary constant key of the PostgreSQL advisory lock serialising migrations.
_ADVISORY_LOCK_KEY = 0x7E7E_0001


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``engine``; a no-op when already there."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        await connection.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """``alembic downgrade <revision>`` (operations and tests only)."""
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
