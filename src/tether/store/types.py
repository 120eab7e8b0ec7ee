"""Column types and the JSON codec shared by every table.

Timestamps are the replay cursors of the whole system ("everything newer than T"), so
they must compare correctly *in SQL* on both engines. PostgreSQL has a native
``TIMESTAMP WITH TIME ZONE``; SQLite has no datetime type at all and would store text
whose ordering depends on how each value was formatted. :class:`UTCDateTime` therefore
stores microseconds since the Unix epoch as an integer on SQLite: exact, compact and
sortable. Both engines hand back timezone-aware UTC datetimes, and naive datetimes are
refused on the way in, because a naive value silently means "some local time".

JSON columns use ``msgspec.json`` (the project's one codec) through the engine's
``json_serializer``/``json_deserializer``, so the same encoder that writes the wire also
writes the database (structs, enums and datetimes included).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import BigInteger, DateTime
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.types import TypeEngine

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (value - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
    return value


def to_sqlite(value: Any) -> int:
    """A timestamp as SQLite stores it (epoch microseconds); naive or non-datetime refused.

    The bind side of :class:`UTCDateTime` on SQLite, callable without SQLAlchemy's
    processor layers by the command hot path (``store/repos/sqlite_batch.py``).
    """
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return to_micros(require_aware(value))


def from_sqlite(value: Any) -> datetime:
    """The result side of :class:`UTCDateTime` on SQLite (``None`` handled by callers)."""
    return from_micros(int(value))


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: ``TIMESTAMPTZ`` on PostgreSQL, epoch microseconds on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return to_sqlite(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        return require_aware(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return from_sqlite(value)
        result: datetime = value
        if result.tzinfo is not UTC:
            result = result.astimezone(UTC)
        return result


_ENCODER = msgspec.json.Encoder()


def json_dumps(value: Any) -> str:
    """The engine's ``json_serializer``: SQLAlchemy expects ``str``, msgspec gives bytes."""
    return _ENCODER.encode(value).decode()


def json_loads(value: str | bytes) -> Any:
    return msgspec.json.decode(value)
