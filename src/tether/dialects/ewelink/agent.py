"""An emulated Sonoff: the device side of eWeLink, following the golden transcript.

It dispatches (``POST /dispatch/device``), opens the WebSocket at the address it is
given, registers with its factory apikey, asks the ``date``, reports its full state
(``update``), asks for its timers (``query``), then serves the cloud: it applies each
``update`` from an app, acks it by ``sequence``, and reports what changed. It keeps the
connection alive with WebSocket ping control frames, as ITEAD firmware does.

Params are free-form: ``switch`` (single channel), ``switches`` (multi-channel, merged by
``outlet``), and the TH10/TH16 (UIID 15) temperature/humidity targets, whose reactions it
applies itself as the firmware does (see :func:`codec.th_reaction`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp

from tether.dialects.ewelink import codec

log = logging.getLogger("tether.ewelink.agent")

#: The golden transcript's first report (reference §4.12).
DEFAULT_PARAMS: dict[str, Any] = {
    "switch": "off",
    "fwVersion": "1.5.5",
    "rssi": -31,
    "staMac": "5C:CF:7F:A6:FD:F6",
    "startup": "off",
}


class RegisterRefused(Exception):
    """The cloud answered ``register`` with an error (unknown factory apikey: 403)."""

    def __init__(self, code: Any) -> None:
        super().__init__(f"register refused with error {code}")
        self.code = code


class EmulatedSonoff:
    def __init__(
        self,
        url: str,
        device_id: str,
        factory_apikey: str,
        *,
        params: dict[str, Any] | None = None,
        model: str = "ITA-GZ1-GL",
        rom_version: str = "1.5.5",
        ssl_context: ssl.SSLContext | bool | None = None,
        ack: bool = True,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        session: aiohttp.ClientSession | None = None,
        record: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.device_id = device_id
        self.factory_apikey = factory_apikey
        self.params: dict[str, Any] = dict(DEFAULT_PARAMS if params is None else params)
        self.model = model
        self.rom_version = rom_version
        self.ssl = ssl_context
        #: False makes it a device that never acks (to exercise the cloud's 504).
        self.ack = ack
        self.on_change = on_change
        self.apikey: str | None = None
        self.hb_interval = 145
        #: Every text frame, in order: ("D>S" | "S>D", text); kept only with ``record``
        #: (a long-running device, such as one of a simulated fleet, keeps none).
        self.transcript: list[tuple[str, str]] = []
        self.record = record
        #: A session shared with other devices (a fleet); None: one of its own per run.
        self.session = session
        self.upgrades: list[dict[str, Any]] = []
        self.registered = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._turn = asyncio.Lock()
        self._pong = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the golden sequence ----------------------------------------------------------------

    async def dispatch(self, session: aiohttp.ClientSession) -> tuple[str, int]:
        body = {
            "accept": "ws;2",
            "version": 2,
            "ts": 933,
            "deviceid": self.device_id,
            "apikey": self.factory_apikey,
            "model": self.model,
            "romVersion": self.rom_version,
        }
        async with session.post(
            f"{self.url}/dispatch/device", data=codec.encode(body), ssl=self._ssl()
        ) as response:
            answer = codec.decode(await response.read())
        if answer.get("error") != 0 or answer.get("reason") != "ok":
            raise RuntimeError(f"dispatch refused: {answer}")
        return str(answer["IP"]), int(answer["port"])

    def _ssl(self) -> ssl.SSLContext | bool:
        return True if self.ssl is None else self.ssl

    async def run(self, *, dispatch: bool = True) -> None:
        """Connect, run the start-up sequence, and serve until the connection ends."""
        if self.session is not None:
            await self._run(self.session, dispatch)
            return
        async with aiohttp.ClientSession() as session:
            await self._run(session, dispatch)

    async def _run(self, session: aiohttp.ClientSession, dispatch: bool) -> None:
        scheme = "wss" if self.url.startswith("https") else "ws"
        if dispatch:
            ip, port = await self.dispatch(session)
            ws_url = f"{scheme}://{ip}:{port}/api/ws"
        else:
            ws_url = scheme + self.url[self.url.index(":") :] + "/api/ws"
        async with session.ws_connect(
            ws_url, ssl=self._ssl(), autoping=False, heartbeat=None
        ) as ws:
            self._ws = ws
            reader = asyncio.create_task(self._read(ws))
            pinger: asyncio.Task[None] | None = None
            try:
                await self._start_up()
                pinger = asyncio.create_task(self._ping(ws))
                await reader
            finally:
                for task in (reader, pinger):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
                self._ws = None

    async def _start_up(self) -> None:
        register = await self.request(
            {
                "userAgent": "device",
                "apikey": self.factory_apikey,
                "deviceid": self.device_id,
                "action": "register",
                "version": 2,
                "romVersion": self.rom_version,
                "model": self.model,
                "ts": 970,
            }
        )
        if register.get("error") != 0:
            raise RegisterRefused(register.get("error"))
        self.apikey = str(register["apikey"])
        config = register.get("config")
        if isinstance(config, dict) and isinstance(config.get("hbInterval"), int):
            self.hb_interval = config["hbInterval"]
        await self.request(self._message("date"))
        await self.request({**self._message("update"), "params": dict(self.params)})
        await self.request({**self._message("query"), "params": ["timers"]})
        self.registered.set()

    def _message(self, action: str) -> dict[str, Any]:
        return {
            "userAgent": "device",
            "apikey": self.apikey,
            "deviceid": self.device_id,
            "action": action,
        }

    async def request(self, message: dict[str, Any], timeout: float = 40.0) -> dict[str, Any]:
        """Send a request and wait for the cloud's reply (firmware waits up to 40 s).

        One request at a time, as firmware does: replies carry no correlation id then."""
        async with self._turn:
            await self._send(message)
            return await asyncio.wait_for(self._replies.get(), timeout)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            raise RuntimeError("not connected")
        text = codec.encode(message)
        if self.record:
            self.transcript.append(("D>S", text))
        await self._ws.send_str(text)

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.hb_interval * 0.9))
            await self.ping()

    async def ping(self, timeout: float = 20.0) -> None:
        """Send a WebSocket ping control frame and wait for the cloud's pong."""
        if self._ws is None:
            raise RuntimeError("not connected")
        self._pong.clear()
        if self.record:
            self.transcript.append(("D>S", "<ping>"))
        await self._ws.ping()
        await asyncio.wait_for(self._pong.wait(), timeout)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.PING:
                await ws.pong(message.data)
                continue
            if message.type is aiohttp.WSMsgType.PONG:
                if self.record:
                    self.transcript.append(("S>D", "<pong>"))
                self._pong.set()
                continue
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            if self.record:
                self.transcript.append(("S>D", message.data))
            try:
                parsed = codec.decode(message.data)
            except Exception:
                log.warning("undecodable frame from the cloud: %r", message.data)
                continue
            if not isinstance(parsed, dict):
                continue
            action = parsed.get("action")
            if action is None:
                self._replies.put_nowait(parsed)
            elif action == "update":
                # Not awaited here: the report it sends waits for a reply this loop reads.
                task = asyncio.create_task(self._apply(parsed))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif action == "upgrade":
                self.upgrades.append(parsed)
                await self._ack(parsed)

    async def _ack(self, message: dict[str, Any], error: int = 0) -> None:
        await self._send(
            {
                "error": error,
                "userAgent": "device",
                "apikey": self.apikey,
                "deviceid": self.device_id,
                "sequence": message.get("sequence"),
            }
        )

    async def _apply(self, message: dict[str, Any]) -> None:
        params = message.get("params")
        if not self.ack:
            return
        if not isinstance(params, dict):
            await self._ack(message, 400)
            return
        await self._ack(message)
        await self.change(params)

    # --- what the device does by itself -----------------------------------------------------

    async def change(self, params: dict[str, Any]) -> dict[str, Any]:
        """Apply params (as from an app, a button or a sensor), then the TH reaction, and
        report what changed. Returns the reported params."""
        before = dict(self.params)
        self.params.update(codec.merge_params(self.params, params))
        reaction = codec.th_reaction(self.params)
        if reaction:
            self.params.update(reaction)
        changed = {k: v for k, v in self.params.items() if before.get(k) != v}
        if changed:
            if self.on_change is not None:
                self.on_change(changed)
            if self._ws is not None and self.apikey is not None:
                await self.request({**self._message("update"), "params": changed})
        return changed

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
