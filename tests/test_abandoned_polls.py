"""A device that gives up on an HTTP request never loses a command (at least once).

Each transport that hands commands out over HTTP is driven from a raw socket that sends
its request and then leaves (closes its end) before a command exists or before it could
be answered. The command is then created, and the device's next request must get it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import fresh_postgres_schema
from tests.support import ADMIN_PASSWORD, Running, running

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One SQLite server for the module; each test uses devices of its own."""
    async with running(tmp_path_factory.mktemp("polls")) as run:
        yield run


@pytest_asyncio.fixture(loop_scope="module", params=["sqlite", "postgres"])
async def either(
    request: pytest.FixtureRequest, shared: Running, tmp_path: Path
) -> AsyncIterator[Running]:
    if request.param == "sqlite":
        yield shared
        return
    async with fresh_postgres_schema() as url, running(tmp_path, database_url=url) as run:
        yield run


async def send_raw(run: Running, request: str) -> asyncio.StreamWriter:
    """Send ``request`` on a raw socket, and never read its answer."""
    host, port = run.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(request.encode())
    await writer.drain()
    return writer


async def leave(writer: asyncio.StreamWriter) -> None:
    """The device gives up on its request: its end of the connection closes."""
    writer.close()
    await writer.wait_closed()


def get(path: str, **headers: str) -> str:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


async def state_of(run: Running, command_id: int) -> str:
    command = await run.call("GET", f"/api/v1/commands/{command_id}", expect=200)
    return str(command["state"])


async def until_parked(run: Running, device_id: str) -> None:
    async with asyncio.timeout(5):
        while device_id not in run.hub.delivery.parked_devices():
            await asyncio.sleep(0.02)


async def test_native_long_poll_abandoned_then_command(either: Running) -> None:
    run = either
    credential = await run.device("lp-1")
    auth = {"Authorization": f"Bearer {credential}"}
    poll = "/api/v1/device/lp-1/commands"
    parked = await send_raw(run, get(poll + "?wait=20", **auth))
    await until_parked(run, "lp-1")
    await leave(parked)
    await asyncio.sleep(0.2)
    made = await run.call("POST", "/api/v1/devices/lp-1/commands", json={"name": "go"}, expect=201)
    await asyncio.sleep(0.3)  # the abandoned poll has been woken by now
    assert await state_of(run, made["id"]) in ("pending", "sent")
    async with run.session.get(run.url + poll + "?wait=5", headers=auth) as r:
        assert r.status == 200
        assert [c["id"] for c in await r.json()] == [made["id"]]
    assert await state_of(run, made["id"]) == "delivered"


async def test_native_poll_left_before_its_answer_hands_the_command_back(shared: Running) -> None:
    """The command exists already, the device sends its poll and closes at once: the
    hand-over is undone, not lost on the dead connection."""
    run = shared
    credential = await run.device("lp-2")
    auth = {"Authorization": f"Bearer {credential}"}
    made = await run.call("POST", "/api/v1/devices/lp-2/commands", json={"name": "go"}, expect=201)
    await leave(await send_raw(run, get("/api/v1/device/lp-2/commands", **auth)))
    await asyncio.sleep(0.3)
    assert await state_of(run, made["id"]) in ("pending", "sent")
    async with run.session.get(run.url + "/api/v1/device/lp-2/commands", headers=auth) as r:
        assert [c["id"] for c in await r.json()] == [made["id"]]


async def test_controlid_held_push_abandoned_then_command(shared: Running) -> None:
    run = shared
    await run.call(
        "POST",
        "/api/v1/devices",
        json={
            "id": "77",
            "name": "terminal 77",
            "dialect": "controlid",
            "attributes": {"long_poll": 20, "push_request_timeout": 30000},
        },
        expect=201,
    )
    parked = await send_raw(run, get("/push?deviceId=77"))
    await until_parked(run, "77")
    await leave(parked)
    await asyncio.sleep(0.2)
    made = await run.call(
        "POST", "/api/v1/devices/77/commands", json={"name": "reboot"}, expect=201
    )
    await asyncio.sleep(0.3)
    assert await state_of(run, made["id"]) in ("pending", "sent")
    async with run.session.get(run.url + "/push?deviceId=77") as r:
        assert r.status == 200
        assert (await r.json())["endpoint"] == "reboot"
    assert await state_of(run, made["id"]) == "in_progress"


async def test_opengate_pending_left_before_its_answer(shared: Running) -> None:
    run = shared
    key = await run.device("og-lp", dialect="opengate")
    made = await run.call(
        "POST",
        "/api/v1/devices/og-lp/commands",
        json={"name": "REBOOT_EQUIPMENT", "parameters": {}},
        expect=201,
    )
    pending = "/south/v80/devices/og-lp/operation/pending"
    await leave(await send_raw(run, get(pending, **{"X-ApiKey": key})))
    await asyncio.sleep(0.3)
    assert await state_of(run, made["id"]) in ("pending", "sent")
    async with run.session.get(run.url + pending, headers={"X-ApiKey": key}) as r:
        assert r.status == 200
        body: Any = await r.json()
    assert body["operation"]["request"]["name"] == "REBOOT_EQUIPMENT"
    assert await state_of(run, made["id"]) == "delivered"


async def test_devicehive_poll_abandoned_does_not_mark_delivered(shared: Running) -> None:
    run = shared
    async with run.session.post(
        run.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
    ) as r:
        token = (await r.json())["accessToken"]
    auth = {"Authorization": f"Bearer {token}"}
    rest = run.url + "/api/rest"
    async with run.session.put(rest + "/device/dh-lp", json={"name": "p"}, headers=auth) as r:
        assert r.status == 204
    since = time.strftime("%Y-%m-%dT%H:%M:%S.000", time.gmtime(time.time() - 1))
    poll = f"/api/rest/device/dh-lp/command/poll?waitTimeout=20&timestamp={since}"
    parked = await send_raw(run, get(poll, **auth))
    await asyncio.sleep(0.5)  # subscribed and waiting
    await leave(parked)
    await asyncio.sleep(0.2)
    async with run.session.post(
        rest + "/device/dh-lp/command", json={"command": "go"}, headers=auth
    ) as r:
        assert r.status == 201
        command_id = (await r.json())["id"]
    await asyncio.sleep(0.3)
    # Not marked delivered for a poller that left: its execution clock has not started.
    assert await state_of(run, command_id) == "pending"
    async with run.session.get(run.url + poll.replace("20", "5", 1), headers=auth) as r:
        assert [c["id"] for c in await r.json()] == [command_id]
