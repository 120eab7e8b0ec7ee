"""The InfiniteClouds HTTP endpoints: one multiplexed registration URL, config, firmware.

Every answer, success or failure, is the documented envelope; core errors become its
``status``/``httpCode``/``errorCode`` (401 makes the device register again for a fresh
token). Bodies are size-limited and decoded leniently (see :mod:`.codec`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tether.core.errors import BadRequest, PayloadTooLarge, TetherError, Unavailable
from tether.dialects.infiniteclouds import codec
from tether.dialects.infiniteclouds.cloud import Cloud
from tether.web import CLIENT_LEFT, client_left

log = logging.getLogger("tether.infiniteclouds")


class Slot:
    """Where the :class:`Cloud` lands once the hub is up (the app is frozen by then).

    ``startup`` returns the application's start-up record (``tether.web.Startup``,
    with ``hub`` and ``ready``), passed in by ``tether.app``: dialects may not import
    ``tether.api``.
    """

    def __init__(self, startup: Callable[[], Any]) -> None:
        self.startup = startup
        self.cloud: Cloud | None = None


CLOUD: web.AppKey[Slot] = web.AppKey("infiniteclouds", Slot)

Handler = Callable[[web.Request], Awaitable[tuple[Any, str]]]


def reply(data: Any, message: str = "success", status: int = 200) -> web.Response:
    return web.Response(
        body=codec.envelope(data, message, status),
        status=status,
        content_type="application/json",
    )


def enveloped(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run ``handler`` and wrap its ``(data, message)``, or its error, in the envelope."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            data, message = await handler(request)
        except TetherError as error:
            answer = reply(None, error.message, error.status)
            answer.headers.update(error.headers())
            return answer
        except Exception as error:
            if client_left(request, error):
                log.debug("%s %s: %s", request.method, request.path, CLIENT_LEFT)
                return reply(None, CLIENT_LEFT, 400)
            log.exception("unhandled error on %s %s", request.method, request.path)
            return reply(None, "Internal server error", 500)
        return reply(data, message)

    return wrapped


def cloud_of(request: web.Request) -> Cloud:
    """The dialect's cloud; 503 in the envelope while the hub is still starting."""
    slot = request.app.get(CLOUD)
    if slot is None:
        raise Unavailable("starting")
    if slot.cloud is None:
        hub = getattr(slot.startup(), "hub", None)
        if hub is None:
            raise Unavailable("starting")
        slot.cloud = Cloud(hub, hub.settings.infiniteclouds)
    return slot.cloud


async def read_raw(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    return raw


async def read_json(request: web.Request) -> dict[str, Any]:
    return codec.decode_body(
        await read_raw(request, cloud_of(request).hub.settings.max_message_bytes)
    )


async def registration(request: web.Request) -> tuple[Any, str]:
    cloud = cloud_of(request)
    authorization = request.headers.get("Authorization")
    # A request without a token can only be a registration (anything else is refused
    # for the missing token), so a stranger's body is held to the registration limit
    # before it is read.
    small = cloud.settings.max_registration_bytes
    raw = await read_raw(request, cloud.hub.settings.max_message_bytes if authorization else small)
    body = codec.decode_body(raw)
    kind = codec.status_type(body)
    if kind is None:
        if len(raw) > small:
            raise PayloadTooLarge(f"a registration is larger than {small} bytes")
        return await cloud.register(body, source=request.remote or "", authorization=authorization)
    if kind not in codec.KNOWN_STATUS_TYPES:
        if not cloud.settings.lenient_status_types:
            raise BadRequest(f"unknown statusType {codec.field(body, 'statusType')!r}")
        device = await cloud.authenticate(request.headers.get("Authorization"), body)
        cloud.hub.presence.activity(device.id, timeout=cloud.presence_timeout)
        return await cloud.triggers(device), "success"
    device = await cloud.authenticate(request.headers.get("Authorization"), body)
    return await cloud.report(device, kind, body), "success"


async def config(request: web.Request) -> tuple[Any, str]:
    cloud = cloud_of(request)
    body = await read_json(request) if request.method == "POST" else {}
    device = await cloud.authenticate(request.headers.get("Authorization"), body)
    known = codec.field(dict(request.query), "revisionID")
    if known is None:
        known = codec.field(body, "revisionID")
    return await cloud.config(device, None if known is None else str(known))


async def firmware(request: web.Request) -> tuple[Any, str]:
    cloud = cloud_of(request)
    device = await cloud.authenticate(request.headers.get("Authorization"), {})
    return await cloud.firmware(device)


def add_routes(app: web.Application, startup: Callable[[], Any]) -> None:
    app[CLOUD] = Slot(startup)
    app.router.add_post("/v1/device/registration", enveloped(registration))
    app.router.add_get("/v1/device/config", enveloped(config))
    app.router.add_post("/v1/device/config", enveloped(config))
    app.router.add_get("/v1/device/firmware", enveloped(firmware))
