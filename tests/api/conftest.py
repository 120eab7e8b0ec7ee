"""A real management API server over a real hub and SQLite store, on a loopback port.

``api_client`` yields ``(client, hub)``: an ``aiohttp.test_utils.TestClient`` talking to an
app with the error middleware, ``app[HUB] = hub`` and the health, OpenAPI and management
routes mounted, with an admin ``admin``/``adminpass`` bootstrapped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tether.api import health, management, openapi
from tether.api.http import HUB, error_middleware
from tether.bus.memory import MemoryBus
from tether.hub.service import Hub
from tether.settings import Settings
from tether.store import Store

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "adminpass"

Client = TestClient[web.Request, web.Application]
Headers = dict[str, str]


def build_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app[HUB] = hub
    for table in (health.routes, openapi.routes, *management.route_tables()):
        app.add_routes(table)
    return app


@pytest.fixture
async def api_client(tmp_path: Path) -> AsyncIterator[tuple[Client, Hub]]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    hub = Hub(store, MemoryBus(), Settings(data_dir=tmp_path))
    await hub.start()
    client: Client | None = None
    try:
        await hub.auth.bootstrap_admin(ADMIN_LOGIN, ADMIN_PASSWORD)
        client = TestClient(TestServer(build_app(hub)))
        await client.start_server()
        yield client, hub
    finally:
        if client is not None:
            await client.close()
        await hub.stop()
        await store.close()


@dataclass
class Api:
    """A thin REST helper over ``api_client``, logged in as the admin by default."""

    client: Client
    hub: Hub
    admin: Headers

    async def login(self, user: str, password: str) -> Headers:
        body = {"login": user, "password": password}
        response = await self.client.post("/api/v1/auth/token", json=body)
        assert response.status == 201, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['accessToken']}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        expect: int = 200,
        headers: Headers | None = None,
        anonymous: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One request (as the admin unless ``headers``/``anonymous``); asserts the status
        and returns the decoded JSON body, or None when there is none."""
        if headers is None and not anonymous:
            headers = self.admin
        response = await self.client.request(method, path, headers=headers, **kwargs)
        body = await response.read()
        assert response.status == expect, (method, path, response.status, body)
        return msgspec.json.decode(body) if body else None

    async def user(
        self, name: str, password: str = "secret-1", **fields: Any
    ) -> tuple[int, Headers]:
        """Create a user as the admin; returns its id and bearer headers."""
        body = {"login": name, "password": password, **fields}
        made = await self.call("POST", "/api/v1/users", json=body, expect=201)
        return int(made["id"]), await self.login(name, password)

    async def network(self, name: str) -> int:
        made = await self.call("POST", "/api/v1/networks", json={"name": name}, expect=201)
        return int(made["id"])

    async def device(self, device_id: str, headers: Headers | None = None, **fields: Any) -> Any:
        body = {"id": device_id, "name": device_id, **fields}
        return await self.call("POST", "/api/v1/devices", json=body, headers=headers, expect=201)


@pytest.fixture
async def api(api_client: tuple[Client, Hub]) -> Api:
    client, hub = api_client
    probe = Api(client, hub, {})
    return Api(client, hub, await probe.login(ADMIN_LOGIN, ADMIN_PASSWORD))
