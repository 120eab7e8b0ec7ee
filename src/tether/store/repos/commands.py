"""Commands: the hot repository, and the one that keeps the lifecycle honest.

Every state change is ONE conditional statement,
``UPDATE commands SET ... WHERE id = :id AND state IN (sources(target)) RETURNING *``,
so whichever node, process or task gets there first wins and every other attempt
matches no row. A command therefore never moves backwards and never finishes twice,
with no locks held across round trips and no read before the write.

The statements used on every command are built once at import time; SQLAlchemy's
compiled cache then skips recompilation, so a call costs one round trip plus row
conversion.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.errors import Conflict
from tether.core.lifecycle import (
    ACTIVE,
    DELIVERABLE,
    IN_FLIGHT,
    CommandState,
    sources,
    stamp,
)
from tether.core.model import Command, CommandStep
from tether.store.repos._base import (
    Repo,
    check_fields,
    child_visibility,
    integrity_kind,
    page,
    write_error,
)
from tether.store.schema import commands, devices

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from datetime import datetime

    from sqlalchemy import ColumnElement, Select, Update

    from tether.core.access import Principal

c = commands.c
_COLUMNS = tuple(commands.c)
#: Columns a transition may set besides the lifecycle stamps.
_TRANSITION_FIELDS = frozenset({"status", "result", "error", "ref", "steps", "parameters"})
_SORTS = {"id": c.id, "created_at": c.created_at, "updated_at": c.updated_at, "name": c.name}


def _states(states: Collection[CommandState]) -> list[str]:
    return sorted(state.value for state in states)


_INSERT = insert(commands).returning(*_COLUMNS)
_BY_ID = select(commands).where(c.id == bindparam("b_id"))
_BY_REF = (
    select(commands)
    .where(c.device_id == bindparam("b_device"), c.ref == bindparam("b_ref"))
    .order_by(c.id.desc())
    .limit(1)
)
_BY_KEY = select(commands).where(
    c.created_by == bindparam("b_creator"),
    c.device_id == bindparam("b_device"),
    c.idempotency_key == bindparam("b_key"),
)
_BY_KEY_ANONYMOUS = select(commands).where(
    c.created_by.is_(None),
    c.device_id == bindparam("b_device"),
    c.idempotency_key == bindparam("b_key"),
)
_DELIVERABLE = (
    select(commands)
    .where(c.device_id == bindparam("b_device"), c.state.in_(_states(DELIVERABLE)))
    .order_by(c.id)
    .limit(bindparam("b_limit"))
)
_IN_FLIGHT = (
    select(func.count())
    .select_from(commands)
    .where(c.device_id == bindparam("b_device"), c.state.in_(_states(IN_FLIGHT)))
)
_ACTIVE = select(commands).where(c.state.in_(_states(ACTIVE))).order_by(c.id)
_ACTIVE_OF = _ACTIVE.where(c.device_id == bindparam("b_device"))


def _transition_stmt(target: CommandState, by_device: bool) -> Update:
    stmt = update(commands).where(c.id == bindparam("b_id"), c.state.in_(_states(sources(target))))
    if by_device:
        stmt = stmt.where(c.device_id == bindparam("b_device"))
    return stmt.returning(*_COLUMNS)


_TRANSITIONS = {target: _transition_stmt(target, False) for target in CommandState}


def _batch_transition_stmt(target: CommandState) -> Update:
    return (
        update(commands)
        .where(
            c.id.in_(bindparam("b_ids", expanding=True)),
            c.device_id == bindparam("b_device"),
            c.state.in_(_states(sources(target))),
        )
        .returning(*_COLUMNS)
    )


_BATCH_TRANSITIONS = {target: _batch_transition_stmt(target) for target in CommandState}
_DEVICE_TRANSITIONS = {target: _transition_stmt(target, True) for target in CommandState}
# A hand-over whose connection was gone before it could carry the commands: back to
# ``sent`` (handed out, not confirmed), so the next poll offers them again. Only rows still
# exactly as that hand-over left them match (``delivered`` with its own ``delivered_at``),
# so a device's acknowledgement or result, or a later hand-over, is never undone.
_HAND_BACK = (
    update(commands)
    .where(
        c.id.in_(bindparam("b_ids", expanding=True)),
        c.device_id == bindparam("b_device"),
        c.state == CommandState.DELIVERED.value,
        c.delivered_at == bindparam("b_handed_at"),
    )
    .values(
        state=CommandState.SENT.value,
        delivered_at=None,
        updated_at=bindparam("b_now"),
    )
    .returning(*_COLUMNS)
)
_EXPIRE = (
    update(commands)
    .where(
        c.state.in_(_states(sources(CommandState.EXPIRED))),
        c.expires_at <= bindparam("b_now"),
    )
    .values(
        state=CommandState.EXPIRED.value,
        updated_at=bindparam("b_now"),
        completed_at=bindparam("b_now"),
    )
    .returning(*_COLUMNS)
)


def _steps(raw: Any) -> tuple[CommandStep, ...]:
    if not raw:
        return ()
    return msgspec.convert(raw, tuple[CommandStep, ...])


def _to_command(row: Mapping[Any, Any]) -> Command:
    return Command(
        id=row["id"],
        device_id=row["device_id"],
        name=row["name"],
        parameters=row["parameters"],
        state=CommandState(row["state"]),
        status=row["status"],
        result=row["result"],
        error=row["error"],
        steps=_steps(row["steps"]),
        ref=row["ref"],
        created_by=row["created_by"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        delivered_at=row["delivered_at"],
        completed_at=row["completed_at"],
        expires_at=row["expires_at"],
        timeout=row["timeout"],
    )


class CommandRepo(Repo):
    async def insert(
        self,
        *,
        device_id: str,
        name: str,
        parameters: Any,
        created_by: int | None,
        now: datetime,
        expires_at: datetime | None = None,
        timeout: float | None = None,
        ref: str | None = None,
        idempotency_key: str | None = None,
        state: CommandState = CommandState.PENDING,
    ) -> tuple[Command, bool]:
        """Persist a new command: ``(command, True)``, or ``(existing, False)`` for a replay.

        A replay is a second insert with the same ``(created_by, device_id,
        idempotency_key)``. The unique index decides races; the loser reads the winner.
        Without a creator (``created_by=None``) the index cannot decide (NULLs are
        distinct), so the key is looked up first: exact on SQLite's single connection,
        best effort across PostgreSQL nodes. An unknown device raises ``NotFound``.
        """
        values = {
            "device_id": device_id,
            "name": name,
            "parameters": parameters,
            "state": state.value,
            "ref": ref,
            "created_by": created_by,
            "idempotency_key": idempotency_key,
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "timeout": timeout,
        }
        anonymous_key = idempotency_key is not None and created_by is None
        try:
            async with self._write() if anonymous_key else self._write_one() as conn:
                if anonymous_key:
                    key = {"b_device": device_id, "b_key": idempotency_key}
                    existing = (await conn.execute(_BY_KEY_ANONYMOUS, key)).mappings().first()
                    if existing is not None:
                        return _to_command(existing), False
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            if idempotency_key is None or integrity_kind(error) != "unique":
                raise write_error(error, "command", device_id=device_id) from None
            replay = await self._by_key(created_by, device_id, idempotency_key)
            if replay is None:  # pragma: no cover - the winner was deleted in between
                raise Conflict("command idempotency key collided", device_id=device_id) from None
            return replay, False
        return _to_command(row), True

    async def _by_key(self, created_by: int | None, device_id: str, key: str) -> Command | None:
        params: dict[str, Any] = {"b_device": device_id, "b_key": key}
        stmt = _BY_KEY_ANONYMOUS
        if created_by is not None:
            stmt = _BY_KEY
            params["b_creator"] = created_by
        async with self._read() as conn:
            row = (await conn.execute(stmt, params)).mappings().first()
        return None if row is None else _to_command(row)

    async def get(self, id: int) -> Command | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
        return None if row is None else _to_command(row)

    async def get_by_ref(self, device_id: str, ref: str) -> Command | None:
        """The newest command of the device with this dialect correlation key."""
        async with self._read() as conn:
            result = await conn.execute(_BY_REF, {"b_device": device_id, "b_ref": ref})
            row = result.mappings().first()
        return None if row is None else _to_command(row)

    def _list_query(
        self,
        stmt: Select[Any],
        *,
        device_id: str | None,
        device_ids: Collection[str] | None,
        name: str | None,
        names: Collection[str] | None,
        states: Collection[CommandState] | None,
        created_after: datetime | None,
        created_before: datetime | None,
        updated_after: datetime | None,
        principal: Principal | None,
        dialect: str | None = None,
    ) -> Select[Any]:
        where: list[ColumnElement[bool]] = []
        if device_id is not None:
            where.append(c.device_id == device_id)
        if device_ids is not None:
            where.append(c.device_id.in_(sorted(device_ids)))
        if name is not None:
            where.append(c.name == name)
        if names is not None:
            where.append(c.name.in_(sorted(names)))
        if states is not None:
            where.append(c.state.in_(_states(states)))
        if created_after is not None:
            where.append(c.created_at > created_after)
        if created_before is not None:
            where.append(c.created_at < created_before)
        if updated_after is not None:
            where.append(c.updated_at > updated_after)
        visible, join = child_visibility(principal, c.device_id)
        if visible is not None:
            where.append(visible)
        if dialect is not None:
            where.append(devices.c.dialect == dialect)
            join = True
        if join:
            stmt = stmt.select_from(commands.join(devices, c.device_id == devices.c.id))
        return stmt.where(*where)

    async def list(
        self,
        *,
        device_id: str | None = None,
        device_ids: Collection[str] | None = None,
        name: str | None = None,
        names: Collection[str] | None = None,
        states: Collection[CommandState] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        principal: Principal | None = None,
        dialect: str | None = None,
        sort: str = "id",
        desc: bool = False,
        skip: int = 0,
        take: int = 100,
    ) -> list[Command]:
        """Commands matching every filter (time bounds exclusive) and visible to ``principal``."""
        stmt = self._list_query(
            select(*_COLUMNS),
            device_id=device_id,
            device_ids=device_ids,
            name=name,
            names=names,
            states=states,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            principal=principal,
            dialect=dialect,
        )
        stmt = page(stmt, _SORTS, sort=sort, desc=desc, skip=skip, take=take, tiebreak=c.id)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_to_command(row) for row in rows]

    async def count_by_state(
        self, *, created_after: datetime, principal: Principal | None = None
    ) -> dict[CommandState, int]:
        """How many commands created after ``created_after`` are in each state."""
        stmt = self._list_query(
            select(c.state, func.count()),
            device_id=None,
            device_ids=None,
            name=None,
            names=None,
            states=None,
            created_after=created_after,
            created_before=None,
            updated_after=None,
            principal=principal,
        ).group_by(c.state)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return {CommandState(row[0]): int(row[1]) for row in rows}

    async def transition(
        self,
        command_id: int,
        target: CommandState,
        *,
        now: datetime,
        device_id: str | None = None,
        **fields: Any,
    ) -> Command | None:
        """Move the command to ``target`` if its current state allows it.

        Sets the lifecycle stamps (``stamp(target, now)``) and ``fields`` (status, result,
        error, ref, steps, parameters). ``None`` when nothing matched: unknown id, a
        state ``target`` cannot be reached from, or (if given) another device's command.
        """
        check_fields(fields, _TRANSITION_FIELDS, "command")
        params = stamp(target, now)
        params["state"] = target.value
        params.update(fields)
        params["b_id"] = command_id
        if device_id is None:
            stmt = _TRANSITIONS[target]
        else:
            stmt = _DEVICE_TRANSITIONS[target]
            params["b_device"] = device_id
        async with self._write_one() as conn:
            row = (await conn.execute(stmt, params)).mappings().first()
        return None if row is None else _to_command(row)

    async def transition_many(
        self, device_id: str, command_ids: Collection[int], target: CommandState, *, now: datetime
    ) -> builtins.list[Command]:
        """:meth:`transition` for several commands of one device, in ONE statement.

        Used to hand a batch over to a device: one round trip however many commands. The
        same conditional rule applies to each row; those that no longer match are simply
        not returned. The result is ordered by id.
        """
        if not command_ids:
            return []
        params = stamp(target, now)
        params["state"] = target.value
        params["b_ids"] = list(command_ids)
        params["b_device"] = device_id
        async with self._write_one() as conn:
            rows = (await conn.execute(_BATCH_TRANSITIONS[target], params)).mappings().all()
        return sorted((_to_command(row) for row in rows), key=lambda command: command.id)

    async def hand_back(
        self, device_id: str, handed: Collection[Command], *, now: datetime
    ) -> builtins.list[Command]:
        """Undo a ``delivered`` hand-over that never reached the device (see ``_HAND_BACK``).

        ``handed`` are the commands as that hand-over returned them. Returns those moved
        back to ``sent``, ordered by id.
        """
        by_stamp: dict[datetime, builtins.list[int]] = {}
        for command in handed:
            if command.state is CommandState.DELIVERED and command.delivered_at is not None:
                by_stamp.setdefault(command.delivered_at, []).append(command.id)
        moved: builtins.list[Command] = []
        async with self._write_one() as conn:
            for handed_at, ids in by_stamp.items():
                params = {"b_ids": ids, "b_device": device_id, "b_handed_at": handed_at}
                params["b_now"] = now
                rows = (await conn.execute(_HAND_BACK, params)).mappings().all()
                moved.extend(_to_command(row) for row in rows)
        return sorted(moved, key=lambda command: command.id)

    async def deliverable(self, device_id: str, limit: int) -> builtins.list[Command]:
        """The device's pending or sent commands, oldest first (FIFO delivery order)."""
        async with self._read() as conn:
            result = await conn.execute(_DELIVERABLE, {"b_device": device_id, "b_limit": limit})
            rows = result.mappings().all()
        return [_to_command(row) for row in rows]

    async def count_in_flight(self, device_id: str) -> int:
        """Commands handed over but not finished (sent, delivered, in progress)."""
        async with self._read() as conn:
            return int((await conn.execute(_IN_FLIGHT, {"b_device": device_id})).scalar_one())

    async def active(self, device_id: str | None = None) -> builtins.list[Command]:
        """Every non-terminal command by id (of one device, if given): the rebuild of
        in-memory indexes at start-up, and when a node starts holding a device."""
        async with self._read() as conn:
            if device_id is None:
                rows = (await conn.execute(_ACTIVE)).mappings().all()
            else:
                rows = (await conn.execute(_ACTIVE_OF, {"b_device": device_id})).mappings().all()
        return [_to_command(row) for row in rows]

    async def expire_due(self, now: datetime) -> builtins.list[Command]:
        """Expire every pending/sent command whose delivery deadline has passed."""
        async with self._write_one() as conn:
            rows = (await conn.execute(_EXPIRE, {"b_now": now})).mappings().all()
        return sorted((_to_command(row) for row in rows), key=lambda command: command.id)
