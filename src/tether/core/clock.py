"""The one clock.

The core never reads time itself: the hub owns a :class:`Clock` and passes ``now`` into
domain functions. Tests inject :class:`ManualClock` to move time without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timers, not for storage)."""
        ...


class SystemClock:
    """Real time. ``now()`` is strictly increasing at microsecond resolution.

    Strictness matters: entity timestamps are used as replay cursors ("everything newer
    than T"), so two events must never share a timestamp within one process.
    """

    def __init__(self) -> None:
        self._last = datetime.fromtimestamp(0, UTC)

    def now(self) -> datetime:
        current = datetime.now(UTC)
        if current <= self._last:
            current = self._last + timedelta(microseconds=1)
        self._last = current
        return current

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
