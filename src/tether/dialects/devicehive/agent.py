"""A DeviceHive device: ``tether agent devicehive`` and the tests' device side.

DeviceHive 3.x has no separate device protocol: a device is a client with a token that
subscribes to its own commands and answers each with ``command/update``. This agent does
exactly that over the WebSocket (``/api/websocket``) and falls back to REST long polling
(``/api/rest/device/{id}/command/poll``) when the WebSocket cannot be opened. It keeps the
timestamp of the newest command it saw, so after a reconnect the server replays what was
missed (DeviceHive's ``timestamp`` replay), and it skips ids it already ran. A 401 makes
it refresh its access token and carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
from cachetools import FIFOCache

from tether.core.backoff import Backoff

log = logging.getLogger("tether.devicehive.agent")

#: Reconnect delays: from RECONNECT_FIRST doubling up to RECONNECT_MAX seconds.
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0
#: Command ids remembered to skip a replayed command (oldest forgotten first).
REMEMBERED_COMMANDS = 10_000

#: ``(command name, parameters) -> (status, result)``.
Handler = Callable[[str, Any], Awaitable[tuple[str, Any]]]


async def echo_handler(name: str, parameters: Any) -> tuple[str, Any]:
    """Echo the parameters back; ``fail`` fails, ``sleep`` waits ``seconds`` first."""
    params = parameters if isinstance(parameters, dict) else {}
    if name == "fail":
        return "failed", {"error": params.get("error", "failed on request")}
    if name == "sleep":
        await asyncio.sleep(float(params.get("seconds", 1)))
    return "done", parameters


class AuthError(Exception):
    pass


class DeviceHiveAgent:
    def __init__(
        self,
        base_url: str,
        device_id: str,
        *,
        refresh_token: str | None = None,
        login: str | None = None,
        password: str | None = None,
        transport: Literal["ws", "http"] = "ws",
        handler: Handler = echo_handler,
        register: bool = True,
        poll_wait: int = 30,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if refresh_token is None and (login is None or password is None):
            raise ValueError("give a refresh token, or a login and a password")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self.refresh_token = refresh_token
        self.login = login
        self.password = password
        self.transport = transport
        self.handler = handler
        self.register = register
        self.poll_wait = poll_wait
        self._session = session
        self._own_session = session is None
        self.access_token: str | None = None
        #: Newest command timestamp seen: the replay cursor after a reconnect.
        self.cursor: str | None = None
        self._done: FIFOCache[int, None] = FIFOCache(maxsize=REMEMBERED_COMMANDS)
        self.executed: list[int] = []
        self.connected = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def rest(self) -> str:
        return self.base_url + "/api/rest"

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/api/websocket"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # --- tokens -------------------------------------------------------------------------

    async def authorize(self) -> str:
        """A fresh access token (refresh token first; login and password otherwise)."""
        if self.refresh_token is not None:
            status, body = await self._post("/token/refresh", {"refreshToken": self.refresh_token})
            if status == 201:
                self.access_token = str(body["accessToken"])
                return self.access_token
            if self.login is None:
                raise AuthError(f"token refresh refused: {status} {body}")
        status, body = await self._post("/token", {"login": self.login, "password": self.password})
        if status != 201:
            raise AuthError(f"login refused: {status} {body}")
        self.access_token = str(body["accessToken"])
        self.refresh_token = str(body["refreshToken"])
        return self.access_token

    async def _post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.rest + path, data=json.dumps(body)) as response:
            raw = await response.read()
            return response.status, json.loads(raw) if raw else None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A REST call with the access token; one refresh-and-retry on 401."""
        for attempt in range(2):
            token = self.access_token or await self.authorize()
            headers = {"Authorization": f"Bearer {token}"}
            data = None if body is None else json.dumps(body)
            async with self.session.request(
                method, self.rest + path, data=data, headers=headers
            ) as response:
                raw = await response.read()
                if response.status == 401 and attempt == 0:
                    self.access_token = None
                    continue
                return response.status, json.loads(raw) if raw else None
        raise AuthError("unauthorized after a token refresh")

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve commands until :meth:`stop`; reconnects, falling back to HTTP polling.

        A server that cannot be reached (yet, or any more) is retried with backoff; a
        refused credential or registration ends the run with :class:`AuthError`.
        """
        try:
            prepared = False
            backoff = Backoff(RECONNECT_FIRST, RECONNECT_MAX)
            while not self._stopping.is_set():
                try:
                    if not prepared:
                        await self._prepare()
                        prepared = True
                    if self.transport == "ws":
                        try:
                            await self._run_ws()
                        except (aiohttp.WSServerHandshakeError, aiohttp.ClientConnectorError):
                            log.warning("WebSocket unavailable; polling over HTTP")
                            await self._poll_once()
                    else:
                        await self._poll_once()
                    backoff.reset()
                except (aiohttp.ClientError, OSError, TimeoutError) as error:
                    self.connected.clear()
                    delay = backoff.next()
                    what = "connection lost" if prepared else f"cannot reach {self.base_url}"
                    log.warning("%s (%s); retrying in %.1fs", what, error, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            self.connected.clear()
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None

    async def stop(self) -> None:
        self._stopping.set()

    async def _prepare(self) -> None:
        """Log in, register the device if asked, and start the replay cursor at "now"."""
        await self.authorize()
        if self.register:
            status, body = await self.call("PUT", f"/device/{self.device_id}", {})
            if status not in (200, 204):
                raise AuthError(f"device registration refused: {status} {body}")
        if self.cursor is None:
            status, info = await self.call("GET", "/info")
            self.cursor = info["serverTimestamp"] if status == 200 else None

    async def _run_ws(self) -> None:
        async with self.session.ws_connect(self.ws_url, heartbeat=30) as ws:
            pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
            counter = 0

            async def request(action: str, **params: Any) -> dict[str, Any]:
                nonlocal counter
                counter += 1
                request_id = f"agent-{counter}"
                waiter = asyncio.get_running_loop().create_future()
                pending[request_id] = waiter
                await ws.send_str(json.dumps({"action": action, "requestId": request_id, **params}))
                return await asyncio.wait_for(waiter, 30)

            async def serve() -> None:
                token = self.access_token or await self.authorize()
                answer = await request("authenticate", token=token)
                if answer.get("code") == 401:
                    answer = await request("authenticate", token=await self.authorize())
                if answer.get("status") != "success":
                    raise AuthError(f"authenticate refused: {answer}")
                params: dict[str, Any] = {"deviceId": self.device_id}
                if self.cursor:
                    params["timestamp"] = self.cursor
                answer = await request("command/subscribe", **params)
                if answer.get("status") != "success":
                    raise AuthError(f"subscribe refused: {answer}")
                self._connected("WebSocket")

            async def update(command: dict[str, Any]) -> None:
                status, result = await self._execute(command)
                if status is None:
                    return
                answer = await request(
                    "command/update",
                    deviceId=self.device_id,
                    commandId=command["id"],
                    command={"status": status, "result": result},
                )
                if answer.get("code") == 401:
                    await request("authenticate", token=await self.authorize())
                    await request(
                        "command/update",
                        deviceId=self.device_id,
                        commandId=command["id"],
                        command={"status": status, "result": result},
                    )

            async def close_on_stop() -> None:
                await self._stopping.wait()
                await ws.close()

            tasks: set[asyncio.Task[Any]] = {asyncio.create_task(serve())}
            stop = asyncio.create_task(close_on_stop())
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    frame = json.loads(msg.data)
                    request_id = frame.get("requestId")
                    if request_id in pending:
                        pending.pop(request_id).set_result(frame)
                    elif frame.get("action") == "command/insert":
                        task = asyncio.create_task(update(frame["command"]))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    for task in [t for t in tasks if t.done()]:
                        tasks.discard(task)
                        if task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    if stop.done():
                        break
            finally:
                stop.cancel()
                for task in tasks:
                    task.cancel()
                self.connected.clear()

    def _connected(self, transport: str) -> None:
        if not self.connected.is_set():
            log.info(
                "device %s connected to %s (%s); waiting for commands",
                self.device_id,
                self.base_url,
                transport,
            )
        self.connected.set()

    async def _poll_once(self) -> None:
        query = f"waitTimeout={self.poll_wait}"
        if self.cursor:
            query += f"&timestamp={self.cursor}"
        status, commands = await self.call("GET", f"/device/{self.device_id}/command/poll?{query}")
        if status != 200:
            raise aiohttp.ClientError(f"poll failed: {status} {commands}")
        self._connected("HTTP long polling")
        for command in commands:
            status_text, result = await self._execute(command)
            if status_text is not None:
                await self.call(
                    "PUT",
                    f"/device/{self.device_id}/command/{command['id']}",
                    {"status": status_text, "result": result},
                )

    async def _execute(self, command: dict[str, Any]) -> tuple[str | None, Any]:
        """Run a command once (by id); advance the replay cursor."""
        stamp = command.get("timestamp")
        if isinstance(stamp, str) and (self.cursor is None or stamp > self.cursor):
            self.cursor = stamp
        command_id = int(command["id"])
        if command_id in self._done:
            return None, None
        self._done[command_id] = None
        name = str(command["command"])
        started = time.monotonic()
        try:
            status, result = await self.handler(name, command.get("parameters"))
        except Exception as error:
            log.exception("handler failed on command %s", command_id)
            status, result = "failed", {"error": str(error)}
        log.info(
            "command %s %s %s -> %s in %.3fs: %s",
            command_id,
            name,
            json.dumps(command.get("parameters"), separators=(",", ":")),
            status,
            time.monotonic() - started,
            json.dumps(result, separators=(",", ":")),
        )
        self.executed.append(command_id)
        if len(self.executed) > REMEMBERED_COMMANDS:
            del self.executed[0]
        return status, result

    async def notify(self, name: str, parameters: Any = None) -> int:
        """Send a notification from this device; returns its id."""
        status, body = await self.call(
            "POST",
            f"/device/{self.device_id}/notification",
            {"notification": name, "parameters": parameters},
        )
        if status != 201:
            raise aiohttp.ClientError(f"notification refused: {status} {body}")
        return int(body["id"])
