"""Hostile numbers, nesting and strings at the native API's edge: a clear 400, never a 500.

Each case here answered 500 (or bricked the server) before the bounds of ``core/limits.py``
and ``core/jsonc.py``; over real sockets, on SQLite and on PostgreSQL (where 64-bit
overflow and NUL bytes reach the driver).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.conftest import fresh_postgres_schema
from tests.support import Running, running

from tether.core.jsonc import MAX_DEPTH
from tether.core.limits import DURATION_MAX

DEVICE = "limits-dev"
HUGE = 2**64
DEEP = b'{"name": "n", "parameters": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def tether(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Running]:
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if request.param == "postgresql":
            options["database_url"] = await stack.enter_async_context(fresh_postgres_schema())
        server = await stack.enter_async_context(running(tmp_path, **options))
        CREDENTIALS[id(server)] = await server.device(DEVICE)
        yield server


CREDENTIALS: dict[int, str] = {}


async def send(
    server: Running, method: str, path: str, *, device: bool = False, **kwargs: Any
) -> tuple[int, Any]:
    """A request as the admin, or (``device``) with the test device's credential."""
    token = CREDENTIALS[id(server)] if device else server.token
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with server.session.request(
        method, server.url + path, headers=headers, **kwargs
    ) as response:
        body = await response.read()
        return response.status, (await response.json() if body else None)


def refused(status: int, body: Any, *words: str) -> None:
    assert status == 400, (status, body)
    message = body["error"]["message"]
    for word in words:
        assert word in message, (word, message)


async def test_durations_out_of_range_are_refused_naming_field_and_bounds(
    tether: Running,
) -> None:
    path = f"/api/v1/devices/{DEVICE}/commands"
    for field in ("timeout", "lifetime"):
        for value in (1e308, 1e20, DURATION_MAX * 2, -1, 0):
            status, body = await send(tether, "POST", path, json={"name": "x", field: value})
            refused(status, body, field)
    # At the bound itself it is accepted, and the device's poll is served normally.
    status, made = await send(
        tether, "POST", path, json={"name": "x", "timeout": DURATION_MAX, "lifetime": 60}
    )
    assert status == 201, made
    status, body = await send(
        tether, "POST", "/api/v1/apikeys", json={"name": "k", "expiresIn": 1e308}
    )
    refused(status, body, "expiresIn")
    # The client WebSocket applies the same rule and stays open.
    async with tether.session.ws_connect(tether.ws_url + "/api/v1/ws") as ws:
        await ws.send_json({"type": "authenticate", "token": tether.token, "requestId": 1})
        assert (await ws.receive_json())["type"] == "response"
        frame = {"type": "command.create", "deviceId": DEVICE, "name": "x", "requestId": 2}
        await ws.send_json({**frame, "timeout": 1e308})
        answer = await ws.receive_json()
        assert answer["type"] == "error", answer
        assert "timeout" in answer["error"]["message"], answer
        await ws.send_json({"type": "ping", "requestId": 3})
        assert (await ws.receive_json())["type"] == "response"


async def test_integers_beyond_64_bits_are_400_in_paths_queries_and_bodies(
    tether: Running,
) -> None:
    big = str(HUGE)
    for path in (
        f"/api/v1/commands/{big}",
        f"/api/v1/users/{big}",
        f"/api/v1/networks/{big}",
        f"/api/v1/device-types/{big}",
        f"/api/v1/notifications/{big}",
        f"/api/v1/devices?networkId={big}",
        f"/api/v1/devices?take={big}",
        f"/api/v1/devices?skip={big}",
        f"/api/v1/devices?skip={'9' * 5000}",
    ):
        status, body = await send(tether, "GET", path)
        assert status == 400, (path, status, body)
    for path, body in (
        ("/api/v1/devices", {"name": "d2", "networkId": HUGE}),
        (f"/api/v1/devices/{DEVICE}/commands", {"name": "x", "parameters": {"n": HUGE}}),
    ):
        status, answer = await send(tether, "POST", path, json=body)
        assert status == 400, (path, status, answer)
    device = f"/api/v1/device/{DEVICE}"
    for path, body in (
        (f"{device}/notifications", {"name": "x", "parameters": [-HUGE]}),
        (f"{device}/commands/{big}/result", {"result": 1}),
        (f"{device}/commands/{big}/ack", {}),
    ):
        status, answer = await send(tether, "POST", path, json=body, device=True)
        assert status == 400, (path, status, answer)
    # 64-bit values themselves are fine (a 404 for an id that is not there).
    status, _ = await send(tether, "GET", f"/api/v1/commands/{2**63 - 1}")
    assert status == 404


async def test_strings_no_store_can_hold_are_refused(tether: Running) -> None:
    path = f"/api/v1/device/{DEVICE}/notifications"
    for raw in (
        b'{"name": "x", "parameters": {"s": "\\ud800"}}',
        b'{"name": "x", "parameters": {"s": "a\\udc00b"}}',
        b'{"name": "x\\u0000y"}',
        b'{"name": "x", "parameters": {"k\\u0000": 1}}',
    ):
        status, body = await send(tether, "POST", path, data=raw, device=True)
        refused(status, body, "string")
    # A surrogate pair is an ordinary character and is stored as one.
    status, made = await send(tether, "POST", path, data=b'{"name": "\\ud83d\\ude00"}', device=True)
    assert status == 201, made
    assert made["name"] == "\U0001f600"


async def test_deep_nesting_is_400_and_sockets_stay_open(tether: Running) -> None:
    for method, path, auth in (
        ("POST", "/api/v1/auth/token", False),
        ("POST", f"/api/v1/devices/{DEVICE}/commands", True),
        ("PATCH", f"/api/v1/devices/{DEVICE}", True),
        ("POST", "/api/v1/networks", True),
    ):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {tether.token}"
        async with tether.session.request(
            method, tether.url + path, data=DEEP, headers=headers
        ) as response:
            body = await response.json()
            assert response.status == 400, (path, body)
            assert f"deeper than {MAX_DEPTH}" in body["error"]["message"]
    async with tether.session.ws_connect(tether.ws_url + "/api/v1/ws") as ws:
        await ws.send_str('{"type": "ping", "requestId": 1, "x": ' + "[" * 1000 + "]" * 1000 + "}")
        answer = await ws.receive_json()
        assert answer["type"] == "error", answer
        await ws.send_json({"type": "ping", "requestId": 2})
        assert (await ws.receive_json())["type"] == "response"


async def test_device_socket_without_credentials_is_401(tether: Running) -> None:
    async with tether.session.get(tether.url + "/api/v1/device/ws") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
    # The upgrade itself still works and waits for a hello frame.
    async with tether.session.ws_connect(tether.ws_url + "/api/v1/device/ws") as ws:
        await ws.send_str("[" * 1000 + "]" * 1000)
        message = await ws.receive()
        assert message.type is aiohttp.WSMsgType.CLOSE
        assert message.data == 4401


async def test_the_document_and_the_server_agree_on_edges(tether: Running) -> None:
    """``take=0``, null or empty names in PATCH and ``DELETE /users/me`` were allowed by
    the published schema and refused by the server; now both say the same."""
    status, document = await send(tether, "GET", "/api/v1/openapi.json")
    assert status == 200
    listing = document["paths"]["/api/v1/devices"]["get"]["parameters"]
    take = next(p for p in listing if p["name"] == "take")["schema"]
    assert (take["minimum"], take["maximum"]) == (1, 1000)
    status, _ = await send(tether, "GET", "/api/v1/devices?take=0")
    assert status == 400
    patch = document["paths"]["/api/v1/devices/{device_id}"]["patch"]["requestBody"]
    schema = patch["content"]["application/json"]["schema"]
    assert "$ref" in schema
    name = document["components"]["schemas"]["DeviceUpdate"]["properties"]["name"]
    assert name == {"type": "string", "minLength": 1, "maxLength": 128}
    for body in ({"name": None}, {"name": ""}):
        status, _ = await send(tether, "PATCH", f"/api/v1/devices/{DEVICE}", json=body)
        assert status == 400, body
    assert "delete" not in document["paths"]["/api/v1/users/me"]
    status, answer = await send(tether, "DELETE", "/api/v1/users/me")
    assert status == 405, answer
