"""Helpers for the DeviceHive tests: a real server, and the official client run in threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.support import ADMIN_PASSWORD, Running, running

from devicehive import DeviceHive, DeviceHiveApi, Handler

TRANSPORTS = ["ws", "http"]


class Server:
    """A running Tether with DeviceHive URLs and admin tokens."""

    def __init__(self, run: Running, refresh: str, access: str) -> None:
        self.run = run
        self.refresh = refresh
        self.access = access

    def url(self, transport: str) -> str:
        if transport == "ws":
            return self.run.ws_url + "/api/websocket"
        return self.run.url + "/api/rest"

    async def rest(self, method: str, path: str, *, token: str | None = None, **kw: Any) -> Any:
        bearer = token or self.access
        headers = dict(kw.pop("headers", {}))
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        async with self.run.session.request(
            method, self.run.url + "/api/rest" + path, headers=headers, **kw
        ) as response:
            body = await response.read()
            return response.status, (await response.json() if body else None)

    async def tokens(self, login: str, password: str) -> tuple[str, str]:
        status, body = await self.rest(
            "POST", "/token", json={"login": login, "password": password}
        )
        assert status == 201, body
        return body["accessToken"], body["refreshToken"]


async def start(tmp_path: Path, **settings: Any) -> AsyncIterator[Server]:
    async with running(tmp_path, **settings) as run:
        server = Server(run, "", "")
        server.access, server.refresh = await server.tokens("admin", ADMIN_PASSWORD)
        yield server


def api(server: Server, transport: str, **creds: Any) -> DeviceHiveApi:
    """The official synchronous facade (a fresh connection per call, as it does)."""
    if not creds:
        creds = {"refresh_token": server.refresh}
    return DeviceHiveApi(server.url(transport), **creds)


class Recorder(Handler):  # type: ignore[misc]
    """A handler whose scenario is a callable; it disconnects once ``done`` says so."""

    def __init__(
        self,
        api: Any,
        scenario: Callable[[Recorder], None],
        done: Callable[[Recorder], bool],
        on_command: Callable[[Recorder, Any], None] | None = None,
    ) -> None:
        super().__init__(api)
        self.scenario = scenario
        self.done = done
        self.on_command = on_command
        self.inserted: list[Any] = []
        self.updated: list[Any] = []
        self.notifications: list[Any] = []
        self.subs: dict[str, Any] = {}
        self.finished = threading.Event()
        self.errors: list[BaseException] = []

    def _check(self) -> None:
        if self.done(self) and not self.finished.is_set():
            self.finished.set()
            self.api.disconnect()

    def handle_connect(self) -> None:
        try:
            self.scenario(self)
        except BaseException as error:  # surfaced by the test
            self.errors.append(error)
            self.finished.set()
            self.api.disconnect()
            return
        self._check()

    def handle_command_insert(self, command: Any) -> None:
        self.inserted.append(command)
        if self.on_command is not None:
            try:
                self.on_command(self, command)
            except BaseException as error:
                self.errors.append(error)
        self._check()

    def handle_command_update(self, command: Any) -> None:
        self.updated.append(command)
        self._check()

    def handle_notification(self, notification: Any) -> None:
        self.notifications.append(notification)
        self._check()


async def run_handler(url: str, timeout: float = 60, **kwargs: Any) -> Recorder:
    """Run the official event-driven client in a thread until its scenario is done."""
    creds = {
        k: kwargs.pop(k)
        for k in ("login", "password", "refresh_token", "access_token")
        if k in kwargs
    }
    hive = DeviceHive(Recorder, **kwargs)
    thread = threading.Thread(
        target=lambda: hive.connect(url, transport_keep_alive=False, **creds), daemon=True
    )
    thread.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        transport = hive.transport
        if transport is not None and transport._connection_thread is not None:
            break
        await asyncio.sleep(0.05)
    await asyncio.to_thread(thread.join, timeout)
    transport = hive.transport
    await asyncio.to_thread(transport.join, max(1.0, deadline - loop.time()))
    handler: Recorder = hive.handler
    if transport.is_alive():
        handler.api.disconnect()
        raise AssertionError(
            f"scenario not done in {timeout}s: inserted={len(handler.inserted)} "
            f"updated={len(handler.updated)} notifications={len(handler.notifications)} "
            f"errors={handler.errors!r} transport={transport.exception_info!r}"
        )
    if handler.errors:
        raise handler.errors[0]
    if transport.exception_info:
        raise transport.exception_info[1]
    return handler


@contextlib.asynccontextmanager
async def agent_running(server: Server, device_id: str, **options: Any) -> AsyncIterator[Any]:
    """``tether agent devicehive`` for ``device_id``, connected, stopped on exit."""
    from tether.dialects.devicehive.agent import DeviceHiveAgent

    agent = DeviceHiveAgent(server.run.url, device_id, refresh_token=server.refresh, **options)
    runner = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.connected.wait(), 20)
        yield agent
    finally:
        await agent.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, 20)
