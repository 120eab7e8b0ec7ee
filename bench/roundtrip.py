"""Scenario ``roundtrip``: app -> server -> device -> result -> app at a fixed rate (design P2).

What is measured: the time from the moment a ``command.create`` frame was *scheduled* to
be sent on the app's WebSocket until the app receives the ``command_update`` event saying
that command ``succeeded``. In between, the server pushes the command to the device's
WebSocket, the device answers at once with a ``result``, and (for Tether) the command and
its state changes are persisted. The load is open loop: a batch of commands is due every
``tick`` whatever the server does, and latency counts from the batch's due time, so a
server (or load generator) that falls behind shows up as latency instead of as a quietly
lower rate (no coordinated omission).

Why a ratio: the same client runs against a raw aiohttp relay (``bench/baseline.py``) with
the same sockets and frame shapes and no persistence, so the ratio shows what Tether adds
to aiohttp's own WebSocket cost on this machine. Both app and device are played by this
one process with plain aiohttp client WebSockets (no agent library), on uvloop.

Beside latency it reports the server's CPU time per completed command and (Tether only)
the SQL statements per command: both are independent of how busy the machine was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from fractions import Fraction

import aiohttp
import asyncpg
import msgspec

from bench.common import (
    Machine,
    ServerProcess,
    Tether,
    baseline,
    machine_busy,
    ms,
    now_utc,
    percentile,
    ratio,
    sql_statements,
    table,
)

DEVICE = "bench-1"
#: libpq-style URL of the local PostgreSQL used for the second Tether run.
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
#: Goal P2 (design section 10).
GOAL_RATE, GOAL_P50, GOAL_P99 = 2000.0, 0.002, 0.010
#: Goal P2 of issue 17: SQLite within these ratios of the raw relay's p50 and p99 in the
#: same run; PostgreSQL's p99 below an absolute bound.
RATIO_P50, RATIO_P99, POSTGRES_P99 = 3.0, 4.0, 0.025
FAILED_STATES = frozenset({"failed", "expired", "timed_out", "cancelled"})


def _create_template(device_id: str) -> str:
    return (
        '{"type":"command.create","requestId":%d,"deviceId":"' + device_id + '","name":"echo",'
        '"parameters":{"i":%d}}'
    )


def _subscribe_frame(device_id: str) -> str:
    return (
        '{"type":"subscribe","requestId":"s","topic":"command_update","deviceIds":["'
        + device_id
        + '"]}'
    )


_CREATE = _create_template(DEVICE)


@dataclass(frozen=True)
class Load:
    """The fixed schedule: ``rate`` commands/s, due in batches every ``tick`` seconds."""

    rate: float
    warmup: float
    duration: float
    drain: float = 5.0
    tick: float = 0.005
    #: Stop sending once the sender is this late (the server pushed back): bounds the run.
    give_up: float = 5.0


# --- wire frames: only the fields the client needs (msgspec skips the rest) --------------


class _Params(msgspec.Struct):
    i: int = -1


class _Data(msgspec.Struct):
    state: str = ""
    parameters: _Params | None = None


class _Error(msgspec.Struct):
    code: str = ""
    message: str = ""


class _AppFrame(msgspec.Struct):
    type: str
    data: _Data | None = None
    error: _Error | None = None


class _Pushed(msgspec.Struct):
    id: int
    parameters: msgspec.Raw = msgspec.Raw(b"null")


class _DeviceFrame(msgspec.Struct):
    type: str
    command: _Pushed | None = None
    error: _Error | None = None


class _Result(msgspec.Struct):
    id: int
    result: msgspec.Raw
    success: bool = True
    type: str = "result"


# --- one run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    wall: float
    server: float
    client: float
    machine: float

    @classmethod
    def take(cls, server_cpu: Callable[[], float]) -> _Snapshot:
        return cls(time.perf_counter(), server_cpu(), time.process_time(), machine_busy())


@dataclass
class Outcome:
    """One target's numbers; latencies (seconds, sorted) cover the measured commands."""

    label: str
    measured: int
    unfinished: int
    error_kinds: dict[str, int]
    latencies: list[float]
    completion_rate: float
    errors: int
    server_cpu: float
    client_cpu: float
    machine_cpu: float
    cpu_per_command: float
    sql_per_command: float | None
    send_lag_max: float
    gave_up: bool

    def p(self, q: float) -> float:
        """Latency percentile, counting unfinished commands as infinitely late."""
        return percentile(self.latencies, q)

    def goal(self, load: Load) -> str:
        if load.rate < GOAL_RATE:
            return f"not evaluated ({load.rate:,.0f}/s is below the goal's 2,000/s)"
        holds = (
            self.p(50) < GOAL_P50
            and self.p(99) < GOAL_P99
            and self.unfinished == 0
            and self.errors == 0
            and self.completion_rate >= 0.99 * load.rate
        )
        detail = (
            f"p50 {ms(self.p(50))} ms (< 2), p99 {ms(self.p(99))} ms (< 10), "
            f"{self.completion_rate:,.0f} completed/s of {load.rate:,.0f}, "
            f"{self.errors} errors, {self.unfinished} unfinished"
        )
        if self.gave_up:
            detail += (
                f"; the sender gave up once it ran {load.give_up:g} s behind schedule "
                "(the server stopped reading), the commands it never sent count as unfinished"
            )
        return ("**holds**: " if holds else "**missed**: ") + detail

    def issue_goal(self, load: Load, base: Outcome) -> str:
        """Issue 17's row P2: against the relay on SQLite, an absolute p99 on PostgreSQL."""
        if load.rate < GOAL_RATE:
            return f"not evaluated ({load.rate:,.0f}/s is below the goal's 2,000/s)"
        complete = self.unfinished == 0 and self.errors == 0
        if "PostgreSQL" in self.label:
            holds = complete and self.p(99) < POSTGRES_P99
            detail = f"p99 {ms(self.p(99))} ms (< {POSTGRES_P99 * 1000:g})"
        else:
            p50, p99 = self.p(50) / base.p(50), self.p(99) / base.p(99)
            holds = complete and p50 <= RATIO_P50 and p99 <= RATIO_P99
            detail = (
                f"p50 {p50:.2f}x the relay's (<= {RATIO_P50:g}x), "
                f"p99 {p99:.2f}x (<= {RATIO_P99:g}x)"
            )
        detail += f", {self.errors} errors, {self.unfinished} unfinished"
        return ("**holds**: " if holds else "**missed**: ") + detail


@dataclass
class _Run:
    """The schedule and what came back; index ``i`` is command ``i`` (``parameters.i``)."""

    load: Load
    server_cpu: Callable[[], float]
    warm: int = 0
    total: int = 0
    start: float = 0.0
    per_tick: Fraction = Fraction(1)
    done: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    window: list[_Snapshot] = field(default_factory=list)
    send_lag_max: float = 0.0
    gave_up: bool = False

    def __post_init__(self) -> None:
        self.warm = round(self.load.rate * self.load.warmup)
        self.total = self.warm + round(self.load.rate * self.load.duration)
        self.done = [math.nan] * self.total
        self.per_tick = Fraction(str(self.load.rate)) * Fraction(str(self.load.tick))

    def scheduled(self, i: int) -> float:
        """When command ``i`` is due: the start of its batch (batch k holds rate*tick)."""
        return self.start + math.floor(i / self.per_tick) * self.load.tick

    def due(self, batch: int) -> int:
        """How many commands are due once batch ``batch`` has been sent."""
        return min(self.total, math.ceil((batch + 1) * self.per_tick))

    def mark(self) -> None:
        self.window.append(_Snapshot.take(self.server_cpu))

    def error(self, kind: str) -> None:
        """Count an error; the first few kinds are kept verbatim for the report."""
        self.errors += 1
        if kind in self.error_kinds or len(self.error_kinds) < 5:
            self.error_kinds[kind] += 1

    def complete(self, i: int, now: float) -> None:
        if 0 <= i < self.total and math.isnan(self.done[i]):
            self.done[i] = now
            self.completed += 1
            if self.completed == self.total:
                self.finished.set()

    def outcome(self, label: str, sql: float | None) -> Outcome:
        """``window`` holds snapshots at: first send, first measured send, last send, end."""
        first, measure, last, end = self.window
        measured = [
            (t, self.scheduled(i))
            for i, t in enumerate(self.done[self.warm :], self.warm)
            if not math.isnan(t)
        ]
        span = max(t for t, _ in measured) - self.scheduled(self.warm) if measured else math.nan
        seconds = last.wall - measure.wall
        unfinished = self.total - self.warm - len(measured)
        return Outcome(
            label=label,
            measured=self.total - self.warm,
            unfinished=unfinished,
            latencies=sorted(t - due for t, due in measured) + [math.inf] * unfinished,
            completion_rate=len(measured) / span if measured else 0.0,
            errors=self.errors,
            error_kinds=dict(self.error_kinds),
            server_cpu=(last.server - measure.server) / seconds,
            client_cpu=(last.client - measure.client) / seconds,
            machine_cpu=(last.machine - measure.machine) / seconds,
            cpu_per_command=(end.server - first.server) / max(1, self.completed),
            sql_per_command=None if sql is None else sql / max(1, self.completed),
            send_lag_max=self.send_lag_max,
            gave_up=self.gave_up,
        )


async def _device(ws: aiohttp.ClientWebSocketResponse, run: _Run) -> None:
    """Answer every pushed command at once with a successful result echoing its parameters."""
    decode = msgspec.json.Decoder(_DeviceFrame).decode
    encode = msgspec.json.Encoder().encode
    async for message in ws:
        try:
            frame = decode(message.data)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as error:
            run.error(f"device: undecodable frame: {error}")
            continue
        if frame.type == "command" and frame.command is not None:
            result = _Result(id=frame.command.id, result=frame.command.parameters)
            await ws.send_str(encode(result).decode())
        elif frame.type == "error":
            run.error(f"device: {_describe(frame.error)}")


async def _app(ws: aiohttp.ClientWebSocketResponse, run: _Run) -> None:
    """Stamp each ``succeeded`` update; count error frames and failed commands."""
    decode = msgspec.json.Decoder(_AppFrame).decode
    async for message in ws:
        now = time.perf_counter()
        try:
            frame = decode(message.data)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as error:
            run.error(f"app: undecodable frame: {error}")
            continue
        if frame.type == "event" and frame.data is not None:
            if frame.data.state == "succeeded" and frame.data.parameters is not None:
                run.complete(frame.data.parameters.i, now)
            elif frame.data.state in FAILED_STATES:
                run.error(f"app: a command ended {frame.data.state}")
        elif frame.type == "error":
            run.error(f"app: {_describe(frame.error)}")


def _describe(error: _Error | None) -> str:
    return "error frame" if error is None else f"{error.code}: {error.message}"[:200]


def _create_frame(i: int) -> str:
    return _CREATE % (i, i)


async def send_open_loop(
    ws: aiohttp.ClientWebSocketResponse, run: _Run, frame: Callable[[int], str] = _create_frame
) -> None:
    """The open-loop schedule: every tick, send the batch that is due (``frame(i)`` each)."""
    tick = run.load.tick
    run.start = time.perf_counter()
    run.mark()
    i = batch = 0
    while i < run.total:
        # Normally one batch per wake-up; after a late wake-up, every batch now due.
        batch = max(batch, math.floor((time.perf_counter() - run.start) / tick))
        while i < run.due(batch):
            if i == run.warm:
                run.mark()
            await ws.send_str(frame(i))
            lag = time.perf_counter() - run.scheduled(i)
            if i >= run.warm:
                run.send_lag_max = max(run.send_lag_max, lag)
            i += 1
            if lag > run.load.give_up:
                run.gave_up = True  # the rest count as unfinished
                while len(run.window) < 3:
                    run.mark()
                return
        batch += 1
        delay = run.start + batch * tick - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    run.mark()


async def drive(
    server: ServerProcess,
    label: str,
    token: str,
    credential: str,
    load: Load,
    count_sql: bool,
    device_server: ServerProcess | None = None,
    device_id: str = DEVICE,
) -> Outcome:
    """Connect device and app, subscribe, run the schedule, wait for the stragglers.

    The app socket goes to ``server`` and the device socket to ``device_server`` (the same
    server unless given); server CPU and SQL statements are summed over both.
    """
    template = _create_template(device_id)
    device_side = device_server or server
    servers = [server] if device_side is server else [server, device_side]
    run = _Run(load, lambda: sum(s.cpu_seconds() for s in servers))
    async with aiohttp.ClientSession() as session:
        device = await session.ws_connect(
            f"{device_side.base_url}/api/v1/device/ws?deviceId={device_id}",
            headers={"Authorization": f"Bearer {credential}"},
        )
        app = await session.ws_connect(
            f"{server.base_url}/api/v1/ws", headers={"Authorization": f"Bearer {token}"}
        )
        await app.send_str(_subscribe_frame(device_id))
        reply = msgspec.json.decode(await asyncio.wait_for(app.receive_str(), 10))
        if reply.get("type") != "response":
            raise RuntimeError(f"subscribe failed on {label}: {reply}")
        sql_before = await _sql(servers) if count_sql else None
        tasks = [asyncio.create_task(_device(device, run)), asyncio.create_task(_app(app, run))]
        try:
            await send_open_loop(app, run, lambda i: template % (i, i))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.finished.wait(), load.drain)
            run.mark()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.close()
            await device.close()
        sql_after = await _sql(servers) if count_sql else None
    sql = None if sql_before is None or sql_after is None else sql_after - sql_before
    return run.outcome(label, sql)


async def _sql(servers: list[ServerProcess]) -> float | None:
    """SQL statements sent so far by all ``servers``; None if one does not count them."""
    counts = [await sql_statements(server) for server in servers]
    return None if None in counts else sum(c for c in counts if c is not None)


# --- targets -------------------------------------------------------------------------------


async def _tether(label: str, load: Load, database_url: str | None = None) -> Outcome:
    server = Tether(label, database_url)
    try:
        await server.start()
        token, credential = await server.device(DEVICE)
        outcome = await drive(server, label, token, credential, load, count_sql=True)
        if outcome.errors:
            print(f"  {label} had errors; the end of its log:\n{server.output()[-2000:]}")
        return outcome
    finally:
        server.stop()


async def _baseline(load: Load) -> Outcome:
    credential = secrets.token_urlsafe(24)
    server = baseline(credential)
    try:
        await server.start()
        return await drive(server, "raw aiohttp relay", "-", credential, load, count_sql=False)
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str | None]:
    """A throw-away schema on the local PostgreSQL; yields Tether's URL, or None if absent."""
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(POSTGRES, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        print(f"  PostgreSQL at {POSTGRES} is not available ({error}); skipping that run")
        yield None
        return
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        host = POSTGRES.removeprefix("postgresql://")
        yield f"postgresql+asyncpg://{host}?options=-csearch_path%3D{schema}"
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


async def run(load: Load, machine: Machine, command: str, postgres: bool = True) -> str:
    """Measure the baseline and Tether (SQLite, then PostgreSQL); the report section."""
    print(f"roundtrip: {load.rate:,.0f} commands/s, {load.warmup:g}s warm-up, {load.duration:g}s")
    outcomes = [await _baseline(load)]
    print_outcome(outcomes[-1])
    outcomes.append(await _tether("Tether (SQLite)", load))
    print_outcome(outcomes[-1])
    if postgres:
        async with postgres_schema() as url:
            if url is not None:
                outcomes.append(await _tether("Tether (PostgreSQL)", load, url))
                print_outcome(outcomes[-1])
    return render(load, machine, command, outcomes)


def print_outcome(outcome: Outcome) -> None:
    """One line per run on the console, while the benchmark goes on."""
    print(
        f"  {outcome.label:<20} p50 {ms(outcome.p(50))} ms  p99 {ms(outcome.p(99))} ms  "
        f"max {ms(outcome.p(100))} ms  {outcome.completion_rate:,.0f}/s  "
        f"errors {outcome.errors}  unfinished {outcome.unfinished}  "
        f"server CPU {outcome.server_cpu:.0%} ({outcome.cpu_per_command * 1e6:,.0f} us/command)"
    )
    for kind, count in outcome.error_kinds.items():
        print(f"    {count} x {kind}")


def _chart(outcomes: list[Outcome]) -> str:
    """Latency percentiles, each run's bars beside the relay's (log scale: PostgreSQL's
    tail can be tens of times the relay's). A percentile that includes unfinished
    commands is infinite and is left out of the picture (the table shows it)."""
    from bench import chart  # matplotlib: only the bench dependency group has it

    quantiles = ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"))
    series = {
        o.label: [o.p(q) * 1000 if math.isfinite(o.p(q)) else math.nan for q, _ in quantiles]
        for o in outcomes
    }
    return chart.bars(
        "p2-roundtrip-latency",
        title="P2: command round trip at 2,000/s, latency (ms, log scale)",
        y_label="ms",
        groups=[name for _, name in quantiles],
        series=series,
        log_y=True,
    )


def render(load: Load, machine: Machine, command: str, outcomes: list[Outcome]) -> str:
    """The markdown section: setup, a table (baseline, each Tether run, ratios), verdicts."""
    base, tethers = outcomes[0], outcomes[1:]
    header = ["", base.label]
    for outcome in tethers:
        header += [outcome.label, "ratio"]

    def row(name: str, value: Callable[[Outcome], float], fmt: Callable[[float], str]) -> list[str]:
        cells = [name, fmt(value(base))]
        for outcome in tethers:
            cells += [fmt(value(outcome)), ratio(value(outcome), value(base))]
        return cells

    def plain(name: str, value: Callable[[Outcome], str]) -> list[str]:
        return [name, value(base), *[c for o in tethers for c in (value(o), "")]]

    def count(x: float) -> str:
        return f"{x:,.0f}"

    def share(x: float) -> str:
        return f"{x:.0%}"

    def micros(x: float) -> str:
        return f"{x * 1e6:,.0f}"

    rows = [
        row("commands measured", lambda o: o.measured, count),
        row("completed per second", lambda o: o.completion_rate, count),
    ]
    for q, name in ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"), (100, "max")):
        rows.append(row(f"{name} latency (ms)", functools.partial(Outcome.p, q=q), ms))
    rows += [
        plain("errors / unfinished", lambda o: f"{o.errors} / {o.unfinished}"),
        row("server CPU per completed command (us)", lambda o: o.cpu_per_command, micros),
        plain(
            "SQL statements per command",
            lambda o: "-" if o.sql_per_command is None else f"{o.sql_per_command:.2f}",
        ),
        row("server CPU (share of one core)", lambda o: o.server_cpu, share),
        row("load generator CPU (share of one core)", lambda o: o.client_cpu, share),
        row("whole machine CPU busy (share of one core)", lambda o: o.machine_cpu, share),
        row("sender's worst lateness (ms)", lambda o: o.send_lag_max, ms),
    ]
    goals = "".join(f"- {o.label}: {o.goal(load)}\n" for o in tethers)
    issue = "".join(f"- {o.label}: {o.issue_goal(load, base)}\n" for o in tethers)
    seen = "".join(
        f"- {o.label}: {count:,} x `{kind}`\n"
        for o in outcomes
        for kind, count in o.error_kinds.items()
    )
    if seen:
        goals += "\nErrors seen (the first kinds of each run):\n\n" + seen
    return (
        "## P2: native device WebSocket command round trip\n\n"
        "Goal (design 10, P2): at 2,000 commands/s, app -> Tether -> device -> result -> "
        "app takes p50 < 2 ms and p99 < 10 ms, including persistence. Goal (issue 17, "
        "P2): on SQLite, p50 within 3x and p99 within 4x of the raw relay in the same run; "
        "on PostgreSQL, p99 < 25 ms.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.rate:,.0f} commands/s open loop, a batch due every "
        f"{load.tick * 1000:g} ms, {load.warmup:g} s warm-up, {load.duration:g} s measured, "
        f"{load.drain:g} s allowed after the last send for stragglers; one device socket "
        "and one app socket played by the load generator (aiohttp client, uvloop). Latency "
        "counts from each command's due time to the arrival of its `succeeded` update.\n\n"
        + table(header, rows)
        + "\n"
        + _chart(outcomes)
        + "\n\nIssue 17 goal:\n\n"
        + issue
        + "\nDesign goal:\n\n"
        + goals
        + "\nHow to read it: ratios are Tether / baseline (for latency, how many times "
        "slower). *Unfinished* commands had no `succeeded` update by the end of the drain "
        "time (lost, or still queued behind a backlog). The baseline relays "
        "`command.create` to the device as a `command` frame and the device's `result` back "
        "as an `event`, in memory. Tether also persists the command and each state change, "
        "answers each `command.create` with a `response` and sends a `sent` update, so the "
        "app reads three frames per command there against one. CPU per command and SQL "
        "per command cover the whole run (warm-up included) and do not depend on how busy "
        "the machine was; *whole machine CPU busy* minus server and load generator is what "
        "other processes used meanwhile.\n"
    )
