"""Raw aiohttp fan-out baseline for scenario ``fanout`` (P4): no application logic.

Run as its own process (``python -m bench.rawfanout --port P``, the accepted bearer in
``BENCH_TOKEN``) on uvloop, exactly as ``tether serve`` runs. It speaks the native
frames the fan-out bench uses and nothing else:

* ``/api/v1/ws``: a client sends ``subscribe`` with ``deviceIds``; it is answered with a
  ``response`` carrying a ``subscriptionId`` and joins that device's subscriber list.
* ``/api/v1/device/ws``: each ``notification`` frame gets an id and is sent to every
  subscriber of the device as an ``event`` frame of the same shape Tether sends, then
  answered with a ``response`` when it has a ``requestId``.

The ``data`` part of the event is encoded once per notification and only the envelope
(which carries each subscriber's ``subscriptionId``) is built per subscriber: the
cheapest correct fan-out, so the ratio shows everything Tether adds (subscription
matching, access checks, per-connection bounded queues, persistence).
"""

from __future__ import annotations

import argparse
import itertools
import os
from datetime import UTC, datetime

import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import serve_app

_NULL = msgspec.Raw(b"null")


class Inbound(msgspec.Struct):
    type: str
    requestId: str | int | None = None
    deviceIds: list[str] | None = None
    name: str | None = None
    parameters: msgspec.Raw = _NULL


class Data(msgspec.Struct):
    id: int
    deviceId: str
    name: str
    parameters: msgspec.Raw
    timestamp: datetime


_EXPECTED = "Bearer " + os.environ.get("BENCH_TOKEN", "")


class FanOut:
    def __init__(self) -> None:
        self.subscribers: dict[str, list[tuple[int, web.WebSocketResponse]]] = {}
        self.ids = itertools.count(1)
        self.notification_ids = itertools.count(1)
        self.decode = msgspec.json.Decoder(Inbound).decode
        self.encode = msgspec.json.Encoder().encode

    async def client(self, request: web.Request) -> web.WebSocketResponse:
        if request.headers.get("Authorization") != _EXPECTED:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        mine: list[tuple[str, tuple[int, web.WebSocketResponse]]] = []
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = self.decode(message.data)
                if frame.type == "subscribe":
                    entry = (next(self.ids), ws)
                    for device in frame.deviceIds or ():
                        self.subscribers.setdefault(device, []).append(entry)
                        mine.append((device, entry))
                    reply = {
                        "type": "response",
                        "requestId": frame.requestId,
                        "data": {"subscriptionId": entry[0]},
                    }
                    await ws.send_str(self.encode(reply).decode())
        finally:
            for device, entry in mine:
                self.subscribers[device].remove(entry)
        return ws

    async def device(self, request: web.Request) -> web.WebSocketResponse:
        device_id = request.query.get("deviceId", "")
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = self.decode(message.data)
            if frame.type != "notification" or frame.name is None:
                continue
            data = Data(
                next(self.notification_ids),
                device_id,
                frame.name,
                frame.parameters,
                datetime.now(UTC),
            )
            body = self.encode(data)
            for subscription_id, subscriber in list(self.subscribers.get(device_id, ())):
                envelope = b'{"type":"event","subscriptionId":%d,"topic":"notification","data":'
                try:
                    await subscriber.send_frame(
                        envelope % subscription_id + body + b"}", WSMsgType.TEXT
                    )
                except ConnectionError:
                    continue
            if frame.requestId is not None:
                reply = {"type": "response", "requestId": frame.requestId, "data": {"id": data.id}}
                await ws.send_str(self.encode(reply).decode())
        return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(port: int) -> None:
    fan_out = FanOut()
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/ws", fan_out.client)
    app.router.add_get("/api/v1/device/ws", fan_out.device)
    await serve_app(app, port, backlog=4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
