"""Raw aiohttp device WebSockets: the baseline for P1 (idle connections) and P5 (storms).

Run as its own process (``python -m bench.rawws --port P``, the fleet secret in the
``BENCH_FLEET_SECRET`` environment variable) on uvloop, as ``tether serve`` runs. It
accepts each dialect's device socket with the same wire steps as Tether and nothing
else, so a Tether/raw ratio isolates what Tether holds and does per connection:

* native ``/api/v1/device/ws?deviceId=ID`` with ``Authorization: Bearer <credential>``,
  checked before the upgrade (the credential is derived from the secret and the id,
  :func:`bench.fleet.credential`, so the check is one HMAC, as Tether's is one SHA-256);
* eWeLink ``POST /dispatch/device`` (a constant answer), then ``/api/ws`` and a
  ``register`` frame, answered with the owner apikey;
* DeviceHive ``/api/websocket``: ``authenticate`` (token compared with a constant) and
  ``command/subscribe``, each answered with ``success``.

A registered socket is kept in a dict by device id (the "registry"), and
``GET /stats`` answers how many are in it, so the storm scenario can wait for the raw
server's registry as it waits for Tether's presence count.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os

import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import serve_app
from bench.fleet import DH_TOKEN_ENV, SECRET_ENV, credential

_OWNER = "11111111-2222-3333-4444-555555555555"
_CONFIG = {"hb": 1, "hbInterval": 145}


class _Frame(msgspec.Struct):
    """Any frame a device sends first; fields a frame lacks stay unset."""

    action: str | None = None
    requestId: str | int | None = None
    deviceid: str | None = None
    deviceId: str | None = None
    token: str | None = None
    sequence: str | None = None


class Registry:
    """The connected devices by id: what "online" means to the raw server."""

    def __init__(self, secret: str, dh_token: str) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.secret = secret
        self.dh_token = dh_token
        self.decode = msgspec.json.Decoder(_Frame).decode
        self.encode = msgspec.json.Encoder().encode

    def add(self, device_id: str, ws: web.WebSocketResponse) -> None:
        old = self.sockets.get(device_id)
        self.sockets[device_id] = ws
        if old is not None and old is not ws:
            # A newer connection of the same device replaces the old one, as in Tether.
            asyncio.get_running_loop().create_task(old.close())

    def remove(self, device_id: str | None, ws: web.WebSocketResponse) -> None:
        if device_id is not None and self.sockets.get(device_id) is ws:
            del self.sockets[device_id]

    async def native(self, request: web.Request) -> web.StreamResponse:
        device_id = request.query.get("deviceId", "")
        given = request.headers.get("Authorization", "")[7:]
        if not device_id or not hmac.compare_digest(given, credential(self.secret, device_id)):
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        self.add(device_id, ws)
        try:
            async for _ in ws:
                pass  # idle devices: nothing to relay
        finally:
            self.remove(device_id, ws)
        return ws

    async def ewelink(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        mine: str | None = None
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                if message.data == "ping":
                    await ws.send_str("pong")
                    continue
                frame = self.decode(message.data)
                if frame.action == "register" and frame.deviceid:
                    mine = frame.deviceid
                    self.add(mine, ws)
                    reply = {"error": 0, "deviceid": mine, "apikey": _OWNER, "config": _CONFIG}
                    await ws.send_str(self.encode(reply).decode())
        finally:
            self.remove(mine, ws)
        return ws

    async def devicehive(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        mine: str | None = None
        authenticated = False
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = self.decode(message.data)
                reply: dict[str, object] = {"action": frame.action, "requestId": frame.requestId}
                if frame.action == "authenticate":
                    authenticated = frame.token == self.dh_token
                elif frame.action == "command/subscribe" and authenticated and frame.deviceId:
                    mine = frame.deviceId
                    self.add(mine, ws)
                    reply["subscriptionId"] = 1
                ok = authenticated
                reply["status"] = "success" if ok else "error"
                await ws.send_str(self.encode(reply).decode())
        finally:
            self.remove(mine, ws)
        return ws

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        host, port = request.url.host, request.url.port
        body = {"error": 0, "reason": "ok", "IP": host, "port": port}
        return web.Response(body=self.encode(body), content_type="application/json")

    async def stats(self, request: web.Request) -> web.StreamResponse:
        body = self.encode({"online": len(self.sockets)})
        return web.Response(body=body, content_type="application/json")


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def build() -> web.Application:
    registry = Registry(os.environ.get(SECRET_ENV, ""), os.environ.get(DH_TOKEN_ENV, ""))
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", registry.stats)
    app.router.add_get("/api/v1/device/ws", registry.native)
    app.router.add_post("/dispatch/device", registry.dispatch)
    app.router.add_get("/api/ws", registry.ewelink)
    app.router.add_get("/api/websocket", registry.devicehive)
    return app


async def serve(port: int, backlog: int) -> None:
    await serve_app(build(), port, backlog=backlog)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=128, help="listen backlog (aiohttp's)")
    args = parser.parse_args()
    from bench.fleet import raise_fd_limit

    raise_fd_limit()
    uvloop.run(serve(args.port, args.backlog))


if __name__ == "__main__":
    main()
