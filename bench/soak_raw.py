"""P7's raw baseline: a bare aiohttp device WebSocket relay and a raw fleet to drive it.

``python -m bench.soak_raw serve --port P --heartbeat 30`` is the server: the native
device WebSocket's shapes with no application logic, like ``bench/baseline.py``, plus
what a soak exercises that the round-trip relay leaves out: the server pings every
``--heartbeat`` seconds (as Tether's ``ws_heartbeat`` does), device notifications are
answered with a ``response`` (as Tether answers them), and a device's pending commands
are forgotten when it leaves (the relay keeps no state beyond its live sockets, so the
baseline's own memory cannot drift).

``python -m bench.soak_raw drive --url ... --devices N ...`` is the fleet: N raw device
WebSockets (client pings every ``--heartbeat`` seconds, as the native agent sends),
telemetry frames, churn (close and reconnect after ``--churn-downtime``) and commands
through one app WebSocket, each answered with a ``result`` by its device. It prints one
JSON line at the end: counts and errors. Both run on uvloop in their own processes, as
``tether serve`` and ``tether sim`` do in the Tether half of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import resource
import signal
import sys
import time
from collections import Counter

import aiohttp
import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import serve_app

_NULL = msgspec.Raw(b"null")
_EXPECTED = "Bearer " + os.environ.get("BENCH_CREDENTIAL", "")


class Frame(msgspec.Struct):
    """Any frame either side sends; fields a frame lacks stay unset."""

    type: str
    requestId: str | int | None = None
    deviceId: str | None = None
    name: str | None = None
    parameters: msgspec.Raw = _NULL
    id: int | None = None
    result: msgspec.Raw = _NULL


_decode = msgspec.json.Decoder(Frame).decode
_encode = msgspec.json.Encoder().encode


# --- the server -----------------------------------------------------------------------------


class Relay:
    """Device sockets by id, one app socket, and the commands each device still owes."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.devices: dict[str, web.WebSocketResponse] = {}
        self.owed: dict[str, set[int]] = {}
        self.app: web.WebSocketResponse | None = None
        self.ids = itertools.count(1)

    async def app_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, compress=False)
        await ws.prepare(request)
        self.app = ws
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = _decode(message.data)
            device = self.devices.get(frame.deviceId or "")
            if frame.type != "command.create" or device is None or frame.deviceId is None:
                await ws.send_str('{"type":"response","status":"error"}')
                continue
            command_id = next(self.ids)
            self.owed.setdefault(frame.deviceId, set()).add(command_id)
            push = {"type": "command", "command": {"id": command_id, "name": frame.name}}
            await device.send_str(_encode(push).decode())
        return ws

    async def device_socket(self, request: web.Request) -> web.WebSocketResponse:
        if request.headers.get("Authorization") != _EXPECTED:
            raise web.HTTPUnauthorized()
        device_id = request.query.get("deviceId", "")
        ws = web.WebSocketResponse(heartbeat=self.heartbeat, compress=False)
        await ws.prepare(request)
        self.devices[device_id] = ws
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = _decode(message.data)
                if frame.type == "result" and frame.id is not None:
                    owed = self.owed.get(device_id)
                    if owed is not None and frame.id in owed:
                        owed.discard(frame.id)
                        if self.app is not None:
                            event = {
                                "type": "event",
                                "data": {"id": frame.id, "deviceId": device_id},
                            }
                            await self.app.send_str(_encode(event).decode())
                elif frame.requestId is not None:
                    reply = {"type": "response", "requestId": frame.requestId, "status": "ok"}
                    await ws.send_str(_encode(reply).decode())
        finally:
            if self.devices.get(device_id) is ws:
                del self.devices[device_id]
                self.owed.pop(device_id, None)
        return ws


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def serve(port: int, heartbeat: float) -> None:
    relay = Relay(heartbeat)
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/ws", relay.app_socket)
    app.router.add_get("/api/v1/device/ws", relay.device_socket)
    await serve_app(app, port, backlog=4096)


# --- the fleet ------------------------------------------------------------------------------


class Fleet:
    """Raw device sockets with telemetry, churn and commands, counted."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ws_url = args.url.replace("http", "ws", 1)
        self.connected: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self.leave: dict[str, asyncio.Event] = {}
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.waiting: dict[int, float] = {}
        self.stopping = asyncio.Event()
        self.sessions: list[aiohttp.ClientSession] = []

    def session_for(self, index: int) -> aiohttp.ClientSession:
        return self.sessions[index % len(self.sessions)]

    async def device(self, index: int) -> None:
        device_id = f"raw-{index}"
        headers = {"Authorization": _EXPECTED}
        seq = itertools.count(1)
        payload = "x" * self.args.payload
        while not self.stopping.is_set():
            leave = self.leave[device_id] = asyncio.Event()
            try:
                async with self.session_for(index).ws_connect(
                    self.ws_url + "/api/v1/device/ws",
                    params={"deviceId": device_id},
                    headers=headers,
                    heartbeat=self.args.heartbeat,
                    compress=0,
                ) as ws:
                    self.counts["connects"] += 1
                    self.connected[device_id] = ws
                    sender = asyncio.create_task(self.telemetry(ws, seq, payload))
                    closer = asyncio.create_task(self.close_on(ws, leave))
                    try:
                        async for message in ws:
                            if message.type is not WSMsgType.TEXT:
                                break
                            frame = _decode(message.data)
                            if frame.type == "command" and frame.requestId is None:
                                command_id = msgspec.json.decode(message.data)["command"]["id"]
                                result = {"type": "result", "id": command_id, "result": {}}
                                await ws.send_str(_encode(result).decode())
                            elif frame.type == "response":
                                self.counts["telemetry_answered"] += 1
                    finally:
                        self.connected.pop(device_id, None)
                        sender.cancel()
                        closer.cancel()
                if not leave.is_set() and not self.stopping.is_set():
                    self.errors["disconnected"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                self.errors[f"connect_{type(error).__name__}"] += 1
                await asyncio.sleep(1.0)
                continue
            if leave.is_set() and not self.stopping.is_set():
                await asyncio.sleep(self.args.churn_downtime)

    async def close_on(self, ws: aiohttp.ClientWebSocketResponse, leave: asyncio.Event) -> None:
        await leave.wait()
        await ws.close()

    async def telemetry(
        self, ws: aiohttp.ClientWebSocketResponse, seq: itertools.count[int], payload: str
    ) -> None:
        interval = self.args.telemetry_interval
        if interval <= 0:
            return
        await asyncio.sleep(random.uniform(0, interval))
        while True:
            frame = {
                "type": "notification",
                "requestId": next(seq),
                "notification": {"name": "telemetry", "parameters": {"filler": payload}},
            }
            await ws.send_str(_encode(frame).decode())
            self.counts["telemetry_sent"] += 1
            await asyncio.sleep(interval)

    async def churn(self) -> None:
        rate = self.args.churn_rate
        if rate <= 0:
            return
        while True:
            await asyncio.sleep(1 / rate)
            if self.connected:
                victim = random.choice(list(self.connected))
                self.leave[victim].set()
                self.counts["churned"] += 1

    async def commands(self) -> None:
        rate = self.args.command_rate
        if rate <= 0:
            return
        async with self.sessions[0].ws_connect(
            self.ws_url + "/api/v1/ws", heartbeat=self.args.heartbeat, compress=0
        ) as app:
            reader = asyncio.create_task(self.results(app))
            try:
                while True:
                    await asyncio.sleep(1 / rate)
                    if not self.connected:
                        continue
                    target = random.choice(list(self.connected))
                    frame = {"type": "command.create", "deviceId": target, "name": "echo"}
                    await app.send_str(_encode(frame).decode())
                    self.counts["commands_sent"] += 1
            finally:
                reader.cancel()

    async def results(self, app: aiohttp.ClientWebSocketResponse) -> None:
        async for message in app:
            if message.type is not WSMsgType.TEXT:
                break
            kind = msgspec.json.decode(message.data).get("type")
            # A command whose device left before answering is refused or lost: the raw
            # relay keeps nothing for absent devices (Tether would store and redeliver).
            self.counts["commands_answered" if kind == "event" else "commands_lost"] += 1

    async def run(self) -> dict[str, object]:
        args = self.args
        addresses = args.source_addresses.split(",") if args.source_addresses else [""]
        for address in addresses:
            connector = aiohttp.TCPConnector(
                limit=0, local_addr=(address, 0) if address else None, force_close=True
            )
            self.sessions.append(aiohttp.ClientSession(connector=connector))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for index in range(args.devices):
            tasks.append(asyncio.create_task(self.device(index)))
            if args.connect_rate > 0:
                await asyncio.sleep(1 / args.connect_rate)
        extra = [asyncio.create_task(self.churn()), asyncio.create_task(self.commands())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), max(0.0, args.duration))
        connected_at_end = len(self.connected)
        self.stopping.set()
        for task in extra:
            task.cancel()
        for event in self.leave.values():
            event.set()
        await asyncio.gather(*tasks, *extra, return_exceptions=True)
        for session in self.sessions:
            await session.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "devices": args.devices,
            "connected_at_end": connected_at_end,
            "seconds": round(time.monotonic() - started, 1),
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        }


def raise_fd_limit() -> None:
    """Soft descriptor limit up to the hard one: every device holds a socket."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--heartbeat", type=float, default=30.0)
    drive = sub.add_parser("drive")
    drive.add_argument("--url", required=True)
    drive.add_argument("--devices", type=int, required=True)
    drive.add_argument("--duration", type=float, required=True)
    drive.add_argument("--connect-rate", type=float, default=200.0)
    drive.add_argument("--telemetry-interval", type=float, default=0.0)
    drive.add_argument("--payload", type=int, default=64)
    drive.add_argument("--churn-rate", type=float, default=0.0)
    drive.add_argument("--churn-downtime", type=float, default=1.0)
    drive.add_argument("--command-rate", type=float, default=0.0)
    drive.add_argument("--heartbeat", type=float, default=30.0)
    drive.add_argument("--source-addresses", default="")
    args = parser.parse_args()
    raise_fd_limit()
    if args.role == "serve":
        uvloop.run(serve(args.port, args.heartbeat))
    else:
        summary = uvloop.run(Fleet(args).run())
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")


if __name__ == "__main__":
    main()
