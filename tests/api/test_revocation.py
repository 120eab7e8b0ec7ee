"""Locking, disabling or deleting a user, or revoking a key, takes effect at once.

Over real sockets, on SQLite and PostgreSQL, and across two server processes' worth of
hubs joined by the Redis bus: the node that did not make the change refuses the very next
request, with no cache window.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import fresh_postgres_schema
from tests.support import Running, running

ME = "/api/v1/users/me"


async def status_as(r: Running, credential: str) -> int:
    headers = {"Authorization": f"Bearer {credential}"}
    async with r.session.get(r.url + ME, headers=headers) as response:
        return response.status


async def client_with_key(r: Running, login: str) -> tuple[int, str, str]:
    """A client user; returns its id, an API key and an access token."""
    user = await r.call(
        "POST", "/api/v1/users", json={"login": login, "password": "secret-1"}, expect=201
    )
    tokens = await r.call(
        "POST", "/api/v1/auth/token", json={"login": login, "password": "secret-1"}, expect=201
    )
    key = await r.call(
        "POST", "/api/v1/apikeys", json={"name": "k", "userId": user["id"]}, expect=201
    )
    return int(user["id"]), str(key["key"]), str(tokens["accessToken"])


async def refused_soon(r: Running, credential: str) -> int:
    """The status once a bus event had time to arrive (a bus hop, not a cache expiry)."""
    for _ in range(50):
        status = await status_as(r, credential)
        if status != 200:
            return status
        await asyncio.sleep(0.02)
    return 200


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Settings for each store: SQLite in the data dir, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield {}
        return
    async with fresh_postgres_schema() as url:
        yield {"database_url": url}


async def test_lock_disable_delete_stop_keys_and_tokens_at_once(
    tmp_path: Path, database: dict[str, Any]
) -> None:
    async with running(tmp_path, **database) as r:
        user_id, key, token = await client_with_key(r, "alice")
        assert await status_as(r, key) == 200  # now cached
        assert await status_as(r, token) == 200
        for status in ("locked", "disabled"):
            await r.call("PATCH", f"/api/v1/users/{user_id}", json={"status": status}, expect=200)
            assert await status_as(r, key) == 401
            assert await status_as(r, token) == 401
            await r.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "active"}, expect=200)
            assert await status_as(r, key) == 200
        await r.call("DELETE", f"/api/v1/users/{user_id}", expect=204)
        assert await status_as(r, key) == 401
        assert await status_as(r, token) == 401


async def test_changes_on_one_node_reach_the_other_at_once(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    shared = {"database_url": postgres_url, "bus": "redis", "redis_url": redis_url}
    async with (
        running(tmp_path / "a", **shared) as a,
        running(tmp_path / "b", **shared) as b,
    ):
        user_id, key, token = await client_with_key(a, "bob")
        assert await status_as(b, key) == 200  # cached on b
        assert await status_as(b, token) == 200
        await a.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "locked"}, expect=200)
        assert await refused_soon(b, key) == 401
        assert await status_as(b, token) == 401
        await a.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "active"}, expect=200)
        for _ in range(50):
            if await status_as(b, key) == 200:
                break
            await asyncio.sleep(0.02)
        assert await status_as(b, key) == 200
        keys = await a.call("GET", f"/api/v1/apikeys?userId={user_id}", expect=200)
        await a.call("DELETE", f"/api/v1/apikeys/{keys[0]['id']}", expect=204)
        assert await refused_soon(b, key) == 401


async def test_a_locked_users_open_connections_stop_at_once(tmp_path: Path) -> None:
    async with running(tmp_path) as r:
        user_id, _, token = await client_with_key(r, "dora")
        await r.call(
            "POST", "/api/v1/devices", json={"id": "th-1", "name": "th", "ownerId": user_id}
        )
        device = await r.hub.directory.device("th-1")
        assert device is not None
        headers = {"Authorization": f"Bearer {token}"}
        async with r.session.ws_connect(r.ws_url + "/api/v1/ws", headers=headers) as ws:
            subscribe = {"type": "subscribe", "requestId": 1, "topic": "notification"}
            await ws.send_json({**subscribe, "deviceIds": ["th-1"]})
            assert (await ws.receive_json(timeout=5))["type"] == "response"
            await r.hub.notifications.post_as_device(device, "temp", {"c": 20})
            assert (await ws.receive_json(timeout=5))["type"] == "event"
            await r.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "locked"})
            for _ in range(50):  # the re-check runs in the background
                if not r.hub.subscriptions.of_user(user_id):
                    break
                await asyncio.sleep(0.02)
            await r.hub.notifications.post_as_device(device, "temp", {"c": 21})
            with pytest.raises(TimeoutError):
                await ws.receive_json(timeout=0.5)
            # Requests on the connection that authenticated before the lock are refused too.
            await ws.send_json({"type": "ping", "requestId": 2})
            assert (await ws.receive_json(timeout=5))["type"] == "response"
            await ws.send_json({**subscribe, "requestId": 3})
            refused = await ws.receive_json(timeout=5)
            assert (refused["type"], refused["error"]["code"]) == ("error", "unauthorized")
        async with r.session.ws_connect(r.ws_url + "/api/websocket") as dh:
            await dh.send_json({"action": "authenticate", "requestId": 1, "token": token})
            assert (await dh.receive_json(timeout=5))["code"] == 401  # locked already
            await r.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "active"})
            await dh.send_json({"action": "authenticate", "requestId": 2, "token": token})
            assert (await dh.receive_json(timeout=5))["status"] == "success"
            await r.call("PATCH", f"/api/v1/users/{user_id}", json={"status": "disabled"})
            await dh.send_json({"action": "device/list", "requestId": 3})
            answer = await dh.receive_json(timeout=5)
            assert (answer["status"], answer["code"]) == ("error", 401), answer
