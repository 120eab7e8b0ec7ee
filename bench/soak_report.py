"""P7's figures and its section of ``docs/performance.md`` (the measuring is in ``soak``).

Each part of the scenario keeps what it measured in ``docs/perf/p7-<part>.json`` (these
structs, as JSON), and the section is rendered from both files, so the churn soak (long,
unlocked) and the idle-CPU part (short, under the bench lock) can run separately.
"""

from __future__ import annotations

import math
import statistics

import msgspec

from bench import chart
from bench.common import table

#: The churn load (devices per second leaving, and for how long, seconds): the
#: descriptors it keeps away at any moment are noise, not growth.
CHURN_RATE, CHURN_DOWNTIME = 5.0, 1.0
#: Seconds between samples of RSS, descriptors and CPU.
SAMPLE_EVERY = 5.0
#: Goals (issue 17, P7).
GOAL_GROWTH, GOAL_IDLE_CPU = 0.05, 0.10


class Sample(msgspec.Struct, array_like=True):
    seconds: float
    rss_kib: int
    fds: int
    cpu_seconds: float


# --- figures ------------------------------------------------------------------------------


class Drift(msgspec.Struct, kw_only=True):
    """One server's memory and descriptors over the soak."""

    rss_start_mib: float
    rss_warm_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    growth: float
    #: Least-squares slope of RSS after warm-up, MiB per hour.
    slope_mib_per_hour: float | None
    #: Growth over the last ten minutes alone (mean of the last minute over the mean of
    #: the minute ten minutes before it): whether RSS has levelled off by the end.
    growth_last_10: float | None = None
    fds_warm: float
    fds_end: float
    fds_max: int
    cpu_share: float


def drift(samples: list[Sample], warmup_s: float) -> Drift:
    end = samples[-1].seconds

    def window(start: float, stop: float) -> list[Sample]:
        found = [s for s in samples if start <= s.seconds < stop]
        return found or [min(samples, key=lambda s: abs(s.seconds - start))]

    warm = window(warmup_s, warmup_s + 60)
    last = window(end - 60, end + 1)
    after = [s for s in samples if s.seconds >= warmup_s]
    rss_warm = statistics.fmean(s.rss_kib for s in warm)
    rss_end = statistics.fmean(s.rss_kib for s in last)
    slope: float | None = None
    if len(after) >= 3:
        fit = statistics.linear_regression(
            [s.seconds for s in after], [s.rss_kib / 1024 for s in after]
        )
        slope = round(fit.slope * 3600, 2)
    span = samples[-1].seconds - samples[0].seconds
    before = window(end - 660, end - 600) if end >= 660 else []
    late: float | None = None
    if before:
        late = round(rss_end / statistics.fmean(s.rss_kib for s in before) - 1, 4)
    return Drift(
        rss_start_mib=round(samples[0].rss_kib / 1024, 1),
        rss_warm_mib=round(rss_warm / 1024, 1),
        rss_end_mib=round(rss_end / 1024, 1),
        rss_peak_mib=round(max(s.rss_kib for s in samples) / 1024, 1),
        growth=round(rss_end / rss_warm - 1, 4),
        growth_last_10=late,
        slope_mib_per_hour=slope,
        fds_warm=statistics.median(s.fds for s in warm),
        fds_end=statistics.median(s.fds for s in last),
        fds_max=max(s.fds for s in samples),
        cpu_share=round((samples[-1].cpu_seconds - samples[0].cpu_seconds) / max(span, 1), 4),
    )


class ChurnResult(msgspec.Struct, kw_only=True):
    command: str
    machine: str
    measured_at: str
    minutes: float
    warmup_minutes: float
    load: str
    tether: Drift
    raw: Drift
    samples: dict[str, list[Sample]]
    sim_errors: dict[str, int]
    sim_error_count: int
    sim_counts: dict[str, float]
    sim_warnings: list[str]
    raw_errors: dict[str, int]
    raw_counts: dict[str, int]
    log_errors: int
    log_warnings: int
    log_excerpt: list[str]


class IdleSide(msgspec.Struct, kw_only=True):
    connected: int
    cpu_share: float
    rss_mib: float
    fds: int


class IdleResult(msgspec.Struct, kw_only=True):
    command: str
    machine: str
    measured_at: str
    devices: int
    seconds: float
    tether: IdleSide
    raw: IdleSide
    sim_error_count: int
    sim_errors: dict[str, int]
    raw_error_count: int
    log_errors: int


# --- the report -----------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else "n/a"


def _ok(holds: bool) -> str:
    return "holds" if holds else "missed"


def fd_floors(samples: list[Sample], warmup_minutes: float, minutes: float) -> tuple[int, int]:
    """The fewest descriptors open in the first and in the last stretch after warm-up
    (ten minutes each, or half of what follows the warm-up in a shorter run), up to the
    end of the load (the raw fleet stops first, and its sockets with it)."""
    start = samples[0].seconds + warmup_minutes * 60
    end = min(samples[-1].seconds, minutes * 60)
    span = min(600.0, max((end - start) / 2, SAMPLE_EVERY))
    first = [s.fds for s in samples if start <= s.seconds <= start + span]
    last = [s.fds for s in samples if end - span <= s.seconds <= end]
    return min(first or [samples[-1].fds]), min(last or [samples[-1].fds])


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def render_churn(result: ChurnResult) -> str:
    t, r, warm = result.tether, result.raw, result.warmup_minutes
    errors = result.sim_error_count + result.log_errors
    floor_warm, floor_end = fd_floors(result.samples["tether"], warm, result.minutes)
    raw_floor_warm, raw_floor_end = fd_floors(result.samples["raw"], warm, result.minutes)
    # Descriptors above the floor are requests in flight (long polls, churned devices
    # reconnecting), which rise and fall with latency; a leak raises the floor. Churn
    # keeps CHURN_RATE x CHURN_DOWNTIME devices away at any moment: that much either way
    # is noise.
    fd_noise = 2 * CHURN_RATE * CHURN_DOWNTIME + 4
    memory_ok = t.growth < GOAL_GROWTH
    fds_ok = floor_end - floor_warm <= fd_noise
    holds = memory_ok and fds_ok and errors == 0
    rows = [
        ["RSS at start (MiB)", f"{t.rss_start_mib:,.1f}", f"{r.rss_start_mib:,.1f}"],
        [
            f"RSS after warm-up, minutes {warm:.3g}-{warm + 1:.3g}",
            f"{t.rss_warm_mib:,.1f}",
            f"{r.rss_warm_mib:,.1f}",
        ],
        ["RSS in the last minute (MiB)", f"{t.rss_end_mib:,.1f}", f"{r.rss_end_mib:,.1f}"],
        ["RSS growth after warm-up", _pct(t.growth), _pct(r.growth)],
        [
            "RSS growth over the last 10 minutes",
            _pct(t.growth_last_10 if t.growth_last_10 is not None else math.nan),
            _pct(r.growth_last_10 if r.growth_last_10 is not None else math.nan),
        ],
        [
            "RSS trend after warm-up (MiB/hour)",
            _slope(t.slope_mib_per_hour),
            _slope(r.slope_mib_per_hour),
        ],
        ["RSS peak (MiB)", f"{t.rss_peak_mib:,.1f}", f"{r.rss_peak_mib:,.1f}"],
        [
            "open descriptors after warm-up / last minute (median)",
            f"{t.fds_warm:,.0f} / {t.fds_end:,.0f}",
            f"{r.fds_warm:,.0f} / {r.fds_end:,.0f}",
        ],
        [
            "open descriptors, floor (minimum) in the first / last 10 minutes after warm-up",
            f"{floor_warm:,} / {floor_end:,}",
            f"{raw_floor_warm:,} / {raw_floor_end:,}",
        ],
        ["open descriptors, max", f"{t.fds_max:,}", f"{r.fds_max:,}"],
        ["server CPU (share of one core)", f"{t.cpu_share:.1%}", f"{r.cpu_share:.1%}"],
    ]
    times = {
        name: [(s.seconds / 60, s.rss_kib / 1024) for s in samples]
        for name, samples in result.samples.items()
    }
    fds = {
        name: [(s.seconds / 60, float(s.fds)) for s in samples]
        for name, samples in result.samples.items()
    }
    rss_chart = chart.lines(
        "p7-soak-rss",
        title=f"Resident memory over a {result.minutes:g}-minute churn soak",
        x_label="minutes",
        y_label="RSS (MiB)",
        series={"Tether (SQLite)": times["tether"], "raw aiohttp relay": times["raw"]},
    )
    fd_chart = chart.lines(
        "p7-soak-fds",
        title="Open descriptors over the soak",
        x_label="minutes",
        y_label="descriptors",
        series={"Tether (SQLite)": fds["tether"], "raw aiohttp relay": fds["raw"]},
    )
    c = result.sim_counts
    sim_errors = ", ".join(f"{k} {v}" for k, v in result.sim_errors.items()) or "none"
    raw_errors = ", ".join(f"{k} {v}" for k, v in result.raw_errors.items()) or "none"
    raw_counts = ", ".join(f"{k} {v:,}" for k, v in sorted(result.raw_counts.items()))
    verdict = "**holds**" if holds else "**missed**"
    lines = [
        f"### Churn soak: {verdict} (RSS growth {_pct(t.growth)} after warm-up, goal < 5%: "
        f"{_ok(memory_ok)}; descriptor floor {floor_warm:,} → {floor_end:,}: {_ok(fds_ok)}; "
        f"{errors} errors, goal none: {_ok(errors == 0)})",
        "",
        f"- Command: `{result.command}`",
        f"- Measured: {result.measured_at}, {result.minutes:g} minutes, "
        f"warm-up {result.warmup_minutes:.3g} minutes, a sample every {SAMPLE_EVERY:g} s",
        f"- Load on each server: {result.load}. Tether: `tether sim` (subprocess), the "
        "default mix of every dialect. Raw: `bench/soak_raw.py drive`, native-shaped "
        "WebSockets to the bare aiohttp relay of `bench/soak_raw.py serve`, same counts "
        "and rates, both at once on the same machine.",
        result.machine.rstrip(),
        "",
        table(["", "Tether", "raw aiohttp"], rows),
        f"- Simulator: {c['connects']:,.0f} sessions up, {c['churned']:,.0f} churned, "
        f"{c['drops']:,.0f} dropped, {c['telemetry']:,.0f} telemetry messages, "
        f"{c['commands']:,.0f} commands succeeded (p99 {c['command_p99_ms']:,.1f} ms), "
        f"its busiest process at {c['sim_core_share']:.0%} of a core; errors: {sim_errors}.",
        f"- Tether's log: {result.log_errors} ERROR lines, {result.log_warnings} WARNING lines.",
        f"- Raw fleet: {raw_counts}; errors: {raw_errors}.",
    ]
    if result.sim_warnings:
        lines.append("- Simulator warnings: " + "; ".join(result.sim_warnings))
    if result.log_excerpt:
        lines.append("- First log lines: " + "; ".join(f"`{x[:160]}`" for x in result.log_excerpt))
    lines += ["", rss_chart, "", fd_chart, ""]
    return "\n".join(lines)


def render_idle(result: IdleResult) -> str:
    t, r = result.tether, result.raw
    # The goal is the idle CPU; errors (connects that timed out during the ramp, before
    # the measured window) are listed beside it, not part of it.
    holds = t.cpu_share < GOAL_IDLE_CPU
    ratio = f"{t.cpu_share / r.cpu_share:.2f}x" if r.cpu_share > 0 else "n/a"
    verdict = "**holds**" if holds else "**missed**"
    rows = [
        ["connections held", f"{t.connected:,}", f"{r.connected:,}"],
        ["server CPU (share of one core)", f"{t.cpu_share:.1%}", f"{r.cpu_share:.1%}"],
        ["server RSS (MiB)", f"{t.rss_mib:,.0f}", f"{r.rss_mib:,.0f}"],
    ]
    bars = chart.bars(
        "p7-idle-cpu",
        title=f"Server CPU with {result.devices:,} idle heartbeating WebSockets",
        groups=["CPU, % of one core"],
        series={"Tether (SQLite)": [t.cpu_share * 100], "raw aiohttp": [r.cpu_share * 100]},
        y_label="% of one core",
    )
    return "\n".join(
        [
            f"### Idle heartbeats: {verdict} ({t.cpu_share:.1%} of a core with "
            f"{result.devices:,} devices, goal < 10%; {ratio} the raw server's)",
            "",
            f"- Command: `{result.command}`",
            f"- Measured: {result.measured_at}, CPU over {result.seconds:g} s once all "
            f"{result.devices:,} native device WebSockets were up (plus 15 s to settle)",
            "- Heartbeats: each server pings every device every 30 s and each device pings "
            "the server every 30 s (Tether's `ws_heartbeat` and the native agent's default; "
            "the raw server and fleet do the same); nothing else flows.",
            f"- {result.devices:,}, not 20,000: this container caps every process at 20,000 "
            "descriptors (the hard limit; root cannot raise it), and the server needs a few "
            "dozen of its own. Connections come from 127.0.0.2-5.",
            result.machine.rstrip(),
            "",
            table(["", "Tether", "raw aiohttp"], rows),
            f"- Errors over the whole run, ramp included: simulator {result.sim_error_count} "
            f"({', '.join(f'{k} {v}' for k, v in result.sim_errors.items()) or 'none'}), "
            f"raw fleet {result.raw_error_count}, Tether's log {result.log_errors} ERROR lines.",
            "",
            bars,
            "",
        ]
    )


def render(churn_result: ChurnResult | None, idle_result: IdleResult | None) -> str:
    parts = ["## P7: churn soak and idle heartbeats", ""]
    parts.append(
        "Goal (issue 17): a 30-minute churn soak (devices connecting, sending, leaving, "
        "commands flowing) with RSS growth under 5% after warm-up, no descriptor growth, "
        "no error; and under 10% of a core with 20,000 connected devices exchanging "
        "heartbeats. Each beside a raw aiohttp server in the same run (`bench/soak.py`).\n"
    )
    parts.append(render_churn(churn_result) if churn_result else "### Churn soak: not run yet\n")
    parts.append(render_idle(idle_result) if idle_result else "### Idle heartbeats: not run yet\n")
    return "\n".join(parts)
