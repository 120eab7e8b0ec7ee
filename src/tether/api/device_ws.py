"""The native device WebSocket: commands pushed as they arrive, results and telemetry back.

Connect to ``/api/v1/device/ws?deviceId=<id>`` with ``Authorization: Bearer <credential>``,
or send ``{"type":"hello","deviceId":...,"credential":...}`` as the first frame. Then:

* server → device: ``{"type":"command","command":{...}}`` for each command, oldest first,
  at most ``max_in_flight`` unfinished at a time;
* device → server: ``ack`` (received), ``progress``, ``result``, ``notification``, ``state``
  and ``ping`` frames. A frame with a ``requestId`` gets a ``response`` (or ``error``) frame
  echoing it.

A bad frame gets an ``error`` frame; the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from tether.api.auth import bearer
from tether.api.codec import (
    AckFrame,
    CommandPush,
    DeviceInbound,
    HelloFrame,
    NotifyFrame,
    PingFrame,
    ProgressFrame,
    ResultFrame,
    StateFrame,
)
from tether.api.device_routes import make_step
from tether.api.http import hub_of
from tether.api.spec import Param, endpoint
from tether.api.views import command_view, notification_view, state_view
from tether.api.ws import Connection, answer_frame, read_frames
from tether.core import jsonc
from tether.core.errors import BadRequest, TetherError, Unauthorized
from tether.core.model import Command, Device
from tether.hub.service import Hub

log = logging.getLogger("tether.api.device_ws")

routes = web.RouteTableDef()

_decoder = jsonc.Decoder[DeviceInbound](DeviceInbound, what="frame")


class DeviceConnection(Connection):
    """A device's live session, as the hub's delivery sees it."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, device: Device, hub: Hub
    ) -> None:
        super().__init__(ws, request, hub.settings)
        self.device_id = device.id
        self.device = device
        self.max_in_flight = hub.settings.max_in_flight
        self.pushed: set[int] = set()

    def push(self, command: Command) -> bool:
        return self.send(CommandPush(command=command_view(command)))


@endpoint(
    routes,
    "GET",
    "/api/v1/device/ws",
    tag="device",
    auth="device",
    summary="Device WebSocket (upgrade): commands pushed, results and notifications back.",
    params=(Param("deviceId", description="The device id (or send a hello frame)."),),
)
async def device_socket(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    device: Device | None = None
    credential = bearer(request)
    device_id = request.query.get("deviceId")
    if credential and device_id:
        device, _ = await hub.auth.device(device_id, credential)  # 401 before upgrading
    ws = web.WebSocketResponse(
        heartbeat=hub.settings.ws_heartbeat,
        max_msg_size=hub.settings.max_message_bytes,
        compress=False,
    )
    if device is None and not ws.can_prepare(request).ok:
        # Not an upgrade, so no hello frame can follow: the missing credential is the error.
        raise Unauthorized("a device credential is required (bearer and deviceId, or hello)")
    await ws.prepare(request)
    if device is None:
        device = await _hello(ws, hub)
        if device is None:
            return ws
    conn = DeviceConnection(ws, request, device, hub)
    hub.delivery.attach(conn)

    async def handle(data: str | bytes) -> None:
        await answer_frame(
            conn,
            data,
            _decoder,
            lambda frame: _dispatch(hub, conn, frame),
            limit=hub.settings.max_message_bytes,
            reply_without_id=False,
        )

    try:
        await read_frames(conn, handle)
    finally:
        hub.delivery.detach(conn)
        conn.close(1000, "")
        await conn.finish()
    return ws


async def _hello(ws: web.WebSocketResponse, hub: Hub) -> Device | None:
    """Authenticate from the first frame; close with 4401 on failure."""
    try:
        message = await asyncio.wait_for(ws.receive(), hub.settings.ws_auth_timeout)
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            raise Unauthorized("expected a hello frame")
        frame = _decoder.decode(message.data)
        if not isinstance(frame, HelloFrame):
            raise Unauthorized("the first frame must be hello (or authenticate the upgrade)")
        device, _ = await hub.auth.device(frame.device_id, frame.credential)
        with contextlib.suppress(Exception):
            await ws.send_str(
                jsonc.encode_text({"type": "response", "requestId": frame.request_id, "data": {}})
            )
        return device
    except (TimeoutError, TetherError) as error:
        reason = error.message if isinstance(error, TetherError) else "authentication failed"
        await ws.close(code=4401, message=reason.encode()[:120])
        return None


async def _dispatch(hub: Hub, conn: DeviceConnection, frame: DeviceInbound) -> object:
    device = conn.device
    if isinstance(frame, AckFrame):
        return command_view(await hub.commands.acknowledge(device, frame.id))
    if isinstance(frame, ProgressFrame):
        return command_view(
            await hub.commands.progress(
                device,
                frame.id,
                status=frame.status,
                step=make_step(hub, frame.step),
                result=frame.result,
            )
        )
    if isinstance(frame, ResultFrame):
        return command_view(
            await hub.commands.complete(
                device,
                frame.id,
                success=frame.success,
                result=frame.result,
                error=frame.error,
                status=frame.status,
                step=make_step(hub, frame.step),
            )
        )
    if isinstance(frame, NotifyFrame):
        return notification_view(
            await hub.notifications.post_as_device(
                device, frame.name, frame.parameters, frame.timestamp
            )
        )
    if isinstance(frame, StateFrame):
        return state_view(await hub.twins.report(device, frame.reported))
    if isinstance(frame, PingFrame):
        return {"pong": True}
    raise BadRequest("hello is only valid as the first frame")
