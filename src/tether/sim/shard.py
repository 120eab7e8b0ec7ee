"""One process's part of the fleet: start its devices, drive the load, count everything.

A shard starts its drivers at its share of the connect rate, then runs three paced
loops until the run's deadline: telemetry (each device every ``telemetry_interval``),
commands (its share of ``command_rate``, each through the native API with ``wait``, to a
random connected device) and churn (its share of ``churn_rate``). Pacing is by due count
on a 10 ms tick, so a late tick catches up instead of losing load, and every loop keeps
a bound on what it has in flight. A tick every :data:`PROGRESS_INTERVAL` counts the
connected devices and the sessions dropped since the last tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import msgspec

from tether.sim.client import ApiClient, ApiError, Credentials
from tether.sim.drivers import DRIVERS, Context, Driver, OpenGateService
from tether.sim.plan import Plan
from tether.sim.provision import DeviceSpec
from tether.sim.resources import Meter, Resources, raise_fd_limit
from tether.sim.stats import Histogram, Tally, error_kind

#: Pacing tick of the load loops, seconds.
TICK = 0.01
PROGRESS_INTERVAL = 0.5
#: The event-loop lag probe's period, seconds.
LAG_TICK = 0.05
#: Seconds a device gets to come up before its connect counts as timed out.
CONNECT_TIMEOUT = 30.0
#: Telemetry messages in flight per device at most (a slower server gets fewer).
TELEMETRY_IN_FLIGHT = 2
TERMINAL_STATES = frozenset({"succeeded", "failed", "expired", "timed_out", "cancelled"})
#: The agents' own loggers: a simulated fleet logs nothing per message.
AGENT_LOGGERS = (
    "tether.agent",
    "tether.devicehive.agent",
    "tether.ewelink.agent",
    "tether.controlid.agent",
    "tether.agent.opengate",
    "tether.agent.keepalive",
)


class Job(msgspec.Struct, kw_only=True):
    """What a shard runs: its devices and what they share (sent to a worker as JSON)."""

    plan: Plan
    credentials: Credentials
    devices: list[DeviceSpec]
    #: This shard's share (1/processes) of the run's rates.
    share: float = 1.0
    index: int = 0
    refresh_token: str | None = None
    #: Where this shard serves its OpenGate devices' operation requests.
    opengate_host: str = "127.0.0.1"
    opengate_port: int = 0
    #: How long the load runs, seconds from the shard's start.
    duration: float = 0.0


class Progress(msgspec.Struct, kw_only=True, tag="progress"):
    """A shard's counters now (cumulative), sent every PROGRESS_INTERVAL."""

    index: int
    elapsed: float
    devices: int
    started: int
    connected: int
    connects: int
    drops: int
    telemetry_sent: int
    commands_sent: int
    commands_succeeded: int
    errors: int
    #: Devices the server reports online (all it shows this login), when asked.
    online: int | None = None


class Result(msgspec.Struct, kw_only=True, tag="result"):
    """A shard's final tally and resource use."""

    index: int
    tally: Tally
    resources: Resources
    connected_at_end: int
    connected_by_dialect: dict[str, int]
    #: How long the load actually ran (shorter than planned when stopped early).
    load_seconds: float = 0.0
    warnings: list[str] = []


class Shard:
    def __init__(
        self,
        job: Job,
        on_progress: Callable[[Progress], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.job = job
        #: Set to end the load early (Ctrl-C); the result still counts what ran.
        self.stop = stop or asyncio.Event()
        self.plan = job.plan
        self.tally = Tally()
        self.on_progress = on_progress
        self.drivers: dict[str, Driver] = {}
        self.specs = {spec.id: spec for spec in job.devices}
        self._churning: set[str] = set()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Commands and telemetry in flight (drained at the end of the run).
        self._load: set[asyncio.Task[Any]] = set()
        self._was_up: set[str] = set()
        self._telemetry_busy: dict[str, int] = {}
        #: Telemetry in flight by device, cancelled when churn takes the device away.
        self._sending: dict[str, set[asyncio.Task[None]]] = {}
        self._commands_in_flight = 0
        self._seq = 0
        #: How late the loop woke the lag probe, seconds.
        self.lag = Histogram()
        #: Telemetry the self-reporting agents sent: of stopped drivers, and in total.
        self._reported_done: dict[str, int] = {}
        self._reported = 0

    def _spawn(self, coro: Coroutine[Any, Any, None], *, load: bool = False) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        for bag in (self._tasks, self._load) if load else (self._tasks,):
            bag.add(task)
            task.add_done_callback(bag.discard)
        return task

    async def run(self) -> Result:
        for name in AGENT_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        started = time.monotonic()
        meter = Meter(started)
        soft, wanted = raise_fd_limit(2 * len(self.job.devices))
        warnings = []
        if soft < wanted:
            warnings.append(
                f"process {self.job.index}: the descriptor limit is {soft}, under the {wanted} "
                "its devices may need; raise 'ulimit -n' or use more --processes"
            )
        plan = self.plan
        addresses: list[str | None] = list(plan.source_addresses) or [None]
        sessions = [self._session(address) for address in addresses]
        opengate = None
        if any(spec.dialect == "opengate" for spec in self.job.devices):
            opengate = OpenGateService(self.job.opengate_host, self.job.opengate_port)
            await opengate.start()
        self.ctx = Context(plan, self.tally, sessions, self.job.refresh_token, opengate)
        api_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False)
        )
        self.api = ApiClient(plan.url, self.job.credentials, api_session)
        deadline = started + self.job.duration
        loops = [
            asyncio.create_task(self._ramp()),
            asyncio.create_task(self._telemetry_loop(started)),
            asyncio.create_task(self._command_loop(started)),
            asyncio.create_task(self._churn_loop(started)),
            asyncio.create_task(self._progress_loop(started)),
            asyncio.create_task(self._lag_probe()),
        ]
        load_seconds = 0.0
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, deadline - time.monotonic()))
        finally:
            load_seconds = time.monotonic() - started
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._drain()
            connected = {d.spec.id: d.dialect for d in self.drivers.values() if d.connected}
            self._stopping = True
            await asyncio.gather(*(d.stop() for d in self.drivers.values()))
            for dialect, count in self._self_reported().items():
                self.tally.telemetry_done(dialect, None, count)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if opengate is not None:
                await opengate.stop()
            await api_session.close()
            for session in sessions:
                await session.close()
        by_dialect: dict[str, int] = {}
        for dialect in connected.values():
            by_dialect[dialect] = by_dialect.get(dialect, 0) + 1
        return Result(
            index=self.job.index,
            tally=self.tally,
            resources=meter.read(time.monotonic(), self.lag),
            connected_at_end=len(connected),
            connected_by_dialect=by_dialect,
            load_seconds=round(load_seconds, 3),
            warnings=warnings,
        )

    @staticmethod
    def _session(address: str | None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0, local_addr=(address, 0) if address else None, ttl_dns_cache=None
        )
        timeout = aiohttp.ClientTimeout(total=60, sock_connect=15)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def _drain(self) -> None:
        """Let the commands and telemetry in flight finish, each within its own request
        timeout; one still out after that is counted, never silently dropped."""
        if self._load:
            await asyncio.wait(set(self._load), timeout=self.plan.command_timeout + 11)
        if self._commands_in_flight:
            self.tally.errors["command_unfinished"] = self._commands_in_flight
        unanswered = sum(self._telemetry_busy.values())
        if unanswered:
            self.tally.errors["telemetry_unfinished"] = unanswered

    # --- devices ----------------------------------------------------------------------------

    def _start(self, spec: DeviceSpec) -> None:
        driver = DRIVERS[spec.dialect](spec, self.ctx)
        self.drivers[spec.id] = driver
        driver.start()
        self._spawn(self._await_connect(driver))

    async def _await_connect(self, driver: Driver) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await driver.event.wait()
        except TimeoutError:
            self.tally.error(f"{driver.dialect}_connect_timeout")
            return
        self.tally.connects += 1
        self.tally.connect_time.record(time.monotonic() - driver.started)

    async def _ramp(self) -> None:
        rate = self.plan.connect_rate * self.job.share
        order = list(self.job.devices)
        started = time.monotonic()
        for n, spec in enumerate(order):
            if rate > 0:
                due = started + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._start(spec)

    def _connected(self) -> list[Driver]:
        return [d for d in self.drivers.values() if d.connected and d.spec.id not in self._churning]

    # --- paced loops ------------------------------------------------------------------------

    async def _paced(self, started: float, rate: float, fire: Callable[[int], None]) -> None:
        """``rate`` events a second from ``started`` on: each tick, ``fire(n)`` with the
        ``n`` now due (a late tick catches up)."""
        if rate <= 0:
            return
        done = 0
        while True:
            due = int((time.monotonic() - started) * rate)
            if due > done:
                fire(due - done)
                done = due
            await asyncio.sleep(TICK)

    async def _telemetry_loop(self, started: float) -> None:
        interval = self.plan.telemetry_interval
        senders = [s for s in self.job.devices if not DRIVERS[s.dialect].self_reporting]
        if interval <= 0 or not senders:
            return
        cursor = 0

        def fire(count: int) -> None:
            nonlocal cursor
            for _ in range(count):
                spec = senders[cursor % len(senders)]
                cursor += 1
                driver = self.drivers.get(spec.id)
                if driver is None or not driver.connected or spec.id in self._churning:
                    continue
                if self._telemetry_busy.get(spec.id, 0) >= TELEMETRY_IN_FLIGHT:
                    self.tally.telemetry_skipped += 1
                    continue
                task = self._spawn(self._send_telemetry(driver), load=True)
                sending = self._sending.setdefault(spec.id, set())
                sending.add(task)
                task.add_done_callback(sending.discard)

        await self._paced(started, len(senders) / interval, fire)

    async def _send_telemetry(self, driver: Driver) -> None:
        key = driver.spec.id
        self._telemetry_busy[key] = self._telemetry_busy.get(key, 0) + 1
        self._seq += 1
        began = time.monotonic()
        try:
            await driver.telemetry(self._seq)
        except Exception as error:
            # A device stopped on purpose (churn, the end) loses what it was sending.
            if not (self._stopping or key in self._churning or self.drivers[key] is not driver):
                self.tally.error(error_kind(f"{driver.dialect}_telemetry", error))
        else:
            self.tally.telemetry_done(driver.dialect, time.monotonic() - began)
        finally:
            self._telemetry_busy[key] -= 1

    async def _command_loop(self, started: float) -> None:
        limit = max(1, int(self.plan.max_in_flight * self.job.share))
        turn = 0

        def fire(count: int) -> None:
            nonlocal turn
            by_dialect: dict[str, list[Driver]] = {}
            for driver in self._connected():
                by_dialect.setdefault(driver.dialect, []).append(driver)
            if not by_dialect:
                return
            names = sorted(by_dialect)
            for _ in range(count):
                if self._commands_in_flight >= limit:
                    self.tally.commands_skipped += 1
                    continue
                # Each dialect in turn, a random device of it: every dialect gets its
                # share of the load however few devices it has.
                turn += 1
                target = random.choice(by_dialect[names[turn % len(names)]])
                self._commands_in_flight += 1  # counted now: the bound holds within a tick
                self._spawn(self._command(target), load=True)

        await self._paced(started, self.plan.command_rate * self.job.share, fire)

    async def _command(self, driver: Driver) -> None:
        """One command, already counted in flight by the caller."""
        self._seq += 1
        name, parameters = driver.command(self._seq)
        timeout = self.plan.command_timeout
        body = {"name": name, "parameters": parameters, "lifetime": timeout, "timeout": timeout}
        self.tally.commands_sent += 1
        began = time.monotonic()
        try:
            status, command = await self.api.call_status(
                "POST",
                f"/api/v1/devices/{driver.spec.id}/commands",
                body=body,
                params={"wait": f"{timeout:g}"},
                timeout=timeout + 10,
            )
        except ApiError as error:
            self.tally.error(f"command_http_{error.http_status}")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self.tally.error(error_kind("command", error))
        else:
            state = command.get("state") if isinstance(command, dict) else None
            if state == "succeeded":
                self.tally.command_done(driver.dialect, time.monotonic() - began)
            elif status == 202 or state not in TERMINAL_STATES:
                self.tally.error(f"{driver.dialect}_command_timeout")
            else:
                self.tally.error(f"{driver.dialect}_command_{state}")
        finally:
            self._commands_in_flight -= 1

    async def _churn_loop(self, started: float) -> None:
        def fire(count: int) -> None:
            candidates = self._connected()
            for driver in random.sample(candidates, min(count, len(candidates))):
                self._churning.add(driver.spec.id)
                self._spawn(self._churn(driver))

        await self._paced(started, self.plan.churn_rate * self.job.share, fire)

    async def _churn(self, driver: Driver) -> None:
        """Disconnect ``driver``'s device, wait the downtime, bring up a fresh session."""
        key = driver.spec.id
        try:
            self.tally.churned += 1
            await driver.stop()
            for task in list(self._sending.get(key, ())):
                task.cancel()  # its session is gone; an agent may wait long for a reply
            if driver.reported():
                self._reported_done[driver.dialect] = (
                    self._reported_done.get(driver.dialect, 0) + driver.reported()
                )
            self._was_up.discard(key)
            await asyncio.sleep(self.plan.churn_downtime)
            if not self._stopping:
                self._start(self.specs[key])
        finally:
            self._churning.discard(key)

    async def _lag_probe(self) -> None:
        """Time how late a 50 ms sleep wakes: a busy simulator shows here first."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            self.lag.record(time.monotonic() - before - LAG_TICK)

    async def _progress_loop(self, started: float) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            self._count()
            if self.on_progress is not None:
                self.on_progress(self.progress(time.monotonic() - started))

    def _count(self) -> None:
        """Count connected devices; a device that was up and is not (churn aside) dropped."""
        up = {key for key, driver in self.drivers.items() if driver.connected}
        for key in self._was_up - up - self._churning:
            self.tally.drops += 1
            self.tally.error(f"{self.drivers[key].dialect}_disconnected")
        self._was_up = up
        self._reported = sum(self._self_reported().values())

    def _self_reported(self) -> dict[str, int]:
        """Telemetry sent by the self-reporting agents, by dialect, churned ones included."""
        counts = dict(self._reported_done)
        for driver in self.drivers.values():
            if driver.self_reporting:
                counts[driver.dialect] = counts.get(driver.dialect, 0) + driver.reported()
        return counts

    def progress(self, elapsed: float) -> Progress:
        t = self.tally
        return Progress(
            index=self.job.index,
            elapsed=round(elapsed, 3),
            devices=len(self.job.devices),
            started=len(self.drivers),
            connected=len(self._was_up),
            connects=t.connects,
            drops=t.drops,
            telemetry_sent=t.telemetry_sent + self._reported,
            commands_sent=t.commands_sent,
            commands_succeeded=t.commands_succeeded,
            errors=t.error_count,
        )
