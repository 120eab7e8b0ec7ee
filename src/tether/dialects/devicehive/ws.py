"""The DeviceHive WebSocket, ``/api/websocket``: one endpoint for clients and devices.

Each text frame is a request ``{"action": ..., "requestId": ..., <params>}`` answered by
one frame echoing ``action`` and ``requestId`` with ``status``. Requests run
concurrently (answers carry the request id), except the ones that change who the
connection is (``authenticate`` and the token actions), which finish before the next
frame is read. A frame that cannot be handled gets an error frame; the connection stays.

Subscriptions: the hub matches live events to this connection (a ``Sink``); the
``subscriptionId`` answer goes first, then the replay of stored items newer than
``timestamp``, then live events (held back while the replay is sent, and never sent
twice). Commands pushed to a DeviceHive device's subscription count as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tether.core.access import Action, Principal
from tether.core.errors import TetherError, Unauthorized
from tether.core.model import Command, Notification
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.clock import wall
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.common import device_id_of, id_of, need, object_of
from tether.dialects.devicehive.ops import DirectoryOps
from tether.dialects.devicehive.streams import MessageOps, Selection
from tether.dialects.devicehive.ws_directory import DirectoryActions
from tether.hub.subscriptions import Subscription
from tether.hub.tokens import TokenType
from tether.outbox import Outbox

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.devicehive.ws")

#: Actions that change the connection's identity: handled in order, not concurrently.
SEQUENTIAL = frozenset({"authenticate", "token", "token/refresh", "token/create"})
MAX_CONCURRENT = 64


@dataclass
class SubState:
    sub: Subscription
    sel: Selection
    timestamp: str | None
    limit: int = 20
    replaying: bool = True
    held: list[Any] = field(default_factory=list)
    sent: set[tuple[int, str | None]] = field(default_factory=set)


class DhConnection(DirectoryActions):
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        hub: Hub,
        ops: DirectoryOps,
        msgs: MessageOps,
        rest_url: str,
        source: str,
    ) -> None:
        self.ws = ws
        settings = hub.settings
        self.outbox = Outbox(ws, request, settings.send_queue_size, settings.ws_close_timeout)
        #: The peer's address, which logins over this connection are throttled by.
        self.source = source
        self.hub = hub
        self.ops = ops
        self.msgs = msgs
        self.rest_url = rest_url
        self.principal: Principal | None = None
        #: When the access token behind ``principal`` expires: later requests get 401
        #: (DeviceHive clients then refresh and authenticate again).
        self.expires_at: datetime | None = None
        #: Why the connection lost its identity, for the 401 message.
        self.why = ""
        self.subs: dict[int, SubState] = {}
        #: Events waiting to be rendered and sent, and the task sending them: both made on
        #: the first event, so an idle subscriber holds neither (P1).
        self.events: asyncio.Queue[tuple[SubState, Any]] | None = None
        self._events_size = hub.settings.send_queue_size
        self._pump: asyncio.Task[None] | None = None
        self.closing = False

    # --- plumbing ----------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        """Queue an answer; a peer whose queue is full is cut off as a slow consumer."""
        self.outbox.send(codec.encode(frame))

    async def handle(self, raw: str, parsed: tuple[str, Any, dict[str, Any]] | None = None) -> None:
        try:
            action, request_id, message = parsed or codec.parse_request(raw)
        except DhError as bad:
            echo_action, echo_id = codec.echo_of(raw)
            await self.send(codec.failure(echo_action, echo_id, bad.code, bad.message))
            return
        if self.expires_at is not None and wall(self.hub.clock) >= self.expires_at:
            self.principal = self.expires_at = None
            self.why = "Token expired"
        try:
            handler = HANDLERS.get(action)
            if handler is None:
                raise DhError(400, f"Illegal argument: {action}")
            if self.principal is not None:
                # A user locked, disabled or deleted since authenticating loses the identity
                # at once (and may authenticate again as someone else).
                try:
                    await self.hub.auth.recheck(self.principal)
                except Unauthorized as gone:
                    self.principal = self.expires_at = None
                    self.why = gone.message
            payload = await handler(self, message)
            frame = codec.success(action, request_id, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not isinstance(exc, (DhError,)) and not hasattr(exc, "status"):
                log.exception("devicehive action %s failed", action)
            mapped = codec.error_of(exc)
            text = self.why if mapped.code == 401 and self.why else mapped.message
            frame = codec.failure(action, request_id, mapped.code, text)
        await self.send(frame)
        if action.endswith("/subscribe") and frame["status"] == "success":
            await self.start_replay(frame["subscriptionId"])

    def _queue(self) -> asyncio.Queue[tuple[SubState, Any]]:
        """The event queue, with its pump started on first use."""
        if self.events is None:
            self.events = asyncio.Queue(self._events_size)
            self._pump = asyncio.create_task(self.pump(), name="devicehive-ws-pump")
        return self.events

    async def stop_pump(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def offer(self, subscription: Subscription, item: Any) -> bool:
        """The hub's sink: hold events during a replay, else queue them for sending."""
        state = self.subs.get(subscription.id)
        if state is None or self.closing:
            return True
        if state.replaying:
            if len(state.held) >= self._events_size:
                return False
            state.held.append(item)
            return True
        try:
            self._queue().put_nowait((state, item))
        except asyncio.QueueFull:
            self.closing = True
            self.outbox.cut(1008, "too slow to read events")
            return False
        return True

    async def pump(self) -> None:
        """Send queued events in order: render, mark delivered, write."""
        events = self._queue()
        while True:
            state, item = await events.get()
            if state.sub.id not in self.subs or not state.sel.wants(item):
                continue
            key = (
                item.id,
                codec.fmt_ts(codec.last_updated(item))
                if isinstance(item, Command) and state.sel.return_updated
                else None,
            )
            if key in state.sent:
                continue
            if len(state.sent) > 10_000:
                state.sent.clear()
            state.sent.add(key)
            if isinstance(item, Command) and not state.sel.return_updated:
                await self.msgs.delivered([item])
            view = await self.msgs.render(item)
            if isinstance(item, Notification):
                frame = codec.event("notification/insert", state.sub.id, "notification", view)
            else:
                action = "command/update" if state.sel.return_updated else "command/insert"
                frame = codec.event(action, state.sub.id, "command", view)
            # Paced by the socket: while the outbox is full, events wait in their own
            # bounded queue, whose overflow cuts the peer (offer).
            await self.outbox.put(codec.encode(frame))

    async def start_replay(self, subscription_id: int) -> None:
        state = self.subs.get(subscription_id)
        if state is None:
            return
        try:
            if state.timestamp is not None and self.principal is not None:
                limit = 100 if state.sel.kind == "notification" else state.limit
                found = await self.msgs.replay(
                    self.principal, state.sel, codec.cursor(state.timestamp), limit
                )
                for item in found:
                    # Waits for the sender when the queue is full: a long replay (limit 0)
                    # is paced by the socket instead of being cut short.
                    await self._queue().put((state, item))
        except Exception:
            log.exception("replay of subscription %s failed", subscription_id)
        finally:
            state.replaying = False
            held, state.held = state.held, []
            for item in held:
                self.offer(state.sub, item)

    async def close(self) -> None:
        self.closing = True
        for sub_id in list(self.subs):
            await self._drop(sub_id)

    async def _drop(self, sub_id: int) -> None:
        state = self.subs.pop(sub_id)
        if state.sel.listener and state.sel.device_id is not None:
            self.hub.presence.session_closed(state.sel.device_id)
        await self.hub.unsubscribe(sub_id)

    # --- info and auth -----------------------------------------------------------------

    async def server_info(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"info": codec.ws_info(self.hub.clock.now(), self.rest_url)}

    async def cache_info(self, m: dict[str, Any]) -> dict[str, Any]:
        now = codec.fmt_ts(self.hub.clock.now())
        return {"cacheInfo": {"serverTimestamp": now, "cacheStats": ""}}

    async def cluster_info(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"clusterInfo": dict(codec.CLUSTER_INFO)}

    async def authenticate(self, m: dict[str, Any]) -> None:
        self.principal = await self.ops.authenticate(m)
        self.why = ""
        try:
            claims = self.hub.auth.tokens.decode(
                str(m.get("token")), self.hub.clock.now(), TokenType.ACCESS
            )
            self.expires_at = claims.expires_at
        except TetherError:
            self.expires_at = None  # an API key: no expiry of its own
        return None

    async def token(self, m: dict[str, Any]) -> dict[str, Any]:
        return await self.ops.token(m, source=self.source)

    async def token_refresh(self, m: dict[str, Any]) -> dict[str, Any]:
        return await self.ops.refresh(m)

    async def token_create(self, m: dict[str, Any]) -> dict[str, Any]:
        return await self.ops.create_token(self.principal, object_of(m, "payload"))

    async def config_get(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"configuration": await self.ops.get_config(self.principal, m.get("name"))}

    async def config_put(self, m: dict[str, Any]) -> dict[str, Any]:
        config = await self.ops.put_config(self.principal, m.get("name"), m.get("value"))
        return {"configuration": config}

    async def config_delete(self, m: dict[str, Any]) -> None:
        await self.ops.delete_config(self.principal, m.get("name"))

    # --- devices -----------------------------------------------------------------------

    async def device_get(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"device": await self.ops.device_get(self.principal, device_id_of(m))}

    async def device_list(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"devices": await self.ops.device_list(self.principal, m, 20)}

    async def device_count(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"count": await self.ops.device_count(self.principal, m)}

    async def device_save(self, m: dict[str, Any]) -> None:
        body = object_of(m, "device")
        await self.ops.device_save(self.principal, device_id_of(m), body, strict_id=True)

    async def device_delete(self, m: dict[str, Any]) -> None:
        await self.ops.device_delete(self.principal, device_id_of(m))

    # --- commands and notifications ----------------------------------------------------

    async def command_insert(self, m: dict[str, Any]) -> dict[str, Any]:
        command = await self.msgs.command_insert(
            self.principal, device_id_of(m), object_of(m, "command")
        )
        return {"command": codec.command_inserted(command)}

    async def command_update(self, m: dict[str, Any]) -> None:
        await self.msgs.command_update(
            self.principal, device_id_of(m), id_of(m, "commandId"), object_of(m, "command")
        )

    async def command_get(self, m: dict[str, Any]) -> dict[str, Any]:
        view = await self.msgs.command_get(self.principal, device_id_of(m), id_of(m, "commandId"))
        return {"command": view}

    async def command_list(self, m: dict[str, Any]) -> dict[str, Any]:
        found = await self.msgs.command_list(
            self.principal, device_id_of(m), m, default_take=20, default_sort=None
        )
        return {"commands": found}

    async def notification_insert(self, m: dict[str, Any]) -> dict[str, Any]:
        notification = await self.msgs.notification_insert(
            self.principal, device_id_of(m), object_of(m, "notification")
        )
        return {"notification": codec.notification_inserted(notification)}

    async def notification_get(self, m: dict[str, Any]) -> dict[str, Any]:
        view = await self.msgs.notification_get(
            self.principal, device_id_of(m), id_of(m, "notificationId")
        )
        return {"notification": view}

    async def notification_list(self, m: dict[str, Any]) -> dict[str, Any]:
        found = await self.msgs.notification_list(
            self.principal, device_id_of(m), m, default_take=20, default_sort=None
        )
        return {"notifications": found}

    async def _subscribe(self, kind: str, m: dict[str, Any]) -> dict[str, Any]:
        sel = await self.msgs.select(self.principal, kind, m)
        principal = need(self.principal)
        raw_ts = m.get("timestamp")
        if raw_ts:
            codec.cursor(raw_ts)  # 400 now rather than a silent replay failure
        limit = codec.opt_int(m.get("limit"), "limit")
        if limit is not None and limit < 0:
            raise DhError(400, "Invalid request parameters: limit must not be negative")
        sub = await self.hub.subscribe(principal, sel.topic, sel.filter, self)
        state = SubState(sub, sel, raw_ts if raw_ts else None, 20 if limit is None else limit)
        self.subs[sub.id] = state
        if sel.listener and sel.device_id is not None:
            # The device's agent listening for its commands is its live session.
            self.hub.presence.session_opened(sel.device_id)
        return {"subscriptionId": sub.id}

    async def command_subscribe(self, m: dict[str, Any]) -> dict[str, Any]:
        return await self._subscribe("command", m)

    async def notification_subscribe(self, m: dict[str, Any]) -> dict[str, Any]:
        return await self._subscribe("notification", m)

    async def _unsubscribe(self, kind: str, m: dict[str, Any]) -> None:
        need(self.principal)
        raw = m.get("subscriptionId")
        if raw is None:
            for sub_id, state in list(self.subs.items()):
                if state.sel.kind == kind:
                    await self._drop(sub_id)
            return
        wanted = codec.opt_int(raw, "subscriptionId")
        found = self.subs.get(wanted) if wanted is not None else None
        if found is None or found.sel.kind != kind:
            raise DhError(404, f"Subscription with id {raw} was not found")
        await self._drop(found.sub.id)

    async def command_unsubscribe(self, m: dict[str, Any]) -> None:
        await self._unsubscribe("command", m)

    async def notification_unsubscribe(self, m: dict[str, Any]) -> None:
        await self._unsubscribe("notification", m)

    async def subscription_list(self, m: dict[str, Any]) -> dict[str, Any]:
        principal = need(self.principal)
        if (
            Action.GET_DEVICE_COMMAND not in principal.actions
            and Action.GET_DEVICE_NOTIFICATION not in principal.actions
        ):
            raise DhError(403, "Access is denied")
        kind = m.get("type")
        if kind not in (None, "command", "notification"):
            raise DhError(400, "Invalid request parameters: type")
        out = []
        for sub_id, state in sorted(self.subs.items()):
            if kind is not None and state.sel.kind != kind:
                continue
            sel = state.sel
            out.append(
                {
                    "subscriptionId": sub_id,
                    "type": sel.kind,
                    "deviceId": sel.device_id,
                    "networkIds": sel.network_ids,
                    "deviceTypeIds": sel.type_ids,
                    "names": sel.names,
                    "timestamp": state.timestamp,
                }
            )
        return {"subscriptions": out}


Handler = Callable[["DhConnection", dict[str, Any]], Awaitable[dict[str, Any] | None]]

#: Every action by name. One table for the class, not one per connection: built per
#: connection, its bound methods and closures were about 8 KiB of each idle socket (P1).
HANDLERS: dict[str, Handler] = {
    "server/info": DhConnection.server_info,
    "server/cacheInfo": DhConnection.cache_info,
    "cluster/info": DhConnection.cluster_info,
    # Not in DeviceHive 3.5.0's WebSocket; the REST /info/config/cluster twin.
    "server/config": DhConnection.cluster_info,
    "authenticate": DhConnection.authenticate,
    "token": DhConnection.token,
    "token/refresh": DhConnection.token_refresh,
    "token/create": DhConnection.token_create,
    "configuration/get": DhConnection.config_get,
    "configuration/put": DhConnection.config_put,
    "configuration/delete": DhConnection.config_delete,
    "device/get": DhConnection.device_get,
    "device/list": DhConnection.device_list,
    "device/count": DhConnection.device_count,
    "device/save": DhConnection.device_save,
    "device/delete": DhConnection.device_delete,
    "command/insert": DhConnection.command_insert,
    "command/update": DhConnection.command_update,
    "command/get": DhConnection.command_get,
    "command/list": DhConnection.command_list,
    "command/subscribe": DhConnection.command_subscribe,
    "command/unsubscribe": DhConnection.command_unsubscribe,
    "notification/insert": DhConnection.notification_insert,
    "notification/get": DhConnection.notification_get,
    "notification/list": DhConnection.notification_list,
    "notification/subscribe": DhConnection.notification_subscribe,
    "notification/unsubscribe": DhConnection.notification_unsubscribe,
    "subscription/list": DhConnection.subscription_list,
    "user/list": DhConnection.user_list,
    "user/count": DhConnection.user_count,
    "user/get": DhConnection.user_get,
    "user/getCurrent": DhConnection.user_get_current,
    "user/insert": DhConnection.user_insert,
    "user/update": DhConnection.user_update,
    "user/updateCurrent": DhConnection.user_update_current,
    "user/delete": DhConnection.user_delete,
    "user/getNetwork": DhConnection.user_get_network,
    "user/assignNetwork": DhConnection.user_assign_network,
    "user/unassignNetwork": DhConnection.user_unassign_network,
    "user/getDeviceType": DhConnection.user_get_device_type,
    "user/getDeviceTypes": DhConnection.user_get_device_types,
    "user/assignDeviceType": DhConnection.user_assign_device_type,
    "user/unassignDeviceType": DhConnection.user_unassign_device_type,
    "user/allowAllDeviceTypes": DhConnection.user_allow_all,
    "user/disallowAllDeviceTypes": DhConnection.user_disallow_all,
}


def _scoped(make: str, kind: str) -> Handler:
    """The ``network/*`` and ``devicetype/*`` actions, from their per-kind builders."""

    def run(conn: DhConnection, message: dict[str, Any]) -> Awaitable[dict[str, Any] | None]:
        action: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]
        action = getattr(conn, make)(kind)
        return action(message)

    return run


for _kind in ("network", "devicetype"):
    for _verb in ("list", "count", "get", "insert", "update", "delete"):
        HANDLERS[f"{_kind}/{_verb}"] = _scoped(f"_scope_{_verb}", _kind)


async def serve(
    request: web.Request,
    hub: Hub,
    ops: DirectoryOps,
    msgs: MessageOps,
    live: set[web.WebSocketResponse],
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        heartbeat=hub.settings.ws_heartbeat, max_msg_size=hub.settings.max_message_bytes
    )
    await ws.prepare(request)
    live.add(ws)
    scheme = "https" if request.secure else "http"
    rest_url = f"{scheme}://{request.host}/api/rest"
    conn = DhConnection(ws, request, hub, ops, msgs, rest_url, request.remote or "")
    # Anonymous actions (server/info, token) are allowed, but not an anonymous socket
    # kept open: authenticate within the deadline or be closed.
    conn.outbox.require_auth(
        lambda: conn.principal is not None, hub.settings.ws_auth_timeout, code=1008
    )
    running: set[asyncio.Task[None]] = set()
    slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def run(raw: str, parsed: tuple[str, Any, dict[str, Any]] | None) -> None:
        try:
            await conn.handle(raw, parsed)
        finally:
            slots.release()

    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    parsed: tuple[str, Any, dict[str, Any]] | None = codec.parse_request(msg.data)
                except DhError:
                    parsed = None  # handle() answers with the error frame
                await slots.acquire()
                if parsed is None or parsed[0] in SEQUENTIAL:
                    await run(msg.data, parsed)
                else:
                    task = asyncio.create_task(run(msg.data, parsed))
                    running.add(task)
                    task.add_done_callback(running.discard)
            elif msg.type == WSMsgType.BINARY:
                await conn.send(codec.failure(None, None, 400, "Binary frames are not supported"))
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        live.discard(ws)
        await conn.close()
        for task in list(running):
            task.cancel()
        await conn.stop_pump()
        await conn.outbox.finish()
    return ws
