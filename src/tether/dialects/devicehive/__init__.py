"""The DeviceHive 3.x dialect: ``/api/websocket`` and ``/api/rest`` on the core's hub.

A drop-in DeviceHive server: an existing DeviceHive client or device changes only its
URL. Users, networks, device types, devices, commands and notifications are the core's
entities, so DeviceHive clients see (and command) devices of every dialect, and every
other API sees DeviceHive's. See ``docs/dialects/devicehive.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from tether.core.clock import SystemClock
from tether.core.errors import TetherError
from tether.dialects.devicehive import rest
from tether.dialects.devicehive.clock import MillisecondClock
from tether.dialects.devicehive.common import ADMIN
from tether.dialects.devicehive.ops import DirectoryOps
from tether.dialects.devicehive.streams import MessageOps
from tether.dialects.devicehive.ws import serve
from tether.hub.service import Hub
from tether.settings import Settings
from tether.web import STARTUP, when_hub_ready

__all__ = ["mount"]

log = logging.getLogger("tether.devicehive")


class _Parts:
    """The dialect's operations, built (and the defaults seeded) once the hub is up.

    Built by whichever comes first, the background task or a request, so the first
    request after start-up never sees a half-ready dialect.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.devicehive
        self.ops: DirectoryOps | None = None
        self.msgs: MessageOps | None = None
        self._lock = asyncio.Lock()

    async def ensure(self, hub: Hub) -> tuple[DirectoryOps, MessageOps]:
        if self.ops is None or self.msgs is None:
            async with self._lock:
                if self.ops is None or self.msgs is None:
                    await self._build(hub)
        assert self.ops is not None
        assert self.msgs is not None
        return self.ops, self.msgs

    async def _build(self, hub: Hub) -> None:
        config = self.settings
        if config.millisecond_timestamps and isinstance(hub.clock, SystemClock):
            hub.clock = MillisecondClock(hub.clock, config.max_clock_lead)
        if config.seed:
            try:
                await seed(hub, config.default_network, config.default_device_type)
            except TetherError:
                log.exception("seeding the DeviceHive defaults failed")
        ops = DirectoryOps(hub)
        self.msgs = MessageOps(hub, ops)
        self.ops = ops


async def seed(hub: Hub, network_name: str, type_name: str) -> None:
    """On an empty database: a default network and device type, so a fresh server works
    with a DeviceHive client out of the box (the admin comes from the core's bootstrap)."""
    directory = hub.directory
    for scopes, name, what in (
        (directory.networks, network_name, "network"),
        (directory.device_types, type_name, "device type"),
    ):
        if await scopes.list(ADMIN, take=1):
            continue
        with contextlib.suppress(TetherError):  # another node seeded it first
            await scopes.create(ADMIN, name=name, description=f"Default {what} (DeviceHive)")
            log.info("created the default %s %r", what, name)


def mount(app: web.Application, settings: Settings) -> None:
    if not settings.devicehive.enabled:
        return
    parts = _Parts(settings)

    def hub_or_none() -> Hub | None:
        return app[STARTUP].hub

    async def websocket(request: web.Request) -> web.StreamResponse:
        hub = hub_or_none()
        if hub is None:
            return web.json_response({"error": 503, "message": "starting"}, status=503)
        return await serve(request, hub, *await parts.ensure(hub), live)

    live: set[web.WebSocketResponse] = set()

    async def close_sockets(app: web.Application) -> None:
        # DeviceHive clients often leave sockets open for good; do not let them hold
        # the server's shutdown.
        for ws in list(live):
            await ws.close(code=1001, message=b"server shutting down")

    app.on_shutdown.append(close_sockets)
    app.router.add_get("/api/websocket", websocket)
    rest.add_routes(app, hub_or_none, parts.ensure)

    async def attach(hub: Hub) -> None:
        await parts.ensure(hub)

    when_hub_ready(app, "devicehive", attach)
