"""InfiniteClouds (GWC / Elemprin) keepalive dialect: the cloud side and the device agent.

Devices register and keep alive on ``POST /v1/device/registration`` (``statusType``
selects the message) and fetch ``/v1/device/config`` and ``/v1/device/firmware``; see
``docs/dialects/infiniteclouds.md`` for what is documented and what is Tether's
completion. The device side is :mod:`.agent` (``tether agent keepalive``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from tether.settings import Settings
from tether.web import STARTUP, when_hub_ready

if TYPE_CHECKING:
    from tether.hub.service import Hub

__all__ = ["mount"]


def mount(app: web.Application, settings: Settings) -> None:
    """Add the routes (if enabled) and, once the hub is up, the command shaper."""
    if not settings.infiniteclouds.enabled:
        return
    from tether.dialects.infiniteclouds.cloud import DIALECT, Cloud, shape
    from tether.dialects.infiniteclouds.routes import CLOUD, add_routes

    add_routes(app, lambda: app[STARTUP])

    async def attach(hub: Hub) -> None:
        slot = app[CLOUD]
        if slot.cloud is None:
            slot.cloud = Cloud(hub, settings.infiniteclouds)
        hub.commands.shapers[DIALECT] = shape

    when_hub_ready(app, "infiniteclouds", attach)
