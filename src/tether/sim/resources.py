"""The simulator's own resource use, so a load-generator limit is never read as the server's.

Each process reports its CPU seconds, resident memory and open file descriptors over the
run. A process that used more than :data:`SATURATED` of one core was itself a bottleneck:
the summary says so and suggests ``--processes``. :func:`raise_fd_limit` lifts the soft
``RLIMIT_NOFILE`` to the hard limit, since every simulated connection is a descriptor.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import msgspec

from tether.sim.stats import Histogram

#: Share of one core above which a simulator process is called saturated.
SATURATED = 0.85
#: Event-loop lag (p99, ms) above which a simulator process is called lagging.
LAGGING_MS = 100.0
#: Descriptors a process needs besides its devices' connections (sessions, pipes, logs).
FD_MARGIN = 256


class Resources(msgspec.Struct, kw_only=True):
    """One simulator process over the run."""

    pid: int
    cpu_seconds: float
    wall_seconds: float
    #: cpu_seconds / wall_seconds: 1.0 is one core fully busy.
    core_share: float
    rss_bytes: int
    peak_rss_bytes: int
    open_fds: int
    fd_limit: int
    #: How late the process's event loop ran a timer (a 50 ms tick), p50/p99/max in ms:
    #: the delay the simulator itself added to everything it timed. None: not measured.
    loop_lag_p50_ms: float | None = None
    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None

    @property
    def saturated(self) -> bool:
        return self.core_share >= SATURATED

    @property
    def lagging(self) -> bool:
        return (self.loop_lag_p99_ms or 0.0) >= LAGGING_MS


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Resident memory now (VmRSS), or the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Lift the soft descriptor limit toward the hard one; ``(soft, needed)`` after.

    The caller compares: a soft limit still under ``needed`` means ``ulimit -n`` (the
    hard limit) must be raised by the operator, which a process cannot do for itself.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + FD_MARGIN
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return soft, wanted


class Meter:
    """Measures this process from its creation to :meth:`read`."""

    def __init__(self, clock_start: float, cpu_start: float | None = None) -> None:
        self.clock_start = clock_start
        self.cpu_start = cpu_seconds() if cpu_start is None else cpu_start

    def read(self, now: float, lag: Histogram | None = None) -> Resources:
        wall = max(now - self.clock_start, 1e-9)
        cpu = cpu_seconds() - self.cpu_start
        late = lag.describe() if lag is not None else None
        return Resources(
            loop_lag_p50_ms=late.p50_ms if late else None,
            loop_lag_p99_ms=late.p99_ms if late else None,
            loop_lag_max_ms=late.max_ms if late else None,
            pid=os.getpid(),
            cpu_seconds=round(cpu, 3),
            wall_seconds=round(wall, 3),
            core_share=round(cpu / wall, 3),
            rss_bytes=rss_bytes(),
            peak_rss_bytes=peak_rss_bytes(),
            open_fds=open_fds(),
            fd_limit=fd_limit(),
        )
