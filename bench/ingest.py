"""Scenario ``ingest`` (P6a): telemetry from 1,000 devices, persisted and fanned out.

For each transport (native device WebSocket, native device HTTP) and each store (SQLite,
PostgreSQL in a database of its own), 1,000 devices post notifications as fast as the
server answers them (``bench/loadgen.py``: several processes, each device keeping a small
window of posts unanswered; Tether answers a post only after its row committed), while
one client WebSocket subscribed to every device's notifications counts the fan-out.

What counts: posts *acknowledged* per second, from the first send to the last answer.
The bench then checks the store itself: the rows added to ``notifications`` must equal
the acknowledged posts (nothing lost, nothing acknowledged twice), and the subscriber
must have received every one.

The baseline is ``bench/rawstore.py``: raw aiohttp plus the plain driver (aiosqlite,
asyncpg), the same tables and indexes, the same group commit (one multi-row insert per
batch) and the same one-subscriber fan-out, without Tether's application logic. It
stores, because ingest without storage would measure aiohttp's frame rate, not what
the goal counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import asyncpg

from bench import chart
from bench.common import (
    Machine,
    ServerProcess,
    Tether,
    clean_env,
    free_port,
    machine_busy,
    now_utc,
    ratio,
    table,
)
from bench.loadgen import BIN, Group, Job, Report

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
GOAL_INGEST = 20_000.0


@dataclass
class Load:
    devices: int = 1000
    seconds: float = 10.0
    processes: int = 2
    window: int = 8
    transports: tuple[str, ...] = ("ws", "http")

    @classmethod
    def quick(cls) -> Load:
        return cls(devices=100, seconds=2.0)


@dataclass
class Outcome:
    label: str
    transport: str
    store: str
    connected: int = 0
    acked: int = 0
    stored: int = 0
    delivered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    rate: float = 0.0
    server_cpu_per_post: float = math.nan
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    series: list[tuple[float, float]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.acked - self.stored


# --- databases ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(store: str) -> AsyncIterator[str]:
    """A fresh store: a temporary SQLite file path, or a PostgreSQL database of our own."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
            yield f"sqlite:///{directory}/raw.db"
        return
    name = f"tether_flow_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{POSTGRES}/test", timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{POSTGRES}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def count_rows(url: str, table_name: str) -> int:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")

        def count() -> int:
            with contextlib.closing(sqlite3.connect(path)) as db:
                return int(db.execute(f"SELECT count(*) FROM {table_name}").fetchone()[0])

        return await asyncio.to_thread(count)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table_name}"))
    finally:
        await conn.close()


# --- targets -----------------------------------------------------------------------------------


@dataclass
class Target:
    """A started server, its store URL (for counting rows), devices and admin token."""

    server: ServerProcess
    store_url: str
    devices: list[tuple[str, str]]
    token: str


def device_ids(count: int) -> list[str]:
    return [f"ingest-{n:05d}" for n in range(count)]


@contextlib.asynccontextmanager
async def tether(store: str, devices: int) -> AsyncIterator[Target]:
    async with database(store) as url:
        server = Tether("Tether", None if store == "sqlite" else url)
        try:
            await server.start()
            store_url = f"sqlite:///{server._data_dir.name}/tether.db" if store == "sqlite" else url
            token, found = await provision(server, device_ids(devices))
            yield Target(server, store_url, found, token)
        finally:
            server.stop()


async def provision(server: Tether, ids: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """Create the devices with a credential each through the management API."""
    token, _ = await server.device(ids[0] + "-probe")
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(32)
    found: list[tuple[str, str]] = []
    async with aiohttp.ClientSession(base_url=server.base_url, headers=headers) as session:

        async def one(device_id: str) -> None:
            async with gate:
                async with session.post(
                    "/api/v1/devices", json={"id": device_id, "name": device_id}
                ) as response:
                    if response.status not in (200, 201):
                        raise RuntimeError(f"device create failed: {await response.text()}")
                async with session.post(f"/api/v1/devices/{device_id}/credential") as response:
                    found.append((device_id, (await response.json())["credential"]))

        await asyncio.gather(*(one(d) for d in ids))
    return token, found


@contextlib.asynccontextmanager
async def raw(store: str, devices: int) -> AsyncIterator[Target]:
    async with database(store) as url:
        credential, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        port = free_port()
        ids = device_ids(devices)
        server = ServerProcess(
            name="raw aiohttp + driver",
            argv=[
                sys.executable,
                "-m",
                "bench.rawstore",
                "--port",
                str(port),
                "--store",
                url,
                "--devices",
                ",".join(ids),
            ],
            port=port,
            ready_path="/healthz",
            env=clean_env(BENCH_CREDENTIAL=credential, BENCH_TOKEN=token),
        )
        try:
            await server.start()
            yield Target(server, url, [(d, credential) for d in ids], token)
        finally:
            server.stop()


# --- one measured run --------------------------------------------------------------------------


async def _subscriber(target: Target, received: list[int], ready: asyncio.Event) -> None:
    url = target.server.base_url.replace("http://", "ws://") + "/api/v1/ws"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url, headers={"Authorization": f"Bearer {target.token}"}, max_msg_size=0
        ) as ws,
    ):
        await ws.send_str('{"type":"subscribe","requestId":"s","topic":"notification"}')
        await ws.receive_str()
        ready.set()
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                received[0] += 1


async def measure(
    target: Target,
    outcome: Outcome,
    jobs: list[Job],
    seconds: float,
    table_name: str,
    fan_out: bool,
) -> Outcome:
    """Run ``jobs`` for ``seconds``; fill ``outcome`` (rate, rows, fan-out, CPU)."""
    received = [0]
    ready = asyncio.Event()
    subscriber = asyncio.create_task(_subscriber(target, received, ready)) if fan_out else None
    if subscriber is not None:
        await asyncio.wait_for(ready.wait(), 30)
    group = Group()
    try:
        outcome.connected = await group.start(
            jobs, clean_env(BENCH_CREDENTIAL="", BENCH_TOKEN=target.token)
        )
        before = await count_rows(target.store_url, table_name)
        cpu0, busy0 = target.server.cpu_seconds(), machine_busy()
        loop = asyncio.get_running_loop()
        start = loop.time()
        await group.say(b"go")
        await asyncio.sleep(seconds)
        await group.say(b"stop")
        reports = await group.reports()
        wall = loop.time() - start
        outcome.server_cpu = (target.server.cpu_seconds() - cpu0) / wall
        outcome.machine_cpu = (machine_busy() - busy0) / wall
        cpu_used = outcome.server_cpu * wall
    finally:
        group.kill()
    _fill(outcome, reports)
    outcome.client_cpu = sum(r.cpu for r in reports) / wall
    if subscriber is not None:
        # The fan-out follows the commit: give the last events a moment to arrive.
        for _ in range(50):
            if received[0] >= outcome.acked:
                break
            await asyncio.sleep(0.1)
        subscriber.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await subscriber
        outcome.delivered = received[0]
    outcome.stored = await count_rows(target.store_url, table_name) - before
    outcome.server_cpu_per_post = cpu_used / max(1, outcome.acked)
    return outcome


def _fill(outcome: Outcome, reports: list[Report]) -> None:
    outcome.acked = sum(r.acked for r in reports)
    errors: Counter[str] = Counter()
    bins: Counter[int] = Counter()
    for report in reports:
        errors.update(report.errors)
        bins.update(report.bins)
    outcome.errors = dict(errors.most_common(4))
    first = min(r.first for r in reports)
    last = max(r.last for r in reports)
    outcome.rate = outcome.acked / (last - first) if last > first else 0.0
    if bins:
        start = int(first / BIN)
        outcome.series = [
            ((b - start) * BIN, bins.get(b, 0) / BIN) for b in range(start, max(bins) + 1)
        ]


def jobs_for(target: Target, transport: str, load: Load, source_base: int) -> list[Job]:
    share = math.ceil(len(target.devices) / load.processes)
    return [
        Job(
            url=target.server.base_url,
            transport=transport,
            devices=target.devices[k * share : (k + 1) * share],
            token=target.token,
            window=load.window if transport != "http" else 1,
            source=f"127.0.{source_base + k}.1",
        )
        for k in range(load.processes)
    ]


async def _one(kind: str, transport: str, store: str, load: Load) -> Outcome:
    label = "Tether" if kind == "tether" else "raw aiohttp + driver"
    outcome = Outcome(label, transport, store)
    make = tether if kind == "tether" else raw
    async with make(store, load.devices) as target:
        jobs = jobs_for(target, transport, load, 30)
        await measure(target, outcome, jobs, load.seconds, "notifications", fan_out=True)
        if outcome.errors and kind == "tether":
            assert isinstance(target.server, ServerProcess)
            print(f"  errors {outcome.errors}; server log tail:\n{target.server.output()[-1500:]}")
    print(
        f"  {label} {transport} {store}: {outcome.rate:,.0f}/s acked, {outcome.stored:,} stored "
        f"of {outcome.acked:,}, {outcome.delivered:,} fanned out, errors {outcome.errors}"
    )
    return outcome


async def run(load: Load, machine: Machine, command: str, postgres: bool = True) -> str:
    stores = ("sqlite", "postgresql") if postgres else ("sqlite",)
    pairs: list[tuple[Outcome, Outcome]] = []
    for transport in load.transports:
        for store in stores:
            print(f"ingest: {transport} on {store}, {load.devices:,} devices, {load.seconds:g} s")
            base = await _one("raw", transport, store, load)
            ours = await _one("tether", transport, store, load)
            pairs.append((base, ours))
    return report(pairs, load, machine, command)


def verdict(o: Outcome) -> str:
    holds = o.rate >= GOAL_INGEST and o.lost == 0 and o.delivered >= o.acked and not o.errors
    return ("**holds**" if holds else "**missed**") + (
        f": {o.rate:,.0f}/s (>= 20,000), {o.stored:,} rows stored for {o.acked:,} "
        f"acknowledged, {o.delivered:,} fanned out, errors {o.errors or 'none'}"
    )


def report(pairs: list[tuple[Outcome, Outcome]], load: Load, machine: Machine, command: str) -> str:
    rows = []
    for base, ours in pairs:
        name = f"{'WebSocket' if ours.transport == 'ws' else 'HTTP'}, {ours.store}"
        rows.append(
            [
                name,
                f"{base.rate:,.0f}",
                f"{ours.rate:,.0f}",
                ratio(ours.rate, base.rate),
                f"{ours.stored:,} / {ours.acked:,} / {ours.delivered:,}",
                f"{base.server_cpu_per_post * 1e6:,.0f} / {ours.server_cpu_per_post * 1e6:,.0f}",
                f"{base.server_cpu:.0%} / {ours.server_cpu:.0%}",
                f"{base.client_cpu:.0%} / {ours.client_cpu:.0%}",
                f"{ours.machine_cpu:.0%}",
            ]
        )
    header = [
        "transport, store",
        "raw (posts/s)",
        "Tether (posts/s)",
        "Tether / raw",
        "Tether stored / acked / fanned out",
        "server CPU per post, raw / Tether (us)",
        "server CPU, raw / Tether",
        "load generators' CPU, raw / Tether",
        "machine busy (Tether run)",
    ]
    groups = [f"{'WS' if o.transport == 'ws' else 'HTTP'} {o.store}" for _, o in pairs]
    picture = chart.bars(
        "p6a-ingest",
        title=f"P6a: notifications stored per second, {load.devices:,} devices",
        y_label="stored and acknowledged per second",
        groups=groups,
        series={
            "Tether": [o.rate for _, o in pairs],
            "raw aiohttp + driver": [b.rate for b, _ in pairs],
        },
    )
    verdicts = "".join(
        f"- {'WebSocket' if o.transport == 'ws' else 'HTTP'}, {o.store}: {verdict(o)}\n"
        for _, o in pairs
    )
    return (
        "## P6a: telemetry ingest from 1,000 devices\n\n"
        "Goal (issue 17, P6a): >= 20,000 notifications/s per process, stored and fanned "
        "out, over the device WebSocket and over HTTP, on SQLite and PostgreSQL. Anchor: "
        "ThingsBoard publishes 5,000 msg/s on 2 vCPU, database included.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.devices:,} devices in {load.processes} load-generator processes "
        f"(each from its own 127.x source address), {load.seconds:g} s per run. WebSocket: "
        f"each device keeps {load.window} `notification` frames with a `requestId` "
        "unanswered at most. HTTP: each device posts one at a time on its keep-alive "
        "connection. One client WebSocket subscribed to all notifications counts the "
        "fan-out. Every run gets a fresh store (a new SQLite file, or a new PostgreSQL "
        "database).\n\n"
        + table(header, rows)
        + f"\n{picture}\n\nGoal (per process, stored and fanned out):\n\n"
        + verdicts
        + "\nHow to read it: a post counts once the server answered it, which Tether does "
        "only after the row committed; *stored* is counted in the database afterwards "
        "and must equal *acked*. The baseline (`bench/rawstore.py`) stores too, with the "
        "same tables, indexes and group commit written directly against aiosqlite / "
        "asyncpg, and fans out to its one subscriber, so the ratio is Tether's "
        "application cost on top of the same database work. Server CPU per post does not "
        "depend on how busy the shared machine was; posts/s does.\n"
    )
