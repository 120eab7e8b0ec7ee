"""Scenario ``storm`` (issue 17, P5): every device drops and reconnects at once.

For each dialect (native device WS; eWeLink ``dispatch`` + ``/api/ws`` + ``register``;
DeviceHive ``authenticate`` + ``command/subscribe`` when asked), a fresh server of each
kind gets ``N`` idle devices connected. Then every client process aborts all its sockets
at the same moment (no close frame: a network cut, a NAT or gateway restart) and at once
reconnects and re-authenticates every device, at most ``in_flight`` handshakes in flight
per process, retrying failures with a short backoff, as firmware does.

Measured: the time from the cut until the last device has its authentication answer,
and until the server's registry counts all ``N`` online again (Tether: the
``tether_devices_online`` gauge, which follows presence; raw: ``GET /stats``, the size
of its dict of sockets). The baseline is ``bench/rawws.py``: the same wire steps on raw
aiohttp, a token check and a dict. Both servers get the same listen backlog.
``BENCH_TETHER_ENV`` adds settings to the Tether under test (see ``bench/connections.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass, field

import aiohttp

from bench.common import Machine, ServerProcess, metric_total, now_utc, table
from bench.connections import LABELS, SPARE_FDS, extra_tether_env, tether_server
from bench.fleet import (
    BACKLOG,
    Clients,
    Target,
    fd_limit,
    listen_overflows,
    new_secret,
    raise_fd_limit,
    raw_server,
)

GOAL_SECONDS = 20.0
GOAL_RATIO = 2.0
#: Handshakes each client process keeps in flight (connect + authenticate).
IN_FLIGHT = 250
#: Seconds between reads of the server's online count.
POLL = 0.25
#: A storm that has not recovered by then is reported as not recovered.
STORM_LIMIT = 180.0


@dataclass
class Storm:
    system: str
    dialect: str
    devices: int = 0
    fill_seconds: float = 0.0
    #: Seconds from the cut until the last device was authenticated again.
    back_seconds: float = math.nan
    #: Seconds from the cut until the registry counted every device online again.
    registry_seconds: float = math.nan
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    overflows: int = 0
    median: float = math.nan
    #: (seconds since the cut, devices authenticated again)
    connected: list[tuple[float, float]] = field(default_factory=list)
    #: (seconds since the cut, registry's online count)
    registry: list[tuple[float, float]] = field(default_factory=list)


async def online(session: aiohttp.ClientSession, server: ServerProcess, raw: bool) -> int:
    if raw:
        async with session.get(server.base_url + "/stats") as response:
            return int(json.loads(await response.read())["online"])
    return int(await metric_total(server, "tether_devices_online") or 0)


async def storm(server: ServerProcess, result: Storm, target: Target, processes: int) -> None:
    raw = result.system == "raw"
    clients = Clients(target, processes, IN_FLIGHT)
    await clients.start()
    try:
        t0 = time.monotonic()
        answers = await clients.open_range(0, result.devices)
        result.fill_seconds = time.monotonic() - t0
        held = sum(a["held"] for a in answers)
        async with aiohttp.ClientSession() as session:
            for _ in range(120):
                if await online(session, server, raw) >= held:
                    break
                await asyncio.sleep(0.5)
            print(
                f"  {result.system} {result.dialect}: {held:,} connected in "
                f"{result.fill_seconds:.1f} s; cutting them all"
            )
            await asyncio.sleep(2.0)
            cpu0 = server.cpu_seconds()
            overflows0 = listen_overflows()
            cut = time.monotonic()
            storm_task = asyncio.create_task(clients.command([{"op": "storm"}] * processes))
            while time.monotonic() - cut < STORM_LIMIT:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    count = await asyncio.wait_for(online(session, server, raw), 5)
                    now = time.monotonic() - cut
                    result.registry.append((now, count))
                    # The target is what was cut: a socket closed during the idle hold
                    # (the peer's or the server's doing) is not expected back.
                    if storm_task.done():
                        cut_count = sum(a["dropped"] for a in storm_task.result())
                        if count >= cut_count:
                            result.registry_seconds = now
                            break
                await asyncio.sleep(POLL)
            answers = await storm_task
        result.server_cpu = server.cpu_seconds() - cpu0
        result.overflows = listen_overflows() - overflows0
        times = sorted(t - cut for a in answers for t in a["times"])
        result.failed = sum(a["failed"] for a in answers)
        result.client_cpu = sum(a["cpu"] for a in answers)
        for answer in answers:
            for kind, count in answer["errors"].items():
                result.errors[kind] = result.errors.get(kind, 0) + count
        if times and not result.failed:
            result.back_seconds = times[-1]
        if times:
            result.median = times[len(times) // 2]
        result.connected = curve(times)
        print(
            f"  {result.system} {result.dialect}: {len(times):,} back in "
            f"{result.back_seconds:.1f} s (half in {result.median:.1f} s), registry "
            f"{result.registry_seconds:.1f} s, server CPU {result.server_cpu:.1f} s, listen "
            f"overflows {result.overflows:,}, failed {result.failed}, errors {result.errors}"
        )
    finally:
        await clients.stop()


def curve(times: list[float]) -> list[tuple[float, float]]:
    """Cumulative devices back, sampled every 0.1 s (and at the last one)."""
    if not times:
        return []
    points: list[tuple[float, float]] = [(0.0, 0.0)]
    index, step = 0, 0.1
    t = step
    while t < times[-1] + step:
        while index < len(times) and times[index] <= t:
            index += 1
        points.append((round(t, 3), float(index)))
        t += step
    return points


async def measure(dialect: str, system: str, devices: int, processes: int) -> Storm:
    secret = new_secret()
    result = Storm(system=system, dialect=dialect, devices=devices)
    if system == "raw":
        dh_token = new_secret()
        server: ServerProcess = raw_server(secret, dh_token)
        await server.start()
    else:
        server, dh_token = await tether_server(dialect, secret, devices)
    try:
        await storm(server, result, Target(server.base_url, dialect, secret, dh_token), processes)
    finally:
        server.stop()
    return result


async def run(
    devices: int, dialects: list[str], processes: int, machine: Machine, command: str
) -> str:
    raise_fd_limit()
    top = min(devices, fd_limit() - SPARE_FDS)
    print(f"storm: {top:,} devices per server ({devices:,} asked), {dialects}")
    results = {}
    for dialect in dialects:
        raw = await measure(dialect, "raw", top, processes)
        ours = await measure(dialect, "tether", top, processes)
        results[dialect] = (raw, ours)
    return render(results, devices, top, processes, machine, command)


def render(
    results: dict[str, tuple[Storm, Storm]],
    asked: int,
    top: int,
    processes: int,
    machine: Machine,
    command: str,
) -> str:
    from bench import chart

    rows, verdicts = [], []
    series: dict[str, list[tuple[float, float]]] = {}
    for dialect, (raw, ours) in results.items():
        label = LABELS[dialect]
        ratio = ours.back_seconds / raw.back_seconds if raw.back_seconds > 0 else math.nan
        holds = ours.back_seconds < GOAL_SECONDS and ratio <= GOAL_RATIO
        verdicts.append(f"{label}: **{'holds' if holds else 'missed'}**")
        rows.append(
            [
                label,
                f"{raw.devices:,}",
                f"{raw.median:.1f} / {ours.median:.1f}",
                f"{raw.back_seconds:.1f}",
                f"{ours.back_seconds:.1f}",
                f"{ratio:.2f}x",
                f"{raw.registry_seconds:.1f} / {ours.registry_seconds:.1f}",
                f"{raw.server_cpu:.1f} / {ours.server_cpu:.1f}",
                f"{raw.client_cpu:.1f} / {ours.client_cpu:.1f}",
                f"{raw.overflows:,} / {ours.overflows:,}",
                f"{raw.failed} / {ours.failed}",
            ]
        )
        series[f"Tether {label}"] = ours.connected
        series[f"raw aiohttp {label}"] = raw.connected
    ordered = {k: series[k] for k in sorted(series, key=lambda k: (k.startswith("raw"), k))}
    picture = chart.lines(
        "p5-reconnect-storm",
        title=f"P5: {top:,} devices reconnecting at once",
        x_label="seconds since every socket was cut",
        y_label="devices authenticated again",
        series=ordered,
    )
    errors = "".join(
        f"- {LABELS[d]}, {s.system}: {json.dumps(s.errors)}\n"
        for d, pair in results.items()
        for s in pair
        if s.errors
    )
    capped = (
        f"{top:,} (the {asked:,} asked for is above this container's hard limit of "
        f"{fd_limit():,} open files per process)"
        if top < asked
        else f"{top:,}"
    )
    return (
        "## P5: reconnect storm\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        + (
            f"- Tether settings beyond its defaults: `{json.dumps(extra_tether_env())}`\n"
            if extra_tether_env()
            else ""
        )
        + f"- Goal: 20,000 devices back in < {GOAL_SECONDS:g} s, within {GOAL_RATIO:g}x of the "
        f"raw relay in the same run. Verdict: {'; '.join(verdicts)}.\n"
        f"- Devices per server: {capped}. All connected and idle, then every client socket "
        f"is aborted at once and every device reconnects and authenticates again; "
        f"{processes} client processes (own source address each), at most {IN_FLIGHT} "
        f"handshakes in flight each, failures retried with backoff; listen backlog "
        f"{BACKLOG} on both servers. Fresh server per dialect and system.\n\n"
        + table(
            [
                "dialect",
                "devices",
                "half back s raw / Tether",
                "all back s raw",
                "all back s Tether",
                "ratio",
                "registry all online s raw / Tether",
                "server CPU s raw / Tether",
                "client CPU s raw / Tether",
                "listen overflows raw / Tether",
                "failed raw / Tether",
            ],
            rows,
        )
        + "\n"
        + picture
        + "\n"
        + ("\nClient errors (each retried):\n\n" + errors if errors else "")
    )
