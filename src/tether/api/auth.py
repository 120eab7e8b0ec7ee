"""Who is calling: bearer credentials on the native API.

Users and apps send ``Authorization: Bearer <access JWT | API key>`` (or ``X-API-Key``).
Devices on the native device API send ``Authorization: Bearer <device credential>``;
the device id comes from the path, so a device can only ever act as itself.
"""

from __future__ import annotations

from aiohttp import web

from tether.api.http import hub_of
from tether.core.access import Principal
from tether.core.errors import Unauthorized
from tether.core.model import Device

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


async def principal_of(request: web.Request) -> Principal:
    """The authenticated user behind the request (cached on the request)."""
    cached: Principal | None = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    credential = bearer(request)
    if credential is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer <token>'")
    principal = await hub_of(request).auth.principal(credential)
    request[PRINCIPAL] = principal
    return principal


async def device_of(request: web.Request) -> Device:
    """The device named in the path, authenticated by its own credential."""
    credential = bearer(request)
    if credential is None:
        raise Unauthorized("missing device credential: send 'Authorization: Bearer <key>'")
    device, _ = await hub_of(request).auth.device(request.match_info["device_id"], credential)
    return device
