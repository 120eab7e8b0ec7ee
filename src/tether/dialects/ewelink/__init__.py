"""eWeLink / CoolKit dialect: the Sonoff app side and device side on one WebSocket.

Apps (eWeLink clients, ``coolkit-client-phoenix``...) log in over HTTP v1 or v2, find the
WebSocket through ``/dispatch/app`` and drive devices over ``/api/ws``; Sonoff devices
find it through ``/dispatch/device`` and register on the same path. Users are core users,
devices are core devices (dialect ``ewelink``, factory apikey in ``attributes``), params
are the device's reported state, and an app ``update`` is a core command. See
``docs/dialects/ewelink.md``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from tether.dialects.ewelink.cloud import DIALECT, Cloud, shape
from tether.dialects.ewelink.routes import Holder, build
from tether.settings import Settings
from tether.web import LISTENERS, Listener, when_hub_ready

if TYPE_CHECKING:
    from tether.hub.service import Hub

__all__ = ["mount"]


def mount(app: web.Application, settings: Settings) -> None:
    """Add the eWeLink routes, the optional TLS listener, and the hub hook-up."""
    options = settings.ewelink
    if not options.enabled:
        return
    holder = Holder()
    app.add_routes(build(holder))
    if options.tls_cert is not None:
        if options.tls_key is None:
            raise ValueError("ewelink.tls_cert is set but ewelink.tls_key is not")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        app[LISTENERS].append(Listener("ewelink-tls", options.tls_host, options.tls_port, context))
        holder.tls_port = options.tls_port or None

    async def attach(hub: Hub) -> Callable[[], Awaitable[None]]:
        hub.commands.shapers[DIALECT] = shape
        cloud = Cloud(hub, settings.ewelink)
        await cloud.start()
        holder.cloud = cloud

        async def detach() -> None:
            holder.cloud = None
            await cloud.stop()

        return detach

    when_hub_ready(app, "ewelink", attach)
