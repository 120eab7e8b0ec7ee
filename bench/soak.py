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
import os
import resource
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import (
    REPO,
    Machine,
    ServerProcess,
    Tether,
    child_pids,
    clean_env,
    free_port,
    now_utc,
)
from bench.soak_report import (
    CHURN_DOWNTIME,
    CHURN_RATE,
    SAMPLE_EVERY,
    ChurnResult,
    IdleResult,
    IdleSide,
    Sample,
    drift,
    render,
)

#: Devices in the churn fleet (the simulator's default mix of every dialect).
CHURN_DEVICES = 1_000
#: Each churn device sends telemetry this often (seconds).
TELEMETRY_INTERVAL = 10.0
#: Commands per second through the native API.
COMMAND_RATE = 5.0
#: Minutes before memory growth is measured (a shorter run warms up for a third of it).
WARMUP = 5.0
#: Idle devices held: the container caps a process at 20,000 descriptors (a hard limit
#: even root cannot raise here), and the server needs a few dozen of its own.
IDLE_DEVICES = 19_800
IDLE_SECONDS = 60.0
#: Loopback source addresses, so no single address runs short of ephemeral ports.
SOURCES = ",".join(f"127.0.0.{n}" for n in range(2, 6))

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
    if err:  # its warnings say what each error was; the report cites the file
        kept = Path(tempfile.gettempdir()) / f"tether-soak-{os.getpid()}-{process.pid}.err"
        kept.write_bytes(err)
        print(f"  {label}'s stderr: {kept}")
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
                "--connect-rate", "400", "--source-addresses", SOURCES,
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
                "--connect-rate", "400",  # no connect storm: that is P5, not this
                "--telemetry-interval", "0",
                "--command-rate", "0",
                "--processes", "2",
                "--source-addresses", SOURCES,
            ),
            sim_env(tether),
        )  # fmt: skip
        try:
            tether_side = await _hold_and_measure(tether, sim, devices, 600)
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
