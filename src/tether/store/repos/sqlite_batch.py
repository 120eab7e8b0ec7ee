"""A command batch on SQLite in ONE hand-off to the database thread.

aiosqlite runs every cursor call (begin, execute, fetch, commit) as its own trip to its
thread and back through the event loop, and under load each trip waits behind the
loop's other work. For the hot path, :class:`SqliteBatch` instead sends the whole batch
(multi-row insert, conditional updates, read-backs, commit) as one function to that
same thread and connection, so SQLite keeps its single writer. Values go through the
columns' own SQLAlchemy type processors (epoch microseconds, msgspec JSON), so rows read
and written here are exactly those the SQLAlchemy path reads and writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON

from tether.core.lifecycle import CommandState, sources, stamp
from tether.core.model import Command
from tether.store.engine import SQL_STATEMENTS
from tether.store.repos.commands import _to_command
from tether.store.schema import commands
from tether.store.types import UTCDateTime, from_sqlite, json_loads, to_sqlite

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tether.store.repos.command_batches import NewCommand, TransitionRequest

Processor = Callable[[Any], Any] | None
#: One wave: (SQL, parameter rows) per update group, and the ids to read back.
Wave = tuple[list[tuple[str, list[tuple[Any, ...]]]], list[int]]

_COLUMNS = [column.name for column in commands.c]
_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM commands"
_INSERT_COLUMNS = [
    "device_id",
    "name",
    "parameters",
    "state",
    "ref",
    "created_by",
    "created_at",
    "updated_at",
    "expires_at",
    "timeout",
]


def _json_result(value: Any) -> Any:
    """What SQLAlchemy's SQLite JSON type reads, without its two wrapper layers.

    A JSON column has NUMERIC affinity in SQLite, so a number stored as JSON text comes
    back as a number; anything else is JSON text for the engine's one decoder.
    """
    if isinstance(value, int | float):
        return value
    return json_loads(value)


class SqliteBatch:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        dialect = engine.dialect
        # The dialect's own implementation of each type, as SQLAlchemy's execution uses;
        # for timestamps (six of the columns) the very functions UTCDateTime applies on
        # SQLite, without SQLAlchemy's wrapper layers: converting values was a tenth of
        # the server's CPU in the P2 round trip profile.
        self._bind: dict[str, Processor] = {
            column.name: to_sqlite
            if isinstance(column.type, UTCDateTime)
            else column.type.dialect_impl(dialect).bind_processor(dialect)
            for column in commands.c
        }
        self._result: list[Processor] = [
            from_sqlite
            if isinstance(column.type, UTCDateTime)
            else _json_result
            if isinstance(column.type, JSON)
            else column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in commands.c
        ]

    def _value(self, column: str, value: Any) -> Any:
        processor = self._bind[column]
        return value if processor is None or value is None else processor(value)

    def _command(self, raw: Sequence[Any]) -> Command:
        values = [
            value if processor is None or value is None else processor(value)
            for processor, value in zip(self._result, raw, strict=True)
        ]
        return _to_command(dict(zip(_COLUMNS, values, strict=True)))

    async def run(
        self,
        rows: Sequence[NewCommand],
        requests: Sequence[TransitionRequest],
        waves: list[list[int]],
    ) -> tuple[list[Command], list[dict[int, Command]]]:
        """Insert ``rows`` and apply ``requests`` wave by wave, in one transaction.

        Returns the inserted commands (in input order) and, per wave, the commands read
        back by id.
        """
        insert = self._insert_statement(rows) if rows else None
        planned = [self._wave(requests, members) for members in waves]
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            inserted, read = await driver._execute(_run, driver._conn, insert, planned)
        SQL_STATEMENTS.inc(
            int(bool(rows)) + sum(len(groups) + bool(ids) for groups, ids in planned)
        )
        return (
            [self._command(row) for row in inserted],
            [{row[0]: self._command(row) for row in wave} for wave in read],
        )

    def _insert_statement(self, rows: Sequence[NewCommand]) -> tuple[str, list[Any]]:
        marks = "(" + ", ".join("?" * len(_INSERT_COLUMNS)) + ")"
        sql = (
            "INSERT INTO commands ("
            + ", ".join(f'"{c}"' for c in _INSERT_COLUMNS)
            + ") VALUES "
            + ", ".join([marks] * len(rows))
            + " RETURNING "
            + ", ".join(f'"{c}"' for c in _COLUMNS)
        )
        params: list[Any] = []
        for row in rows:
            values = {
                "device_id": row.device_id,
                "name": row.name,
                "parameters": row.parameters,
                "state": CommandState.PENDING.value,
                "ref": row.ref,
                "created_by": row.created_by,
                "created_at": row.created_at,
                "updated_at": row.created_at,
                "expires_at": row.expires_at,
                "timeout": row.timeout,
            }
            params.extend(self._value(column, values[column]) for column in _INSERT_COLUMNS)
        return sql, params

    def _wave(self, requests: Sequence[TransitionRequest], members: list[int]) -> Wave:
        groups: dict[tuple[Any, ...], tuple[str, list[tuple[Any, ...]]]] = {}
        for index in members:
            request = requests[index]
            values: dict[str, Any] = stamp(request.target, request.now)
            values["state"] = request.target.value
            values.update(request.fields)
            columns = sorted(values)
            by_device = request.device_id is not None
            key = (request.target, by_device, *columns)
            if key not in groups:
                allowed = ", ".join(
                    f"'{state.value}'"
                    for state in sorted(sources(request.target), key=lambda s: s.value)
                )
                sql = (
                    "UPDATE commands SET "
                    + ", ".join(f'"{c}" = ?' for c in columns)
                    + f" WHERE id = ? AND state IN ({allowed})"
                    + (" AND device_id = ?" if by_device else "")
                )
                groups[key] = (sql, [])
            params = [self._value(c, values[c]) for c in columns]
            params.append(request.command_id)
            if by_device:
                params.append(request.device_id)
            groups[key][1].append(tuple(params))
        wanted = [requests[i].command_id for i in members if requests[i].read_back]
        return list(groups.values()), wanted


def _run(
    db: sqlite3.Connection, insert: tuple[str, list[Any]] | None, waves: list[Wave]
) -> tuple[list[tuple[Any, ...]], list[list[tuple[Any, ...]]]]:
    """Runs in aiosqlite's thread, on its connection: the whole batch, then commit."""
    if not db.in_transaction:
        db.execute("BEGIN")
    try:
        inserted: list[tuple[Any, ...]] = []
        if insert is not None:
            inserted = sorted(db.execute(*insert).fetchall(), key=lambda row: row[0])
        read: list[list[tuple[Any, ...]]] = []
        for groups, ids in waves:
            for sql, params in groups:
                db.executemany(sql, params)
            if not ids:
                read.append([])  # nobody reads these rows back (write-behind marks)
                continue
            marks = ", ".join("?" * len(ids))
            read.append(db.execute(f"{_SELECT} WHERE id IN ({marks})", ids).fetchall())
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return inserted, read
