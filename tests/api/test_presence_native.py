"""What makes a native device online, over real sockets (docs/architecture.md, Presence).

A WebSocket session holds a device online while it is open; a long-poll keeps it online
for the poll timeout; anything else a device asks (its shadow, a notification) only moves
``last_seen``, so a stopped agent is offline within a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.api.test_native_e2e import agent
from tests.support import Running, running


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path) as server:
        yield server


async def online(server: Running, device_id: str) -> bool:
    return bool((await server.call("GET", f"/api/v1/devices/{device_id}", expect=200))["online"])


async def until(server: Running, device_id: str, want: bool, within: float) -> None:
    async with asyncio.timeout(within):
        while await online(server, device_id) is not want:
            await asyncio.sleep(0.1)


def device_headers(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def test_websocket_agent_is_offline_as_soon_as_it_stops(tether: Running) -> None:
    credential = await tether.device("lamp-ws")
    # `tether agent native` checks its credential with GET /state before connecting: that
    # request used to count as a poll and kept the device online for presence_timeout.
    await tether.call("GET", "/api/v1/device/lamp-ws/state", token=credential, expect=200)
    assert not await online(tether, "lamp-ws")
    async with agent(tether, "lamp-ws", credential):
        await until(tether, "lamp-ws", True, 5)
    await until(tether, "lamp-ws", False, 3)


async def test_long_poll_keeps_a_device_online(tether: Running) -> None:
    credential = await tether.device("lamp-http")
    async with agent(tether, "lamp-http", credential, transport="http", poll_wait=1):
        await until(tether, "lamp-http", True, 5)
        await asyncio.sleep(1.5)  # past one whole poll: still online between polls
        assert await online(tether, "lamp-http")


async def test_requests_that_are_not_polls_do_not_make_a_device_online(tether: Running) -> None:
    credential = await tether.device("sensor")
    base = "/api/v1/device/sensor"
    await tether.call("GET", base + "/state", token=credential, expect=200)
    body = {"reported": {"t": 1}}
    await tether.call("PATCH", base + "/state", token=credential, json=body, expect=200)
    note = {"name": "temp", "parameters": {"t": 20}}
    await tether.call("POST", base + "/notifications", token=credential, json=note, expect=201)
    assert not await online(tether, "sensor")
    # ... but they are signs of life: last_seen moves (written behind to the store), and a
    # device read by id (from the hub's cache) agrees with the list (from the store).
    async with asyncio.timeout(10):
        while (await tether.call("GET", "/api/v1/devices?name=sensor"))[0]["lastSeen"] is None:
            await asyncio.sleep(0.2)
    listed = (await tether.call("GET", "/api/v1/devices?name=sensor"))[0]["lastSeen"]
    assert (await tether.call("GET", "/api/v1/devices/sensor"))["lastSeen"] == listed
