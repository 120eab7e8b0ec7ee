"""Alembic environment for Tether.

At run time :mod:`tether.store.migrate` passes an open (sync-facing) connection of the
application's async engine in ``config.attributes["connection"]``. For the ``alembic``
command line, ``sqlalchemy.url`` in the ini file (or ``-x url=...``) is used to build the
same async engine the server would use. SQLite needs ``render_as_batch`` because it can
alter a table only by rebuilding it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alembic import context

from tether.store.schema import metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_with_connection(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    from tether.store.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_with_connection)
    finally:
        await engine.dispose()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    return url


if context.is_offline_mode():
    context.configure(
        url=_url(),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        run_with_connection(existing)
    else:
        asyncio.run(_run_with_url(_url()))
