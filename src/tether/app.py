"""The composition root: build the store, the bus and the hub, and mount every API.

Nothing else in Tether wires components together; tests build servers through
:func:`build_app` exactly as ``tether serve`` does.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from tether.api.http import HUB, error_middleware, node_middleware
from tether.api.routes import native_routes
from tether.bus import create_bus
from tether.core.clock import Clock
from tether.hub.service import Hub
from tether.settings import Settings
from tether.store import Store

log = logging.getLogger("tether")

#: Set after start-up when the admin password was generated; shown once by the CLI.
GENERATED_ADMIN_PASSWORD: web.AppKey[str | None] = web.AppKey("generated_admin_password", str)


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
        await store.close()
        raise
    return hub


def build_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The aiohttp application; the hub starts and stops with it."""
    app = web.Application(
        middlewares=[node_middleware, error_middleware],
        client_max_size=settings.max_message_bytes,
    )
    for table in native_routes():
        app.add_routes(table)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        hub = await build_hub(settings, clock)
        app[HUB] = hub
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        app[GENERATED_ADMIN_PASSWORD] = await hub.auth.bootstrap_admin(
            settings.admin_login, password
        )
        try:
            yield
        finally:
            await hub.stop()
            await hub.store.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    if settings.tls_key is None:
        raise ValueError("tls_cert is set but tls_key is not")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
