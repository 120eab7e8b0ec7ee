"""Scenario ``polls``: empty polls on the native HTTP device API (design P3).

What is measured: how many ``GET /api/v1/device/bench-1/commands`` requests per second
one Tether process answers when nothing is pending (an immediate ``[]``: no ``wait``),
driven by ``wrk`` with 64 keep-alive connections on one thread, and the latency
distribution wrk reports. The same wrk command runs against a raw aiohttp handler on the
same path that only compares the ``Authorization`` header with a constant
(``bench/baseline.py``), so the ratio is the share of aiohttp's own request rate that
Tether keeps after authentication, routing, presence and its in-memory poll.

Why also the SQL counter: design 6 says an empty poll runs no SQL. The delta of
``tether_sql_statements_total`` on ``/metrics`` across the measured run shows it, when the
server exports that counter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import resource
import secrets
import shutil

import aiohttp

from bench.common import (
    SQL_COUNTER,
    Machine,
    ServerProcess,
    Tether,
    baseline,
    machine_busy,
    ms,
    now_utc,
    ratio,
    sql_statements,
    table,
)

DEVICE = "bench-1"
PATH = f"/api/v1/device/{DEVICE}/commands"
CONNECTIONS = 64
#: Goal P3 (design section 10).
GOAL_SHARE, GOAL_RATE = 0.5, 10_000.0
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclasses.dataclass(frozen=True)
class Wrk:
    """What wrk printed for one run (latencies in seconds)."""

    requests: int
    rate: float
    p50: float
    p90: float
    p99: float
    bad_status: int
    socket_errors: str
    server_cpu: float = math.nan
    machine_cpu: float = math.nan
    #: wrk's own CPU (share of one core), from the rusage of reaped children.
    client_cpu: float = math.nan

    @classmethod
    def parse(cls, text: str) -> Wrk:
        def latency(label: str) -> float:
            match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
            return float(match.group(1)) * _UNITS[match.group(2)] if match else math.nan

        requests = re.search(r"^\s*(\d+) requests in", text, re.MULTILINE)
        rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        errors = re.search(r"Socket errors:\s+(.*)$", text, re.MULTILINE)
        if requests is None or rate is None:
            raise RuntimeError(f"cannot read wrk's output:\n{text}")
        return cls(
            requests=int(requests.group(1)),
            rate=float(rate.group(1)),
            p50=latency("50"),
            p90=latency("90"),
            p99=latency("99"),
            bad_status=int(bad.group(1)) if bad else 0,
            socket_errors=errors.group(1).strip() if errors else "none",
        )


async def wrk(server: ServerProcess, credential: str, seconds: int, threads: int = 1) -> Wrk:
    """One wrk run against the poll path; server, wrk and machine CPU are read around it."""
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {credential}",
        server.base_url + PATH,
    ]
    cpu0, busy0, loop = server.cpu_seconds(), machine_busy(), asyncio.get_running_loop()
    client0 = _children_cpu()
    t0 = loop.time()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()  # returns once wrk is reaped
    seconds_taken = loop.time() - t0
    cpu = (server.cpu_seconds() - cpu0) / seconds_taken
    busy = (machine_busy() - busy0) / seconds_taken
    client = (_children_cpu() - client0) / seconds_taken
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{out.decode(errors='replace')}")
    parsed = Wrk.parse(out.decode())
    return dataclasses.replace(parsed, server_cpu=cpu, machine_cpu=busy, client_cpu=client)


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children: during a wrk run, wrk alone."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def check_empty(server: ServerProcess, credential: str) -> None:
    """One poll by hand: it must be 200 with ``[]``, or wrk would time the wrong thing."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            server.base_url + PATH, headers={"Authorization": f"Bearer {credential}"}
        ) as response,
    ):
        body = await response.text()
        if response.status != 200 or body.strip() != "[]":
            raise RuntimeError(f"{server.name}: poll answered {response.status} {body[:200]}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    label: str
    result: Wrk
    sql: float | None = None


async def _measure(
    server: ServerProcess, credential: str, warmup: int, seconds: int, count_sql: bool
) -> Outcome:
    await check_empty(server, credential)
    if warmup > 0:
        await wrk(server, credential, warmup)
    before = await sql_statements(server) if count_sql else None
    result = await wrk(server, credential, seconds)
    after = await sql_statements(server) if count_sql else None
    sql = after - before if before is not None and after is not None else None
    return Outcome(server.name, result, sql)


async def run(seconds: int, warmup: int, machine: Machine, command: str) -> str | None:
    """Measure the baseline and Tether; the report section, or None without wrk."""
    if shutil.which("wrk") is None:
        print(
            "polls: skipped: `wrk` is not on PATH. Install it (Debian/Ubuntu: "
            "`apt-get update && apt-get install -y wrk`) and run again."
        )
        return None
    print(f"polls: wrk -t1 -c{CONNECTIONS}, {warmup}s warm-up, {seconds}s measured")
    credential = secrets.token_urlsafe(24)
    server: ServerProcess = baseline(credential)
    try:
        await server.start()
        base = await _measure(server, credential, warmup, seconds, count_sql=False)
    finally:
        server.stop()
    _print(base)
    tether = Tether("Tether")
    try:
        await tether.start()
        _, credential = await tether.device(DEVICE)
        ours = await _measure(tether, credential, warmup, seconds, count_sql=True)
    finally:
        tether.stop()
    _print(ours)
    return render(seconds, warmup, machine, command, base, ours)


def _print(outcome: Outcome) -> None:
    r = outcome.result
    print(
        f"  {outcome.label:<22} {r.rate:,.0f} req/s  p50 {ms(r.p50)} ms  p99 {ms(r.p99)} ms  "
        f"non-2xx {r.bad_status}  server CPU {r.server_cpu:.0%}"
    )


def _sql_line(ours: Outcome) -> str:
    if ours.sql is None:
        return (
            f"- SQL statements during the measured run: statement counter not available "
            f"(`{SQL_COUNTER}` is not exported on /metrics), so this run cannot show it.\n"
        )
    polls = ours.result.requests
    head = f"- SQL statements during the measured run: {ours.sql:,.0f} (`{SQL_COUNTER}` delta) "
    if ours.sql == 0:
        return head + f"for {polls:,} polls: empty polls ran no SQL.\n"
    if ours.sql * 1000 < polls:
        return head + (
            f"for {polls:,} polls, far below one per poll: the polls ran no SQL, and what "
            "was counted is timer-driven background work (design 6: presence and "
            "`last_seen` are written behind every few seconds).\n"
        )
    return head + f"for {polls:,} polls: **empty polls run SQL** ({ours.sql / polls:.2f} each).\n"


def _chart(base: Wrk, ours: Wrk) -> str:
    """Server CPU per poll and latency, Tether beside the raw handler (lower is better)."""
    from bench import chart  # matplotlib: only the bench dependency group has it

    def values(r: Wrk) -> list[float]:
        return [r.server_cpu / r.rate * 1e6 if r.rate else math.nan, r.p50 * 1e3, r.p99 * 1e3]

    return chart.bars(
        "p3-empty-polls",
        title=f"P3: empty polls, wrk -c{CONNECTIONS} (lower is better)",
        y_label="us of server CPU / ms",
        groups=["server CPU per poll (us)", "p50 latency (ms)", "p99 latency (ms)"],
        series={"Tether": values(ours), "raw aiohttp poll handler": values(base)},
    )


def render(
    seconds: int, warmup: int, machine: Machine, command: str, base: Outcome, ours: Outcome
) -> str:
    b, t = base.result, ours.result
    rows = [
        ["requests/s", f"{b.rate:,.0f}", f"{t.rate:,.0f}", ratio(t.rate, b.rate)],
        ["requests", f"{b.requests:,}", f"{t.requests:,}", ""],
        ["p50 latency (ms)", ms(b.p50), ms(t.p50), ratio(t.p50, b.p50)],
        ["p90 latency (ms)", ms(b.p90), ms(t.p90), ratio(t.p90, b.p90)],
        ["p99 latency (ms)", ms(b.p99), ms(t.p99), ratio(t.p99, b.p99)],
        ["non-2xx answers", str(b.bad_status), str(t.bad_status), ""],
        ["socket errors", b.socket_errors, t.socket_errors, ""],
        ["server CPU (share of one core)", f"{b.server_cpu:.0%}", f"{t.server_cpu:.0%}", ""],
        [
            "whole machine CPU busy (share of one core)",
            f"{b.machine_cpu:.0%}",
            f"{t.machine_cpu:.0%}",
            "",
        ],
        [
            "server CPU per request (us)",
            f"{b.server_cpu / b.rate * 1e6:,.0f}",
            f"{t.server_cpu / t.rate * 1e6:,.0f}",
            ratio(t.server_cpu / t.rate, b.server_cpu / b.rate),
        ],
    ]
    share = t.rate / b.rate if b.rate else math.nan
    if seconds < 5:
        verdict = "not evaluated (a run shorter than 5 s is a smoke test)"
    else:
        holds = share >= GOAL_SHARE and t.rate >= GOAL_RATE and t.bad_status == 0
        verdict = ("**holds**" if holds else "**missed**") + (
            f": {share:.0%} of the baseline's rate (>= 50%), {t.rate:,.0f} requests/s "
            f"(>= 10,000), {t.bad_status} non-2xx answers"
        )
    return (
        "## P3: empty polls on the native HTTP device API\n\n"
        "Goal (design 10, P3): with nothing pending, a poll runs at least 50% of raw "
        "aiohttp's rate for the same request shape, and at least 10,000 requests/s.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: `wrk -t1 -c{CONNECTIONS} -d{seconds}s --latency -H 'Authorization: Bearer "
        f"<credential>' http://127.0.0.1:<port>{PATH}` after a {warmup} s warm-up run; "
        "server and wrk are separate processes, one core each.\n\n"
        + table(["", "raw aiohttp poll handler", "Tether", "ratio"], rows)
        + "\n"
        + _chart(b, t)
        + "\n\n"
        + _sql_line(ours)
        + f"- Design goal: {verdict}\n"
    )
