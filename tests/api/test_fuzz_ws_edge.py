"""The native WebSockets under the hostile families of the fuzz stage (``tests/fuzz.py``):
every frame gets an ``error`` (or a ``response``) frame, the socket stays open, and the
server logs no error."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tests.fuzz import draw, hostile_body, send_frame, server_errors, small
from tests.support import running

CLIENT: list[dict[str, Any]] = [
    {"type": "command.create", "deviceId": "fz-ws", "name": "x", "timeout": 5, "lifetime": 9},
    {"type": "command.get", "id": 1},
    {"type": "subscribe", "topic": "notification", "networkIds": [1], "names": ["n"]},
    {"type": "unsubscribe", "subscriptionId": 1},
]
DEVICE: list[dict[str, Any]] = [
    {"type": "ack", "id": 1},
    {"type": "result", "id": 1, "success": True, "result": {}},
    {"type": "notification", "name": "n", "parameters": {}},
    {"type": "state", "reported": {"a": 1}},
]


async def test_hostile_frames_get_answers_and_sockets_stay_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running(tmp_path) as server:
        credential = await server.device("fz-ws")
        client = server.ws_url + "/api/v1/ws"
        device = server.ws_url + "/api/v1/device/ws?deviceId=fz-ws"
        for url, token, templates in (
            (client, server.token, CLIENT),
            (device, credential, DEVICE),
        ):
            headers = {"Authorization": f"Bearer {token}"}
            async with server.session.ws_connect(url, headers=headers) as ws:
                if url == client:
                    await ws.send_json({"type": "authenticate", "token": token, "requestId": 0})
                    assert (await ws.receive_json(timeout=10))["type"] == "response"
                for template in templates:
                    for frame in small(draw(hostile_body(template), 25)):
                        await send_frame(ws, frame)
                await ws.send_json({"type": "ping", "requestId": "last"})
                while True:
                    answer = await ws.receive_json(timeout=10)
                    assert answer["type"] in ("error", "response", "event", "command"), answer
                    if answer.get("requestId") == "last":
                        break
    assert not server_errors(caplog.records)
