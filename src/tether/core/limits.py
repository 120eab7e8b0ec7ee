"""The ranges every duration, count and id must fall in when it crosses an API.

One rule, one place: the native structs (through the ``Annotated`` types below), the
query and path helpers of every API, the dialect parsers and the hub all check against
these bounds, and a value outside them is a :class:`~tether.core.errors.BadRequest` that
names the field and its bounds. Nothing out of range reaches the clock arithmetic, the
store's 64-bit columns or the sweeper's heap, so a hostile number cannot overflow a
deadline or a ``BIGINT`` deep inside the server.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from tether.core.errors import BadRequest

#: The store's integer columns are signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: Ids of stored rows (commands, users, networks, types, notifications, keys).
ID_MIN, ID_MAX = 0, INT64_MAX

#: Any duration in seconds: a command's ``timeout`` and ``lifetime``, an API key's
#: ``expiresIn``. Ten years is past any real deadline and far inside ``datetime``'s
#: range, so ``now + duration`` can never overflow.
DURATION_MAX = 10 * 366 * 24 * 3600.0

#: How many rows a list may skip or ask for: deeper paging is a scan no client needs.
LIST_MAX = 1_000_000_000


Id = Annotated[int, msgspec.Meta(ge=ID_MIN, le=ID_MAX)]
#: A duration that must be positive: zero would expire or time out at once.
Seconds = Annotated[float, msgspec.Meta(gt=0, le=DURATION_MAX)]
#: A size in bytes or a count: not negative, and 64-bit.
Size = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]


def _out_of_range(field: str, low: float, high: float, value: Any) -> BadRequest:
    return BadRequest(
        f"{field} must be between {_show(low)} and {_show(high)}",
        field=field,
        minimum=low,
        maximum=high,
    )


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def check_int(field: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int within ``[low, high]``, or a 400 naming the field and bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field} must be an integer", field=field)
    if not low <= value <= high:
        raise _out_of_range(field, low, high, value)
    return value


def parse_int(field: str, raw: str, low: int, high: int) -> int:
    """Text (a path segment, a query parameter) as an int within ``[low, high]``.

    The text is length-checked before ``int()`` so a megabyte of digits costs nothing.
    """
    text = raw.strip()
    digits = text[1:] if text[:1] in ("-", "+") else text
    if not digits.isascii() or not digits.isdigit():
        raise BadRequest(f"{field} must be an integer", field=field)
    if len(digits) > 20:
        raise _out_of_range(field, low, high, raw)
    return check_int(field, int(text), low, high)


def check_id(field: str, value: Any) -> int:
    return check_int(field, value, ID_MIN, ID_MAX)


def parse_id(field: str, raw: str) -> int:
    return parse_int(field, raw, ID_MIN, ID_MAX)


def check_seconds(field: str, value: Any, *, high: float = DURATION_MAX) -> float:
    """A positive, finite duration in seconds no longer than ``high``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a number of seconds", field=field)
    if not (math.isfinite(value) and 0 < value <= high):
        raise BadRequest(
            f"{field} must be more than 0 and at most {_show(high)} seconds",
            field=field,
            minimum=0,
            maximum=high,
        )
    return float(value)


def repair_seconds(value: float) -> float:
    """A stored duration forced into range, for values written before the bound existed."""
    if not math.isfinite(value):
        return DURATION_MAX if value > 0 else 0.0
    return min(max(value, 0.0), DURATION_MAX)
