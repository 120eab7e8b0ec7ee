"""The native client WebSocket: send commands and follow devices live.

Connect to ``/api/v1/ws`` with ``Authorization: Bearer <token or API key>`` (or send an
``authenticate`` frame first). Frames carry ``type`` and an optional ``requestId`` that
the ``response``/``error`` answer echoes:

* ``command.create`` / ``command.get`` / ``command.cancel``;
* ``subscribe`` with ``topic`` (``notification``, ``command``, ``command_update``,
  ``presence``) and optional ``deviceIds``, ``networkIds``, ``deviceTypeIds``, ``names``;
  answered with ``{"subscriptionId": n}``, after which matching events arrive as
  ``{"type":"event","subscriptionId":n,"topic":...,"data":{...}}``;
* ``unsubscribe`` with ``subscriptionId``; ``ping``.

A bad frame gets an ``error`` frame and the connection stays open. A client too slow to
read its events is disconnected (close code 1008) rather than slowing anyone else.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

from tether.api.auth import bearer
from tether.api.codec import (
    AuthenticateFrame,
    ClientInbound,
    ClientPingFrame,
    CommandCancelFrame,
    CommandCreateFrame,
    CommandGetFrame,
    EventFrame,
    SubscribeFrame,
    UnsubscribeFrame,
)
from tether.api.http import hub_of
from tether.api.spec import endpoint
from tether.api.views import PresenceView, command_view, encoder, notification_view
from tether.api.ws import Connection, answer_frame, read_frames
from tether.core import jsonc
from tether.core.access import Principal
from tether.core.errors import BadRequest, NotFound, Unauthorized
from tether.core.filters import EventFilter
from tether.core.model import Command, Notification
from tether.hub.events import PresenceChanged
from tether.hub.service import Hub
from tether.hub.subscriptions import Subscription, Topic

log = logging.getLogger("tether.api.client_ws")

routes = web.RouteTableDef()

_decoder = jsonc.Decoder[ClientInbound](ClientInbound, what="frame")


class _Rendered:
    """The last event rendered to JSON, shared by every subscriber it is offered to.

    The hub offers one event to all its subscribers in a row, so a one-entry memo keyed
    by identity renders it once per event instead of once per subscriber: with 10,000
    subscribers, encoding the same view per socket was a quarter of the fan-out's CPU
    (profiled in docs/performance.md, P4). Events are frozen structs, so the same object
    always renders the same; the memo holds a reference, so identity cannot be reused.
    """

    __slots__ = ("data", "item")

    def __init__(self) -> None:
        self.item: Any = None
        self.data = msgspec.Raw(b"null")

    def of(self, item: Any) -> msgspec.Raw:
        if item is not self.item or self.item is None:
            self.data = msgspec.Raw(encoder.encode(_view(item)))
            self.item = item
        return self.data


def _view(item: Any) -> Any:
    if isinstance(item, Command):
        return command_view(item)
    if isinstance(item, Notification):
        return notification_view(item)
    if isinstance(item, PresenceChanged):
        return PresenceView(device_id=item.device.id, online=item.online, at=item.at)
    return item


_rendered = _Rendered()


class ClientConnection(Connection):
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, hub: Hub) -> None:
        super().__init__(ws, request, hub.settings)
        self.principal: Principal | None = None
        self.subscriptions: set[int] = set()

    def offer(self, subscription: Subscription, item: Any) -> bool:
        """Sink for the hub: render the event for this client and queue it."""
        return self.send(
            EventFrame(
                subscription_id=subscription.id,
                topic=subscription.topic.value,
                data=_rendered.of(item),
            )
        )


@endpoint(
    routes,
    "GET",
    "/api/v1/ws",
    tag="client",
    summary="Client WebSocket (upgrade): commands and live subscriptions.",
)
async def client_socket(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    principal = None
    credential = bearer(request) or request.query.get("token")
    if credential:
        principal = await hub.auth.principal(credential)  # 401 before upgrading
    ws = web.WebSocketResponse(
        heartbeat=hub.settings.ws_heartbeat,
        max_msg_size=hub.settings.max_message_bytes,
        compress=False,
    )
    await ws.prepare(request)
    conn = ClientConnection(ws, request, hub)
    conn.principal = principal
    if principal is None:
        conn.require_auth(lambda: conn.principal is not None, hub.settings.ws_auth_timeout)

    async def handle(data: str | bytes) -> None:
        await answer_frame(
            conn,
            data,
            _decoder,
            lambda frame: _dispatch(hub, conn, frame),
            limit=hub.settings.max_message_bytes,
            reply_without_id=True,
        )

    try:
        await read_frames(conn, handle)
    finally:
        for subscription_id in list(conn.subscriptions):
            await hub.unsubscribe(subscription_id)
        conn.close(1000, "")
        await conn.finish()
    return ws


def _ids(values: list[Any] | None) -> frozenset[Any] | None:
    return None if values is None else frozenset(values)


async def _dispatch(hub: Hub, conn: ClientConnection, frame: ClientInbound) -> Any:
    if isinstance(frame, AuthenticateFrame):
        conn.principal = await hub.auth.principal(frame.token)
        return {}
    if isinstance(frame, ClientPingFrame):
        return {"pong": True}
    principal = conn.principal
    if principal is None:
        raise Unauthorized("authenticate first")
    await hub.auth.recheck(principal)  # a user locked since connecting is refused at once
    if isinstance(frame, CommandCreateFrame):
        options: dict[str, Any] = {}
        if frame.timeout is not msgspec.UNSET:
            options["timeout"] = frame.timeout
        if frame.lifetime is not msgspec.UNSET:
            options["lifetime"] = frame.lifetime
        command = await hub.commands.create(
            principal,
            frame.device_id,
            frame.name,
            frame.parameters,
            idempotency_key=frame.idempotency_key,
            **options,
        )
        return command_view(command)
    if isinstance(frame, CommandGetFrame):
        return command_view(await hub.commands.get(principal, frame.id))
    if isinstance(frame, CommandCancelFrame):
        return command_view(await hub.commands.cancel(principal, frame.id))
    if isinstance(frame, SubscribeFrame):
        event_filter = EventFilter(
            device_ids=_ids(frame.device_ids),
            network_ids=_ids(frame.network_ids),
            device_type_ids=_ids(frame.device_type_ids),
            names=_ids(frame.names),
        )
        subscription = await hub.subscribe(principal, Topic(frame.topic), event_filter, conn)
        conn.subscriptions.add(subscription.id)
        return {"subscriptionId": subscription.id}
    if isinstance(frame, UnsubscribeFrame):
        if frame.subscription_id not in conn.subscriptions:
            raise NotFound(f"subscription {frame.subscription_id} not found")
        conn.subscriptions.discard(frame.subscription_id)
        await hub.unsubscribe(frame.subscription_id)
        return {}
    raise BadRequest("unknown frame")
