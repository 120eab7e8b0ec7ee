"""DeviceHive's edge under hostile input, REST and WebSocket: the protocol's error, no 5xx,
no traceback, and the socket stays open.

The first tests pin the failures of issue 13 (a lifetime past any clock, ``lifetime: -1``,
64-bit overflow in ``take``/``skip`` and ids, 1,000 levels of nesting closing the socket
with 1002); the corpus then throws every hostile family at the same doors.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest
from tests.dialects.devicehive.helpers import Server
from tests.fuzz import draw, hostile_body, send_frame, server_errors, small

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEVICE = "fz-dh-dev"
HUGE = str(2**64)
DEEP = b'{"login": "admin", "password": ' + b"[" * 1000 + b"]" * 1000 + b"}"


async def raw(server: Server, method: str, path: str, body: bytes | None = None) -> int:
    headers = {"Authorization": f"Bearer {server.access}", "Content-Type": "application/json"}
    async with server.run.session.request(
        method, server.run.url + "/api/rest" + path, data=body, headers=headers
    ) as response:
        await response.read()
        return response.status


async def test_lifetimes_and_64_bit_overflow_are_400(server: Server) -> None:
    status, _ = await server.rest("PUT", f"/device/{DEVICE}", json={"name": DEVICE})
    assert status in (200, 204)
    for lifetime in (1e308, 1e20, -1, "-5", 10**30):
        status, body = await server.rest(
            "POST", f"/device/{DEVICE}/command", json={"command": "x", "lifetime": lifetime}
        )
        assert status == 400, (lifetime, body)
        # Past 64 bits the JSON codec refuses the number before any field is read.
        assert "lifetime" in body["message"] or "64-bit" in body["message"], body
    status, made = await server.rest(
        "POST", f"/device/{DEVICE}/command", json={"command": "x", "lifetime": 60}
    )
    assert status == 201, made
    for path in (
        f"/device/{DEVICE}/command?take={HUGE}",
        f"/device/{DEVICE}/command?skip={HUGE}",
        f"/device?take={HUGE}",
        f"/device?networkId={HUGE}",
        f"/user/{HUGE}",
        f"/network/{HUGE}",
    ):
        status, body = await server.rest("GET", path)
        assert status == 400, (path, body)
    for path in (f"/device/{DEVICE}/command/{HUGE}",):
        status, body = await server.rest("PUT", path, json={"status": "done", "result": 1})
        assert status in (400, 404), (path, body)


async def test_deep_nesting_is_400_and_the_socket_stays_open(server: Server) -> None:
    async with server.run.session.post(
        server.run.url + "/api/rest/token",
        data=DEEP,
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        assert "deeper than" in (await response.json())["message"]
    async with server.run.session.ws_connect(server.url("ws")) as ws:
        await ws.send_str(
            '{"action": "server/info", "requestId": 1, "x": ' + "[" * 1000 + "]" * 1000 + "}"
        )
        answer = await ws.receive_json(timeout=10)
        assert (answer["status"], answer["code"]) == ("error", 400), answer
        await ws.send_str(json.dumps({"action": "server/info", "requestId": 2}))
        assert (await ws.receive_json(timeout=10))["status"] == "success"


REST_DOORS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/token", {"login": "admin", "password": "x"}),
    ("POST", "/token/refresh", {"refreshToken": "x"}),
    ("PUT", f"/device/{DEVICE}", {"name": DEVICE, "networkId": 1, "data": {}}),
    ("POST", f"/device/{DEVICE}/command", {"command": "c", "parameters": {}, "lifetime": 5}),
    ("POST", f"/device/{DEVICE}/notification", {"notification": "n", "parameters": {}}),
    ("POST", "/network", {"name": "fz-net", "description": "d"}),
    ("POST", "/user", {"login": "fz-user", "password": "pw", "role": 1, "status": 0}),
]

WS_FRAMES: list[dict[str, Any]] = [
    {"action": "command/insert", "requestId": 1, "deviceId": DEVICE, "command": {"command": "c"}},
    {"action": "notification/insert", "deviceId": DEVICE, "notification": {"notification": "n"}},
    {"action": "command/list", "deviceId": DEVICE, "take": 5, "skip": 0},
    {"action": "device/save", "deviceId": DEVICE, "device": {"name": DEVICE}},
    {"action": "subscribe/command", "deviceId": DEVICE},
]


async def test_hostile_corpus_gets_protocol_errors_only(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await server.rest("PUT", f"/device/{DEVICE}", json={"name": DEVICE})
    errors: list[tuple[str, int]] = []
    for method, path, template in REST_DOORS:
        for body in draw(hostile_body(template), 25):
            status = await raw(server, method, path, body)
            if status >= 500:
                errors.append((f"{method} {path} {body[:120]!r}", status))
    assert not errors, errors[:10]
    async with server.run.session.ws_connect(server.url("ws"), max_msg_size=0) as ws:
        await ws.send_str(json.dumps({"action": "authenticate", "token": server.access}))
        await ws.receive_json(timeout=10)
        for template in WS_FRAMES:
            for frame in small(draw(hostile_body(template), 25)):
                await send_frame(ws, frame)
                answer = await ws.receive(timeout=10)
                assert answer.type is aiohttp.WSMsgType.TEXT, (frame[:120], answer)
                while "status" not in (parsed := json.loads(answer.data)):
                    answer = await ws.receive(timeout=10)  # an event of a subscription
                assert parsed.get("code", 200) < 500, (frame[:120], parsed)
        await ws.send_str(json.dumps({"action": "server/info", "requestId": "last"}))
        assert (await ws.receive_json(timeout=10))["status"] == "success"
    assert not server_errors(caplog.records)
