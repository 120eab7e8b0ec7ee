"""The fleet summary and the presence filter of the device list, over real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.support import Running, running


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path) as server:
        yield server


async def login(server: Running, user: str, password: str) -> str:
    body = {"login": user, "password": password}
    made = await server.call("POST", "/api/v1/auth/token", json=body, expect=201)
    return str(made["accessToken"])


async def test_summary_counts_presence_per_dialect_commands_and_notifications(
    tether: Running,
) -> None:
    credential = await tether.device("lamp-1")
    await tether.device("lamp-2")
    await tether.device("dh-1", dialect="devicehive")
    tether.hub.presence.activity("lamp-1")
    note = {"name": "temp", "parameters": {"t": 21}}
    for _ in range(3):
        await tether.call(
            "POST", "/api/v1/device/lamp-1/notifications", token=credential, json=note, expect=201
        )
    command = await tether.call(
        "POST", "/api/v1/devices/lamp-2/commands", json={"name": "echo"}, expect=201
    )
    await tether.call("POST", f"/api/v1/commands/{command['id']}/cancel", expect=200)
    await tether.call("POST", "/api/v1/devices/lamp-2/commands", json={"name": "x"}, expect=201)

    summary = await tether.call("GET", "/api/v1/fleet?minutes=5", expect=200)
    assert summary["devices"] == [
        {"dialect": "devicehive", "online": 0, "offline": 1},
        {"dialect": "native", "online": 1, "offline": 1},
    ]
    assert summary["commands"] == {"cancelled": 1, "pending": 1}
    per_minute = summary["notificationsPerMinute"]
    assert len(per_minute) == 5
    assert sum(per_minute) == 3
    assert sum(per_minute[-2:]) == 3  # the current minute, or the one that just ended
    assert summary["nodeId"] == tether.hub.node_id
    await tether.call("GET", "/api/v1/fleet?minutes=0", expect=400)


async def test_client_summary_covers_only_its_devices(tether: Running) -> None:
    network = await tether.call("POST", "/api/v1/networks", json={"name": "north"}, expect=201)
    await tether.device("mine", networkId=network["id"])
    await tether.device("theirs")
    tether.hub.presence.activity("theirs")
    user = {"login": "carol", "password": "carol-pass-1", "role": "client"}
    made = await tether.call("POST", "/api/v1/users", json=user, expect=201)
    await tether.call("PUT", f"/api/v1/users/{made['id']}/networks/{network['id']}", expect=204)
    token = await login(tether, "carol", "carol-pass-1")
    summary = await tether.call("GET", "/api/v1/fleet", token=token, expect=200)
    assert summary["devices"] == [{"dialect": "native", "online": 0, "offline": 1}]
    assert len(summary["notificationsPerMinute"]) == 60


async def test_device_list_filters_by_presence_with_paging(tether: Running) -> None:
    for n in range(6):
        await tether.device(f"d{n}")
    for n in (1, 3, 4):
        tether.hub.presence.activity(f"d{n}")

    async def ids(query: str) -> list[str]:
        return [d["id"] for d in await tether.call("GET", "/api/v1/devices?" + query, expect=200)]

    assert await ids("online=true") == ["d1", "d3", "d4"]
    assert await ids("online=false") == ["d0", "d2", "d5"]
    assert await ids("online=true&skip=1&take=1") == ["d3"]
    assert await ids("online=false&desc=true&take=2") == ["d5", "d2"]
    assert await ids("online=true&namePattern=d4") == ["d4"]
    await tether.call("GET", "/api/v1/devices?online=maybe", expect=400)


async def test_commands_filter_by_dialect(tether: Running) -> None:
    await tether.device("n-1")
    await tether.device("h-1", dialect="devicehive")
    for device in ("n-1", "h-1"):
        await tether.call(
            "POST", f"/api/v1/devices/{device}/commands", json={"name": "echo"}, expect=201
        )
    found = await tether.call("GET", "/api/v1/commands?dialect=devicehive", expect=200)
    assert [c["deviceId"] for c in found] == ["h-1"]
