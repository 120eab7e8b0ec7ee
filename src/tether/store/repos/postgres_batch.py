"""The command hot path on PostgreSQL: group statements on one held asyncpg connection.

Every command is written at least twice (created, finished), and the hub's writer sends
these writes in batches from a single task. On this path SQLAlchemy's async layer was
the cost, not PostgreSQL: a pool checkout and an ``execute`` through the adapter took
about 430 us of CPU per statement on the bench machine, against 80-100 us for the same
statement sent by asyncpg itself (``bench/`` and ``docs/performance.md``, cluster
section). So this module, and only this one, talks to the driver directly:

* one connection, checked out of the engine's pool once and held while it works (a
  failure returns it to the pool invalidated, and the next batch takes a fresh one);
* one ``INSERT ... SELECT FROM unnest(...) ORDER BY n RETURNING`` per batch of new
  commands, and one ``UPDATE ... FROM unnest(...) RETURNING`` per group of like
  transitions: each planned with its own values, and the returned rows are exactly the
  commands that moved;
* these joined into ONE statement (data-modifying CTEs, :func:`combine`) per wave of
  transitions, so a usual batch is one round trip and one commit (one WAL flush) in
  autocommit, with no ``BEGIN``/``COMMIT`` round trips. Statements sent separately in
  autocommit cost a commit each, and under load that showed in the tail (P2 on
  PostgreSQL, ``docs/performance.md``). A batch that needs several statements (a
  command moved twice in it) runs them in one transaction.

The statements keep the rules of :class:`~tether.store.repos.commands.CommandRepo`, and
``tests/store/test_command_batches.py`` runs the same cases on both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from tether.core.errors import Unavailable
from tether.core.lifecycle import CommandState, sources, stamp
from tether.store.engine import SQL_STATEMENTS
from tether.store.repos._base import write_error
from tether.store.schema import commands
from tether.store.types import json_dumps, json_loads

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from tether.store.repos.command_batches import NewCommand

#: PostgreSQL array element type of each column a transition may set.
_SQL_TYPES = {
    "state": "varchar",
    "status": "text",
    "error": "text",
    "ref": "varchar",
    "updated_at": "timestamptz",
    "sent_at": "timestamptz",
    "delivered_at": "timestamptz",
    "completed_at": "timestamptz",
    # JSON travels as text and is cast back: asyncpg has no array-of-json shortcut.
    "result": "text",
    "steps": "text",
    "parameters": "text",
}
_JSON = frozenset({"result", "steps", "parameters"})
_NAMES = [column.name for column in commands.c]
_RETURNING = ", ".join(f'c."{name}"' for name in _NAMES)

#: New commands: column-wise arrays, numbered so the ids follow the input order.
INSERT = (
    "INSERT INTO commands AS c (device_id, name, parameters, state, ref, created_by, "
    "created_at, updated_at, expires_at, timeout) "
    "SELECT v.device_id, v.name, CAST(v.parameters AS json), "
    f"'{CommandState.PENDING.value}', v.ref, v.created_by, v.created_at, v.created_at, "
    "v.expires_at, v.timeout "
    "FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::varchar[], $5::bigint[], "
    "$6::timestamptz[], $7::timestamptz[], $8::float8[]) WITH ORDINALITY "
    "AS v(device_id, name, parameters, ref, created_by, created_at, expires_at, timeout, n) "
    f"ORDER BY v.n RETURNING {_RETURNING}"
)

_updates: dict[tuple[Any, ...], str] = {}


def update_statement(
    target: CommandState, by_device: bool, columns: Sequence[str], first: int = 1
) -> str:
    """The UPDATE for one group of transitions (same target, same columns).

    Its placeholders are numbered from ``first``, so that several of them can share one
    statement (:func:`combine`).
    """
    key = (target, by_device, first, *columns)
    sql = _updates.get(key)
    if sql is not None:
        return sql
    keys = ["b_id", *(["b_device"] if by_device else []), *columns]
    types = {"b_id": "bigint", "b_device": "varchar", **_SQL_TYPES}
    arrays = ", ".join(f"${i}::{types[k]}[]" for i, k in enumerate(keys, start=first))
    sets = ", ".join(
        f'"{k}" = CAST(v."{k}" AS json)' if k in _JSON else f'"{k}" = v."{k}"' for k in columns
    )
    allowed = ", ".join(f"'{s.value}'" for s in sorted(sources(target), key=lambda s: s.value))
    names = ", ".join(f'"{k}"' for k in keys)
    sql = (
        f"UPDATE commands AS c SET {sets} FROM unnest({arrays}) AS v({names}) "
        f"WHERE c.id = v.b_id AND c.state IN ({allowed})"
        + (" AND c.device_id = v.b_device" if by_device else "")
        + f" RETURNING {_RETURNING}"
    )
    _updates[key] = sql
    return sql


def combine(parts: Sequence[str]) -> str:
    """Several INSERT/UPDATE statements as ONE: data-modifying CTEs, rows tagged by part.

    One statement is one round trip, one implicit transaction and one WAL flush, where
    separate statements in autocommit paid each of these per statement. The parts see the
    same snapshot and none sees another's changes, so they must touch distinct rows: the
    caller combines the new commands with ONE wave of transitions (a wave holds each
    command at most once, and no transition of a batch refers to a command it inserts).
    With more than one part, each returned row carries ``part``, the index of the
    statement that produced it.
    """
    if len(parts) == 1:
        return parts[0]  # every row is part 0; no CTE needed
    ctes = ", ".join(f"p{i} AS ({sql})" for i, sql in enumerate(parts))
    selects = " UNION ALL ".join(f"SELECT {i} AS part, * FROM p{i}" for i in range(len(parts)))
    return f"WITH {ctes} {selects}"


def update_arguments(
    rows: Sequence[dict[str, Any]], by_device: bool, columns: Sequence[str]
) -> list[list[Any]]:
    """Column-wise arrays for :func:`update_statement`, in its placeholder order."""
    arguments: list[list[Any]] = [[row["b_id"] for row in rows]]
    if by_device:
        arguments.append([row["b_device"] for row in rows])
    for column in columns:
        values = [row.get(column) for row in rows]
        if column in _JSON:
            # As SQLAlchemy's JSON type does by default: None is stored as JSON null.
            values = [json_dumps(v) for v in values]
        arguments.append(values)
    return arguments


def insert_arguments(rows: Sequence[NewCommand]) -> list[list[Any]]:
    """Column-wise arrays for the INSERT, in its placeholder order."""
    return [
        [row.device_id for row in rows],
        [row.name for row in rows],
        [json_dumps(row.parameters) for row in rows],
        [row.ref for row in rows],
        [row.created_by for row in rows],
        [row.created_at for row in rows],
        [row.expires_at for row in rows],
        [row.timeout for row in rows],
    ]


def values_of(target: CommandState, now: Any, fields: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = stamp(target, now)
    values["state"] = target.value
    values.update(fields)
    return values


class HeldConnection:
    """One pooled connection kept checked out for the writer's statements.

    Calls are serialised (the writer is one task anyway). Any failure that leaves the
    connection in doubt gives it back to the pool invalidated; the next call checks out
    a fresh one, so a restarted PostgreSQL costs the batch in flight and nothing more.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._held: AsyncConnection | None = None
        self._driver: asyncpg.Connection | None = None

    async def fetch(self, sql: str, arguments: Sequence[Any]) -> list[asyncpg.Record]:
        """Run one statement in autocommit and return its rows (JSON columns decoded)."""
        return (await self.fetch_all([(sql, arguments)]))[0]

    async def fetch_all(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[asyncpg.Record]]:
        """Run statements in ONE transaction; the rows of each, in order.

        A single statement is its own transaction (autocommit: no ``BEGIN``/``COMMIT``
        round trips); several run between ``BEGIN`` and ``COMMIT``, all or nothing.
        """
        async with self._lock:
            driver = await self._connection()
            SQL_STATEMENTS.inc(len(statements))
            try:
                if len(statements) == 1:
                    sql, arguments = statements[0]
                    return [await driver.fetch(sql, *arguments)]
                async with driver.transaction():
                    return [await driver.fetch(sql, *arguments) for sql, arguments in statements]
            except asyncpg.IntegrityConstraintViolationError as error:
                raise write_error(error, "command") from None
            except asyncpg.PostgresError as error:
                # The server refused a statement; the transaction (if any) was rolled
                # back, so the connection is fine unless the refusal was about it.
                if not _connection_lost(error):
                    raise  # a bug in a statement: loud, and not "database unavailable"
                await self._drop()
                raise Unavailable(f"database unavailable: {error}") from error
            except (ValueError, TypeError):
                raise  # an argument asyncpg could not encode: a bug, the link is fine
            except BaseException as error:
                # Lost link, protocol confusion after one, or cancelled mid-statement:
                # the connection is in doubt either way.
                await self._drop()
                if isinstance(error, Exception):
                    raise Unavailable(f"database unavailable: {error!r}") from error
                raise

    async def close(self) -> None:
        async with self._lock:
            if self._held is not None:
                held, self._held, self._driver = self._held, None, None
                with contextlib.suppress(Exception):
                    await held.close()

    async def _connection(self) -> asyncpg.Connection:
        if self._driver is not None:
            return self._driver
        try:
            self._held = await self._engine.connect()
        except Exception as error:
            raise Unavailable(f"database unavailable: {error}") from error
        try:
            driver: asyncpg.Connection = (await self._held.get_raw_connection()).driver_connection
            # JSON columns come back decoded by the same codec as everywhere else
            # (SQLAlchemy installs this one too; set here so this path relies on it).
            await driver.set_type_codec(
                "json", schema="pg_catalog", encoder=json_dumps, decoder=json_loads
            )
        except BaseException:
            await self._drop()
            raise
        self._driver = driver
        return driver

    async def _drop(self) -> None:
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()


def _connection_lost(error: asyncpg.PostgresError) -> bool:
    """Whether PostgreSQL refused for reasons of its own (shutdown, resources, admin)."""
    state = getattr(error, "sqlstate", "") or ""
    # 08: connection exception; 53: insufficient resources; 57: operator intervention.
    return state[:2] in ("08", "53", "57")
