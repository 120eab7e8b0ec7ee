"""eWeLink's edge under hostile input, HTTP (signed, so it reaches the handlers) and the
WebSocket: the protocol's error, no 5xx, no traceback, and the socket stays open.

Before the one JSON codec, 1,000 levels of nesting made the login a 500 and closed the
WebSocket with 1002, although the docs promise the socket survives bad frames.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from tests.dialects.ewelink.helpers import APPID, DEVICE, FACTORY, SECRET, World, world
from tests.fuzz import draw, hostile_body, send_frame, server_errors, small

from tether.dialects.ewelink import codec

pytestmark = pytest.mark.asyncio(loop_scope="module")

DEEP = "[" * 1000 + "]" * 1000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def w(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with world(tmp_path_factory.mktemp("ewelink-fuzz")) as running:
        await running.add_device()
        yield running


async def signed(w: World, path: str, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": "Sign " + codec.sign(SECRET, body), "X-CK-Appid": APPID}
    async with w.r.session.post(w.r.url + path, data=body, headers=headers) as response:
        text = await response.read()
        return response.status, json.loads(text) if text.startswith(b"{") else text


async def test_deep_nesting_is_the_protocols_error_and_the_socket_stays_open(w: World) -> None:
    body = '{"appid": "' + APPID + '", "email": "u@example.com", "password": ' + DEEP + "}"
    for path in ("/api/user/login", "/v2/user/login"):
        status, answer = await signed(w, path, body.encode())
        assert status == 200, (path, answer)  # eWeLink answers errors in the body
        assert answer["error"] != 0, answer
    async with w.r.session.ws_connect(w.r.ws_url + "/api/ws") as ws:
        await ws.send_str('{"action": "register", "x": ' + DEEP + "}")
        answer = await ws.receive(timeout=10)
        assert answer.type is aiohttp.WSMsgType.TEXT, answer
        assert json.loads(answer.data)["error"] == 400
        await ws.send_json(
            {"action": "register", "deviceid": DEVICE, "apikey": FACTORY, "userAgent": "device"}
        )
        assert json.loads((await ws.receive(timeout=10)).data)["error"] == 0


HTTP_DOORS: list[tuple[str, dict[str, Any]]] = [
    ("/api/user/login", {"appid": APPID, "email": "u@example.com", "password": "p"}),
    ("/v2/user/login", {"email": "u@example.com", "password": "p", "countryCode": "+1"}),
    ("/dispatch/device", {"accept": "ws", "version": 2, "ts": 1, "deviceid": DEVICE}),
]

FRAMES: list[dict[str, Any]] = [
    {"action": "register", "deviceid": DEVICE, "apikey": FACTORY, "userAgent": "device"},
    {"action": "update", "deviceid": DEVICE, "apikey": FACTORY, "params": {"switch": "on"}},
    {"action": "query", "deviceid": DEVICE, "apikey": FACTORY, "params": ["switch"]},
    {"error": 0, "deviceid": DEVICE, "apikey": FACTORY, "sequence": "1"},
]


async def test_hostile_corpus_gets_protocol_errors_only(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    failures: list[Any] = []
    for path, template in HTTP_DOORS:
        for body in draw(hostile_body(template), 25):
            status, _ = await signed(w, path, body)
            if status >= 500:
                failures.append((path, body[:120], status))
    assert not failures, failures[:10]
    async with w.r.session.ws_connect(w.r.ws_url + "/api/ws", max_msg_size=0) as ws:
        for template in FRAMES:
            for frame in small(draw(hostile_body(template), 25)):
                await send_frame(ws, frame)
        # Every bad frame got its error (or nothing); the socket still works.
        await ws.send_str("ping")
        while (message := await ws.receive(timeout=10)).data != "pong":
            assert message.type is aiohttp.WSMsgType.TEXT, message
            assert json.loads(message.data).get("error", 0) < 500, message.data
    assert not server_errors(caplog.records)
