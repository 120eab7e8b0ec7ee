"""Engine construction: the few settings that make each backend behave.

SQLite is the zero-configuration default, and it is fast only when used the way it
likes: write-ahead logging (readers never block the writer), ``synchronous=NORMAL``
(durable at checkpoints, no fsync per commit under WAL), a busy timeout instead of
instant ``database is locked`` errors when another process holds the lock, and foreign
keys switched on (SQLite leaves them off per connection). The pool holds exactly *one*
connection: SQLite allows one writer at a time anyway, and a single connection turns
lock contention into an orderly asyncio queue inside the process.

PostgreSQL uses asyncpg with a modest pool. libpq's ``options=-c name=value`` URL
parameter (used e.g. to pick a ``search_path``) is not understood by asyncpg, so it is
translated into asyncpg's ``server_settings``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from tether.store.files import private_file
from tether.store.types import json_dumps, json_loads

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)
POSTGRES_POOL_SIZE = 10
POSTGRES_MAX_OVERFLOW = 10


def create_engine(url: str, *, pool_size: int | None = None, echo: bool = False) -> AsyncEngine:
    """An async engine for a ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL.

    ``postgresql://`` without a driver is taken to mean asyncpg. ``pool_size`` applies to
    PostgreSQL only; SQLite always gets its single connection.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, echo)
    elif backend == "postgresql":
        engine = _postgres_engine(parsed, pool_size or POSTGRES_POOL_SIZE, echo)
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite+aiosqlite or postgresql")
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
    return engine


SQL_STATEMENTS = Counter(
    "tether_sql_statements_total",
    "SQL statements sent to the database. Flat while devices poll with nothing due: "
    "empty polls, heartbeats and idle keepalives must cost no SQL.",
)


def _count_statement(*_: object) -> None:
    SQL_STATEMENTS.inc()


def _sqlite_engine(url: URL, echo: bool) -> AsyncEngine:
    if url.get_driver_name() != "aiosqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        # The file holds the signing secret and every hash: owner-only from the start.
        private_file(Path(database).expanduser().resolve())
    engine = create_async_engine(
        url,
        echo=echo,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    _skip_idle_rollbacks(engine)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _skip_idle_rollbacks(engine: AsyncEngine) -> None:
    """Do not send a ROLLBACK to a SQLite connection that has no transaction open.

    SQLAlchemy rolls back every connection it returns to the pool, and after a read or
    a commit there is nothing to roll back (Python's sqlite3 then does nothing), yet
    with aiosqlite the call still costs a round trip to the driver thread: one of the
    five or six hops of every repository call. Skipping it is exactly equivalent;
    ``in_transaction`` is read while the connection is idle between operations.
    """
    dialect = engine.sync_engine.dialect
    rollback = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        driver = getattr(dbapi_connection, "_connection", None)
        if getattr(driver, "in_transaction", True) is False:
            return
        rollback(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


def _postgres_engine(url: URL, pool_size: int, echo: bool) -> AsyncEngine:
    if url.get_driver_name() != "asyncpg":
        url = url.set(drivername="postgresql+asyncpg")
    # Every statement is planned with its actual values. asyncpg prepares statements, and
    # PostgreSQL switches a prepared statement to a generic plan after five runs; one made
    # while the commands table was nearly empty (no statistics) picked the
    # (device_id, ref) index over the primary key for hot-path updates and then scanned a
    # device's whole history on every call (found by bench/). Custom plans cost a little
    # planning per statement and cannot go stale like that.
    server_settings = {"plan_cache_mode": "force_custom_plan"}
    options = url.query.get("options")
    if options is not None:
        if not isinstance(options, str):
            options = " ".join(options)
        server_settings.update(parse_pg_options(options))
        url = url.difference_update_query(["options"])
    connect_args: dict[str, Any] = {"server_settings": server_settings}
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        pool_recycle=1800,
        connect_args=connect_args,
        json_serializer=json_dumps,
        json_deserializer=json_loads,
    )


def parse_pg_options(options: str) -> dict[str, str]:
    """libpq ``options`` (``-c a=b -cc=d --e=f``) as a ``server_settings`` mapping."""
    settings: dict[str, str] = {}
    tokens = shlex.split(options)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "-c":
            if index >= len(tokens):
                raise ValueError(f"dangling -c in options {options!r}")
            token = tokens[index]
            index += 1
        elif token.startswith("-c") or token.startswith("--"):
            token = token[2:]
        else:
            raise ValueError(f"unsupported PostgreSQL option {token!r} in {options!r}")
        name, sep, value = token.partition("=")
        if not sep or not name:
            raise ValueError(f"expected name=value in PostgreSQL options, got {token!r}")
        settings[name.replace("-", "_")] = value
    return settings
