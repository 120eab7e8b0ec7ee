"""Command transitions on PostgreSQL: one statement per group, whatever the batch size.

An ``executemany`` of N conditional updates is N executions (and, with custom plans, N
plannings) plus a read-back. Here each group of like transitions is ONE
``UPDATE ... FROM unnest(arrays) ... RETURNING``: planned once, one round trip, and the
returned rows are exactly the commands that moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextualSelect, text

from tether.core.lifecycle import CommandState, sources, stamp
from tether.store.schema import commands
from tether.store.types import json_dumps

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
_RETURNING = ", ".join(f'c."{column.name}"' for column in commands.c)

_cache: dict[tuple[Any, ...], TextualSelect] = {}


def group_statement(target: CommandState, by_device: bool, columns: Sequence[str]) -> TextualSelect:
    """The UPDATE for one group of transitions (same target, same columns)."""
    key = (target, by_device, *columns)
    statement = _cache.get(key)
    if statement is not None:
        return statement
    keys = ["b_id", *(["b_device"] if by_device else []), *columns]
    types = {"b_id": "bigint", "b_device": "varchar", **_SQL_TYPES}
    arrays = ", ".join(f"CAST(:{k} AS {types[k]}[])" for k in keys)
    sets = ", ".join(
        f'"{k}" = CAST(v."{k}" AS json)' if k in _JSON else f'"{k}" = v."{k}"' for k in columns
    )
    allowed = ", ".join(f"'{s.value}'" for s in sorted(sources(target), key=lambda s: s.value))
    sql = (
        f"UPDATE commands AS c SET {sets} "
        f"FROM unnest({arrays}) AS v({', '.join(f'{chr(34)}{k}{chr(34)}' for k in keys)}) "
        f"WHERE c.id = v.b_id AND c.state IN ({allowed})"
        + (" AND c.device_id = v.b_device" if by_device else "")
        + f" RETURNING {_RETURNING}"
    )
    statement = text(sql).columns(*commands.c)
    _cache[key] = statement
    return statement


def group_params(
    rows: Sequence[dict[str, Any]], by_device: bool, columns: Sequence[str]
) -> dict[str, list[Any]]:
    """Column-wise arrays for :func:`group_statement` from per-request values."""
    params: dict[str, list[Any]] = {"b_id": [row["b_id"] for row in rows]}
    if by_device:
        params["b_device"] = [row["b_device"] for row in rows]
    for column in columns:
        values = [row.get(column) for row in rows]
        if column in _JSON:
            # As SQLAlchemy's JSON type does by default: None is stored as JSON null.
            values = [json_dumps(v) for v in values]
        params[column] = values
    return params


def values_of(target: CommandState, now: Any, fields: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = stamp(target, now)
    values["state"] = target.value
    values.update(fields)
    return values
