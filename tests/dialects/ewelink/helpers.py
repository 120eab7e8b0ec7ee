"""Shared set-up for the eWeLink tests: a running server, an account, an owned device."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tests.support import Running, running

from tether.dialects.ewelink import codec
from tether.dialects.ewelink.agent import EmulatedSonoff

APPID = "testAppId0000000000000000000000A"
SECRET = "testAppSecret"
EMAIL = "u@example.com"
PASSWORD = "password-1"
DEVICE = "100008db11"
FACTORY = "f0f0f0f0-1111-2222-3333-444455556666"


@dataclass
class World:
    r: Running
    user_id: int

    @property
    def hub(self) -> Any:
        return self.r.hub

    async def add_device(
        self,
        device_id: str = DEVICE,
        factory: str = FACTORY,
        owner: int | None = None,
        **attrs: Any,
    ) -> None:
        admin = await self.hub.auth.principal(self.r.token)
        await self.hub.directory.create_device(
            admin,
            id=device_id,
            name=f"Sonoff {device_id}",
            dialect="ewelink",
            owner_id=self.user_id if owner is None else owner,
            attributes={"apikey": factory, "model": "ITA-GZ1-GL", **attrs},
        )

    async def add_user(self, email: str, password: str = PASSWORD) -> int:
        user = await self.hub.directory.create_user(None, login=email, password=password)
        return int(user.id)

    async def login(self, email: str = EMAIL, password: str = PASSWORD) -> dict[str, Any]:
        body = json.dumps({"appid": APPID, "email": email, "password": password, "version": 8})
        headers = {"Authorization": "Sign " + codec.sign(SECRET, body.encode())}
        async with self.r.session.post(
            self.r.url + "/api/user/login", data=body, headers=headers
        ) as response:
            assert response.status == 200
            return dict(await response.json(content_type=None))

    async def device_online(self, device_id: str = DEVICE, seconds: float = 10) -> None:
        for _ in range(int(seconds / 0.025)):
            if device_id in self.hub.delivery.sessions:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{device_id} never came online")


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, database_url: str | None = None, **ewelink: Any
) -> AsyncIterator[World]:
    options: dict[str, Any] = {"apps": {APPID: SECRET}, **ewelink}
    extra: dict[str, Any] = {"database_url": database_url} if database_url else {}
    async with running(tmp_path, ewelink=options, **extra) as r:
        user = await r.hub.directory.create_user(None, login=EMAIL, password=PASSWORD)
        yield World(r, int(user.id))


@contextlib.asynccontextmanager
async def device_running(w: World, **kwargs: Any) -> AsyncIterator[EmulatedSonoff]:
    agent = EmulatedSonoff(
        w.r.url, kwargs.pop("device_id", DEVICE), kwargs.pop("factory", FACTORY), **kwargs
    )
    task = asyncio.create_task(agent.run())
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(agent.registered.wait())],
            timeout=30,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()
        assert agent.registered.is_set()
        yield agent
    finally:
        await agent.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class AppSocket:
    """A raw app WebSocket: send JSON, read JSON frames (and the text ``pong``)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pushed: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 20) -> Any:
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message.type is not aiohttp.WSMsgType.TEXT:
            return message
        return message.data if message.data == "pong" else json.loads(message.data)

    async def reply_to(self, sequence: Any, timeout: float = 20) -> dict[str, Any]:
        """The reply with ``sequence``; pushes read meanwhile are kept in ``pushed``."""
        while True:
            frame = await self.recv(timeout)
            if frame == "pong":
                continue
            if (
                isinstance(frame, dict)
                and "action" not in frame
                and frame.get("sequence") == sequence
            ):
                return frame
            assert isinstance(frame, dict), frame
            self.pushed.append(frame)

    async def push(self, action: str, timeout: float = 20) -> dict[str, Any]:
        for i, frame in enumerate(self.pushed):
            if frame.get("action") == action:
                return self.pushed.pop(i)
        while True:
            frame = await self.recv(timeout)
            assert isinstance(frame, dict), frame
            if frame.get("action") == action:
                return frame
            self.pushed.append(frame)


@contextlib.asynccontextmanager
async def app_socket(w: World, login: dict[str, Any]) -> AsyncIterator[AppSocket]:
    async with w.r.session.ws_connect(w.r.ws_url + "/api/ws") as ws:
        app = AppSocket(ws)
        await app.send(
            {
                "action": "userOnline",
                "at": login["at"],
                "apikey": login["user"]["apikey"],
                "appid": APPID,
                "userAgent": "app",
                "sequence": "1",
            }
        )
        reply = await app.recv()
        assert reply["error"] == 0, reply
        yield app
