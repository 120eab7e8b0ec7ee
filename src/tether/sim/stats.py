"""Counting what a simulated fleet does: latency histograms and event tallies.

Latencies go into a :class:`Histogram` of logarithmic buckets (2% wide, from 1 µs up):
recording is O(1), its size is bounded (about 1,200 buckets whatever the run length),
any percentile is within 2% of the exact value, and histograms from several worker
processes merge by adding counts, which a sample reservoir could not do exactly. No
numpy or HDR library is needed for that.
"""

from __future__ import annotations

import math

import msgspec

#: Bucket ``i`` holds values in ``[FLOOR * RATIO**i, FLOOR * RATIO**(i+1))`` seconds.
FLOOR = 1e-6
RATIO = 1.02
_LOG_RATIO = math.log(RATIO)
#: Values above this many seconds land in the last bucket (bounds the bucket count).
CEILING = 3600.0
_LAST = int(math.log(CEILING / FLOOR) / _LOG_RATIO)


class Histogram(msgspec.Struct, kw_only=True):
    """Counts of durations (seconds) by bucket; see the module docstring."""

    counts: dict[int, int] = msgspec.field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    #: Smallest and largest value recorded (0 while there is none).
    low: float = 0.0
    high: float = 0.0

    def record(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        index = 0 if seconds <= FLOOR else min(int(math.log(seconds / FLOOR) / _LOG_RATIO), _LAST)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.low = seconds if not self.count else min(self.low, seconds)
        self.high = max(self.high, seconds)
        self.count += 1
        self.total += seconds

    def merge(self, other: Histogram) -> None:
        if not other.count:
            return
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.low = other.low if not self.count else min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.count += other.count
        self.total += other.total

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) in seconds, or None with no values."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank >= self.count:
            return self.high
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                # The bucket's geometric middle, never outside what was recorded.
                middle = FLOOR * float(RATIO ** (index + 0.5))
                return min(max(middle, self.low), self.high)
        return self.high

    def describe(self) -> Latency:
        """Percentiles in milliseconds, for the summary."""

        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return Latency(
            count=self.count,
            mean_ms=ms(self.total / self.count) if self.count else None,
            p50_ms=ms(self.quantile(0.50)),
            p90_ms=ms(self.quantile(0.90)),
            p99_ms=ms(self.quantile(0.99)),
            p999_ms=ms(self.quantile(0.999)),
            max_ms=ms(self.high) if self.count else None,
        )


class Latency(msgspec.Struct, kw_only=True):
    """Percentiles of one kind of latency, in milliseconds (None: nothing measured)."""

    count: int
    mean_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None


class DialectTally(msgspec.Struct, kw_only=True):
    """What one dialect's devices did (polling dialects answer slower by design)."""

    commands_succeeded: int = 0
    telemetry_sent: int = 0
    command_round_trip: Histogram = msgspec.field(default_factory=Histogram)
    telemetry_round_trip: Histogram = msgspec.field(default_factory=Histogram)

    def merge(self, other: DialectTally) -> None:
        self.commands_succeeded += other.commands_succeeded
        self.telemetry_sent += other.telemetry_sent
        self.command_round_trip.merge(other.command_round_trip)
        self.telemetry_round_trip.merge(other.telemetry_round_trip)


class Tally(msgspec.Struct, kw_only=True):
    """Everything one shard of the fleet counted; shards merge by :meth:`merge`."""

    #: Device sessions that came up (first connects and reconnects).
    connects: int = 0
    #: Sessions that ended without being asked to (the server or network dropped them).
    drops: int = 0
    #: Sessions ended on purpose by churn.
    churned: int = 0
    telemetry_sent: int = 0
    #: Telemetry due while the device's last messages were still unanswered.
    telemetry_skipped: int = 0
    commands_sent: int = 0
    commands_succeeded: int = 0
    #: Commands due while ``max_in_flight`` were already out: the generator's limit.
    commands_skipped: int = 0
    #: Failures by kind (``command_failed``, ``connect_timeout``, ``telemetry_http_503``...).
    errors: dict[str, int] = msgspec.field(default_factory=dict)
    connect_time: Histogram = msgspec.field(default_factory=Histogram)
    command_round_trip: Histogram = msgspec.field(default_factory=Histogram)
    telemetry_round_trip: Histogram = msgspec.field(default_factory=Histogram)
    dialects: dict[str, DialectTally] = msgspec.field(default_factory=dict)

    def dialect(self, name: str) -> DialectTally:
        found = self.dialects.get(name)
        if found is None:
            found = self.dialects[name] = DialectTally()
        return found

    def command_done(self, dialect: str, seconds: float) -> None:
        self.commands_succeeded += 1
        self.command_round_trip.record(seconds)
        mine = self.dialect(dialect)
        mine.commands_succeeded += 1
        mine.command_round_trip.record(seconds)

    def telemetry_done(self, dialect: str, seconds: float | None, count: int = 1) -> None:
        """``count`` messages sent; ``seconds`` their round trip, when it was timed."""
        self.telemetry_sent += count
        mine = self.dialect(dialect)
        mine.telemetry_sent += count
        if seconds is not None:
            self.telemetry_round_trip.record(seconds)
            mine.telemetry_round_trip.record(seconds)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def merge(self, other: Tally) -> None:
        for name in ("connects", "drops", "churned", "telemetry_sent", "commands_sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.commands_succeeded += other.commands_succeeded
        self.commands_skipped += other.commands_skipped
        self.telemetry_skipped += other.telemetry_skipped
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        self.connect_time.merge(other.connect_time)
        self.command_round_trip.merge(other.command_round_trip)
        self.telemetry_round_trip.merge(other.telemetry_round_trip)
        for name, theirs in other.dialects.items():
            self.dialect(name).merge(theirs)


def error_kind(prefix: str, error: BaseException) -> str:
    """A short, stable name for a failure: ``<prefix>_timeout``, ``<prefix>_http_503``,
    ``<prefix>_refused``, ... (never the message: kinds must group, not multiply)."""
    kind = getattr(error, "kind", None)
    if isinstance(kind, str):
        return f"{prefix}_{kind}"
    status = getattr(error, "http_status", None) or getattr(error, "status", None)
    if isinstance(status, int) and status >= 400:
        return f"{prefix}_http_{status}"
    if isinstance(error, TimeoutError):
        return f"{prefix}_timeout"
    if isinstance(error, ConnectionRefusedError):
        return f"{prefix}_refused"
    if isinstance(error, ConnectionError):
        return f"{prefix}_connection_lost"
    if isinstance(error, OSError):
        return f"{prefix}_os_error"
    return f"{prefix}_{type(error).__name__.lower()}"
