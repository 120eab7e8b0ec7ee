"""Scenario ``connections`` (issue 17, P1): idle device WebSockets held by one process.

For each dialect (native device WS, eWeLink ``/api/ws`` after ``dispatch`` and
``register``, DeviceHive ``/api/websocket`` after ``authenticate`` and
``command/subscribe``), a fresh server of each kind is filled with idle devices in
steps up to the target, and its resident memory is read from ``/proc`` at each step:

* **raw aiohttp** (``bench/rawws.py``): the same wire steps, a token check and a dict;
* **Tether** (``tether serve``, SQLite): the devices are provisioned into its database
  in one transaction before the run (:func:`bench.fleet.provision`).

RSS per connection is ``(RSS(n) - RSS(warm)) / (n - warm)``, where ``warm`` is a first
batch of connections that loads lazily imported code and fills first-use caches; that
one-off cost is not a per-connection cost. Both servers get the same listen backlog and
the same client processes (several source addresses in 127.0.0.0/8, fd limits raised).
``BENCH_TETHER_ENV='{"TETHER_X": "..."}'`` adds settings to the Tether under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import aiohttp

from bench.common import Machine, ServerProcess, Tether, now_utc, table
from bench.fleet import (
    BACKLOG,
    Clients,
    Target,
    fd_limit,
    new_secret,
    open_fds,
    provision,
    raise_fd_limit,
    raw_server,
    rss_kib,
)

GOAL_RATIO = 1.5
GOAL_KIB = 32.0
WARM = 200
#: fds a server needs besides its device sockets (listeners, database, epoll, pipes).
SPARE_FDS = 100
#: Seconds to let a server settle after a step before reading its memory.
SETTLE = 2.0
LABELS = {"native": "native WS", "ewelink": "eWeLink", "devicehive": "DeviceHive"}


@dataclass
class Run:
    system: str
    dialect: str
    rss_warm: int = 0
    #: (connections held, RSS in KiB) after each step.
    samples: list[tuple[int, int]] = field(default_factory=list)
    held: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    open_seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    server_fds: int = 0

    def per_conn(self, held: int, rss: int) -> float:
        return (rss - self.rss_warm) / (held - WARM) if held > WARM else float("nan")

    @property
    def kib(self) -> float:
        return self.per_conn(*self.samples[-1]) if self.samples else float("nan")


def extra_tether_env() -> dict[str, str]:
    """``TETHER_*`` settings for the Tether under test from ``BENCH_TETHER_ENV`` (JSON),
    to measure a setting's effect (e.g. ``{"TETHER_GC_THRESHOLD": "0"}``)."""
    extra: dict[str, str] = json.loads(os.environ.get("BENCH_TETHER_ENV") or "{}")
    return extra


async def tether_server(dialect: str, secret: str, count: int) -> tuple[Tether, str]:
    """A Tether with ``count`` devices of ``dialect``; returns it and a DeviceHive token."""
    env = {"TETHER_LISTEN_BACKLOG": str(BACKLOG), **extra_tether_env()}
    server = Tether("tether", env=env)
    await server.start()
    async with aiohttp.ClientSession(base_url=server.base_url) as session:
        async with session.post(
            "/api/v1/auth/token", json={"login": "admin", "password": server.password}
        ) as response:
            token = str((await response.json())["accessToken"])
        owner_id = None
        if dialect == "ewelink":
            headers = {"Authorization": f"Bearer {token}"}
            body = {"login": "bench@example.com", "password": "bench-password"}
            async with session.post("/api/v1/users", json=body, headers=headers) as response:
                owner_id = int((await response.json())["id"])
    database = f"sqlite+aiosqlite:///{server._data_dir.name}/tether.db"
    seconds = await provision(database, dialect, count, secret, owner_id)
    print(f"  provisioned {count:,} {dialect} devices in {seconds:.1f} s")
    return server, token


async def fill(
    server: ServerProcess,
    run: Run,
    target: Target,
    steps: list[int],
    processes: int,
    in_flight: int,
) -> None:
    assert server.process is not None
    pid = server.process.pid
    clients = Clients(target, processes, in_flight)
    await clients.start()
    try:
        cpu0 = server.cpu_seconds()
        t0 = time.monotonic()
        held = opened = 0
        for step in [WARM, *steps]:
            answers = await clients.open_range(opened, step)
            opened = step
            held = sum(a["held"] for a in answers)
            run.failed += sum(a["failed"] for a in answers)
            run.client_cpu += sum(a["cpu"] for a in answers)
            for answer in answers:
                for kind, count in answer["errors"].items():
                    run.errors[kind] = run.errors.get(kind, 0) + count
            await asyncio.sleep(SETTLE)
            rss = rss_kib(pid)
            if step == WARM:
                run.rss_warm = rss
                continue
            run.samples.append((held, rss))
            print(
                f"  {run.system} {run.dialect}: {held:,} held, RSS {rss / 1024:.0f} MiB, "
                f"{run.per_conn(held, rss):.1f} KiB/conn"
            )
        run.open_seconds = time.monotonic() - t0
        run.server_cpu = server.cpu_seconds() - cpu0
        final = await clients.command([{"op": "open", "ids": []}] * processes)
        run.held = sum(a["held"] for a in final)
        run.server_fds = open_fds(pid)
    finally:
        await clients.stop()


async def measure(
    dialect: str, system: str, top: int, steps: list[int], processes: int, in_flight: int
) -> Run:
    secret = new_secret()
    run = Run(system=system, dialect=dialect)
    if system == "raw":
        dh_token = new_secret()
        server: ServerProcess = raw_server(secret, dh_token)
        await server.start()
    else:
        server, dh_token = await tether_server(dialect, secret, top)
    try:
        target = Target(server.base_url, dialect, secret, dh_token)
        await fill(server, run, target, steps, processes, in_flight)
    finally:
        server.stop()
    return run


def plan_steps(top: int) -> list[int]:
    base = [2_500, 5_000, 10_000, 15_000]
    return [s for s in base if s < top] + [top]


async def run(
    devices: int,
    dialects: list[str],
    processes: int,
    in_flight: int,
    machine: Machine,
    command: str,
) -> str:
    raise_fd_limit()
    top = min(devices, fd_limit() - SPARE_FDS)
    steps = plan_steps(top)
    print(f"connections: up to {top:,} idle sockets per server ({devices:,} asked), {dialects}")
    results: dict[str, tuple[Run, Run]] = {}
    for dialect in dialects:
        raw = await measure(dialect, "raw", top, steps, processes, in_flight)
        ours = await measure(dialect, "tether", top, steps, processes, in_flight)
        results[dialect] = (raw, ours)
    return render(results, devices, top, processes, in_flight, machine, command)


def render(
    results: dict[str, tuple[Run, Run]],
    asked: int,
    top: int,
    processes: int,
    in_flight: int,
    machine: Machine,
    command: str,
) -> str:
    from bench import chart

    rows = []
    verdicts = []
    series: dict[str, list[tuple[float, float]]] = {}
    for dialect, (raw, ours) in results.items():
        label = LABELS[dialect]
        ratio = ours.kib / raw.kib if raw.kib > 0 else float("nan")
        holds = ours.held >= top and ratio <= GOAL_RATIO and ours.kib <= GOAL_KIB
        verdicts.append(f"{label}: **{'holds' if holds else 'missed'}**")
        rows.append(
            [
                label,
                f"{raw.held:,} / {ours.held:,}",
                f"{raw.kib:.1f}",
                f"{ours.kib:.1f}",
                f"{ratio:.2f}x",
                f"{raw.open_seconds:.0f} / {ours.open_seconds:.0f}",
                f"{raw.server_cpu:.1f} / {ours.server_cpu:.1f}",
                f"{raw.failed} / {ours.failed}",
            ]
        )
        for run in (ours, raw):
            name = f"{'Tether' if run is ours else 'raw aiohttp'} {label}"
            series[name] = [(h, run.per_conn(h, r)) for h, r in run.samples]
    ordered = {k: series[k] for k in sorted(series, key=lambda k: (k.startswith("raw"), k))}
    picture = chart.lines(
        "p1-rss-per-connection",
        title="P1: server RSS per idle device WebSocket",
        x_label="idle connections held",
        y_label="KiB per connection",
        series=ordered,
    )
    errors = "".join(
        f"- {LABELS[d]}, {r.system}: {json.dumps(r.errors)}\n"
        for d, pair in results.items()
        for r in pair
        if r.errors
    )
    capped = (
        f"{top:,} (the {asked:,} asked for is above this container's hard limit of "
        f"{fd_limit():,} open files per process, which no unprivileged process can raise; "
        f"{SPARE_FDS} are left for the server's own files)"
        if top < asked
        else f"{top:,}"
    )
    return (
        "## P1: idle device WebSockets held in one process\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        + (
            f"- Tether settings beyond its defaults: `{json.dumps(extra_tether_env())}`\n"
            if extra_tether_env()
            else ""
        )
        + f"- Goal: 20,000 held; RSS per connection <= {GOAL_RATIO}x raw aiohttp's in the same "
        f"run and <= {GOAL_KIB:g} KiB. Verdict: {'; '.join(verdicts)}.\n"
        f"- Connections per server: {capped}. Fresh server per dialect and system; "
        f"{processes} client processes, each from its own source address in "
        f"127.0.0.0/8, at most {in_flight} handshakes in flight each; listen backlog "
        f"{BACKLOG} on both servers. RSS per connection = (RSS(n) - RSS({WARM})) / "
        f"(n - {WARM}), read from `/proc/<pid>/status` {SETTLE:g} s after each step.\n\n"
        + table(
            [
                "dialect",
                "held raw / Tether",
                "raw KiB/conn",
                "Tether KiB/conn",
                "ratio",
                "fill s raw / Tether",
                "server CPU s raw / Tether",
                "failed raw / Tether",
            ],
            rows,
        )
        + "\n"
        + picture
        + "\n"
        + ("\nClient-side errors that were retried:\n\n" + errors if errors else "")
    )
