"""The three-level scope shared by config revisions and firmware targets.

A document applies to one device, to every device of a type, or to everyone (both
scope columns NULL). The most specific scope that has a row wins; within it, the
newest row (highest id). Both are answered by one indexed query ordered by scope rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, or_

from tether.core.errors import BadRequest

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Select, Table


def check_scope(device_id: str | None, device_type_id: int | None) -> None:
    if device_id is not None and device_type_id is not None:
        raise BadRequest(
            "a scope is a device, a device type or global, not both",
            device_id=device_id,
            device_type_id=device_type_id,
        )


def scope_is(
    table: Table, device_id: str | None, device_type_id: int | None
) -> ColumnElement[bool]:
    """Rows of exactly this scope (NULL-aware equality)."""
    return and_(
        table.c.device_id.is_(None) if device_id is None else table.c.device_id == device_id,
        table.c.device_type_id.is_(None)
        if device_type_id is None
        else table.c.device_type_id == device_type_id,
    )


def most_specific(
    stmt: Select[Any], table: Table, device_id: str | None, device_type_id: int | None
) -> Select[Any]:
    """The newest row of the most specific scope applying to a device of a type."""
    applies = [scope_is(table, None, None)]
    if device_type_id is not None:
        applies.append(scope_is(table, None, device_type_id))
    if device_id is not None:
        applies.append(table.c.device_id == device_id)
    rank = case(
        (table.c.device_id.is_not(None), 0),
        (table.c.device_type_id.is_not(None), 1),
        else_=2,
    )
    return stmt.where(or_(*applies)).order_by(rank, table.c.id.desc()).limit(1)
