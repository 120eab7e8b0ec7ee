"""Raw aiohttp baselines: the same request and frame shapes as Tether, no application logic.

Run as its own process (``python -m bench.baseline --port P``, credential in the
``BENCH_CREDENTIAL`` environment variable) on uvloop, exactly as ``tether serve`` runs,
so a Tether/baseline ratio isolates what Tether adds on top of aiohttp itself:

* ``GET /api/v1/device/{device_id}/commands`` (the empty poll): compare the
  ``Authorization`` header with a constant and answer ``[]`` as application/json.
* ``/api/v1/ws`` (app) and ``/api/v1/device/ws`` (device): a relay with no persistence.
  ``subscribe`` is answered with a ``response``; each ``command.create`` is forwarded to
  the device socket as a ``command`` frame, and each device ``result`` goes back to the
  subscribed app socket as a ``command_update`` ``event`` with state ``succeeded``.
* ``GET /healthz``: readiness for the harness.
"""

from __future__ import annotations

import argparse
import os

import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import serve_app

_HEALTHY = b'{"status":"ok"}'
_EMPTY = b"[]"
_NULL = msgspec.Raw(b"null")


class Inbound(msgspec.Struct):
    """Any frame either socket sends; fields a frame lacks stay unset."""

    type: str
    requestId: str | int | None = None
    deviceId: str | None = None
    name: str | None = None
    parameters: msgspec.Raw = _NULL
    id: int | None = None
    result: msgspec.Raw = _NULL


class Command(msgspec.Struct):
    id: int
    deviceId: str
    name: str
    parameters: msgspec.Raw
    state: str


class CommandPush(msgspec.Struct):
    command: Command
    type: str = "command"


class Update(msgspec.Struct):
    id: int
    deviceId: str
    name: str
    parameters: msgspec.Raw
    result: msgspec.Raw
    state: str = "succeeded"


class Event(msgspec.Struct):
    subscriptionId: int
    data: Update
    type: str = "event"
    topic: str = "command_update"


class Relay:
    """One app socket and any number of device sockets, joined by an in-memory dict."""

    def __init__(self) -> None:
        self.devices: dict[str, web.WebSocketResponse] = {}
        self.app: web.WebSocketResponse | None = None
        self.pending: dict[int, Command] = {}
        self.next_id = 0
        self.decode = msgspec.json.Decoder(Inbound).decode
        self.encode = msgspec.json.Encoder().encode

    async def app_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        self.app = ws
        async for message in ws:
            if message.type is not WSMsgType.TEXT and message.type is not WSMsgType.BINARY:
                continue
            frame = self.decode(message.data)
            if frame.type == "command.create" and frame.deviceId and frame.name:
                self.next_id += 1
                command = Command(
                    self.next_id, frame.deviceId, frame.name, frame.parameters, "sent"
                )
                self.pending[command.id] = command
                device = self.devices.get(frame.deviceId)
                if device is not None:
                    await device.send_str(self.encode(CommandPush(command)).decode())
            elif frame.type == "subscribe":
                data = {"subscriptionId": 1}
                reply = {"type": "response", "requestId": frame.requestId, "data": data}
                await ws.send_str(self.encode(reply).decode())
        return ws

    async def device_socket(self, request: web.Request) -> web.WebSocketResponse:
        if not authorized(request):
            raise web.HTTPUnauthorized()
        device_id = request.query.get("deviceId", "")
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        self.devices[device_id] = ws
        async for message in ws:
            if message.type is not WSMsgType.TEXT and message.type is not WSMsgType.BINARY:
                continue
            frame = self.decode(message.data)
            if frame.type != "result" or frame.id is None:
                continue
            command = self.pending.pop(frame.id, None)
            if command is not None and self.app is not None:
                update = Update(
                    command.id, command.deviceId, command.name, command.parameters, frame.result
                )
                await self.app.send_str(self.encode(Event(1, update)).decode())
        self.devices.pop(device_id, None)
        return ws


_EXPECTED = "Bearer " + os.environ.get("BENCH_CREDENTIAL", "")


def authorized(request: web.Request) -> bool:
    return request.headers.get("Authorization") == _EXPECTED


async def poll(request: web.Request) -> web.Response:
    if not authorized(request):
        raise web.HTTPUnauthorized()
    return web.Response(body=_EMPTY, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_HEALTHY, content_type="application/json")


def build() -> web.Application:
    relay = Relay()
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/device/{device_id}/commands", poll)
    app.router.add_get("/api/v1/ws", relay.app_socket)
    app.router.add_get("/api/v1/device/ws", relay.device_socket)
    return app


async def serve(port: int) -> None:
    await serve_app(build(), port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
