"""One simulated device per driver, each wrapping its dialect's real agent.

A driver owns one agent instance (the same classes ``tether agent <dialect>`` runs):
:meth:`Driver.start` runs it in a task, :attr:`Driver.connected` says whether its session
is up as the agent sees it, :meth:`Driver.telemetry` sends one telemetry message the way
that protocol does, and :meth:`Driver.command` names a command the agent executes
successfully. A driver is used once: churn stops it and starts a fresh one for the same
device, as a rebooted device would come back.

What "telemetry" is per dialect (the protocol's own way of reporting data):

* native: a ``notification`` frame on the device WebSocket, or ``POST .../notifications``;
* DeviceHive: ``POST /device/{id}/notification``;
* eWeLink: an ``update`` of the device's params (stored as an ``update`` notification);
* Control iD: a Monitor ``door`` event;
* OpenGate: ``collect/iot`` with one datapoint;
* InfiniteClouds: the agent's own ``statistics`` message every telemetry interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import aiohttp
from aiohttp import web

from tether.api.agent import NativeAgent
from tether.core.backoff import Backoff
from tether.dialects.controlid.agent import Terminal
from tether.dialects.devicehive.agent import DeviceHiveAgent
from tether.dialects.ewelink.agent import EmulatedSonoff, RegisterRefused
from tether.dialects.infiniteclouds.agent import AgentConfig as KeepaliveConfig
from tether.dialects.infiniteclouds.agent import KeepaliveAgent
from tether.dialects.opengate.agent import AgentConfig as OpenGateConfig
from tether.dialects.opengate.agent import OpenGateAgent
from tether.sim.plan import Plan
from tether.sim.provision import DeviceSpec
from tether.sim.stats import Tally, error_kind

#: Seconds a stopping driver gets to close its session before its task is cancelled.
STOP_GRACE = 3.0
#: Long-poll waits of the HTTP transports, seconds (short: a stop never waits long).
POLL_WAIT = 10
#: Reconnect delays of the drivers that reconnect themselves (eWeLink).
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0


@dataclass
class Context:
    """What the drivers of one process share."""

    plan: Plan
    tally: Tally
    sessions: list[aiohttp.ClientSession]
    refresh_token: str | None = None
    opengate: OpenGateService | None = None
    _next: int = 0

    def session(self) -> aiohttp.ClientSession:
        """The next session, round robin (one per source address)."""
        self._next = (self._next + 1) % len(self.sessions)
        return self.sessions[self._next]

    def filler(self, seq: int) -> str:
        """``payload_bytes`` of telemetry filler, different on every message."""
        size = self.plan.payload_bytes
        return f"{seq:08d}{'x' * (size - 8)}" if size > 8 else f"{seq:08d}"[-size:] if size else ""


class NotTaken(Exception):
    """A message the server answered with an error, or not within the agent's limit."""

    kind = "not_taken"


class Driver:
    """Base of the per-dialect drivers; see the module docstring."""

    dialect: ClassVar[str]
    #: True when the agent sends its telemetry by itself (InfiniteClouds statistics).
    self_reporting: ClassVar[bool] = False
    #: True when a stopping agent may sit in a held long poll: cancel it at once rather
    #: than wait for the server's answer.
    cancel_on_stop: ClassVar[bool] = False

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        self.spec = spec
        self.ctx = ctx
        self.session = ctx.session()
        self._task: asyncio.Task[None] | None = None
        #: When :meth:`start` was called (monotonic), for the connect time.
        self.started = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._guarded())

    async def _guarded(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the device is down; the tally says why
            self.ctx.tally.error(error_kind(f"{self.dialect}_session", error))

    async def run(self) -> None:
        raise NotImplementedError

    async def halt(self) -> None:
        """Ask the agent to stop (its :meth:`run` then returns)."""
        raise NotImplementedError

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.halt()
        if self._task is None:
            return
        try:
            if self.cancel_on_stop:
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def connected(self) -> bool:
        return self.event.is_set()

    @property
    def event(self) -> asyncio.Event:
        """Set while the session is up."""
        raise NotImplementedError

    async def telemetry(self, seq: int) -> None:
        raise NotImplementedError

    def command(self, seq: int) -> tuple[str, Any]:
        raise NotImplementedError

    def reported(self) -> int:
        """Self-reporting drivers: telemetry messages sent so far."""
        return 0


class ReportingAgent(Protocol):
    """What the native and DeviceHive agents share: a run loop that reconnects by
    itself, a stop, a connected event and ``notify``."""

    connected: asyncio.Event

    async def run(self) -> None: ...

    async def stop(self) -> None: ...

    async def notify(self, name: str, parameters: Any = None) -> Any: ...


class ReportingDriver(Driver):
    """A device whose agent reconnects by itself and reports with ``notify``; it answers
    ``echo`` commands."""

    agent: ReportingAgent

    async def run(self) -> None:
        await self.agent.run()

    async def halt(self) -> None:
        await self.agent.stop()

    @property
    def event(self) -> asyncio.Event:
        return self.agent.connected

    async def telemetry(self, seq: int) -> None:
        await self.agent.notify("telemetry", {"seq": seq, "data": self.ctx.filler(seq)})

    def command(self, seq: int) -> tuple[str, Any]:
        return "echo", {"seq": seq}


class NativeDriver(ReportingDriver):
    dialect = "native-ws"
    transport: ClassVar[str] = "ws"

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        assert spec.credential is not None
        self.agent = NativeAgent(
            ctx.plan.url,
            spec.id,
            spec.credential,
            transport="ws" if self.transport == "ws" else "http",
            session=self.session,
            poll_wait=POLL_WAIT,
        )


class NativeHttpDriver(NativeDriver):
    dialect = "native-http"
    transport = "http"
    cancel_on_stop = True


class DeviceHiveDriver(ReportingDriver):
    dialect = "devicehive"

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self.agent = DeviceHiveAgent(
            ctx.plan.url,
            spec.id,
            refresh_token=ctx.refresh_token,
            register=False,
            poll_wait=POLL_WAIT,
            session=self.session,
        )


class EWeLinkDriver(Driver):
    """The emulated Sonoff, reconnecting with backoff as ``tether agent ewelink`` does."""

    dialect = "ewelink"

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        assert spec.apikey is not None
        self.device = EmulatedSonoff(
            ctx.plan.url, spec.id, spec.apikey, session=self.session, record=False
        )
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        backoff = Backoff(RECONNECT_FIRST, RECONNECT_MAX)
        while not self._stopping.is_set():
            self.device.registered.clear()
            try:
                await self.device.run()
                backoff.reset()
            except RegisterRefused:
                self.ctx.tally.error("ewelink_register_refused")
            except (aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as error:
                if not self._stopping.is_set():
                    self.ctx.tally.error(error_kind("ewelink_connect", error))
            finally:
                self.device.registered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff.next())

    async def halt(self) -> None:
        self._stopping.set()
        await self.device.close()

    @property
    def event(self) -> asyncio.Event:
        return self.device.registered

    async def telemetry(self, seq: int) -> None:
        await self.device.change({"rssi": -30 - seq % 60, "simData": self.ctx.filler(seq)})

    def command(self, seq: int) -> tuple[str, Any]:
        return "update", {"switch": "on" if seq % 2 else "off"}


class ControlIdDriver(Driver):
    dialect = "controlid"
    cancel_on_stop = True

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        url = ctx.plan.url.rstrip("/")
        self.terminal = Terminal(
            url,
            int(spec.id),
            period=ctx.plan.poll_interval,
            timeout=15.0,
            monitor_url=url + "/api/notifications",
            session=self.session,
        )
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        await self.terminal.run(self._stopping)

    async def halt(self) -> None:
        self._stopping.set()

    @property
    def event(self) -> asyncio.Event:
        return self.terminal.connected

    async def telemetry(self, seq: int) -> None:
        event = {
            "door": {"id": 1, "open": bool(seq % 2)},
            "device_id": self.terminal.device_id,
            "time": int(time.time()),
            "sim_data": self.ctx.filler(seq),
        }
        self.terminal.api.events.append(("door", event))
        if await self.terminal.flush_events(self.session):
            raise NotTaken("the server did not take the Monitor event in time")

    def command(self, seq: int) -> tuple[str, Any]:
        return "message_to_screen", {"message": f"sim {seq}", "timeout": 1000}


class OpenGateDriver(Driver):
    """A platform-driven OpenGate device, served by its process's :class:`OpenGateService`."""

    dialect = "opengate"

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        assert spec.credential is not None
        assert ctx.opengate is not None
        config = OpenGateConfig(
            device_id=spec.id, api_key=spec.credential, platform_url=ctx.plan.url, step_delay=0
        )
        self.agent = OpenGateAgent(config, self.session)
        self.service = ctx.opengate
        self._up = asyncio.Event()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        self.service.agents[self.spec.id] = self.agent
        self._up.set()
        try:
            await self._stopping.wait()
        finally:
            self._up.clear()
            if self.service.agents.get(self.spec.id) is self.agent:
                del self.service.agents[self.spec.id]

    async def halt(self) -> None:
        self._stopping.set()

    @property
    def event(self) -> asyncio.Event:
        return self._up

    async def telemetry(self, seq: int) -> None:
        point = {"at": int(time.time() * 1000), "value": self.ctx.filler(seq) or seq}
        await self.agent.collect([{"id": "sim.telemetry", "datapoints": [point]}])

    def command(self, seq: int) -> tuple[str, Any]:
        return "GET_DEVICE_PARAMETERS", {"variableList": ["device.temperature.value"]}


class KeepaliveDriver(Driver):
    """An InfiniteClouds device: keepalives every poll interval, statistics as telemetry."""

    dialect = "infiniteclouds"
    self_reporting = True

    def __init__(self, spec: DeviceSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        plan = ctx.plan
        config = KeepaliveConfig(
            url=plan.url,
            state_dir=None,
            interval=plan.poll_interval,
            register_interval=plan.poll_interval,
            mac=spec.mac,
            machine_id=f"sim-{spec.id}",
            statistics_interval=plan.telemetry_interval,
        )
        self.agent = KeepaliveAgent(config, session=self.session)

    async def run(self) -> None:
        await self.agent.run()

    async def halt(self) -> None:
        self.agent.stop()

    @property
    def event(self) -> asyncio.Event:
        return self.agent.connected

    async def telemetry(self, seq: int) -> None:
        raise NotImplementedError("InfiniteClouds devices send statistics by themselves")

    def command(self, seq: int) -> tuple[str, Any]:
        return "echo", {"seq": seq}

    def reported(self) -> int:
        return self.agent.sent["statistics"]


DRIVERS: dict[str, type[Driver]] = {
    d.dialect: d
    for d in (
        NativeDriver,
        NativeHttpDriver,
        DeviceHiveDriver,
        EWeLinkDriver,
        ControlIdDriver,
        OpenGateDriver,
        KeepaliveDriver,
    )
}


@dataclass
class OpenGateService:
    """One HTTP service for every OpenGate device of a process: the platform's operation
    requests are routed by device id to that device's agent (a real device serves its
    own; one listener for thousands of simulated ones keeps the fd count sane)."""

    host: str
    port: int
    agents: dict[str, OpenGateAgent] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v80/devices/{device_id}/operation/request", self._route)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        agent = self.agents.get(request.match_info["device_id"])
        if agent is None:
            return web.json_response({"error": "device not running"}, status=404)
        return await agent.on_request(request)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
