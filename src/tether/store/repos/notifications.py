"""Notifications: device-to-cloud events, written in batches and pruned by retention.

Telemetry arrives far faster than one transaction per row could absorb, so the hub
queues notifications for a few milliseconds and hands them here as a batch: one
executemany INSERT ... RETURNING (SQLAlchemy's "insertmanyvalues", which renders
multi-row VALUES) in one transaction, ids returned in input order.

Retention has two limits, age and count per device; :meth:`NotificationRepo.prune`
applies both with portable SQL (a window function, available on SQLite >= 3.25 and
PostgreSQL alike).
"""

from __future__ import annotations

import builtins
import itertools
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import and_, bindparam, case, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from tether.core.errors import BadRequest
from tether.core.model import Notification
from tether.store.repos._base import Repo, child_visibility, page, unstorable, write_error
from tether.store.schema import devices, notifications
from tether.store.types import require_aware

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from sqlalchemy import ColumnElement, RowMapping

    from tether.core.access import Principal

n = notifications.c
_COLUMNS = tuple(notifications.c)
_SORTS = {"timestamp": n.timestamp, "id": n.id, "name": n.name}
#: PostgreSQL: SQLAlchemy guarantees RETURNING rows in parameter order (sentinel column).
_INSERT = insert(notifications).returning(*_COLUMNS, sort_by_parameter_order=True)
#: SQLite: SQLAlchemy has no cheap way to promise that order and would fall back to one
#: statement per row (measured: 70 ms instead of 13 ms for 1,000 rows). It is not needed:
#: the single connection inserts multi-row VALUES in order, so ids ascend with the input
#: and sorting the returned rows by id restores it (checked on every batch).
_INSERT_UNORDERED = insert(notifications).returning(*_COLUMNS)
_BY_ID = select(notifications).where(n.id == bindparam("b_id"))
#: Rows per multi-row INSERT (SQLAlchemy's default insertmanyvalues page size).
_PAGE = 1000


class NewNotification(msgspec.Struct, kw_only=True, frozen=True):
    """A notification not stored yet (no id): one row of an :meth:`insert_many` batch."""

    device_id: str
    name: str
    parameters: Any = None
    timestamp: datetime


def _to_notification(row: RowMapping) -> Notification:
    return Notification(
        id=row["id"],
        device_id=row["device_id"],
        name=row["name"],
        parameters=row["parameters"],
        timestamp=row["timestamp"],
    )


def _reason(error: Exception) -> str:
    """The driver's own words, without the SQL and parameters SQLAlchemy appends."""
    orig = getattr(error, "orig", None) or error
    return str(orig).splitlines()[0].rpartition(": ")[2] or type(orig).__name__


def _by_id(notification: Notification) -> int:
    return notification.id


def _check_order(rows: Sequence[NewNotification], stored: Sequence[Notification]) -> None:
    for row, notification in zip(rows, stored, strict=True):
        if row.device_id != notification.device_id or row.name != notification.name:
            raise RuntimeError("SQLite assigned notification ids out of input order")


class NotificationRepo(Repo):
    async def insert_many(self, rows: Sequence[NewNotification]) -> list[Notification]:
        """Store a batch in one transaction; results are in the order of ``rows``.

        The batch is all or nothing: a row for an unknown device fails it with
        ``NotFound`` (the hub validates devices before queueing), a value the database
        cannot hold with ``BadRequest`` (the hub's writer then isolates the row).
        """
        if not rows:
            return []
        params = [
            {
                "device_id": row.device_id,
                "name": row.name,
                "parameters": row.parameters,
                # A naive time is the caller's bug, not an unstorable value: fail loudly.
                "timestamp": require_aware(row.timestamp),
            }
            for row in rows
        ]
        sqlite = self._dialect == "sqlite"
        try:
            # Up to one insertmanyvalues page it is a single statement; beyond, a transaction.
            unit = self._write_one() if len(params) <= _PAGE else self._write()
            async with unit as conn:
                result = await conn.execute(_INSERT_UNORDERED if sqlite else _INSERT, params)
                stored = [_to_notification(row) for row in result.mappings()]
                if sqlite:
                    stored.sort(key=_by_id)
                    _check_order(rows, stored)  # inside the transaction: a surprise rolls back
        except IntegrityError as error:
            raise write_error(error, "notification") from None
        except Exception as error:
            if unstorable(error):
                raise BadRequest(f"the notification cannot be stored: {_reason(error)}") from None
            raise
        return stored

    async def get(self, id: int) -> Notification | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
        return None if row is None else _to_notification(row)

    async def list(
        self,
        *,
        device_id: str | None = None,
        device_ids: Collection[str] | None = None,
        names: Collection[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        principal: Principal | None = None,
        sort: str = "timestamp",
        desc: bool = False,
        skip: int = 0,
        take: int = 100,
    ) -> list[Notification]:
        """Notifications with ``start < timestamp <= end`` matching every filter.

        ``start`` is exclusive so that "everything after the last one I saw" can use
        the last timestamp as a cursor; ties are ordered by id.
        """
        where: list[ColumnElement[bool]] = []
        if device_id is not None:
            where.append(n.device_id == device_id)
        if device_ids is not None:
            where.append(n.device_id.in_(sorted(device_ids)))
        if names is not None:
            where.append(n.name.in_(sorted(names)))
        if start is not None:
            where.append(n.timestamp > start)
        if end is not None:
            where.append(n.timestamp <= end)
        stmt = select(*_COLUMNS)
        visible, join = child_visibility(principal, n.device_id)
        if visible is not None:
            where.append(visible)
        if join:
            stmt = stmt.select_from(notifications.join(devices, n.device_id == devices.c.id))
        stmt = page(
            stmt.where(*where), _SORTS, sort=sort, desc=desc, skip=skip, take=take, tiebreak=n.id
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [_to_notification(row) for row in rows]

    async def count_per_bucket(
        self, *, start: datetime, width: timedelta, buckets: int, principal: Principal | None = None
    ) -> builtins.list[int]:
        """Notifications in each of ``buckets`` windows of ``width`` from ``start`` on.

        One statement, one conditional sum per window, over the index range of the
        whole period: portable (no date functions differ between SQLite and PostgreSQL).
        """
        edges = [start + width * i for i in range(buckets + 1)]
        sums = [
            func.coalesce(
                func.sum(case((and_(n.timestamp >= low, n.timestamp < high), 1), else_=0)), 0
            )
            for low, high in itertools.pairwise(edges)
        ]
        where: builtins.list[ColumnElement[bool]] = [
            n.timestamp >= edges[0],
            n.timestamp < edges[-1],
        ]
        stmt = select(*sums)
        visible, join = child_visibility(principal, n.device_id)
        if visible is not None:
            where.append(visible)
        stmt = stmt.select_from(
            notifications.join(devices, n.device_id == devices.c.id) if join else notifications
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt.where(*where))).one()
        return [int(v) for v in row]

    async def prune(self, *, older_than: datetime | None, keep_per_device: int | None) -> int:
        """Apply retention; returns the number of rows deleted.

        Deletes every notification with ``timestamp < older_than``, then, per device,
        every one but the newest ``keep_per_device`` (newest by timestamp, then id).
        ``None`` disables that limit.
        """
        deleted = 0
        async with self._write() as conn:
            if older_than is not None:
                result = await conn.execute(delete(notifications).where(n.timestamp < older_than))
                deleted += result.rowcount
            if keep_per_device is not None:
                ranked = select(
                    n.id,
                    func.row_number()
                    .over(partition_by=n.device_id, order_by=(n.timestamp.desc(), n.id.desc()))
                    .label("rank"),
                ).subquery("ranked")
                surplus = select(ranked.c.id).where(ranked.c.rank > keep_per_device)
                result = await conn.execute(delete(notifications).where(n.id.in_(surplus)))
                deleted += result.rowcount
        return deleted
