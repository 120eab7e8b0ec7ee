"""Group commit for the command hot path: many inserts and transitions at once.

Every command is written at least twice (created, finished), and one statement through
SQLAlchemy's async layer costs a few hundred microseconds of CPU whatever it does. Under
load the hub therefore queues these writes and hands them over in batches, each with the
same conditional rule as :meth:`CommandRepo.transition`:

* SQLite: the whole batch runs in one hand-off to the database thread
  (``sqlite_batch.py``); a read-back tells each request whether it moved its command,
  because each request carries its own ``now`` (the hub's clock never repeats a value).
* PostgreSQL: one ``INSERT ... FROM unnest(...) RETURNING``, and per group of like
  transitions one ``UPDATE ... FROM unnest(...) RETURNING``, joined as data-modifying
  CTEs into one statement per wave, one transaction per batch, sent by asyncpg on a held
  connection (``postgres_batch.py`` says why).

Requests for one command apply in arrival order, in waves that hold it at most once.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.core.errors import Conflict, NotFound
from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.store.repos import postgres_batch
from tether.store.repos._base import Repo, check_fields
from tether.store.repos.commands import _TRANSITION_FIELDS, _to_command
from tether.store.repos.sqlite_batch import SqliteBatch


class NewCommand(msgspec.Struct, kw_only=True, frozen=True):
    """A command not stored yet: one row of :meth:`CommandBatchRepo.insert_many`."""

    device_id: str
    name: str
    parameters: Any = None
    created_by: int | None = None
    created_at: datetime
    expires_at: datetime | None = None
    timeout: float | None = None
    ref: str | None = None


class TransitionRequest(msgspec.Struct, kw_only=True, frozen=True):
    """One conditional transition of :meth:`CommandBatchRepo.transition_many`."""

    command_id: int
    target: CommandState
    now: datetime
    #: Only move the command if it belongs to this device (a device acting as itself).
    device_id: str | None = None
    fields: dict[str, Any] = {}
    #: False when nobody reads the outcome (a write-behind ``sent`` mark): the row is
    #: then not read back nor decoded, and the outcome is always None.
    read_back: bool = True


class CommandBatchRepo(Repo):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._sqlite = SqliteBatch(engine) if self._dialect == "sqlite" else None
        self._postgres = (
            postgres_batch.HeldConnection(engine) if self._dialect == "postgresql" else None
        )

    async def close(self) -> None:
        """Give back the connection the PostgreSQL path holds (before the pool closes)."""
        if self._postgres is not None:
            await self._postgres.close()

    async def write(
        self, rows: Sequence[NewCommand], requests: Sequence[TransitionRequest]
    ) -> tuple[list[Command], list[Command | None]]:
        """:meth:`insert_many` then :meth:`transition_many`, in one unit of work.

        On SQLite that is one transaction in one hand-off to the database thread; on
        PostgreSQL one transaction, usually one statement (:meth:`_write_postgres`).
        """
        waves = _waves(requests)
        if self._sqlite is not None:
            return await self._write_sqlite(rows, requests, waves)
        return await self._write_postgres(rows, requests, waves)

    async def _write_sqlite(
        self,
        rows: Sequence[NewCommand],
        requests: Sequence[TransitionRequest],
        waves: list[list[int]],
    ) -> tuple[list[Command], list[Command | None]]:
        assert self._sqlite is not None
        try:
            inserted, read = await self._sqlite.run(rows, requests, waves)
        except sqlite3.IntegrityError as error:
            if "FOREIGN KEY" in str(error):
                raise NotFound("a command refers to a device that does not exist") from None
            raise Conflict(f"command batch refused: {error}") from None
        _check_order(rows, inserted)
        moved: list[Command | None] = [None] * len(requests)
        for members, found in zip(waves, read, strict=True):
            _settle(requests, members, found, moved)
        return inserted, moved

    async def insert_many(self, rows: Sequence[NewCommand]) -> list[Command]:
        """Insert new commands in one statement; results in the order of ``rows``.

        All or nothing: a row for an unknown device fails the batch with ``NotFound``.
        """
        return (await self.write(rows, ()))[0]

    async def transition_many(self, requests: Sequence[TransitionRequest]) -> list[Command | None]:
        """Apply conditional transitions together; per request, the command it moved.

        ``None`` for a request that moved nothing (wrong state, wrong device, unknown id),
        and for one that asked for no read-back.
        Requests for the same command apply in the order given: the batch runs in waves
        holding each command at most once (an acknowledgement and the result of one
        command often arrive together).
        """
        return (await self.write((), requests))[1]

    async def _write_postgres(
        self,
        rows: Sequence[NewCommand],
        requests: Sequence[TransitionRequest],
        waves: list[list[int]],
    ) -> tuple[list[Command], list[Command | None]]:
        """The batch in one transaction, and in the usual case one statement.

        The new commands and the first wave of transitions form one statement (one
        round trip, one WAL flush); a later wave (a command moved twice in one batch) is
        a statement of its own, and then all of them run between BEGIN and COMMIT.
        """
        assert self._postgres is not None
        if not rows and not requests:
            return [], []
        # Per statement: its parts (SQL, arguments, and the request indexes of an
        # UPDATE part, None for the INSERT part).
        statements: list[list[tuple[str, list[list[Any]], list[int] | None]]] = []
        first: list[tuple[str, list[list[Any]], list[int] | None]] = []
        if rows:
            first.append((postgres_batch.INSERT, postgres_batch.insert_arguments(rows), None))
        for members in waves:
            parts = first if not statements else []
            placeholder = 1 + sum(len(arguments) for _, arguments, _ in parts)
            for (target, by_device, columns), items in _groups(requests, members).items():
                sql = postgres_batch.update_statement(target, by_device, columns, placeholder)
                arguments = postgres_batch.update_arguments(
                    [row for _, row in items], by_device, columns
                )
                placeholder += len(arguments)
                parts.append((sql, arguments, [index for index, _ in items]))
            statements.append(parts)
        if not statements:
            statements.append(first)
        results = await self._postgres.fetch_all(
            [
                (
                    postgres_batch.combine([sql for sql, _, _ in parts]),
                    [array for _, arguments, _ in parts for array in arguments],
                )
                for parts in statements
            ]
        )
        stored: list[Command] = []
        moved: list[Command | None] = [None] * len(requests)
        for parts, records in zip(statements, results, strict=True):
            # Only the rows somebody reads are decoded.
            wanted = [
                None
                if indexes is None
                else {requests[i].command_id for i in indexes if requests[i].read_back}
                for _, _, indexes in parts
            ]
            by_part: list[dict[int, Command]] = [{} for _ in parts]
            for record in records:
                part = record["part"] if len(parts) > 1 else 0
                ids = wanted[part]
                if ids is None or record["id"] in ids:
                    by_part[part][record["id"]] = _to_command(record)
            for (_, _, indexes), found in zip(parts, by_part, strict=True):
                if indexes is None:
                    # Ids are drawn in the SELECT's order (ORDER BY n): sorted by id, the
                    # rows follow the input, which _check_order confirms, not assumes.
                    stored = sorted(found.values(), key=lambda command: command.id)
                    _check_order(rows, stored)
                    continue
                for index in indexes:
                    moved[index] = found.get(requests[index].command_id)
        return stored, moved


def _groups(
    requests: Sequence[TransitionRequest], members: list[int]
) -> dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]]:
    """One wave's requests grouped by (target, by device, columns): one UPDATE each."""
    groups: defaultdict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for index in members:
        request = requests[index]
        row = postgres_batch.values_of(request.target, request.now, request.fields)
        row["b_id"] = request.command_id
        by_device = request.device_id is not None
        if by_device:
            row["b_device"] = request.device_id
        columns = tuple(sorted(k for k in row if not k.startswith("b_")))
        groups[(request.target, by_device, columns)].append((index, row))
    return groups


def _check_order(rows: Sequence[NewCommand], stored: Sequence[Command]) -> None:
    for row, command in zip(rows, stored, strict=True):
        if row.device_id != command.device_id or row.created_at != command.created_at:
            raise RuntimeError("command ids were assigned out of input order")


def _waves(requests: Sequence[TransitionRequest]) -> list[list[int]]:
    """Split requests so each wave moves a command at most once, in the order given."""
    waves: list[list[int]] = []
    seen: dict[int, int] = {}
    for index, request in enumerate(requests):
        check_fields(request.fields, _TRANSITION_FIELDS, "command")
        wave = seen.get(request.command_id, -1) + 1
        seen[request.command_id] = wave
        if wave == len(waves):
            waves.append([])
        waves[wave].append(index)
    return waves


def _settle(
    requests: Sequence[TransitionRequest],
    members: list[int],
    stored: dict[int, Command],
    outcome: list[Command | None],
) -> None:
    """A request moved its command iff the row now has its target and its timestamp."""
    for index in members:
        request = requests[index]
        command = stored.get(request.command_id)
        if (
            command is not None
            and request.read_back
            and command.state is request.target
            and command.updated_at == request.now
        ):
            outcome[index] = command
