"""``/api/ws``: the one WebSocket of apps and devices.

A connection becomes an app after a successful ``userOnline`` and a device after a
successful ``register``. A message with ``action`` is a request; an action-less message
from a device is the ack of a command pushed to it. Every reply echoes ``sequence`` with
its JSON type (and ``deviceid``/``apikey``, and ``d_seq`` for devices). Nothing a peer
sends closes the connection except a failed ``userOnline`` (error 406, then close, as the
cloud does) or silence longer than the heartbeat allows.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from aiohttp import WSMsgType, web

from tether.core.access import can_see_device
from tether.core.errors import InvalidJson, TetherError
from tether.dialects.ewelink import codec
from tether.dialects.ewelink.cloud import Cloud
from tether.dialects.ewelink.links import AppSession, DeviceLink, Peer, error_reply

log = logging.getLogger("tether.ewelink.ws")

#: Frames of one connection handled at once. An app ``update`` holds its slot until the
#: device acks (up to ``ack_timeout``), so this bounds a connection's outstanding updates:
#: at 1,000 updates/s and a few ms per round trip a few dozen are in flight; past the
#: bound, reading pauses and TCP pushes back on the app.
IN_FLIGHT = 1024


async def socket(request: web.Request, cloud: Cloud) -> web.StreamResponse:
    hub = cloud.hub
    ws = web.WebSocketResponse(autoping=True, max_msg_size=hub.settings.max_message_bytes)
    await ws.prepare(request)
    conn = _Conn(ws, request, cloud)
    try:
        await conn.run()
    finally:
        await conn.cleanup()
    return ws


class _Conn:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, cloud: Cloud) -> None:
        self.ws = ws
        self.cloud = cloud
        self.peer: Peer = Peer(ws, request, cloud.hub.settings)
        # The first frame (an app's userOnline, a device's register) must come in time.
        self.peer.require_auth(
            lambda: self.app is not None or self.link is not None,
            cloud.hub.settings.ws_auth_timeout,
            code=1008,
        )
        self.app: AppSession | None = None
        self.link: DeviceLink | None = None
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def idle_timeout(self) -> float:
        hb = self.cloud.settings.hb_interval
        if self.link is not None:
            return hb * 1.5 + 5
        return hb + 60.0

    async def run(self) -> None:
        while True:
            try:
                message = await self.ws.receive(timeout=self.idle_timeout)
            except TimeoutError:
                self.peer.close(1000, "heartbeat timeout")
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if message.type is WSMsgType.ERROR:
                return
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            data = message.data
            if data == "ping" or data == b"ping":
                self.peer.send_text("pong")
                await self._still_live()
                continue
            try:
                parsed = codec.decode(data)
            except InvalidJson:
                self.peer.send(error_reply(400))
                continue
            if not isinstance(parsed, dict):
                self.peer.send(error_reply(400))
                continue
            if self.app is None and self.link is None:
                await self._guard(self._handshake(parsed), parsed)
            elif self.link is not None and parsed.get("action") in (None, "update", "register"):
                # A device's acks and reports are handled in the order sent: the shadow is
                # a merge, and the ack of an app's update must reach the app before the
                # report the update caused (reference 3.1, 3.8; see Cloud.acked).
                await self._guard(self._device(self.link, parsed), parsed)
            else:
                await self.slots.acquire()
                task = asyncio.create_task(self._concurrent(parsed))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _concurrent(self, message: dict[str, Any]) -> None:
        try:
            if self.app is not None:
                await self._guard(self._app(self.app, message), message)
            elif self.link is not None:
                await self._guard(self._device(self.link, message), message)
        finally:
            self.slots.release()

    async def _guard(self, work: Any, message: dict[str, Any]) -> None:
        try:
            await work
        except TetherError as error:
            code = {401: 406, 403: 403, 404: 404}.get(error.status, 500)
            self.peer.send(error_reply(code, sequence=message.get("sequence")))
        except Exception:
            log.exception("eWeLink frame handling failed")
            self.peer.send(error_reply(500, sequence=message.get("sequence")))

    async def _still_live(self) -> None:
        """At an app's heartbeat, close it if its ``at`` was replaced on another node
        (this node's logins close their sessions at once, see Cloud._token_revoked)."""
        app = self.app
        if app is None or app.is_revoked:
            return
        try:
            live = await self.cloud.accounts.live(app.session.at_hash)
        except Exception:
            log.warning("eWeLink: cannot check an app's access token now", exc_info=True)
            return
        if not live:
            app.revoked()

    async def cleanup(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        cloud = self.cloud
        if self.app is not None:
            await cloud.remove_app(self.app)
        link = self.link
        if link is not None:
            cloud.hub.delivery.detach(link)
            if cloud.links.get(link.device_id) is link:
                del cloud.links[link.device_id]
        self.peer.close(1000, "")
        await self.peer.finish()

    # --- handshakes ---------------------------------------------------------------------------

    async def _handshake(self, message: dict[str, Any]) -> None:
        action = message.get("action")
        if action == "userOnline":
            await self._user_online(message)
        elif action == "register":
            await self._register(message)
        elif message.get("userAgent") == "app":
            self.peer.send(error_reply(406, sequence=message.get("sequence"), actionName=action))
            self.peer.close(1000, "userOnline first")
        else:
            reply: dict[str, Any] = {"error": 1, "reason": "Waiting for [register] request"}
            self.peer.send(_echo_device(reply, message))

    async def _user_online(self, message: dict[str, Any]) -> None:
        cloud = self.cloud
        sequence = message.get("sequence")
        apikey = message.get("apikey")
        try:
            session = await cloud.accounts.session(_str(message.get("at")))
            own = await cloud.accounts.apikey_of(session.user_id)
            if not isinstance(apikey, str) or not hmac.compare_digest(apikey, own):
                raise TetherError("apikey does not belong to this token")
        except TetherError:
            self.peer.send(
                {
                    "error": 406,
                    "reason": codec.REASONS[406],
                    "apikey": apikey,
                    "sequence": sequence,
                    "actionName": "userOnline",
                }
            )
            self.peer.close(1000, "authentication failed")
            return
        app = self.app = AppSession(self.peer, session, own)
        await cloud.add_app(app)
        reply: dict[str, Any] = {
            "error": 0,
            "apikey": own,
            "config": {"hb": 1, "hbInterval": cloud.settings.hb_interval},
        }
        if sequence is not None:
            reply["sequence"] = sequence
        app.send(reply)

    async def _register(self, message: dict[str, Any]) -> None:
        cloud = self.cloud
        hub = cloud.hub
        device = await cloud.ewelink_device(message.get("deviceid"))
        factory = message.get("apikey")
        known = (
            device is not None
            and isinstance(factory, str)
            and hmac.compare_digest(str(device.attributes.get("apikey", "")), factory)
        )
        if device is None or not known or device.blocked:
            self.peer.send(_echo_device(error_reply(403), message))
            return
        owner = await cloud.owner_apikey(device)
        if owner is None:
            self.peer.send(_echo_device(error_reply(404), message))
            return
        model = message.get("model")
        link = self.link = DeviceLink(
            self.peer,
            device,
            owner,
            hub.settings.max_in_flight,
            model if isinstance(model, str) else str(device.attributes.get("model", "")),
        )
        reply: dict[str, Any] = {
            "error": 0,
            "deviceid": device.id,
            "apikey": owner,
            "config": {"hb": 1, "hbInterval": cloud.settings.hb_interval},
        }
        link.send(_echo_device(reply, message))
        old = cloud.links.get(device.id)
        cloud.links[device.id] = link
        if old is not None:
            old.close(4001, "replaced by a newer connection of the same device")
        hub.delivery.attach(link)  # presence online -> sysmsg to the owner's apps
        link.shadow = params = await cloud.params_of(device)
        running = params.get("fwVersion", message.get("romVersion"))
        await cloud.offer_upgrade(link, running, fresh=True)

    # --- requests ------------------------------------------------------------------------------

    async def _app(self, app: AppSession, message: dict[str, Any]) -> None:
        cloud = self.cloud
        action = message.get("action")
        echo = {
            "deviceid": message.get("deviceid"),
            "apikey": message.get("apikey"),
            "sequence": message.get("sequence"),
        }
        if app.is_revoked:  # its at was replaced; the close is on its way
            app.send(error_reply(406, **echo))
            return
        # An account locked, disabled or deleted since userOnline is refused (406) at once.
        await cloud.hub.auth.recheck(app.session.principal)
        if action == "update":
            await cloud.control(
                app.session,
                message.get("deviceid"),
                message.get("params"),
                echo["sequence"],
                origin=app,
                reply=lambda code: app.send(error_reply(code, **echo)),
            )
        elif action == "query":
            device = await cloud.ewelink_device(message.get("deviceid"))
            if device is None or not can_see_device(app.session.principal, device):
                app.send(error_reply(403, **echo))
                return
            stored = await cloud.params_of(device)
            reply = error_reply(0, **echo)
            reply["params"] = codec.select_params(stored, message.get("params"))
            app.send(reply)
        elif action == "userOnline":
            app.send(
                {
                    "error": 0,
                    "apikey": app.apikey,
                    "config": {"hb": 1, "hbInterval": cloud.settings.hb_interval},
                    "sequence": echo["sequence"],
                }
            )
        else:
            app.send(error_reply(400, **echo))

    async def _device(self, link: DeviceLink, message: dict[str, Any]) -> None:
        cloud = self.cloud
        action = message.get("action")
        if action is None:
            await cloud.acked(link, message)
            return
        base: dict[str, Any] = {"error": 0, "deviceid": link.device_id, "apikey": link.owner_apikey}
        if action == "update":
            await cloud.reported(link, message)
            link.send(_echo_device(base, message))
            params = message.get("params")
            if isinstance(params, dict) and "fwVersion" in params:
                await cloud.offer_upgrade(link, params["fwVersion"])
        elif action == "date":
            now = cloud.hub.clock.now()
            link.send(_echo_device({**base, "date": codec.iso_millis(now)}, message))
        elif action == "query":
            stored = link.shadow if link.shadow is not None else await cloud.params_of(link.device)
            selected = codec.select_params(stored, message.get("params"))
            link.send(_echo_device({**base, "params": codec.to_device(selected)}, message))
        elif action == "register":
            link.send(
                _echo_device(
                    {**base, "config": {"hb": 1, "hbInterval": cloud.settings.hb_interval}},
                    message,
                )
            )
        else:
            link.send(_echo_device(error_reply(400, deviceid=link.device_id), message))


def _echo_device(reply: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """Device replies echo ``d_seq`` and ``sequence``: firmware matches replies by them."""
    out = dict(reply)
    if "deviceid" not in out and isinstance(message.get("deviceid"), str):
        out["deviceid"] = message["deviceid"]
    for key in ("d_seq", "sequence"):
        if key in message:
            out[key] = message[key]
    return out


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
