"""Scenario ``soak`` (issue 17, P7): a churn soak, and the CPU of idle heartbeating devices.

**Churn** (``--soak-part churn``, ``--soak-minutes``, 30 by default): one Tether process
(SQLite, its own data directory) under ``tether sim`` (a subprocess): a mixed fleet of
every dialect with telemetry, commands through the native API, and churn (devices leave
and come back). Beside it, in the same run and for the same time, the raw aiohttp relay
of ``bench/soak_raw.py`` under a raw fleet of native-shaped WebSockets with the same
device count, telemetry, command rate and churn. Every few seconds the resident memory,
the open descriptors and the CPU of both servers are read from ``/proc``. Memory growth
is taken after a warm-up (the first ``WARMUP`` minutes: SQLite's page cache, the
compiled-statement cache, pymalloc's arenas fill up there), as the mean of the last
minute over the mean of the first minute after warm-up. The goal: growth under 5%, no
descriptor growth, no error (the simulator's, the raw fleet's, and ERROR lines in the
server's log).

The drift is not CPU-sensitive, so this part runs without the bench lock at a modest
load; it takes ``--soak-minutes`` plus a minute.

**Idle** (``--soak-part idle``): ``IDLE_DEVICES`` native WebSocket devices connected and
otherwise idle, so only heartbeats flow (the server pings each every ``ws_heartbeat``,
30 s, and the agent pings the server every 30 s), then the server's CPU over
``IDLE_SECONDS``, beside the raw relay holding the same connections with the same
heartbeats. The goal: under 10% of a core. Run it under the bench lock.

Each part keeps its figures in ``docs/perf/p7-<part>.json`` and the section is rendered
from both, so the two parts can run in separate invocations (one locked, one not).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench import chart
from bench.common import (
    REPO,
    Machine,
    ServerProcess,
    Tether,
    child_pids,
    clean_env,
    free_port,
    now_utc,
    table,
)

#: Devices in the churn fleet (the simulator's default mix of every dialect).
CHURN_DEVICES = 1_000
#: Each churn device sends telemetry this often (seconds).
TELEMETRY_INTERVAL = 10.0
#: Commands per second through the native API.
COMMAND_RATE = 5.0
#: Devices per second that leave, and how long they stay away (seconds).
CHURN_RATE, CHURN_DOWNTIME = 5.0, 1.0
#: Minutes before memory growth is measured (a shorter run warms up for a third of it).
WARMUP = 5.0
#: Seconds between samples of RSS, descriptors and CPU.
SAMPLE_EVERY = 5.0
#: Idle devices held: the container caps a process at 20,000 descriptors (a hard limit
#: even root cannot raise here), and the server needs a few dozen of its own.
IDLE_DEVICES = 19_800
IDLE_SECONDS = 60.0
#: Loopback source addresses, so no single address runs short of ephemeral ports.
SOURCES = ",".join(f"127.0.0.{n}" for n in range(2, 6))
#: Goals (issue 17, P7).
GOAL_GROWTH, GOAL_IDLE_CPU = 0.05, 0.10

RESULTS = REPO / "docs" / "perf"


# --- /proc --------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    return [pid, *[p for child in child_pids(pid) for p in _tree(child)]]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, KiB (0 once gone)."""
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def open_fds(pid: int) -> int:
    total = 0
    for one in _tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{one}/fd"))
    return total


class Sample(msgspec.Struct, array_like=True):
    seconds: float
    rss_kib: int
    fds: int
    cpu_seconds: float


async def sample_until(
    servers: dict[str, ServerProcess], done: asyncio.Event, started: float
) -> dict[str, list[Sample]]:
    """Read every server's RSS, descriptors and CPU each ``SAMPLE_EVERY`` s until ``done``."""
    samples: dict[str, list[Sample]] = {name: [] for name in servers}
    while True:
        now = time.monotonic() - started
        for name, server in servers.items():
            assert server.process is not None
            pid = server.process.pid
            samples[name].append(
                Sample(round(now, 1), rss_kib(pid), open_fds(pid), round(server.cpu_seconds(), 2))
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), SAMPLE_EVERY)
            return samples


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


# --- processes ------------------------------------------------------------------------------


def raw_server(credential: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        name="raw aiohttp",
        argv=[sys.executable, "-m", "bench.soak_raw", "serve", "--port", str(port)],
        port=port,
        ready_path="/healthz",
        env=clean_env(BENCH_CREDENTIAL=credential),
    )


async def spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C at the bench goes to the bench, not the load
    )


async def finish(process: asyncio.subprocess.Process, label: str) -> dict[str, Any]:
    """Wait for a load process, return the JSON it printed last."""
    out, err = await process.communicate()
    text = out.decode(errors="replace")
    start = text.find("\n{") + 1 if not text.startswith("{") else 0
    try:
        result: dict[str, Any] = msgspec.json.decode(text[start:].strip())
    except msgspec.DecodeError:
        tail = (text[-1500:] + err.decode(errors="replace"))[-3000:]
        raise RuntimeError(
            f"{label} exited {process.returncode} without a summary:\n{tail}"
        ) from None
    return result


def sim_argv(url: str, *options: str) -> list[str]:
    return [sys.executable, "-c", "from tether.cli import app; app()", "sim", "--url", url,
            "--json", "--yes", *options]  # fmt: skip


def sim_env(tether: Tether) -> dict[str, str]:
    return clean_env(TETHER_LOGIN="admin", TETHER_PASSWORD=tether.password)


def server_log(server: ServerProcess) -> tuple[int, int, list[str]]:
    """ERROR (and Traceback) lines and WARNING lines in a server's log, with a few of them."""
    log = server._log  # the server's whole output, kept in a temporary file
    if log is None:
        return 0, 0, []
    log.seek(0)
    text = log.read().decode(errors="replace")
    kept = Path(tempfile.gettempdir()) / f"tether-soak-{os.getpid()}-{server.port}.log"
    kept.write_text(text)  # for reading after the run; the report cites it
    lines = text.splitlines()
    errors = [x for x in lines if " ERROR " in x or " CRITICAL " in x]
    # A traceback ends with the exception itself, the line that says what went wrong.
    raised = [
        x
        for before, x in itertools.pairwise(lines)
        if x and not x[0].isspace() and before[:1].isspace() and not x[:2].isdigit()
    ]
    warnings = [x for x in lines if " WARNING " in x]
    print(f"  {server.name}'s log: {kept}")
    return len(errors), len(warnings), (errors[:3] + raised[:3] + warnings[:2])


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the churn soak -------------------------------------------------------------------------


async def churn(minutes: float, machine: Machine, command: str) -> ChurnResult:
    seconds = minutes * 60
    warmup_min = min(WARMUP, minutes / 3)
    credential = secrets.token_urlsafe(24)
    tether = Tether("Tether", env={"TETHER_CLUSTER_NAME": f"soak-{secrets.token_hex(4)}"})
    raw = raw_server(credential)
    load = (
        f"{CHURN_DEVICES:,} devices, telemetry every {TELEMETRY_INTERVAL:g} s, "
        f"{COMMAND_RATE:g} commands/s, {CHURN_RATE:g} devices/s leaving for "
        f"{CHURN_DOWNTIME:g} s"
    )
    print(f"soak: {minutes:g} min churn soak, {load}")
    try:
        await tether.start()
        await raw.start()
        started = time.monotonic()
        sim = await spawn(
            sim_argv(
                tether.base_url,
                "--name", "soak",
                "--devices", str(CHURN_DEVICES),
                "--duration", f"{seconds:g}s",
                "--telemetry-interval", f"{TELEMETRY_INTERVAL:g}s",
                "--command-rate", f"{COMMAND_RATE:g}",
                "--churn-rate", f"{CHURN_RATE:g}",
                "--churn-downtime", f"{CHURN_DOWNTIME:g}s",
            ),
            sim_env(tether),
        )  # fmt: skip
        fleet = await spawn(
            [
                sys.executable, "-m", "bench.soak_raw", "drive",
                "--url", raw.base_url,
                "--devices", str(CHURN_DEVICES),
                "--duration", f"{seconds:g}",
                "--telemetry-interval", f"{TELEMETRY_INTERVAL:g}",
                "--command-rate", f"{COMMAND_RATE:g}",
                "--churn-rate", f"{CHURN_RATE:g}",
                "--churn-downtime", f"{CHURN_DOWNTIME:g}",
            ],
            clean_env(BENCH_CREDENTIAL=credential),
        )  # fmt: skip
        done = asyncio.Event()
        sampler = asyncio.create_task(sample_until({"tether": tether, "raw": raw}, done, started))
        sim_task = asyncio.create_task(finish(sim, "tether sim"))
        fleet_task = asyncio.create_task(finish(fleet, "raw fleet"))
        try:
            summary, raw_summary = await asyncio.gather(sim_task, fleet_task)
        finally:
            done.set()
            samples = await sampler
            for process in (sim, fleet):
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
        log_errors, log_warnings, excerpt = server_log(tether)
    finally:
        tether.stop()
        raw.stop()
    measured_from = samples["tether"][0].seconds
    warmup_s = measured_from + warmup_min * 60
    return ChurnResult(
        command=command,
        machine=machine.markdown(),
        measured_at=now_utc(),
        minutes=minutes,
        warmup_minutes=warmup_min,
        load=load,
        tether=drift(samples["tether"], warmup_s),
        raw=drift(samples["raw"], warmup_s),
        samples=samples,
        sim_errors=summary["errors"],
        sim_error_count=summary["error_count"],
        sim_counts={
            "connects": summary["connections"]["connects"],
            "churned": summary["connections"]["churned"],
            "drops": summary["connections"]["drops"],
            "telemetry": summary["telemetry"]["sent"],
            "commands": summary["commands"]["succeeded"],
            "command_p99_ms": summary["commands"]["round_trip"]["p99_ms"] or 0.0,
            "sim_core_share": max(r["core_share"] for r in summary["simulator"]),
        },
        sim_warnings=summary["warnings"],
        raw_errors=raw_summary["errors"],
        raw_counts=raw_summary["counts"],
        log_errors=log_errors,
        log_warnings=log_warnings,
        log_excerpt=excerpt,
    )


# --- idle heartbeats --------------------------------------------------------------------------


async def _hold_and_measure(
    server: ServerProcess, load: asyncio.subprocess.Process, devices: int, timeout: float
) -> IdleSide:
    """Once ``devices`` connections are open, the server's CPU over ``IDLE_SECONDS``."""
    assert server.process is not None
    pid = server.process.pid
    base = open_fds(pid)
    deadline = time.monotonic() + timeout
    while open_fds(pid) - base < devices:
        if load.returncode is not None or time.monotonic() > deadline:
            held = open_fds(pid) - base
            raise RuntimeError(f"{server.name}: only {held} of {devices} connections came up")
        await asyncio.sleep(1.0)
    print(f"  {server.name}: {devices:,} connected; settling, then {IDLE_SECONDS:g} s measured")
    await asyncio.sleep(15.0)  # the last connects' own work (presence, auth) finishes
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    side = IdleSide(
        connected=open_fds(pid) - base, cpu_share=round(cpu, 4), rss_mib=rss_kib(pid) / 1024,
        fds=open_fds(pid),
    )  # fmt: skip
    print(f"  {server.name}: CPU {cpu:.1%} of a core, RSS {side.rss_mib:,.0f} MiB")
    return side


async def idle(devices: int, machine: Machine, command: str) -> IdleResult:
    raise_fd_limit()
    credential = secrets.token_urlsafe(24)
    print(f"soak: {devices:,} idle devices, heartbeats only, {IDLE_SECONDS:g} s measured")
    raw = raw_server(credential)
    try:
        await raw.start()
        fleet = await spawn(
            [
                sys.executable, "-m", "bench.soak_raw", "drive",
                "--url", raw.base_url, "--devices", str(devices), "--duration", "3600",
                "--connect-rate", "2000", "--source-addresses", SOURCES,
            ],
            clean_env(BENCH_CREDENTIAL=credential),
        )  # fmt: skip
        try:
            raw_side = await _hold_and_measure(raw, fleet, devices, 180)
        finally:
            if fleet.returncode is None:
                fleet.send_signal(signal.SIGINT)
        raw_summary = await finish(fleet, "raw fleet")
    finally:
        raw.stop()
    tether = Tether("Tether", env={"TETHER_CLUSTER_NAME": f"idle-{secrets.token_hex(4)}"})
    try:
        await tether.start()
        sim = await spawn(
            sim_argv(
                tether.base_url,
                "--name", "idle",
                "--mix", f"native-ws={devices}",
                "--duration", "1h",
                "--connect-rate", "1000",
                "--telemetry-interval", "0",
                "--command-rate", "0",
                "--processes", "2",
                "--source-addresses", SOURCES,
            ),
            sim_env(tether),
        )  # fmt: skip
        try:
            tether_side = await _hold_and_measure(tether, sim, devices, 400)
        finally:
            if sim.returncode is None:
                sim.send_signal(signal.SIGINT)
        summary = await finish(sim, "tether sim")
        log_errors, _, _ = server_log(tether)
    finally:
        tether.stop()
    return IdleResult(
        command=command,
        machine=machine.markdown(),
        measured_at=now_utc(),
        devices=devices,
        seconds=IDLE_SECONDS,
        tether=tether_side,
        raw=raw_side,
        sim_error_count=summary["error_count"],
        sim_errors=summary["errors"],
        raw_error_count=raw_summary["error_count"],
        log_errors=log_errors,
    )


# --- the report -----------------------------------------------------------------------------


def _load(path: Path, kind: type[Any]) -> Any:
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=kind)


def _pct(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else "n/a"


def _slope(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def render_churn(result: ChurnResult) -> str:
    t, r, warm = result.tether, result.raw, result.warmup_minutes
    errors = result.sim_error_count + result.log_errors
    fd_growth = t.fds_end - t.fds_warm
    # Churn keeps CHURN_RATE x CHURN_DOWNTIME devices away at any moment: a few sockets
    # of noise either way; growth means a trend beyond that.
    fd_noise = 2 * CHURN_RATE * CHURN_DOWNTIME + 4
    holds = t.growth < GOAL_GROWTH and fd_growth <= fd_noise and errors == 0
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
        f"### Churn soak: {verdict} (RSS growth {_pct(t.growth)} after warm-up, goal < 5%; "
        f"descriptors {t.fds_warm:,.0f} → {t.fds_end:,.0f}; {errors} errors)",
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
    holds = t.cpu_share < GOAL_IDLE_CPU and result.sim_error_count == 0
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
            f"- Errors: simulator {result.sim_error_count} "
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


async def run(part: str, minutes: float, machine: Machine, command: str) -> str:
    """Run ``part`` (churn, idle or both), keep its figures, render the whole section."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    churn_path, idle_path = RESULTS / "p7-churn.json", RESULTS / "p7-idle.json"
    if part in ("churn", "both"):
        result = await churn(minutes, machine, command)
        churn_path.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    if part in ("idle", "both"):
        found = await idle(IDLE_DEVICES, machine, command)
        idle_path.write_bytes(msgspec.json.format(msgspec.json.encode(found)) + b"\n")
    return render(_load(churn_path, ChurnResult), _load(idle_path, IdleResult))
