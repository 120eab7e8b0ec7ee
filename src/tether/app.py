"""The composition root: build the store, the bus and the hub, and mount every API.

Nothing else in Tether wires components together; tests build servers through
:func:`build_app` exactly as ``tether serve`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import ssl
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from tether import console
from tether.api.health import serve_metrics_apart
from tether.api.http import error_middleware, node_middleware
from tether.api.routes import native_routes
from tether.bus import create_bus
from tether.core.backoff import Backoff
from tether.core.clock import Clock
from tether.core.errors import Conflict, Unavailable
from tether.dialects import controlid, devicehive, ewelink, infiniteclouds, opengate
from tether.hub.service import Hub
from tether.middleware import cors_middleware, observe_middleware
from tether.outbox import OPEN_SOCKETS, close_all
from tether.settings import Settings
from tether.store import Store
from tether.store.files import (
    ADMIN_PASSWORD_FILE,
    loose_permissions,
    secret_files,
    write_private,
)
from tether.web import (
    LISTENERS,
    MALFORMED_REQUESTS,
    STARTUP,
    Startup,
    log_context_middleware,
)
from tether.workers import worker_index

log = logging.getLogger("tether")


#: Backoff between start-up attempts while PostgreSQL or Redis cannot be reached.
RETRY_FIRST, RETRY_MAX = 0.5, 10.0


async def build_hub(settings: Settings, clock: Clock | None = None) -> Hub:
    """Open the store (migrating it), connect the bus and start the hub."""
    store = await Store.open(settings.resolved_database_url, migrate=True)
    warn_loose_permissions(settings)
    bus = create_bus(
        settings.bus,
        redis_url=settings.redis_url,
        node_id=settings.node_id,
        namespace=settings.cluster_name,
    )
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
        middlewares=[
            *([cors_middleware(settings.cors_origins)] if settings.cors_origins else []),
            log_context_middleware,
            observe_middleware(settings),
            node_middleware,
            error_middleware,
        ],
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
    app[OPEN_SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_let_connections_go)
    app[LISTENERS] = []
    if settings.metrics_listen is not None:
        serve_metrics_apart(app, settings.metrics_listen, reuse_port=worker_index() is not None)
    mount_dialects(app, settings)
    console.mount(app)
    return app


async def _let_connections_go(app: web.Application) -> None:
    """The first step of a stop, once the listeners no longer accept: end every long-lived
    request so the process can exit within ``shutdown_timeout``.

    Every WebSocket (native, DeviceHive, eWeLink) is closed with 1001 "going away" after
    what is queued for it, and every parked long poll (native, DeviceHive) answers now
    with its empty answer, so a command is never claimed for a poll about to be cut.
    aiohttp then waits for the handlers, up to ``shutdown_timeout``
    (:func:`make_runner`), before the hub flushes its buffered writes and stops.
    """
    hub = app[STARTUP].hub
    if hub is not None:
        hub.drain()
    sockets = close_all(app)
    log.info("stopping: closed %d WebSockets with 1001 and answered the parked polls", sockets)


def make_runner(app: web.Application, settings: Settings, **options: Any) -> web.AppRunner:
    """The runner that serves ``app`` on every listener, with Tether's connection rules.

    * A handler is never cancelled because its client left (``handler_cancellation``
      off): a request that has started changing state finishes, and what it hands out
      to a client that is gone goes back to the queue (:class:`tether.web.HandOut`).
    * aiohttp's keep-alive timer also runs from the moment a connection opens until a
      complete request header has arrived, so ``http_idle_timeout`` is both the header
      read deadline (a half-sent or trickled header is cut) and the idle limit between
      requests. It never cuts a request being handled (a long poll, a WebSocket).
    * On a stop, the handlers still running get ``shutdown_timeout`` seconds to finish
      (WebSockets are closed and polls answered first: :func:`_let_connections_go`);
      the connections of any still running then are dropped.

    Tests serve the application through this too, so they see what ``tether serve`` does.
    """
    return web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=False,
        keepalive_timeout=settings.http_idle_timeout,
        shutdown_timeout=settings.shutdown_timeout,
        **options,
    )


def tune_gc(threshold: int) -> None:
    """Make Python's cyclic garbage collector cheap for a server holding many connections.

    CPython collects its young generation every 700 net allocations, and every collection
    of an older generation walks every tracked object in it. A server holding 20,000
    sockets has millions of long-lived objects, and a reconnect storm allocates fast, so
    with the defaults the collector, not the protocol, took most of a storm's time (see
    ``docs/performance.md``, P5). Once the server is ready: collect once, then freeze
    what start-up made (modules, settings, the hub: never garbage) out of every later
    collection, and raise the young-generation threshold to ``threshold`` allocations
    (0 leaves the collector as Python sets it, nothing frozen). Memory freed by
    reference counting, which is nearly all of it, is unaffected; only cycles wait a
    little longer to be found.
    """
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    log.info(
        "garbage collector: %d start-up objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )


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
    runner: web.BaseRunner, app: web.Application, *, reuse_port: bool = False, backlog: int = 128
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
            backlog=backlog,
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
    backoff = Backoff(RETRY_FIRST, RETRY_MAX)
    while True:
        try:
            hub = await _bring_up(settings, clock, startup)
        except (Unavailable, OSError, ConnectionError) as error:
            reason = error.message if isinstance(error, Unavailable) else str(error)
            if startup.error != reason:
                log.warning("waiting for the database or bus: %s (retrying)", reason)
            startup.error = reason
            await asyncio.sleep(backoff.next())
            continue
        except Exception as error:
            reason = f"start-up failed: {type(error).__name__}: {error}"
            delay = backoff.next()
            log.exception("%s (retrying in %.1f s)", reason, delay)
            startup.error = reason
            await asyncio.sleep(delay)
            continue
        startup.error = None
        startup.hub = hub
        startup.ready.set()
        log.info("ready as node %s", hub.node_id)
        return


async def _bring_up(settings: Settings, clock: Clock | None, startup: Startup) -> Hub:
    """One start-up attempt: the hub, then the first admin; nothing left half-up."""
    hub = await build_hub(settings, clock)
    try:
        startup.password_file = await bootstrap_admin(hub, settings)
    except BaseException:
        with contextlib.suppress(Exception):
            await hub.stop()
        await hub.store.close()
        raise
    return hub


async def bootstrap_admin(hub: Hub, settings: Settings) -> Path | None:
    """Create the first admin if there are no users yet.

    A generated password is written to ``<data_dir>/admin-password`` (0600), never to
    the log or the console, which services keep; the path of that file is returned.
    Once users exist, ``admin_password`` is ignored: it would otherwise reset a password
    changed since on every restart. ``tether user set-password`` is the way back in.
    """
    if await hub.store.users.count() > 0:
        if settings.admin_password is not None:
            log.info(
                "admin_password (TETHER_ADMIN_PASSWORD) is ignored: it only applies on first "
                "start, and users exist. To reset a password (even with the server stopped): "
                "tether user set-password LOGIN"
            )
        return None
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    try:
        generated = await hub.auth.bootstrap_admin(settings.admin_login, password)
    except Conflict:
        return None  # another process created it first
    if generated is None:
        return None
    path = (settings.data_dir / ADMIN_PASSWORD_FILE).resolve()
    write_private(path, generated + "\n")
    log.warning(
        "created admin user %r; its generated password is in %s (readable by this user "
        "only): log in, change it, then delete the file",
        settings.admin_login,
        path,
    )
    return path


def warn_loose_permissions(settings: Settings) -> None:
    """Say which secret-holding paths other local users can read (see store/files.py)."""
    paths = secret_files(settings.data_dir, settings.resolved_database_url)
    for path, mode in loose_permissions(paths):
        private = "700" if path.is_dir() else "600"
        log.warning(
            "%s holds secrets but has mode %o, open to other local users: chmod %s %s",
            path,
            mode,
            private,
            path,
        )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    if settings.tls_key is None:
        raise ValueError("tls_cert is set but tls_key is not")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
