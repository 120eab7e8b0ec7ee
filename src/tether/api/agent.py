"""The device side of the native API: a real device agent, also used by tests and bench.

:class:`NativeAgent` connects as one device over the device WebSocket (commands pushed)
or over HTTP long-polling, runs each command through a handler, and posts the result. It
reconnects with backoff, and deduplicates re-sent commands by id, because delivery is at
least once. Results the server has not confirmed stay in an outbox and are sent again after
a reconnect, so a server crash between "executed" and "stored" loses no result.

The default handler understands a few commands so a fleet can be exercised without code:
``echo`` (result = parameters), ``sleep`` (``{"seconds": s}``), ``fail`` (``{"error": ...}``)
and ``steps`` (``{"steps": ["a", "b"]}``: one progress step each, then the result). Any
other name is echoed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import aiohttp
import msgspec
from cachetools import FIFOCache

from tether.api.codec import CommandPush
from tether.api.views import CommandView
from tether.core.backoff import Backoff

log = logging.getLogger("tether.agent")

#: Reconnect delays: from RECONNECT_FIRST doubling up to RECONNECT_MAX seconds.
RECONNECT_FIRST, RECONNECT_MAX = 0.2, 10.0
#: Command ids remembered (with their outcome) to answer a re-sent command without
#: running it twice; the oldest are forgotten first.
REMEMBERED_COMMANDS = 10_000
#: Seconds a notification sent over the WebSocket waits for the server's response.
NOTIFY_TIMEOUT = 30.0

Report = Callable[[str, Any], Awaitable[None]]


class Outcome(msgspec.Struct, kw_only=True):
    success: bool = True
    result: Any = None
    error: str | None = None


Handler = Callable[[CommandView, Report], Awaitable[Outcome]]


async def default_handler(command: CommandView, report: Report) -> Outcome:
    params = command.parameters if isinstance(command.parameters, dict) else {}
    if command.name == "sleep":
        await asyncio.sleep(float(params.get("seconds", 1)))
        return Outcome(result={"slept": params.get("seconds", 1)})
    if command.name == "fail":
        return Outcome(success=False, error=str(params.get("error", "failed on request")))
    if command.name == "steps":
        for step in params.get("steps", []):
            await report(str(step), None)
        return Outcome(result={"steps": params.get("steps", [])})
    return Outcome(result=command.parameters)


_push = msgspec.json.Decoder(CommandPush)


class NativeAgent:
    def __init__(
        self,
        base_url: str | Sequence[str],
        device_id: str,
        credential: str,
        *,
        transport: Literal["ws", "http"] = "ws",
        handler: Handler = default_handler,
        poll_wait: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        send_ack: bool = True,
    ) -> None:
        # Several URLs (the nodes of a cluster): on a failed connection, try the next one.
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.base_urls = [url.rstrip("/") for url in urls]
        self._current = 0
        self.device_id = device_id
        self.credential = credential
        self.transport = transport
        self.handler = handler
        self.poll_wait = poll_wait
        self.send_ack = send_ack
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = asyncio.Event()
        self.connected = asyncio.Event()
        #: Ids already executed (bounded), so a re-sent command is not run twice.
        self._done: FIFOCache[int, Outcome] = FIFOCache(maxsize=REMEMBERED_COMMANDS)
        #: Ids executed, oldest first (the newest REMEMBERED_COMMANDS of them).
        self.executed: list[int] = []
        self._running: set[int] = set()
        #: Notifications sent over the WebSocket, waiting for their response, by requestId.
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._request_ids = itertools.count(1)
        #: Results not yet confirmed by the server, by command id.
        self._outbox: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    @property
    def base_url(self) -> str:
        return self.base_urls[self._current]

    @property
    def device_url(self) -> str:
        return f"{self.base_url}/api/v1/device/{self.device_id}"

    async def __aenter__(self) -> NativeAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Serve commands until :meth:`stop`, reconnecting with backoff."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        backoff = Backoff(RECONNECT_FIRST, RECONNECT_MAX)
        while not self._stopping.is_set():
            try:
                if self.transport == "ws":
                    await self._run_ws()
                else:
                    await self._run_http()
                backoff.reset()
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                log.info("agent %s disconnected from %s: %s", self.device_id, self.base_url, error)
                self._current = (self._current + 1) % len(self.base_urls)
            finally:
                self.connected.clear()
            if self._stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next()):
                    await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()
        for task in list(self._tasks):
            task.cancel()
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- WebSocket transport ------------------------------------------------------------------

    async def _run_ws(self) -> None:
        assert self._session is not None
        url = self.base_url.replace("http", "ws", 1) + "/api/v1/device/ws"
        async with self._session.ws_connect(
            url, params={"deviceId": self.device_id}, headers=self.headers, heartbeat=30.0
        ) as ws:
            self._ws = ws
            self.connected.set()
            try:
                await self._serve_ws(ws)
            finally:
                self._ws = None
                self._fail_replies()

    async def _serve_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for frame in list(self._outbox.values()):
            await ws.send_str(msgspec.json.encode(frame).decode())
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            if '"type":"command"' not in message.data[:40]:
                self._confirm(message.data)
                continue
            command = _push.decode(message.data).command
            if command.id in self._running:
                continue  # re-sent while still executing here
            self._running.add(command.id)
            task = asyncio.create_task(self._execute_ws(ws, command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _fail_replies(self) -> None:
        """The socket is gone: notifications still waiting for a response never get one."""
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the device WebSocket closed"))
        self._replies.clear()

    def _confirm(self, data: str) -> None:
        """A response to one of our result frames: the server has stored it."""
        reply = msgspec.json.decode(data)
        if not isinstance(reply, dict):
            return
        request_id = reply.get("requestId")
        if isinstance(request_id, str) and request_id in self._replies:
            waiter = self._replies.pop(request_id)
            if not waiter.done():
                waiter.set_result(reply)
            return
        if not (isinstance(request_id, str) and request_id.startswith("result-")):
            return
        # Stored, or refused for good (the command is gone): either way, stop resending.
        final_error = (reply.get("error") or {}).get("code") in ("not_found", "bad_request")
        if reply.get("type") == "response" or final_error:
            self._outbox.pop(int(request_id[7:]), None)

    async def _execute_ws(self, ws: aiohttp.ClientWebSocketResponse, command: CommandView) -> None:
        if self.send_ack:
            try:
                await ws.send_str(msgspec.json.encode({"type": "ack", "id": command.id}).decode())
            except (aiohttp.ClientError, ConnectionError):
                # The connection is gone before we started: the server re-sends it later.
                self._running.discard(command.id)
                return

        async def report(step: str, data: Any) -> None:
            await ws.send_str(
                msgspec.json.encode(
                    {
                        "type": "progress",
                        "id": command.id,
                        "step": {"name": step, "state": "done", "data": data},
                    }
                ).decode()
            )

        outcome = await self._outcome(command, report)
        frame = {
            "type": "result",
            "requestId": f"result-{command.id}",
            "id": command.id,
            "success": outcome.success,
            "result": outcome.result,
            "error": outcome.error,
        }
        self._outbox[command.id] = frame
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            # If this fails, the outbox sends it again on the next connection.
            await ws.send_str(msgspec.json.encode(frame).decode())

    # --- HTTP long-poll transport --------------------------------------------------------------

    async def _run_http(self) -> None:
        assert self._session is not None
        session = self._session
        self.connected.set()
        while not self._stopping.is_set():
            for command_id, body in list(self._outbox.items()):
                await self._post_result(command_id, body)
            async with session.get(
                f"{self.device_url}/commands",
                headers=self.headers,
                params={"wait": str(self.poll_wait)},
                timeout=aiohttp.ClientTimeout(total=self.poll_wait + 10),
            ) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info,
                        (),
                        status=response.status,
                        message=await response.text(),
                    )
                commands = msgspec.json.decode(await response.read(), type=list[CommandView])
            for command in commands:
                await self._execute_http(command)

    async def _execute_http(self, command: CommandView) -> None:
        assert self._session is not None
        session = self._session
        url = f"{self.device_url}/commands/{command.id}"

        async def report(step: str, data: Any) -> None:
            async with session.post(
                f"{url}/progress",
                headers=self.headers,
                json={"step": {"name": step, "state": "done", "data": data}},
            ) as response:
                response.raise_for_status()

        outcome = await self._outcome(command, report)
        body = {"success": outcome.success, "result": outcome.result, "error": outcome.error}
        self._outbox[command.id] = body
        await self._post_result(command.id, body)

    async def _post_result(self, command_id: int, body: dict[str, Any]) -> None:
        assert self._session is not None
        async with self._session.post(
            f"{self.device_url}/commands/{command_id}/result", headers=self.headers, json=body
        ) as response:
            if response.status < 500:
                # Stored (or refused for good, e.g. the command was deleted): done with it.
                self._outbox.pop(command_id, None)
            response.raise_for_status()

    # --- shared ---------------------------------------------------------------------------------

    async def _outcome(self, command: CommandView, report: Report) -> Outcome:
        done = self._done.get(command.id)
        if done is not None:
            self._running.discard(command.id)
            return done  # a re-sent command: answer again, do not run it twice
        self._running.add(command.id)
        try:
            outcome = await self.handler(command, report)
        except Exception as error:
            log.exception("handler failed on command %s", command.id)
            outcome = Outcome(success=False, error=f"handler error: {error}")
        finally:
            self._running.discard(command.id)
        self._done[command.id] = outcome
        self.executed.append(command.id)
        if len(self.executed) > REMEMBERED_COMMANDS:
            del self.executed[0]
        return outcome

    async def notify(self, name: str, parameters: Any = None) -> dict[str, Any]:
        """Send a notification; returns the stored notification as the server shows it.

        Over the WebSocket while one is open (a frame on the connection the device
        already holds, as a device streaming telemetry would), otherwise over HTTP.
        """
        ws = self._ws
        if self.transport == "ws" and ws is not None and not ws.closed:
            return await self._notify_ws(ws, name, parameters)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(
            f"{self.device_url}/notifications",
            headers=self.headers,
            json={"name": name, "parameters": parameters},
        ) as response:
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body

    async def _notify_ws(
        self, ws: aiohttp.ClientWebSocketResponse, name: str, parameters: Any
    ) -> dict[str, Any]:
        request_id = f"notify-{next(self._request_ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = waiter
        frame = {"type": "notification", "requestId": request_id, "name": name}
        if parameters is not None:
            frame["parameters"] = parameters
        try:
            await ws.send_str(msgspec.json.encode(frame).decode())
            async with asyncio.timeout(NOTIFY_TIMEOUT):
                reply = await waiter
        finally:
            self._replies.pop(request_id, None)
        if reply.get("type") != "response":
            error = reply.get("error") or {}
            raise aiohttp.ClientError(
                f"notification refused: {error.get('code')}: {error.get('message')}"
            )
        data: dict[str, Any] = reply.get("data") or {}
        return data
