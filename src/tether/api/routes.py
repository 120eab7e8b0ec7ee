"""Mount the whole native API on an aiohttp application."""

from __future__ import annotations

from aiohttp import web

from tether.api import (
    client_ws,
    commands_routes,
    device_routes,
    device_ws,
)


def native_routes() -> list[web.RouteTableDef]:
    """Every route table of the native API, in mounting order."""
    tables = [commands_routes.routes, device_routes.routes, device_ws.routes, client_ws.routes]
    from tether.api import health, management, openapi

    tables += [health.routes, openapi.routes, *management.route_tables()]
    return tables
