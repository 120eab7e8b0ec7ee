"""A whole run: provision, split the fleet into shards, run them, summarize.

With ``processes == 1`` the one shard runs on the caller's event loop. With more, each
shard runs in a worker process (``python -m tether.sim.worker``), which gets its
:class:`~tether.sim.shard.Job` as JSON on stdin and answers with one JSON line per
progress tick and a final result line on stdout; its stderr is kept (the last lines) to
explain a worker that dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import msgspec

from tether.core.errors import TetherError
from tether.sim.client import ApiClient, ApiError, Credentials
from tether.sim.plan import DIALECTS, Plan, check
from tether.sim.provision import Cleaned, DeviceSpec, Fleet, cleanup, opengate_endpoint, provision
from tether.sim.resources import Meter
from tether.sim.shard import Job, Progress, Result, Shard
from tether.sim.stats import Tally
from tether.sim.summary import Summary, summarize

ProgressCallback = Callable[[Progress], None]
#: Seconds between two questions to the server about who is online (live display only).
ONLINE_EVERY = 2.0
#: Lines of a worker's stderr kept to explain its failure.
STDERR_KEPT = 20
#: Seconds a worker may take past the run's duration (start-up, drain, stop) before it is
#: killed.
WORKER_GRACE = 60.0

_line = msgspec.json.Decoder(Progress | Result)


class SimError(TetherError):
    """The simulator itself failed (a worker died); the message says how."""

    code = "sim_failed"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def shards(plan: Plan, fleet: Fleet) -> list[list[DeviceSpec]]:
    """Device ``n`` of each dialect goes to shard ``n % processes`` (the OpenGate
    endpoints of :func:`provision` assume it); each shard interleaves the dialects so its
    ramp starts a mix, not one dialect after another."""
    count = plan.processes
    per: list[dict[str, list[DeviceSpec]]] = [{d: [] for d in DIALECTS} for _ in range(count)]
    seen: dict[str, int] = {}
    for spec in fleet.devices:
        n = seen.get(spec.dialect, 0)
        seen[spec.dialect] = n + 1
        per[n % count][spec.dialect].append(spec)
    out = []
    for groups in per:
        mixed: list[DeviceSpec] = []
        longest = max((len(g) for g in groups.values()), default=0)
        for i in range(longest):
            mixed.extend(g[i] for g in groups.values() if i < len(g))
        out.append(mixed)
    return out


def combine(items: list[Progress]) -> Progress:
    """The fleet-wide progress: every shard's counters added up."""
    total = Progress(
        index=-1,
        elapsed=max((p.elapsed for p in items), default=0.0),
        devices=0,
        started=0,
        connected=0,
        connects=0,
        drops=0,
        telemetry_sent=0,
        commands_sent=0,
        commands_succeeded=0,
        errors=0,
    )
    for p in items:
        for name in (
            "devices",
            "started",
            "connected",
            "connects",
            "drops",
            "telemetry_sent",
            "commands_sent",
            "commands_succeeded",
            "errors",
        ):
            setattr(total, name, getattr(total, name) + getattr(p, name))
    return total


async def run(
    plan: Plan,
    credentials: Credentials,
    *,
    on_progress: ProgressCallback | None = None,
    callback_host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
) -> Summary:
    """Run ``plan`` against its server and return the summary.

    ``callback_host`` is the address the server reaches this machine at: OpenGate
    devices serve the platform's operation requests there. Setting ``stop`` ends the load
    early; the summary then covers what ran.
    """
    stop = stop or asyncio.Event()
    check(plan)
    started_at = datetime.now(UTC)
    began = time.monotonic()
    meter = Meter(began)
    ports = (
        [free_port(callback_host) for _ in range(plan.processes)]
        if ("opengate" in plan.mix)
        else [0] * plan.processes
    )
    async with aiohttp.ClientSession() as session:
        api = ApiClient(plan.url, credentials, session)
        endpoints = [opengate_endpoint(callback_host, p) for p in ports if p]
        fleet = await provision(plan, api, endpoints, time.monotonic)
        if on_progress is None:
            results = await _run_shards(plan, credentials, fleet, ports, callback_host, None, stop)
        else:
            online = ServerView(api)
            watching = asyncio.create_task(online.watch())
            try:
                results = await _run_shards(
                    plan,
                    credentials,
                    fleet,
                    ports,
                    callback_host,
                    online.adding(on_progress),
                    stop,
                )
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
    processes = [r.resources for r in results]
    if len(results) > 1:  # the coordinating process too, when it is not the one shard
        processes.append(meter.read(time.monotonic()))
    tally = Tally()
    by_dialect: dict[str, int] = {}
    warnings: list[str] = []
    for result in results:
        tally.merge(result.tally)
        warnings.extend(result.warnings)
        for name, n in result.connected_by_dialect.items():
            by_dialect[name] = by_dialect.get(name, 0) + n
    return summarize(
        plan,
        started_at,
        time.monotonic() - began - fleet.seconds,
        max(r.load_seconds for r in results),
        fleet.seconds,
        tally,
        by_dialect,
        processes,
        warnings,
    )


class ServerView:
    """How many devices the server reports online, asked every :data:`ONLINE_EVERY` s
    (``GET /api/v1/fleet``) while a live display wants it."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.online: int | None = None

    async def watch(self) -> None:
        while True:
            try:
                fleet = await self.api.call("GET", "/api/v1/fleet", params={"minutes": "1"})
                self.online = sum(int(row["online"]) for row in fleet["devices"])
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError, KeyError, TypeError):
                self.online = None  # unknown now; the display says so
            await asyncio.sleep(ONLINE_EVERY)

    def adding(self, on_progress: ProgressCallback) -> ProgressCallback:
        def report(progress: Progress) -> None:
            on_progress(msgspec.structs.replace(progress, online=self.online))

        return report


async def _run_shards(
    plan: Plan,
    credentials: Credentials,
    fleet: Fleet,
    ports: list[int],
    callback_host: str,
    on_progress: ProgressCallback | None,
    stop: asyncio.Event,
) -> list[Result]:
    jobs = [
        Job(
            plan=plan,
            credentials=credentials,
            devices=devices,
            share=1 / plan.processes,
            index=index,
            refresh_token=fleet.refresh_token,
            opengate_host=callback_host,
            opengate_port=ports[index],
            duration=plan.duration,
        )
        for index, devices in enumerate(shards(plan, fleet))
    ]
    if plan.processes == 1:
        return [await Shard(jobs[0], on_progress, stop).run()]
    return await _run_workers(jobs, on_progress, stop)


async def remove(url: str, name: str, credentials: Credentials) -> Cleaned:
    """Delete what runs named ``name`` provisioned (see :func:`provision.cleanup`)."""
    async with aiohttp.ClientSession() as session:
        return await cleanup(ApiClient(url, credentials, session), name)


async def _run_workers(
    jobs: list[Job], on_progress: ProgressCallback | None, stop: asyncio.Event
) -> list[Result]:
    latest: dict[int, Progress] = {}

    def heard(progress: Progress) -> None:
        latest[progress.index] = progress
        if on_progress is not None:
            on_progress(combine(list(latest.values())))

    workers = [asyncio.create_task(_worker(job, heard, stop)) for job in jobs]
    try:
        return list(await asyncio.gather(*workers))
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _worker(job: Job, heard: ProgressCallback, stop: asyncio.Event) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tether.sim.worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=16 * 1024 * 1024,
    )
    assert process.stdin
    assert process.stdout
    stderr: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT)

    async def keep_stderr() -> None:
        assert process.stderr
        async for raw in process.stderr:
            stderr.append(raw.decode(errors="replace").rstrip())

    running = asyncio.Event()

    async def pass_stop() -> None:
        await stop.wait()
        # Only once it runs its shard (its first progress line): before, it is still
        # importing and has no handler yet, and SIGTERM would kill it without a result.
        await running.wait()
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # the worker ends its load early

    keeper = asyncio.create_task(keep_stderr())
    stopper = asyncio.create_task(pass_stop())
    result: Result | None = None
    try:
        process.stdin.write(msgspec.json.encode(job))
        await process.stdin.drain()
        process.stdin.close()
        async with asyncio.timeout(job.duration + WORKER_GRACE):
            async for raw in process.stdout:
                message = _line.decode(raw)
                if isinstance(message, Progress):
                    running.set()
                    heard(message)
                else:
                    result = message
            await process.wait()
            await keeper
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        keeper.cancel()
        stopper.cancel()
    if result is None:
        tail = "\n".join(stderr) or "(nothing on stderr)"
        raise SimError(f"worker {job.index} exited {process.returncode} without a result:\n{tail}")
    return result
