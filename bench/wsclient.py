"""One client process of the idle-fleet scenarios: holds device WebSockets on command.

Started by :class:`bench.fleet.Clients` as ``python -m bench.wsclient '<json config>'``;
it reads one JSON command per line on stdin and answers one JSON line on stdout:

* ``{"op": "open", "ids": [...]}``: those devices connect and authenticate (at most
  ``in_flight`` handshakes at a time); answers how many are held, errors, seconds, CPU;
* ``{"op": "storm"}``: every held socket is dropped at once (transport aborted, as a
  network cut or a gateway restart does), then every device reconnects and
  authenticates again, at most ``in_flight`` at a time; answers the monotonic time at
  which each one was back (``CLOCK_MONOTONIC`` is shared by every process, so the
  controller can line them up with its own start time);
* ``{"op": "quit"}``: close everything and exit.

Each device keeps a reader task, as a real one does: it answers the server's pings, so
Tether's heartbeat never closes an idle but healthy device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import aiohttp
import uvloop

from bench.fleet import FACTORY, credential, device_id, raise_fd_limit

#: Attempts per device before it counts as failed (a storm may refuse some at first).
ATTEMPTS = 30
HANDSHAKE_TIMEOUT = 60.0


class Fleet:
    def __init__(self, config: dict[str, Any]) -> None:
        self.url: str = config["url"]
        self.ws_base = self.url.replace("http", "ws", 1)
        self.dialect: str = config["dialect"]
        self.secret: str = config["secret"]
        self.dh_token: str = config["dh_token"]
        self.gate = asyncio.Semaphore(int(config["in_flight"]))
        connector = aiohttp.TCPConnector(
            limit=0, local_addr=(config["source"], 0), force_close=True
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=HANDSHAKE_TIMEOUT)
        )
        self.held: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self.readers: dict[int, asyncio.Task[None]] = {}
        self.errors: dict[str, int] = {}

    async def connect(self, n: int) -> aiohttp.ClientWebSocketResponse:
        """One device's connect-and-authenticate, as its firmware does it."""
        the_id = device_id(self.dialect, n)
        if self.dialect == "native":
            return await self.session.ws_connect(
                f"{self.ws_base}/api/v1/device/ws?deviceId={the_id}",
                headers={"Authorization": "Bearer " + credential(self.secret, the_id)},
                autoping=True,
            )
        if self.dialect == "ewelink":
            body = {"accept": "ws;2", "version": 2, "ts": 933, "deviceid": the_id}
            async with self.session.post(f"{self.url}/dispatch/device", json=body) as r:
                answer = json.loads(await r.read())
                if answer.get("error") != 0:
                    raise RuntimeError(f"dispatch {answer}")
            ws = await self.session.ws_connect(f"{self.ws_base}/api/ws", autoping=True)
            register = {
                "userAgent": "device",
                "apikey": FACTORY,
                "deviceid": the_id,
                "action": "register",
                "version": 2,
                "romVersion": "1.5.5",
                "model": "ITA-GZ1-GL",
                "ts": 970,
            }
            await ws.send_str(json.dumps(register))
            await self.expect(ws, lambda f: f.get("error") == 0, "register")
            return ws
        ws = await self.session.ws_connect(f"{self.ws_base}/api/websocket", autoping=True)
        await ws.send_str(
            json.dumps({"action": "authenticate", "requestId": 1, "token": self.dh_token})
        )
        await self.expect(ws, lambda f: f.get("status") == "success", "authenticate")
        await ws.send_str(
            json.dumps({"action": "command/subscribe", "requestId": 2, "deviceId": the_id})
        )
        await self.expect(ws, lambda f: f.get("status") == "success", "subscribe")
        return ws

    async def expect(self, ws: aiohttp.ClientWebSocketResponse, ok: Any, what: str) -> None:
        message = await ws.receive(timeout=HANDSHAKE_TIMEOUT)
        if message.type is not aiohttp.WSMsgType.TEXT:
            await ws.close()
            raise RuntimeError(f"{what}: {message.type.name}")
        frame = json.loads(message.data)
        if not ok(frame):
            await ws.close()
            raise RuntimeError(f"{what}: {str(frame)[:120]}")

    async def bring_up(self, n: int) -> float | None:
        """Connect device ``n`` (retrying); the monotonic time it was back, None if never."""
        for attempt in range(ATTEMPTS):
            try:
                async with self.gate:
                    ws = await self.connect(n)
            except (aiohttp.ClientError, OSError, RuntimeError, TimeoutError) as error:
                kind = type(error).__name__
                self.errors[kind] = self.errors.get(kind, 0) + 1
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
                continue
            done = time.monotonic()
            self.held[n] = ws
            self.readers[n] = asyncio.create_task(self.read(n, ws))
            return done
        return None

    async def read(self, n: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass
        if self.held.get(n) is ws:
            del self.held[n]

    async def open(self, ids: list[int]) -> dict[str, Any]:
        cpu0, t0 = time.process_time(), time.monotonic()
        times = await asyncio.gather(*(self.bring_up(n) for n in ids))
        return {
            "held": len(self.held),
            "failed": sum(1 for t in times if t is None),
            "errors": dict(self.errors),
            "seconds": time.monotonic() - t0,
            "cpu": time.process_time() - cpu0,
        }

    def drop_all(self) -> list[int]:
        ids = list(self.held)
        for n, ws in list(self.held.items()):
            self.readers.pop(n).cancel()
            conn = ws._conn  # a cut, not a close: no close frame is sent
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
        self.held.clear()
        return ids

    async def storm(self) -> dict[str, Any]:
        self.errors.clear()
        ids = self.drop_all()
        dropped = time.monotonic()
        cpu0 = time.process_time()
        times = await asyncio.gather(*(self.bring_up(n) for n in ids))
        return {
            "dropped_at": dropped,
            "dropped": len(ids),
            "times": [t for t in times if t is not None],
            "failed": sum(1 for t in times if t is None),
            "errors": dict(self.errors),
            "cpu": time.process_time() - cpu0,
        }

    async def close(self) -> None:
        for task in self.readers.values():
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in self.held.values()), return_exceptions=True)
        await self.session.close()


async def main(config: dict[str, Any]) -> None:
    fleet = Fleet(config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(body: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(body) + "\n")
        sys.stdout.flush()

    answer({"ready": os.getpid()})
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["op"] == "open":
                answer(await fleet.open(command["ids"]))
            elif command["op"] == "storm":
                answer(await fleet.storm())
            elif command["op"] == "quit":
                break
    finally:
        await fleet.close()


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main(json.loads(sys.argv[1])))
