"""Timestamps unique per millisecond, because DeviceHive shows only milliseconds.

The core clock is strictly increasing in microseconds, but DeviceHive renders
``HH:mm:ss.SSS`` and its clients use the last timestamp they saw as the cursor of the next
poll ("newer than T"). Two entities in one millisecond would render alike, and the
cursor could then skip the second (or, read inclusively, repeat the first forever, as
the official HTTP client's busy poll would). So the hub's clock is wrapped: each reading
lands in a later millisecond than the previous one. Under a burst of more than 1,000
readings a second the clock runs ahead of wall time; the lead is capped
(``max_lead`` seconds, default 1 s), past which it falls back to microsecond steps rather
than drift further: uniqueness per millisecond then holds again as soon as the burst
eases. Only real time is wrapped: a test's manual clock is left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tether.core.clock import Clock

_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)


def _floor_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


class MillisecondClock:
    def __init__(self, inner: Clock, max_lead: float = 1.0) -> None:
        self.inner = inner
        self._max_lead = timedelta(seconds=max_lead)
        self._last = datetime.fromtimestamp(0, UTC)
        #: The first instant of the millisecond after ``_last``'s: a reading before it
        #: shares ``_last``'s millisecond. Kept so the hot path floors once, not thrice
        #: (the hub reads this clock several times per command).
        self._next = self._last + _MS

    def now(self) -> datetime:
        current = self.inner.now()
        if current < self._next:
            if self._next - current <= self._max_lead:
                current = self._next
                self._last, self._next = current, current + _MS
                return current
            if current <= self._last:
                current = self._last + _US
        self._last = current
        self._next = _floor_ms(current) + _MS
        return current

    def monotonic(self) -> float:
        return self.inner.monotonic()


def wall(clock: Clock) -> datetime:
    """The time without taking a millisecond slot: for comparisons, not for stamps."""
    if isinstance(clock, MillisecondClock):
        return clock.inner.now()
    return clock.now()
