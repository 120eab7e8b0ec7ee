"""Scenario ``fanout`` (P4): one device's notifications fanned out to 10,000 subscribers.

``N`` client WebSockets (``/api/v1/ws``, one ``subscribe`` each to the ``notification``
topic of one device) are held by several load-generator processes (``python -m
bench.fanout --client``: one core cannot read 50,000+ frames/s), each from its own source
address in 127.0.0.0/8 so ephemeral ports never run out, with the fd limit raised to the
hard limit. One device socket then posts notifications over the native device WebSocket
and every subscriber stamps each arrival with the system-wide monotonic clock, so the
times of all processes compare directly.

Two phases per target:

1. **Latency:** notifications spaced well apart; for each, the time from the device's
   send to its arrival at the *last* of the ``N`` subscribers (and how many got it).
2. **Throughput:** notifications at an offered rate above the goal for a few seconds;
   deliveries per second over time (the chart) and sustained, i.e. all deliveries
   divided by the time from the first send to the last arrival.

The same clients run against ``bench/rawfanout.py``, a raw aiohttp fan-out that encodes
each notification once and writes it straight to each socket: the ratio is what Tether
adds (persistence of the notification, subscription matching and access checks, one
bounded send queue per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import resource
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import msgspec
import uvloop

from bench import chart
from bench.common import (
    Machine,
    ServerProcess,
    Tether,
    clean_env,
    free_port,
    machine_busy,
    ms,
    now_utc,
    percentile,
    ratio,
    table,
)

DEVICE = "fanout-1"
GOAL_LAST = 0.250
GOAL_RATE = 50_000.0
#: Histogram bin of arrivals, seconds.
BIN = 0.1


def raise_fd_limit() -> int:
    """Soft fd limit up to the hard one: each held socket is one descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- the load-generator process -------------------------------------------------------------


class _Params(msgspec.Struct):
    i: int = -1


class _Data(msgspec.Struct):
    parameters: _Params | None = None


class _Frame(msgspec.Struct):
    type: str
    data: _Data | None = None


class _Report(msgspec.Struct):
    connected: int
    failed: int
    closed: int
    count: dict[int, int]
    last: dict[int, float]
    bins: dict[int, int]
    cpu: float


async def _client_main(url: str, token: str, count: int, source: str, concurrency: int) -> None:
    """Hold ``count`` subscribers; print ``ready``; on ``stop`` (stdin) print the report."""
    raise_fd_limit()
    decode = msgspec.json.Decoder(_Frame).decode
    counts: Counter[int] = Counter()
    last: dict[int, float] = {}
    bins: Counter[int] = Counter()
    closed = 0
    subscribe = (
        '{"type":"subscribe","requestId":"s","topic":"notification","deviceIds":["' + DEVICE + '"]}'
    )
    connector = aiohttp.TCPConnector(limit=0, local_addr=(source, 0), force_close=False)
    session = aiohttp.ClientSession(connector=connector)
    gate = asyncio.Semaphore(concurrency)
    errors: Counter[str] = Counter()
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def connect() -> aiohttp.ClientWebSocketResponse | None:
        async with gate:
            for _ in range(5):
                try:
                    ws = await session.ws_connect(
                        url, headers={"Authorization": f"Bearer {token}"}, max_msg_size=0
                    )
                    await ws.send_str(subscribe)
                    reply = decode(await asyncio.wait_for(ws.receive_str(), 30))
                    if reply.type != "response":
                        await ws.close()
                        return None
                    return ws
                except (aiohttp.ClientError, OSError, TimeoutError, TypeError) as error:
                    errors[type(error).__name__ + ": " + str(error)[:80]] += 1
                    await asyncio.sleep(0.5)
            return None

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        nonlocal closed
        clock = time.monotonic
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    closed += 1
                    return
                continue
            now = clock()
            frame = decode(message.data)
            if frame.data is not None and frame.data.parameters is not None:
                i = frame.data.parameters.i
                counts[i] += 1
                if now > last.get(i, 0.0):
                    last[i] = now
                bins[int(now / BIN)] += 1

    results = await asyncio.gather(*(connect() for _ in range(count)))
    sockets = [ws for ws in results if ws is not None]
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    for error, times in errors.most_common(3):
        print(f"fanout client {source}: {times} x {error}", file=sys.stderr)
    print(f"ready {len(sockets)}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cpu_start = time.process_time()
    await reader.readline()  # "stop"
    cpu = time.process_time() - cpu_start
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    report = _Report(
        connected=len(sockets),
        failed=count - len(sockets),
        closed=closed,
        count=dict(counts),
        last=last,
        bins=dict(bins),
        cpu=cpu,
    )
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    sys.stdout.flush()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), 10)
    await session.close()


# --- the coordinator ------------------------------------------------------------------------


@dataclass
class Load:
    subscribers: int = 10_000
    processes: int = 4
    pings: int = 20
    spacing: float = 0.5
    rate: float = 10.0
    seconds: float = 8.0


@dataclass
class Outcome:
    label: str
    connected: int = 0
    failed: int = 0
    closed: int = 0
    lasts: list[float] = field(default_factory=list)
    incomplete: int = 0
    sent: int = 0
    deliveries: int = 0
    expected: int = 0
    sustained: float = 0.0
    peak: float = 0.0
    series: list[tuple[float, float]] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    connect_seconds: float = 0.0
    #: Server CPU seconds per delivery in the throughput phase: unlike deliveries/s, it
    #: does not depend on how much of the shared machine the server got.
    cpu_per_delivery: float = math.nan

    def p(self, q: float) -> float:
        return percentile(sorted(self.lasts), q)

    def goal(self) -> str:
        worst = max(self.lasts, default=math.inf)
        holds = worst < GOAL_LAST and self.sustained >= GOAL_RATE and self.incomplete == 0
        return ("**holds**: " if holds else "**missed**: ") + (
            f"last subscriber after {ms(worst)} ms at worst (< 250), "
            f"{self.sustained:,.0f} deliveries/s sustained (>= 50,000), "
            f"{self.connected:,} of {self.connected + self.failed:,} subscribed, "
            f"{self.incomplete} notifications missed by someone, {self.closed} sockets closed"
        )


class _Clients:
    """The load-generator processes of one target."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, url: str, token: str, load: Load) -> tuple[int, float]:
        started = time.monotonic()
        share = math.ceil(load.subscribers / load.processes)
        for index in range(load.processes):
            count = min(share, load.subscribers - index * share)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.fanout",
                "--client",
                "--url",
                url,
                "--count",
                str(count),
                "--source",
                f"127.0.{10 + index}.1",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=clean_env(BENCH_TOKEN=token),
                limit=1 << 26,
            )
            self.processes.append(process)
        connected = 0
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 300)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"a client process failed: {line!r}")
            connected += int(line.split()[1])
        return connected, time.monotonic() - started

    def cpu(self) -> float:
        from bench.common import tree_cpu_seconds

        return sum(tree_cpu_seconds(p.pid) for p in self.processes)

    async def stop(self) -> list[_Report]:
        reports = []
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(b"stop\n")
            await process.stdin.drain()
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            reports.append(msgspec.json.decode(line, type=_Report))
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        return reports

    def kill(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()


async def _drive(
    server: ServerProcess, label: str, token: str, credential: str, load: Load
) -> Outcome:
    outcome = Outcome(label)
    clients = _Clients()
    ws_url = server.base_url.replace("http://", "ws://")
    try:
        connected, outcome.connect_seconds = await clients.start(ws_url + "/api/v1/ws", token, load)
        async with aiohttp.ClientSession() as session:
            device = await session.ws_connect(
                f"{ws_url}/api/v1/device/ws?deviceId={DEVICE}",
                headers={"Authorization": f"Bearer {credential}"},
            )

            async def drain() -> None:
                async for _ in device:
                    pass  # responses to the posts: not needed, but must be read

            draining = asyncio.create_task(drain())
            sent: dict[int, float] = {}

            async def post(i: int) -> None:
                frame = f'{{"type":"notification","name":"tick","parameters":{{"i":{i}}}}}'
                sent[i] = time.monotonic()
                await device.send_str(frame)

            # Phase 1: spaced notifications, the time to the last subscriber.
            for i in range(load.pings):
                await post(i)
                await asyncio.sleep(load.spacing)
            # Phase 2: an offered rate above the goal; deliveries over time.
            await asyncio.sleep(1.0)
            cpu0, client0, busy0 = server.cpu_seconds(), clients.cpu(), machine_busy()
            start = time.monotonic()
            burst = list(range(load.pings, load.pings + round(load.rate * load.seconds)))
            for n, i in enumerate(burst):
                delay = start + n / load.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await post(i)
            # Wait for the stragglers: long enough for a 10x slower server, bounded.
            await asyncio.sleep(min(30.0, 2.0 + load.seconds))
            wall = time.monotonic() - start
            server_seconds = server.cpu_seconds() - cpu0
            outcome.server_cpu = server_seconds / wall
            outcome.client_cpu = (clients.cpu() - client0) / wall
            outcome.machine_cpu = (machine_busy() - busy0) / wall
            draining.cancel()
            await device.close()
        reports = await clients.stop()
    finally:
        clients.kill()
    _summarise(outcome, reports, sent, load, burst, start, connected)
    outcome.cpu_per_delivery = server_seconds / max(1, outcome.deliveries)
    return outcome


def _summarise(
    outcome: Outcome,
    reports: list[_Report],
    sent: dict[int, float],
    load: Load,
    burst: list[int],
    start: float,
    connected: int,
) -> None:
    outcome.connected = connected
    outcome.failed = sum(r.failed for r in reports)
    outcome.closed = sum(r.closed for r in reports)
    counts: Counter[int] = Counter()
    last: dict[int, float] = {}
    bins: Counter[int] = Counter()
    for report in reports:
        counts.update(report.count)
        bins.update(report.bins)
        for i, t in report.last.items():
            last[i] = max(last.get(i, 0.0), t)
    outcome.sent = len(sent)
    for i in range(load.pings):
        if counts[i] < connected:
            outcome.incomplete += 1
        outcome.lasts.append(last.get(i, math.inf) - sent[i])
    outcome.incomplete += sum(1 for i in burst if counts[i] < connected)
    outcome.deliveries = sum(counts[i] for i in burst)
    outcome.expected = connected * len(burst)
    end = max((last[i] for i in burst if i in last), default=start)
    outcome.sustained = outcome.deliveries / (end - start) if end > start else 0.0
    # Deliveries per second over time, from the start of the throughput phase.
    first_bin = int(start / BIN)
    last_bin = int(end / BIN) + 2
    outcome.series = [
        ((b - first_bin) * BIN, bins.get(b, 0) / BIN) for b in range(first_bin, last_bin)
    ]
    outcome.peak = max((v for _, v in outcome.series), default=0.0)


async def _tether(load: Load) -> Outcome:
    server = Tether("Tether")
    try:
        await server.start()
        token, credential = await server.device(DEVICE)
        return await _drive(server, "Tether", token, credential, load)
    finally:
        server.stop()


async def _raw(load: Load) -> Outcome:
    token = secrets.token_urlsafe(16)
    port = free_port()
    server = ServerProcess(
        name="raw aiohttp fan-out",
        argv=[sys.executable, "-m", "bench.rawfanout", "--port", str(port)],
        port=port,
        ready_path="/healthz",
        env=clean_env(BENCH_TOKEN=token),
    )
    try:
        await server.start()
        return await _drive(server, "raw aiohttp", token, "unused", load)
    finally:
        server.stop()


async def run(load: Load, machine: Machine, command: str) -> str:
    raise_fd_limit()
    print(f"fanout: raw aiohttp, {load.subscribers:,} subscribers")
    base = await _raw(load)
    print(f"  last p50 {ms(base.p(50))} ms, {base.sustained:,.0f}/s")
    print(f"fanout: Tether, {load.subscribers:,} subscribers")
    ours = await _tether(load)
    print(f"  last p50 {ms(ours.p(50))} ms, {ours.sustained:,.0f}/s")
    return report(base, ours, load, machine, command)


def report(base: Outcome, ours: Outcome, load: Load, machine: Machine, command: str) -> str:
    def row(name: str, b: float, o: float, fmt: str) -> list[str]:
        return [name, fmt.format(b), fmt.format(o), ratio(o, b)]

    def lat(name: str, q: float) -> list[str]:
        return [name, ms(base.p(q)), ms(ours.p(q)), ratio(ours.p(q), base.p(q))]

    rows = [
        row("subscribers held", base.connected, ours.connected, "{:,.0f}"),
        row(
            "seconds to connect and subscribe them",
            base.connect_seconds,
            ours.connect_seconds,
            "{:.1f}",
        ),
        lat("time to the last subscriber, p50 (ms)", 50),
        lat("time to the last subscriber, p90 (ms)", 90),
        lat("time to the last subscriber, max (ms)", 100),
        row("deliveries/s sustained (throughput phase)", base.sustained, ours.sustained, "{:,.0f}"),
        row("deliveries/s, best 100 ms bin", base.peak, ours.peak, "{:,.0f}"),
        [
            "deliveries / expected (throughput phase)",
            f"{base.deliveries:,} / {base.expected:,}",
            f"{ours.deliveries:,} / {ours.expected:,}",
            "",
        ],
        [
            "notifications missed by someone / sockets closed",
            f"{base.incomplete} / {base.closed}",
            f"{ours.incomplete} / {ours.closed}",
            "",
        ],
        row(
            "server CPU per delivery, throughput phase (us)",
            base.cpu_per_delivery * 1e6,
            ours.cpu_per_delivery * 1e6,
            "{:.1f}",
        ),
        row(
            "server CPU, throughput phase (share of one core)",
            base.server_cpu,
            ours.server_cpu,
            "{:.0%}",
        ),
        row("load generators' CPU (share of one core)", base.client_cpu, ours.client_cpu, "{:.0%}"),
        row(
            "whole machine CPU busy (share of one core)",
            base.machine_cpu,
            ours.machine_cpu,
            "{:.0%}",
        ),
    ]
    picture = chart.lines(
        "p4-fanout",
        title=f"P4: deliveries/s to {load.subscribers:,} subscribers "
        f"({load.rate:g} notifications/s offered)",
        x_label="seconds since the first notification of the throughput phase",
        y_label="deliveries per second (100 ms bins)",
        series={"Tether": ours.series, "raw aiohttp fan-out": base.series},
    )
    offered = load.rate * load.subscribers
    return (
        "## P4: one notification fanned out to 10,000 subscribers\n\n"
        "Goal (issue 17, P4): one notification reaches the last of 10,000 client "
        "subscribers in < 250 ms, and >= 50,000 deliveries/s are sustained; as a ratio to "
        "a raw aiohttp fan-out.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.subscribers:,} client WebSockets (`/api/v1/ws`, one `subscribe` to "
        f"the device's `notification` topic each) held by {load.processes} load-generator "
        "processes, each from its own 127.0.x.1 source address; one device WebSocket "
        f"posts notifications. Latency phase: {load.pings} notifications "
        f"{load.spacing * 1000:g} ms apart, time from the device's send to the arrival at "
        f"the last subscriber. Throughput phase: {load.rate:g} notifications/s for "
        f"{load.seconds:g} s ({offered:,.0f} deliveries/s offered); sustained = "
        "deliveries / (last arrival - first send).\n\n"
        + table(["", "raw aiohttp fan-out", "Tether", "ratio"], rows)
        + f"\n{picture}\n\nGoal:\n\n- Tether: {ours.goal()}\n"
        + f"- (raw aiohttp, same clients: {base.goal().split(': ', 1)[1]})\n"
        "\nHow to read it: ratios are Tether / raw (for time, how many times slower). The raw "
        "fan-out (`bench/rawfanout.py`) encodes each notification once and writes it to "
        "each socket in turn; Tether also stores the notification, matches the subscription "
        "and checks access per subscriber, and queues each frame on the connection's "
        "bounded send queue. Load-generator CPU near 100% per process would mean the "
        "clients, not the server, set the pace.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="fan-out load generator (internal)")
    parser.add_argument("--client", action="store_true", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    import os

    token = os.environ["BENCH_TOKEN"]
    uvloop.run(_client_main(args.url, token, args.count, args.source, args.concurrency))


if __name__ == "__main__":
    main()
