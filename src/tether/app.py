"""The composition root: build the store, the bus and the hub, and mount every API.

Nothing else in Tether wires components together; tests build servers through
:func:`build_app` exactly as ``tether serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from tether.api.http import error_middleware, node_middleware
from tether.api.routes import native_routes
from tether.bus import create_bus
from tether.core.clock import Clock
from tether.core.errors import Conflict, Unavailable
from tether.dialects import controlid, devicehive, ewelink, infiniteclouds, opengate
from tether.hub.service import Hub
from tether.settings import Settings
from tether.store import Store
from tether.web import LISTENERS, MALFORMED_REQUESTS, STARTUP, Startup

log = logging.getLogger("tether")


#: Backoff between start-up attempts while PostgreSQL or Redis cannot be reached.
RETRY_FIRST, RETRY_MAX = 0.5, 10.0


async def build_hub(settings: Settings, clock: Clock | None = None) -> Hub:
    """Open the store (migrating it), connect the bus and start the hub."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await Store.open(settings.resolved_database_url, migrate=True)
    bus = create_bus(settings.bus, redis_url=settings.redis_url, node_id=settings.node_id)
    hub = Hub(store, bus, settings, clock)
    try:
        await hub.start()
    except BaseException:
        # A half-started hub holds tasks and a bus connection: release them before the
        # caller retries, so attempts do not pile up.
        with contextlib.suppress(Exception):
            await hub.stop()
        await store.close()
        raise
    return hub


def build_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The aiohttp application; the hub starts and stops with it."""
    app = web.Application(
        middlewares=[node_middleware, error_middleware],
        client_max_size=settings.max_message_bytes,
    )
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUESTS)
    for table in native_routes():
        app.add_routes(table)

    startup = Startup()
    app[STARTUP] = startup

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_start_hub(settings, clock, startup), name="tether-startup")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if startup.hub is not None:
                await startup.hub.stop()
                await startup.hub.store.close()

    # Registered before the dialects, so it is torn down after them: a dialect's
    # background work stops while the hub it uses is still running.
    app.cleanup_ctx.append(lifecycle)
    app[LISTENERS] = []
    mount_dialects(app, settings)
    return app


def mount_dialects(app: web.Application, settings: Settings) -> None:
    """Give every enabled dialect its routes, listeners and background work.

    A dialect's ``mount(app, settings)`` adds routes to ``app``, extra listeners to
    ``app[LISTENERS]``, and the work that needs the hub (which starts after the
    application) through :func:`tether.web.when_hub_ready`.
    """
    devicehive.mount(app, settings)
    ewelink.mount(app, settings)
    controlid.mount(app, settings)
    opengate.mount(app, settings)
    infiniteclouds.mount(app, settings)


async def start_listeners(
    runner: web.BaseRunner, app: web.Application, *, reuse_port: bool = False
) -> dict[str, str]:
    """Open ``app[LISTENERS]`` on a set-up runner; returns each listener's base URL."""
    urls: dict[str, str] = {}
    for listener in app[LISTENERS]:
        site = web.TCPSite(
            runner,
            listener.host,
            listener.port,
            ssl_context=listener.ssl_context,
            reuse_port=reuse_port,
        )
        await site.start()
        scheme = "https" if listener.ssl_context is not None else "http"
        urls[listener.name] = f"{scheme}://{listener.host}:{site.port}"
    return urls


async def _start_hub(settings: Settings, clock: Clock | None, startup: Startup) -> None:
    """Build the hub, retrying with backoff until it comes up.

    An unreachable database or bus is expected (logged once per distinct reason); any
    other failure is a fault, logged with its traceback on every attempt, and also
    retried, so the process never sits "starting" with nothing in the log, and
    ``/readyz`` names the reason meanwhile.
    """
    delay = RETRY_FIRST
    while True:
        try:
            hub = await build_hub(settings, clock)
        except (Unavailable, OSError, ConnectionError) as error:
            reason = error.message if isinstance(error, Unavailable) else str(error)
            if startup.error != reason:
                log.warning("waiting for the database or bus: %s (retrying)", reason)
            startup.error = reason
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        except Exception as error:
            reason = f"start-up failed: {type(error).__name__}: {error}"
            log.exception("%s (retrying in %.1f s)", reason, delay)
            startup.error = reason
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        try:
            startup.generated_password = await hub.auth.bootstrap_admin(
                settings.admin_login, password
            )
        except Conflict:
            startup.generated_password = None  # another process created it first
        startup.error = None
        startup.hub = hub
        startup.ready.set()
        log.info("ready as node %s", hub.node_id)
        return


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    if settings.tls_key is None:
        raise ValueError("tls_cert is set but tls_key is not")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
