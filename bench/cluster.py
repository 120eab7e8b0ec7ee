"""Scenario ``cluster``: what running Tether as several processes costs and buys (issue 3).

Two figures, each against a baseline measured in the same run with the same settings, so
that the number of processes is the only difference. Every server here uses PostgreSQL
(a fresh schema per setup) and the Redis bus, the single-process baselines too.

* **Round trip across processes.** The open-loop round trip of ``bench/roundtrip.py``
  (same driver, same schedule). Baseline: one ``tether serve`` holding both the app and
  the device socket. Cluster: two ``tether serve`` processes on separate ports sharing
  the database and Redis; the device socket is on process A and the app socket (which
  creates the commands and subscribes to ``command_update``) on process B, so every
  command crosses Redis at least twice: created on B and handed over by A, its result
  applied on A and its update delivered by B. Goal: crossing adds less than 1 ms at p99.
* **Empty polls, one worker against two.** The request of ``bench/polls.py`` (a device
  credential, ``GET /api/v1/device/<id>/commands``, nothing pending) driven by ``wrk -t2
  -c64`` against ``tether serve --workers 1`` and ``--workers 2`` (two worker processes
  sharing the port through ``SO_REUSEPORT``). Goal: two workers answer at least 1.6x the
  requests of one. The server CPU is summed over the supervising parent and all its
  workers, and wrk's own CPU is measured too: on a 2-core machine wrk shares the cores
  with the workers, which bounds the ratio, and the report shows by how much.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from bench import polls, redis_hops, roundtrip
from bench.common import (
    START_TIMEOUT,
    Machine,
    ServerProcess,
    Tether,
    child_pids,
    metric_total,
    ms,
    now_utc,
    ratio,
    table,
    tree_cpu_seconds,
)
from bench.roundtrip import DEVICE, Load, Outcome, postgres_schema, print_outcome

REDIS = "redis://127.0.0.1:6379/0"
#: This bench run's cluster name: its channels and keys are its own on a shared Redis.
CLUSTER_NAME = f"bench-{secrets.token_hex(4)}"
#: Goals of issue 3: crossing processes adds < 1 ms at p99; 2 workers >= 1.6x one.
GOAL_EXTRA_P99, GOAL_SCALE = 0.001, 1.6
#: Round-trip pairs (one process, two processes) per run; the median pair is judged.
REPEATS = 5
WRK_THREADS = 2
#: Where each command's work ran, read from each process's /metrics after the run.
_CREATED, _HANDED_OVER = "tether_commands_created_total", "tether_commands_handed_over_total"


def _node(name: str, database_url: str, node_id: str, password: str, workers: int = 1) -> Tether:
    """``tether serve --workers N`` on PostgreSQL and the Redis bus."""
    return Tether(
        name,
        database_url,
        env={
            "TETHER_BUS": "redis",
            "TETHER_REDIS_URL": REDIS,
            "TETHER_NODE_ID": node_id,
            "TETHER_CLUSTER_NAME": CLUSTER_NAME,
        },
        args=["--workers", str(workers)],
        password=password,
        sockets=workers,
    )


async def ready_nodes(server: ServerProcess, count: int) -> list[str]:
    """Ask ``/readyz`` on fresh connections until ``count`` nodes (``X-Tether-Node``) say so.

    With ``--workers`` the kernel picks a worker per connection, so this also proves that
    every worker is up before the load starts.
    """
    seen: set[str] = set()
    deadline = time.monotonic() + START_TIMEOUT
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while len(seen) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name}: only {sorted(seen)} became ready")
            async with session.get(server.base_url + "/readyz") as response:
                if response.status == 200:
                    seen.add(response.headers.get("X-Tether-Node", "?"))
            await asyncio.sleep(0.02)
    return sorted(seen)


async def _redis_answers() -> bool:
    """Whether Redis at ``REDIS`` answers PING (a Tether without it never becomes ready)."""
    url = urlsplit(REDIS)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(url.hostname, url.port or 6379), 5
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- round trip --------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """One server of a round-trip setup, read after the run: what it did and what it cost."""

    role: str
    node: str
    created: float | None
    handed_over: float | None
    #: CPU seconds it used from just before the sockets connected to the end of the drain.
    cpu: float


@dataclass(frozen=True)
class Trip:
    """One round-trip setup: the outcome, and where the work ran."""

    outcome: Outcome
    processes: list[Process]

    def cpu_per_command(self, process: Process) -> float:
        """That process's CPU per command created in the whole run (warm-up included)."""
        created = sum(p.created or 0 for p in self.processes)
        return process.cpu / created if created else math.nan


async def _trip(label: str, load: Load, split: bool) -> Trip:
    """One setup on a fresh schema: device and app on one process, or on A and B."""
    async with postgres_schema() as url:
        if url is None:
            raise RuntimeError("PostgreSQL went away")
        password = secrets.token_urlsafe(16)
        a = _node(f"{label}: A", url, "bench-a" if split else "bench-solo", password)
        b = _node(f"{label}: B", url, "bench-b", password) if split else a
        servers = [a, b] if split else [a]
        try:
            for server in servers:  # A migrates and creates the admin before B starts
                await server.start()
            token, credential = await a.device(DEVICE)
            before = [server.cpu_seconds() for server in servers]
            outcome = await roundtrip.drive(
                b, label, token, credential, load, count_sql=True, device_server=a
            )
            used = [server.cpu_seconds() - cpu for server, cpu in zip(servers, before, strict=True)]
            roles = ["device (A)", "app (B)"] if split else ["device and app"]
            processes = [
                Process(
                    role=role,
                    node=(await ready_nodes(server, 1))[0],
                    created=await metric_total(server, _CREATED),
                    handed_over=await metric_total(server, _HANDED_OVER),
                    cpu=cpu,
                )
                for role, server, cpu in zip(roles, servers, used, strict=True)
            ]
            if outcome.errors:
                for server in servers:
                    print(f"  {server.name} had errors; its log ends:\n{server.output()[-2000:]}")
            return Trip(outcome, processes)
        finally:
            for server in reversed(servers):
                server.stop()


# --- empty polls -------------------------------------------------------------------------


@dataclass(frozen=True)
class Polls:
    """One ``--workers N`` run: wrk's numbers and the CPU share of each worker."""

    label: str
    workers: int
    nodes: list[str]
    result: polls.Wrk
    worker_cpu: list[float]


async def _polls(workers: int, seconds: int, warmup: int) -> Polls:
    """``tether serve --workers N`` on a fresh schema, under ``wrk -t2 -c64``."""
    label = f"--workers {workers}"
    async with postgres_schema() as url:
        if url is None:
            raise RuntimeError("PostgreSQL went away")
        server = _node(label, url, f"bench-w{workers}", secrets.token_urlsafe(16), workers)
        try:
            await server.start()
            nodes = await ready_nodes(server, workers)
            _, credential = await server.device(DEVICE)
            await polls.check_empty(server, credential)
            if warmup > 0:
                await polls.wrk(server, credential, warmup, WRK_THREADS)
            assert server.process is not None
            pids = child_pids(server.process.pid) or [server.process.pid]
            before, t0 = [tree_cpu_seconds(pid) for pid in pids], time.monotonic()
            result = await polls.wrk(server, credential, seconds, WRK_THREADS)
            elapsed = time.monotonic() - t0
            if (child_pids(server.process.pid) or [server.process.pid]) != pids:
                raise RuntimeError(f"{label}: a worker was restarted during the run")
            shares = [
                (tree_cpu_seconds(pid) - cpu) / elapsed
                for pid, cpu in zip(pids, before, strict=True)
            ]
            return Polls(label, workers, nodes, result, shares)
        finally:
            server.stop()


def _print_polls(outcome: Polls) -> None:
    r = outcome.result
    workers = " + ".join(f"{share:.0%}" for share in outcome.worker_cpu)
    print(
        f"  {outcome.label:<12} {r.rate:,.0f} req/s  p50 {ms(r.p50)} ms  p99 {ms(r.p99)} ms  "
        f"non-2xx {r.bad_status}  server CPU {r.server_cpu:.0%} ({workers})  "
        f"wrk {r.client_cpu:.0%}  machine {r.machine_cpu:.0%}"
    )


# --- the scenario ------------------------------------------------------------------------


async def run(load: Load, seconds: int, warmup: int, machine: Machine, command: str) -> str | None:
    """Both figures, each with its single-process baseline; the report section or None."""
    if not await _redis_answers():
        print(f"cluster: skipped: Redis at {REDIS} does not answer PING")
        return None
    async with postgres_schema() as url:
        if url is None:
            print("cluster: skipped: it needs PostgreSQL")
            return None
    print(
        f"cluster: round trip at {load.rate:,.0f} commands/s, {load.warmup:g}s warm-up, "
        f"{load.duration:g}s; then wrk -t{WRK_THREADS} -c{polls.CONNECTIONS}, {warmup}s "
        f"warm-up, {seconds}s"
    )
    # PostgreSQL's commit tail makes one run's p99 swing by tens of ms on this machine, so
    # a single pair of runs says more about the luck of the draw than about crossing
    # processes. Pairs run back to back, in alternating order so that drift cancels, and
    # the goal is judged on the median pair.
    repeats = 1 if load.duration < 5 else REPEATS
    pairs: list[tuple[Trip, Trip]] = []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        made: dict[bool, Trip] = {}
        for split in order:
            label = ("2 processes" if split else "1 process") + (
                f" #{i + 1}" if repeats > 1 else ""
            )
            made[split] = await _trip(label, load, split=split)
            print_outcome(made[split].outcome)
        pairs.append((made[False], made[True]))
    ranked = sorted(pairs, key=lambda pair: pair[1].outcome.p(99) - pair[0].outcome.p(99))
    single, pair = ranked[len(ranked) // 2]
    hops = await redis_hops.measure(REDIS, load.rate, load.duration)
    print(
        f"  Redis floor: two hops p50 {ms(hops.p(50))} ms  p99 {ms(hops.p(99))} ms  "
        f"at {load.rate:,.0f}/s"
    )
    one = await _polls(1, seconds, warmup)
    _print_polls(one)
    two = await _polls(2, seconds, warmup)
    _print_polls(two)
    return render(load, seconds, warmup, machine, command, (single, pair), (one, two), pairs, hops)


# --- the report --------------------------------------------------------------------------


def _signed_ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def _trip_goal(
    load: Load, single: Outcome, pair: Outcome, hops: redis_hops.Hops | None = None
) -> str:
    extra = pair.p(99) - single.p(99)
    if load.duration < 5:
        return "not evaluated (a run shorter than 5 s is a smoke test)"
    kept_up = [
        o.errors == 0 and o.unfinished == 0 and o.completion_rate >= 0.99 * load.rate
        for o in (single, pair)
    ]
    holds = extra < GOAL_EXTRA_P99 and all(kept_up)
    verdict = ("**holds**" if holds else "**missed**") + (
        f": p99 {ms(pair.p(99))} ms across processes against {ms(single.p(99))} ms on one, "
        f"{_signed_ms(extra)} ms (goal < +1 ms); p50 {_signed_ms(pair.p(50) - single.p(50))} "
        f"ms; {pair.errors + single.errors} errors and {pair.unfinished + single.unfinished} "
        f"unfinished in the two runs, {single.completion_rate:,.0f} and "
        f"{pair.completion_rate:,.0f} completed/s of {load.rate:,.0f}"
    )
    if hops is not None:
        verdict += (
            f". The floor measured in the same run: two Redis hops between bare redis-py "
            f"processes took p50 {ms(hops.p(50))} ms and p99 {ms(hops.p(99))} ms, so at "
            f"p50 crossing cost Tether {_signed_ms(pair.p(50) - single.p(50) - hops.p(50))} "
            "ms beyond the hops themselves"
        )
    if all(kept_up):
        return verdict
    which = (
        "neither setup keeps"
        if not any(kept_up)
        else (
            "the single process does not keep"
            if not kept_up[0]
            else "the two processes do not keep"
        )
    )
    return verdict + (
        f". At this rate {which} up: latency is then mostly time spent in a growing "
        "backlog, so the difference is not the cost of crossing alone (a lower `--rate` "
        "measures that)"
    )


def _polls_goal(seconds: int, cores: int, one: Polls, two: Polls) -> str:
    a, b = one.result, two.result
    scale = _div(b.rate, a.rate)
    if seconds < 5:
        return "not evaluated (a run shorter than 5 s is a smoke test)"
    holds = scale >= GOAL_SCALE and a.bad_status == 0 and b.bad_status == 0
    verdict = ("**holds**" if holds else "**missed**") + (
        f": 2 workers answered {b.rate:,.0f} requests/s, {scale:.2f}x the {a.rate:,.0f} of one "
        f"(goal >= {GOAL_SCALE:g}x), {a.bad_status + b.bad_status} non-2xx answers"
    )
    # The ratio splits exactly into the CPU the workers got (against one worker's) and
    # what a request cost them (against one worker's cost): rate = CPU / cost.
    cost_one, cost_two = _div(a.server_cpu, a.rate), _div(b.server_cpu, b.rate)
    workers = " + ".join(f"{share:.0%}" for share in two.worker_cpu)
    return verdict + (
        f". That ratio is the CPU the server got ({b.server_cpu:.0%} of a core with two "
        f"workers, {workers}, against {a.server_cpu:.0%} with one: "
        f"{_div(b.server_cpu, a.server_cpu):.2f}x) divided by the change in CPU per request "
        f"({cost_two * 1e6:,.1f} us against {cost_one * 1e6:,.1f} us: "
        f"{_div(cost_two, cost_one):.2f}x). During the 2-worker run the machine was "
        f"{b.machine_cpu:.0%} busy of {cores * 100}%: besides the server, wrk took "
        f"{b.client_cpu:.0%} and everything else (PostgreSQL, Redis, other tenants) "
        f"{_rest(b)}"
        + (
            ": the machine was saturated, so the workers could not get two full cores"
            if b.machine_cpu >= 0.95 * cores
            else ": CPU was left idle, so the workers were not short of it"
        )
    )


def _render_trip(load: Load, single: Trip, pair: Trip, hops: redis_hops.Hops | None = None) -> str:
    base, ours = single.outcome, pair.outcome

    def row(name: str, value: Callable[[Outcome], float], fmt: Callable[[float], str]) -> list[str]:
        return [name, fmt(value(base)), fmt(value(ours)), ratio(value(ours), value(base))]

    def latency(name: str, q: float) -> list[str]:
        p = functools.partial(Outcome.p, q=q)
        change = f"{_signed_ms(p(ours) - p(base))} ms"
        return [f"{name} latency (ms)", ms(p(base)), ms(p(ours)), change]

    rows = [
        row("commands measured", lambda o: o.measured, lambda x: f"{x:,.0f}"),
        row("completed per second", lambda o: o.completion_rate, lambda x: f"{x:,.0f}"),
        latency("p50", 50),
        latency("p90", 90),
        latency("p99", 99),
        latency("p99.9", 99.9),
        latency("max", 100),
        [
            "errors / unfinished",
            f"{base.errors} / {base.unfinished}",
            f"{ours.errors} / {ours.unfinished}",
            "",
        ],
        row(
            "server CPU per completed command, all processes (us)",
            lambda o: o.cpu_per_command,
            lambda x: f"{x * 1e6:,.0f}",
        ),
        row(
            "SQL statements per command, all processes",
            lambda o: math.nan if o.sql_per_command is None else o.sql_per_command,
            lambda x: "-" if math.isnan(x) else f"{x:.2f}",
        ),
        row("server CPU, all processes (share of one core)", lambda o: o.server_cpu, _share),
        row("load generator CPU (share of one core)", lambda o: o.client_cpu, _share),
        row("whole machine CPU busy (share of one core)", lambda o: o.machine_cpu, _share),
        [
            "everything else: PostgreSQL, Redis, others (share of one core)",
            _rest(base),
            _rest(ours),
            "",
        ],
        row("sender's worst lateness (ms)", lambda o: o.send_lag_max, ms),
    ]
    where = "".join(
        f"- {trip.outcome.label}, {p.role} process `{p.node}`: created {_count(p.created)} "
        f"commands, handed {_count(p.handed_over)} to the device, "
        f"{trip.cpu_per_command(p) * 1e6:,.0f} us of CPU per command\n"
        for trip in (single, pair)
        for p in trip.processes
    )
    errors = "".join(
        f"- {o.label}: {n:,} x `{kind}`\n"
        for o in (base, ours)
        for kind, n in o.error_kinds.items()
    )
    return (
        "### Command round trip across two processes\n\n"
        f"- Load: as in P2 above (`bench/roundtrip.py`): {load.rate:,.0f} commands/s open "
        f"loop, a batch due every {load.tick * 1000:g} ms, {load.warmup:g} s warm-up, "
        f"{load.duration:g} s measured, {load.drain:g} s for stragglers; one device socket "
        "and one app socket played by the load generator. Latency counts from each "
        "command's due time to the arrival of its `succeeded` update.\n"
        "- *1 process*: both sockets on one `tether serve`. *2 processes*: the device "
        "socket on process A, the app socket on process B (separate ports, same database "
        "and Redis, A started and ready before B). With several pairs of runs, this table "
        "is the median pair by p99 change, and the goal is judged on it.\n\n"
        + table(["", "1 process", "2 processes", "change"], rows)
        + "\nWhere the work ran (counters on each process's `/metrics`, whole run):\n\n"
        + where
        + (f"\nErrors seen (the first kinds of each run):\n\n{errors}" if errors else "")
        + _render_hops(hops)
        + f"\nGoal (issue 3): {_trip_goal(load, base, ours, hops)}.\n\n"
        "How to read it: *change* is 2 processes / 1 process, and for latency the "
        "difference in ms. Both columns route every command event through Redis (one "
        "script call each); the P2 table above runs its PostgreSQL column on the "
        "in-process bus, so the two do not compare directly. One process is sent none of "
        "its own events; with two, each decodes and applies the events of the other that "
        "concern its socket (the cost of crossing, section C1). CPU and SQL per command "
        "are summed over the "
        "processes and cover the whole run, warm-up included; on this machine both "
        "servers, PostgreSQL, Redis and the load generator share two cores.\n"
    )


def _render_polls(seconds: int, warmup: int, cores: int, one: Polls, two: Polls) -> str:
    a, b = one.result, two.result

    def row(
        name: str, value: Callable[[polls.Wrk], float], fmt: Callable[[float], str]
    ) -> list[str]:
        return [name, fmt(value(a)), fmt(value(b)), ratio(value(b), value(a))]

    def split(outcome: Polls) -> str:
        return " + ".join(f"{share:.0%}" for share in outcome.worker_cpu)

    rows = [
        row("requests/s", lambda r: r.rate, lambda x: f"{x:,.0f}"),
        row("requests", lambda r: r.requests, lambda x: f"{x:,.0f}"),
        row("p50 latency (ms)", lambda r: r.p50, ms),
        row("p90 latency (ms)", lambda r: r.p90, ms),
        row("p99 latency (ms)", lambda r: r.p99, ms),
        ["non-2xx answers", str(a.bad_status), str(b.bad_status), ""],
        ["socket errors", a.socket_errors, b.socket_errors, ""],
        row("server CPU, all processes (share of one core)", lambda r: r.server_cpu, _share),
        ["CPU of each worker (share of one core)", split(one), split(two), ""],
        row("wrk CPU (share of one core)", lambda r: r.client_cpu, _share),
        row("whole machine CPU busy (share of one core)", lambda r: r.machine_cpu, _share),
        ["everything else: PostgreSQL, Redis, others (share of one core)", _rest(a), _rest(b), ""],
        row(
            "server CPU per request, all processes (us)",
            lambda r: r.server_cpu / r.rate,
            lambda x: f"{x * 1e6:,.1f}",
        ),
        ["nodes that answered `/readyz`", _nodes(one.nodes), _nodes(two.nodes), ""],
    ]
    return (
        "### Empty polls: one worker against two\n\n"
        f"- Load: `wrk -t{WRK_THREADS} -c{polls.CONNECTIONS} -d{seconds}s --latency -H "
        f"'Authorization: Bearer <credential>' http://127.0.0.1:<port>{polls.PATH}` after a "
        f"{warmup} s warm-up run, against `tether serve --workers 1` and `--workers 2` (two "
        "worker processes and their supervising parent; the kernel spreads wrk's 64 "
        "connections over the workers with `SO_REUSEPORT`). wrk runs two threads here "
        "(one in P3) so that it is not the single-threaded bottleneck; wrk, the workers, "
        "PostgreSQL and Redis all share the machine's two cores.\n\n"
        + table(["", "--workers 1", "--workers 2", "ratio"], rows)
        + f"\nGoal (issue 3): {_polls_goal(seconds, cores, one, two)}.\n"
    )


def render(
    load: Load,
    seconds: int,
    warmup: int,
    machine: Machine,
    command: str,
    trips: tuple[Trip, Trip],
    workers: tuple[Polls, Polls],
    pairs: Sequence[tuple[Trip, Trip]] = (),
    hops: redis_hops.Hops | None = None,
) -> str:
    """The markdown section: common setup, then the round trip and the polls."""
    return (
        "## Cluster: one process against two (issue 3)\n\n"
        "Goals (issue 3): a command whose app and device sockets are on different "
        "processes takes less than 1 ms longer at p99 than on one process; two workers "
        "answer at least 1.6x the empty polls of one.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        "- Every server in this section, baselines included, runs on PostgreSQL "
        "(127.0.0.1, a fresh schema per setup) with `TETHER_BUS=redis` "
        f"(`TETHER_REDIS_URL={REDIS}`), so the number of processes is the only "
        "difference between the columns.\n\n"
        + _render_trip(load, *trips, hops)
        + _render_pairs(pairs)
        + "\n"
        + _render_polls(seconds, warmup, machine.cores, *workers)
    )


def _render_hops(hops: redis_hops.Hops | None) -> str:
    if hops is None:
        return ""
    return (
        "\nThe floor (`bench/redis_hops.py`, same run): a command crossing processes rides "
        "two Redis pub/sub hops on its critical path (B to A with the new command, A to B "
        "with its result). Two bare redis-py processes ping-ponging a "
        f"{len(redis_hops.PAYLOAD)}-byte message at {hops.rate:,.0f}/s "
        f"({len(hops.round_trips):,} round trips) took p50 {ms(hops.p(50))} ms, p90 "
        f"{ms(hops.p(90))} ms, p99 {ms(hops.p(99))} ms, max {ms(hops.p(100))} ms per two "
        "hops.\n"
    )


def _render_pairs(pairs: Sequence[tuple[Trip, Trip]]) -> str:
    """Every repetition, so the spread between runs is on the page next to the median."""
    if len(pairs) < 2:
        return ""
    rows = [
        [
            str(i + 1),
            "1 then 2" if i % 2 == 0 else "2 then 1",
            f"{ms(single.outcome.p(50))} / {ms(pair.outcome.p(50))}",
            f"{ms(single.outcome.p(99))} / {ms(pair.outcome.p(99))}",
            f"{_signed_ms(pair.outcome.p(99) - single.outcome.p(99))} ms",
            f"{single.outcome.errors + pair.outcome.errors} / "
            f"{single.outcome.unfinished + pair.outcome.unfinished}",
        ]
        for i, (single, pair) in enumerate(pairs)
    ]
    changes = sorted(pair.outcome.p(99) - single.outcome.p(99) for single, pair in pairs)
    return (
        f"\nAll {len(pairs)} pairs of runs (the table above shows the median pair by p99 "
        "change; each pair ran back to back, in alternating order):\n\n"
        + table(
            [
                "pair",
                "order",
                "p50 ms, 1 / 2 processes",
                "p99 ms, 1 / 2 processes",
                "p99 change",
                "errors / unfinished",
            ],
            rows,
        )
        + f"\np99 change across pairs: median {_signed_ms(changes[len(changes) // 2])} ms, "
        f"from {_signed_ms(changes[0])} to {_signed_ms(changes[-1])} ms.\n"
    )


def _div(x: float, y: float) -> float:
    return x / y if y and math.isfinite(y) else math.nan


def _rest(x: Outcome | polls.Wrk) -> str:
    """CPU of the machine beyond server and load generator (clock ticks: +-1% is noise)."""
    return _share(max(0.0, x.machine_cpu - x.server_cpu - x.client_cpu))


def _share(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else "n/a"


def _count(x: float | None) -> str:
    return "?" if x is None else f"{x:,.0f}"


def _nodes(nodes: Sequence[str]) -> str:
    return ", ".join(f"`{node}`" for node in nodes)
