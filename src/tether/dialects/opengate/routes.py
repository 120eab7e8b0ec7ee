"""The OpenGate south API the devices call: ``/south/v80/devices/{device_id}/...``.

Every endpoint authenticates with ``X-ApiKey``: the device's own credential (issued by
``POST /api/v1/devices/{id}/credential``; only its hash is stored) or an API key of a user
allowed to act on that device (the core's API keys, also hashed). A missing or wrong key
gets 401 before the body is read, so nothing is stored. On the mutual-TLS listener the
client certificate must also name the device (see :mod:`tether.dialects.opengate.tls`).

Uploads are answered ``201 Created`` with an empty body, as the platform does (the
Meshlium agent and opengate-js treat anything else as an error). Bodies may be gzipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from tether.core import jsonc
from tether.core.access import Action, PrincipalKind, require_device
from tether.core.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TetherError,
    Unauthorized,
)
from tether.core.model import Command, Device
from tether.dialects.opengate import DIALECT, codec
from tether.dialects.opengate.dispatcher import encoding_of
from tether.dialects.opengate.operations import apply_response
from tether.dialects.opengate.tls import peer_identity
from tether.hub import secrets
from tether.hub.service import Hub
from tether.settings.opengate import OpenGateSettings
from tether.web import HandOut, still_connected

BASE = "/south/v80/devices/{device_id}"
#: Older firmware (python emulator, eWON) speaks v70; same bodies.
BASES = (BASE, "/south/v70/devices/{device_id}")

HubGetter = Callable[[], Hub]


async def authenticate(hub: Hub, request: web.Request, action: Action) -> Device:
    """The device named in the path, if ``X-ApiKey`` may act for it; else 401/403/404."""
    device_id = request.match_info["device_id"]
    key = request.headers.get("X-ApiKey") or request.query.get("X-ApiKey")
    if not key:
        raise Unauthorized("the X-ApiKey header is required")
    device = await hub.directory.device(device_id)
    if (
        device is not None
        and device.credential_hash
        and secrets.verify_secret(device.credential_hash, key)
    ):
        pass
    elif secrets.looks_like_api_key(key):
        try:
            principal = await hub.auth.principal(key)
        except TetherError:
            raise Unauthorized("X-ApiKey is not valid for this device") from None
        if principal.kind is not PrincipalKind.USER:
            raise Unauthorized("X-ApiKey is not valid for this device")
        try:
            device = require_device(principal, action, device, device_id)
        except (Forbidden, NotFound):
            raise Unauthorized("X-ApiKey is not valid for this device") from None
    else:
        raise Unauthorized("X-ApiKey is not valid for this device")
    assert device is not None
    if device.blocked:
        raise Forbidden(f"device {device_id!r} is blocked", device_id=device_id)
    if device.dialect != DIALECT:
        raise NotFound(f"device {device_id!r} is not an OpenGate device", device_id=device_id)
    identity = peer_identity(request)
    if identity is not None and identity != device.id:
        raise Forbidden(
            f"the client certificate belongs to {identity!r}, not to {device.id!r}",
            device_id=device.id,
        )
    hub.presence.activity(device.id)  # every south call is a sign of life (last_seen, online)
    return device


async def read_json(hub: Hub, request: web.Request) -> Any:
    """The JSON body. aiohttp already undoes ``Content-Encoding: gzip``/``deflate``; a
    gzip body sent without the header (some firmware) is recognised by its magic bytes."""
    limit = hub.settings.max_message_bytes
    try:
        raw = await request.read()
    except (web.HTTPRequestEntityTooLarge, PayloadTooLarge):
        raise PayloadTooLarge(f"body is larger than {limit} bytes") from None
    except (RequestPayloadError, HttpProcessingError, ValueError) as error:
        encoding = request.headers.get("Content-Encoding", "identity")
        raise BadRequest(f"body could not be read as {encoding}: {error}") from None
    raw = codec.inflate(raw, None, limit)
    return codec.decode_json(raw)


class SouthRoutes:
    def __init__(self, hub: HubGetter, settings: OpenGateSettings) -> None:
        self._hub = hub
        self._settings = settings

    def add_to(self, app: web.Application) -> None:
        for base in BASES:
            app.router.add_post(base + "/operation/response", self.response)
            app.router.add_get(base + "/operation/pending", self.pending)
            app.router.add_post(base + "/operation/pending", self.pending)
            app.router.add_post(base + "/collect/iot", self.collect_iot)
            app.router.add_post(base + "/collect/dmm", self.collect_dmm)

    async def response(self, request: web.Request) -> web.Response:
        """A partial (steps) or final (resultCode) response for one of the device's ops."""
        hub = self._hub()
        device = await authenticate(hub, request, Action.UPDATE_DEVICE_COMMAND)
        response = codec.parse_response(await read_json(hub, request))
        await apply_response(hub, device, response)
        return web.Response(status=201)

    async def pending(self, request: web.Request) -> web.Response:
        """The device's pending operations, oldest first, in request format; 204 if none.

        The hand-over marks them ``delivered`` (one conditional update), so an operation
        is handed out once even if the dispatcher or another node races for it.
        """
        hub = self._hub()
        device = await authenticate(hub, request, Action.GET_DEVICE_COMMAND)
        if request.method == "POST":
            await request.read()  # empty or {}; nothing in it is used
        limit = self._settings.pending_limit
        commands = await hub.delivery.poll(
            device.id,
            limit=limit,
            max_in_flight=1_000_000,
            wait=0,
            present=still_connected(request),
        )
        if not commands:
            return web.Response(status=204)
        bodies = [self._envelope(hub, device, command) for command in commands]
        return HandOut(
            hub,
            device.id,
            commands,
            body=jsonc.encode(bodies[0] if limit == 1 else {"operations": bodies}),
            content_type="application/json",
        )

    def _envelope(self, hub: Hub, device: Device, command: Command) -> dict[str, Any]:
        return codec.request_envelope(
            ref=command.ref or str(command.id),
            name=command.name,
            parameters=command.parameters,
            timestamp=command.created_at,
            device_id=device.id,
            encoding=encoding_of(device, self._settings),
        )

    async def collect_iot(self, request: web.Request) -> web.Response:
        """Datastreams: one notification per datapoint, and the latest values in the shadow."""
        hub = self._hub()
        device = await authenticate(hub, request, Action.CREATE_DEVICE_NOTIFICATION)
        collection = codec.parse_iot(await read_json(hub, request))
        now = hub.clock.now()
        await asyncio.gather(
            *(
                hub.notifications.post_as_device(
                    device,
                    point.datastream,
                    codec.datapoint_parameters(point, collection),
                    point.at or now,
                )
                for point in collection.datapoints
            )
        )
        if collection.device in (None, device.id):
            latest = codec.latest_values(collection, now)
            # The shadow merges shallowly, one key per datastream; a late upload of older
            # datapoints does not replace a newer value.
            held = (await hub.twins.own_state(device)).reported
            newer = {
                name: value
                for name, value in latest.items()
                if not (isinstance(held.get(name), dict) and held[name].get("at", 0) > value["at"])
            }
            if newer:
                await hub.twins.report(device, newer)
        return web.Response(status=201)

    async def collect_dmm(self, request: web.Request) -> web.Response:
        """Legacy inventory/status: a ``dmm`` notification and ``dmm`` in the shadow."""
        hub = self._hub()
        device = await authenticate(hub, request, Action.CREATE_DEVICE_NOTIFICATION)
        event = codec.parse_dmm(await read_json(hub, request))
        await hub.notifications.post_as_device(device, "dmm", event)
        await hub.twins.report(device, {"dmm": event})
        return web.Response(status=201)
