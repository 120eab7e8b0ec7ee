"""A DeviceHive device is online while its agent listens for its commands.

Over the WebSocket, the agent's ``command/subscribe`` for its own device is its live
session (offline as soon as it closes); over REST, its command polls keep it online like
any poll. A client watching a device's commands does not make it online.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from tests.dialects.devicehive.helpers import Server, agent_running


async def online(server: Server, device_id: str) -> bool:
    device = await server.run.call("GET", f"/api/v1/devices/{device_id}", expect=200)
    return bool(device["online"])


async def until(server: Server, device_id: str, want: bool, within: float) -> None:
    async with asyncio.timeout(within):
        while await online(server, device_id) is not want:
            await asyncio.sleep(0.1)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_device_is_online_while_its_agent_listens(server: Server, transport: str) -> None:
    device_id = f"presence-{transport}"
    async with agent_running(server, device_id, transport=transport, poll_wait=1):
        await until(server, device_id, True, 5)
        await asyncio.sleep(1.5)  # across a poll of the HTTP agent
        assert await online(server, device_id)
    if transport == "ws":
        await until(server, device_id, False, 3)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_client_watching_updates_does_not_make_a_device_online(server: Server) -> None:
    status, _ = await server.rest("PUT", "/device/presence-watched", json={"name": "w"})
    assert status in (200, 204)
    url = server.url("ws")
    async with server.run.session.ws_connect(url) as ws:
        frames = [
            {"action": "authenticate", "requestId": "1", "token": server.access},
            {
                "action": "command/subscribe",
                "requestId": "2",
                "deviceId": "presence-watched",
                "returnUpdatedCommands": True,
            },
        ]
        for frame in frames:
            await ws.send_str(json.dumps(frame))
            while (answer := json.loads(await ws.receive_str())).get("requestId") != frame[
                "requestId"
            ]:
                pass
            assert answer["status"] == "success", answer
        assert not await online(server, "presence-watched")
