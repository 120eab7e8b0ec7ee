"""Test harness: a real Tether server on a loopback port, and a logged-in REST client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tether.app import build_app, make_runner, start_listeners
from tether.hub.service import Hub
from tether.settings import Settings
from tether.web import STARTUP

ADMIN_PASSWORD = "admin-pass-1"


@dataclass
class Running:
    server: TestServer
    session: aiohttp.ClientSession
    token: str
    #: Base URL of each extra listener a dialect added (see ``tether.app.Listener``).
    listeners: dict[str, str]

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1)

    @property
    def hub(self) -> Hub:
        hub = self.server.app[STARTUP].hub
        assert hub is not None, "the hub has not started"
        return hub

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        expect: int | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.request(
            method, self.url + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            if expect is not None:
                assert response.status == expect, (response.status, body)
            if not body:
                return None
            return await response.json()

    async def device(self, device_id: str, **fields: Any) -> str:
        """Create a device and return its credential."""
        await self.call(
            "POST",
            "/api/v1/devices",
            json={"id": device_id, "name": device_id, **fields},
            expect=201,
        )
        made = await self.call("POST", f"/api/v1/devices/{device_id}/credential", expect=201)
        return str(made["credential"])


class ServedAsInProduction(TestServer):
    """aiohttp's test server, with the runner ``tether serve`` uses (aiohttp's own test
    runner cancels a handler whose client leaves, which production never does)."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(app, host="127.0.0.1")
        self.settings = settings

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return make_runner(self.app, self.settings)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[Running]:
    """Start the full application (store, bus, hub, every route) on a free port."""
    options: dict[str, Any] = {"data_dir": tmp_path / "data", "admin_password": ADMIN_PASSWORD}
    options.update(overrides)
    settings = Settings(**options)
    server = ServedAsInProduction(build_app(settings), settings)
    await server.start_server()
    assert server.runner is not None
    listeners = await start_listeners(server.runner, server.app)
    await asyncio.wait_for(server.app[STARTUP].ready.wait(), 30)
    session = aiohttp.ClientSession()
    try:
        async with session.post(
            str(server.make_url("/api/v1/auth/token")),
            json={"login": "admin", "password": ADMIN_PASSWORD},
        ) as r:
            assert r.status == 201, await r.text()
            token = (await r.json())["accessToken"]
        yield Running(server, session, token, listeners)
    finally:
        await session.close()
        await server.close()
