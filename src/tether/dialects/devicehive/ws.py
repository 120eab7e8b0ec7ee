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
        hub: Hub,
        ops: DirectoryOps,
        msgs: MessageOps,
        rest_url: str,
        source: str,
    ) -> None:
        self.ws = ws
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
        self.events: asyncio.Queue[tuple[SubState, Any]] = asyncio.Queue(
            hub.settings.send_queue_size
        )
        self.closing = False
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]] = {
            "server/info": self.server_info,
            "server/cacheInfo": self.cache_info,
            "cluster/info": self.cluster_info,
            # Not in DeviceHive 3.5.0's WebSocket; the REST /info/config/cluster twin.
            "server/config": self.cluster_info,
            "authenticate": self.authenticate,
            "token": self.token,
            "token/refresh": self.token_refresh,
            "token/create": self.token_create,
            "configuration/get": self.config_get,
            "configuration/put": self.config_put,
            "configuration/delete": self.config_delete,
            "device/get": self.device_get,
            "device/list": self.device_list,
            "device/count": self.device_count,
            "device/save": self.device_save,
            "device/delete": self.device_delete,
            "command/insert": self.command_insert,
            "command/update": self.command_update,
            "command/get": self.command_get,
            "command/list": self.command_list,
            "command/subscribe": self.command_subscribe,
            "command/unsubscribe": self.command_unsubscribe,
            "notification/insert": self.notification_insert,
            "notification/get": self.notification_get,
            "notification/list": self.notification_list,
            "notification/subscribe": self.notification_subscribe,
            "notification/unsubscribe": self.notification_unsubscribe,
            "subscription/list": self.subscription_list,
            "user/list": self.user_list,
            "user/count": self.user_count,
            "user/get": self.user_get,
            "user/getCurrent": self.user_get_current,
            "user/insert": self.user_insert,
            "user/update": self.user_update,
            "user/updateCurrent": self.user_update_current,
            "user/delete": self.user_delete,
            "user/getNetwork": self.user_get_network,
            "user/assignNetwork": self.user_assign_network,
            "user/unassignNetwork": self.user_unassign_network,
            "user/getDeviceType": self.user_get_device_type,
            "user/getDeviceTypes": self.user_get_device_types,
            "user/assignDeviceType": self.user_assign_device_type,
            "user/unassignDeviceType": self.user_unassign_device_type,
            "user/allowAllDeviceTypes": self.user_allow_all,
            "user/disallowAllDeviceTypes": self.user_disallow_all,
        }
        for kind in ("network", "devicetype"):
            self.handlers[f"{kind}/list"] = self._scope_list(kind)
            self.handlers[f"{kind}/count"] = self._scope_count(kind)
            self.handlers[f"{kind}/get"] = self._scope_get(kind)
            self.handlers[f"{kind}/insert"] = self._scope_insert(kind)
            self.handlers[f"{kind}/update"] = self._scope_update(kind)
            self.handlers[f"{kind}/delete"] = self._scope_delete(kind)

    # --- plumbing ----------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(codec.encode(frame))

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
            handler = self.handlers.get(action)
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
            payload = await handler(message)
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

    def offer(self, subscription: Subscription, item: Any) -> bool:
        """The hub's sink: hold events during a replay, else queue them for sending."""
        state = self.subs.get(subscription.id)
        if state is None or self.closing:
            return True
        if state.replaying:
            if len(state.held) >= self.events.maxsize:
                return False
            state.held.append(item)
            return True
        try:
            self.events.put_nowait((state, item))
        except asyncio.QueueFull:
            self.closing = True
            asyncio.get_running_loop().create_task(
                self.ws.close(code=1008, message=b"too slow to read events")
            )
            return False
        return True

    async def pump(self) -> None:
        """Send queued events in order: render, mark delivered, write."""
        while True:
            state, item = await self.events.get()
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
            await self.send(frame)

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
                    await self.events.put((state, item))
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


async def serve(
    request: web.Request,
    hub: Hub,
    ops: DirectoryOps,
    msgs: MessageOps,
    live: set[web.WebSocketResponse],
) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=hub.settings.max_message_bytes)
    await ws.prepare(request)
    live.add(ws)
    scheme = "https" if request.secure else "http"
    rest_url = f"{scheme}://{request.host}/api/rest"
    conn = DhConnection(ws, hub, ops, msgs, rest_url, request.remote or "")
    pump = asyncio.create_task(conn.pump(), name="devicehive-ws-pump")
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
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
    return ws
