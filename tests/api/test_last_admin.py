"""No API call leaves the server without an active admin (native and DeviceHive)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import fresh_postgres_schema
from tests.support import Running, running


@pytest.fixture(params=["sqlite", "postgresql"])
async def tether(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    if request.param == "sqlite":
        async with running(tmp_path) as r:
            yield r
        return
    async with fresh_postgres_schema() as url, running(tmp_path, database_url=url) as r:
        yield r


async def dh(r: Running, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = r.url + "/api/rest" + path
    async with r.session.request(method, url, json=body, headers=r.auth) as response:
        raw = await response.read()
        return response.status, json.loads(raw) if raw else None


async def test_the_last_active_admin_cannot_be_removed(tether: Running) -> None:
    r = tether
    me = await r.call("GET", "/api/v1/users/me", expect=200)
    admin = me["id"]
    for change in ({"role": "client"}, {"status": "locked"}, {"status": "disabled"}):
        refused = await r.call("PATCH", f"/api/v1/users/{admin}", json=change, expect=409)
        assert "last active admin" in refused["error"]["message"]
    refused = await r.call("DELETE", f"/api/v1/users/{admin}", expect=409)
    assert "last active admin" in refused["error"]["message"]
    # DeviceHive: role 1 is client, status 1 is locked.
    for body in ({"role": 1}, {"status": 1}):
        for path in ("/user/current", f"/user/{admin}"):
            status, answer = await dh(r, "PUT", path, body)
            assert status == 403, answer
            assert "last active admin" in answer["message"]
    assert (await r.call("GET", "/api/v1/users/me", expect=200))["role"] == "admin"

    # With a second active admin, the first may step down; then the second is the last.
    second = await r.call(
        "POST",
        "/api/v1/users",
        json={"login": "second", "password": "secret-2", "role": "admin"},
        expect=201,
    )
    locked_admin = await r.call(
        "POST",
        "/api/v1/users",
        json={"login": "third", "password": "secret-3", "role": "admin"},
        expect=201,
    )
    await r.call("PATCH", f"/api/v1/users/{locked_admin['id']}", json={"status": "locked"})
    await r.call("PATCH", f"/api/v1/users/{admin}", json={"role": "client"}, expect=200)
    tokens = await r.call(
        "POST", "/api/v1/auth/token", json={"login": "second", "password": "secret-2"}, expect=201
    )
    as_second = tokens["accessToken"]
    # A locked admin does not count: "second" is the last active one.
    await r.call("DELETE", f"/api/v1/users/{second['id']}", token=as_second, expect=409)
    await r.call("DELETE", f"/api/v1/users/{admin}", token=as_second, expect=204)
