"""OpenGate south dialect: platform-driven operations (sync, async, multi-step),
device-driven pending operations, and IoT collection.

``mount`` adds the inbound device API (:mod:`.routes`), starts the outbound dispatcher
(:mod:`.dispatcher`) once the hub is up, registers the command shaper that validates the
standard operations catalogue and gives each command its operation UUID
(:mod:`.catalog`), and optionally opens a mutual-TLS listener (:mod:`.tls`). The wire
format itself is the pure :mod:`.codec`; the device side is :mod:`.agent`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from tether.core.errors import Unavailable
from tether.settings import Settings

if TYPE_CHECKING:
    from tether.hub.service import Hub

__all__ = ["DIALECT", "DISPATCHER", "mount"]

#: The dialect name devices carry (``Device.dialect``).
DIALECT = "opengate"

log = logging.getLogger("tether.opengate")


class StartupState(Protocol):
    """What ``tether.app`` exposes of its start-up (``tether.api.http.Startup``)."""

    hub: Hub | None
    error: str | None
    ready: asyncio.Event


#: ``(name, host, port, ssl_context)``: opens one more listener serving the same routes.
AddListener = Callable[[str, str, int, ssl.SSLContext], None]

#: ``{"dispatcher": Dispatcher}`` once the hub is up (for operators' tooling and tests).
DISPATCHER = web.AppKey("opengate_dispatcher", dict[str, Any])


def mount(
    app: web.Application,
    settings: Settings,
    startup: Callable[[], StartupState],
    add_listener: AddListener,
) -> None:
    """Routes, the mTLS listener, and (once the hub is ready) shaper and dispatcher."""
    own = settings.opengate
    if not own.enabled:
        return
    # Imported here: the device agent (``tether agent opengate``) imports this package
    # and must not pay for the hub and the store.
    from tether.dialects.opengate import catalog, tls
    from tether.dialects.opengate.dispatcher import Dispatcher
    from tether.dialects.opengate.routes import SouthRoutes

    def hub() -> Hub:
        state = startup()
        if state.hub is None:
            raise Unavailable(f"starting: {state.error or 'connecting'}")
        return state.hub

    SouthRoutes(hub, own).add_to(app)
    if own.mtls_port is not None:
        add_listener("opengate-mtls", own.mtls_host, own.mtls_port, tls.server_context(own))

    holder: dict[str, Any] = {}
    app[DISPATCHER] = holder

    async def start_when_ready() -> None:
        state = startup()
        await state.ready.wait()
        assert state.hub is not None
        state.hub.commands.shapers[DIALECT] = catalog.shape
        dispatcher = Dispatcher(state.hub, own)
        holder["dispatcher"] = dispatcher
        await dispatcher.start()

    async def background(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(start_when_ready(), name="opengate-start")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def shutdown(app: web.Application) -> None:
        dispatcher = holder.get("dispatcher")
        if dispatcher is not None:
            await dispatcher.stop()

    app.cleanup_ctx.append(background)
    app.on_shutdown.append(shutdown)
