"""OpenGate south dialect: platform-driven operations (sync, async, multi-step),
device-driven pending operations, and IoT collection.

``mount`` adds the inbound device API (:mod:`.routes`), starts the outbound dispatcher
(:mod:`.dispatcher`) once the hub is up, registers the command shaper that validates the
standard operations catalogue and gives each command its operation UUID
(:mod:`.catalog`), and optionally opens a mutual-TLS listener (:mod:`.tls`). The wire
format itself is the pure :mod:`.codec`; the device side is :mod:`.agent`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tether.settings import Settings
from tether.web import LISTENERS, Listener, hub_now, when_hub_ready

if TYPE_CHECKING:
    from tether.hub.service import Hub

__all__ = ["DIALECT", "DISPATCHER", "mount"]

#: The dialect name devices carry (``Device.dialect``).
DIALECT = "opengate"

log = logging.getLogger("tether.opengate")


#: ``{"dispatcher": Dispatcher}`` once the hub is up (for operators' tooling and tests).
DISPATCHER = web.AppKey("opengate_dispatcher", dict[str, Any])


def mount(app: web.Application, settings: Settings) -> None:
    """Routes, the mTLS listener, and (once the hub is ready) shaper and dispatcher."""
    own = settings.opengate
    if not own.enabled:
        return
    # Imported here: the device agent (``tether agent opengate``) imports this package
    # and must not pay for the hub and the store.
    from tether.dialects.opengate import catalog, tls
    from tether.dialects.opengate.dispatcher import Dispatcher
    from tether.dialects.opengate.routes import SouthRoutes

    SouthRoutes(functools.partial(hub_now, app), own).add_to(app)
    if own.mtls_port is not None:
        app[LISTENERS].append(
            Listener("opengate-mtls", own.mtls_host, own.mtls_port, tls.server_context(own))
        )

    holder: dict[str, Any] = {}
    app[DISPATCHER] = holder

    async def attach(hub: Hub) -> Callable[[], Awaitable[None]]:
        hub.commands.shapers[DIALECT] = catalog.shape
        dispatcher = Dispatcher(hub, own)
        holder["dispatcher"] = dispatcher
        await dispatcher.start()
        return dispatcher.stop

    when_hub_ready(app, "opengate", attach)
