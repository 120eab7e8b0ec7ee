"""Control iD Push end to end over real sockets: native API -> /push -> emulated terminal
-> /result -> command completed; Monitor events -> notifications at a subscribed client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.support import ADMIN_PASSWORD, Running, running

from tether.dialects.controlid.agent import Terminal

TERMINAL_ID = "4408955728035889"


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path, controlid={"result_timeout": 30}) as server:
        await register(server, TERMINAL_ID)
        yield server


async def register(server: Running, device_id: str, **attributes: Any) -> None:
    await server.call(
        "POST",
        "/api/v1/devices",
        json={
            "id": device_id,
            "name": f"terminal {device_id}",
            "dialect": "controlid",
            "attributes": attributes,
        },
        expect=201,
    )


@contextlib.asynccontextmanager
async def terminal(
    server: Running, device_id: str = TERMINAL_ID, base: str = "", **options: Any
) -> AsyncIterator[Terminal]:
    options.setdefault("period", 0.05)
    options.setdefault("monitor_url", server.url + "/api/notifications")
    device = Terminal(server.url + base, int(device_id), session=server.session, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(device.run(stop))
    try:
        yield device
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 15)
        if frame["type"] == kind:
            return frame


async def send(server: Running, name: str, parameters: Any = None, **extra: Any) -> Any:
    body = {"name": name, "parameters": parameters, **extra}
    return await server.call(
        "POST", f"/api/v1/devices/{TERMINAL_ID}/commands", json=body, expect=201
    )


async def finished(server: Running, command_id: int) -> Any:
    for _ in range(300):
        command = await server.call("GET", f"/api/v1/commands/{command_id}", expect=200)
        if command["state"] in ("succeeded", "failed", "timed_out", "expired", "cancelled"):
            return command
        await asyncio.sleep(0.05)
    raise AssertionError(f"command {command_id} did not finish: {command}")


async def test_native_command_reaches_terminal_and_result_completes_it(
    tether: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.controlid")
    async with terminal(tether) as device:
        made = await send(
            tether,
            "create_objects",
            {"object": "users", "values": [{"id": 1000, "name": "John Doe", "registration": "1"}]},
        )
        created = await finished(tether, made["id"])
        assert created["state"] == "succeeded"
        assert created["result"] == {"ids": [1000]}
        assert created["ref"]  # the uuid the command went out under
        loaded = await finished(
            tether,
            (await send(tether, "load_objects", {"object": "users"}))["id"],
        )
        assert loaded["result"] == {
            "users": [{"id": 1000, "name": "John Doe", "registration": "1"}]
        }
        failed = await finished(
            tether,
            (await send(tether, "get_configuration", {"general": ["no_such_key"]}))["id"],
        )
        assert failed["state"] == "failed"
        assert "Node or attribute not found" in failed["error"]
        assert device.api.tables["users"][0]["name"] == "John Doe"
    # Per-command lines are DEBUG: a busy terminal fleet must not flood INFO.
    assert [r.getMessage() for r in caplog.records if r.name == "tether.controlid"] == []


async def test_ten_queued_commands_run_back_to_back_in_order(tether: Running) -> None:
    ids = []
    for n in range(10):
        made = await send(tether, "message_to_screen", {"message": f"m{n}", "timeout": 1000})
        ids.append(made["id"])
    # The terminal sleeps a long period between empty polls: back-to-back execution is
    # the only way ten commands finish within the test's patience.
    async with terminal(tether, period=30.0) as device:
        results = [await finished(tether, i) for i in ids]
    assert [r["state"] for r in results] == ["succeeded"] * 10
    assert device.api.executed == ["message_to_screen"] * 10
    done_at = [r["completedAt"] for r in results]
    assert done_at == sorted(done_at)
    assert device.api.screen == "m9"
    assert device.polls <= 12


async def test_door_event_reaches_subscribed_client(tether: Running) -> None:
    async with tether.session.ws_connect(
        tether.ws_url + "/api/v1/ws", headers=tether.auth
    ) as client:
        await client.send_json(
            {"type": "subscribe", "requestId": 1, "topic": "notification", "names": ["door"]}
        )
        await next_frame(client, "response")
        async with terminal(tether) as device:
            made = await send(
                tether, "execute_actions", {"actions": [{"action": "door", "parameters": "door=1"}]}
            )
            assert (await finished(tether, made["id"]))["state"] == "succeeded"
            event = await next_frame(client, "event")
        assert event["data"]["deviceId"] == TERMINAL_ID
        assert event["data"]["name"] == "door"
        assert event["data"]["parameters"]["door"] == {"id": 1, "open": True}
        assert device.api.doors == {1: True}


async def test_binary_body_and_string_body_per_device(tether: Running, tmp_path: Path) -> None:
    await register(tether, "77", body_as_string=True)
    image = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBD"
    async with terminal(tether, "77") as device:
        made = await tether.call(
            "POST",
            "/api/v1/devices/77/commands",
            json={"name": "user_set_image", "parameters": {"user_id": 5, "image": image}},
            expect=201,
        )
        assert made["parameters"]["contentType"] == "application/octet-stream"
        assert (await finished(tether, made["id"]))["state"] == "succeeded"
        made = await tether.call(
            "POST",
            "/api/v1/devices/77/commands",
            json={"name": "set_configuration", "parameters": {"general": {"language": "pt_BR"}}},
            expect=201,
        )
        assert (await finished(tether, made["id"]))["state"] == "succeeded"
    assert device.api.images[5][:3] == b"\xff\xd8\xff"
    assert device.api.configuration["general"]["language"] == "pt_BR"


async def test_prefixed_base_and_long_poll(tmp_path: Path) -> None:
    async with running(tmp_path, controlid={"path_prefix": "/controlid"}) as server:
        await register(server, "42", long_poll=2, push_request_timeout=30000)
        async with terminal(server, "42", base="/controlid/site-7", period=30.0) as device:
            # The terminal is parked in a held poll; the command wakes it.
            await asyncio.sleep(0.3)
            made = await server.call(
                "POST",
                "/api/v1/devices/42/commands",
                json={"name": "reboot"},
                expect=201,
            )
            done = await finished(server, made["id"])
        assert done["state"] == "succeeded"
        assert device.api.executed == ["reboot"]


async def test_transactions_batch_behind_the_switch(tether: Running) -> None:
    await register(tether, "88", transactions=True)
    batch = {
        "transactions": [
            {"endpoint": "set_configuration", "body": {"general": {"language": "en_US"}}},
            {"endpoint": "message_to_screen", "body": {"message": "hi", "timeout": 5}},
        ]
    }
    async with terminal(tether, "88"):
        made = await tether.call(
            "POST",
            "/api/v1/devices/88/commands",
            json={"name": "transactions", "parameters": batch},
            expect=201,
        )
        done = await finished(tether, made["id"])
    assert done["state"] == "succeeded"
    assert [r["transactionid"] for r in done["result"]] == ["1", "2"]
    # Without the switch a batch fails instead of confusing older firmware.
    made = await send(tether, "transactions", batch)
    async with terminal(tether):
        done = await finished(tether, made["id"])
    assert done["state"] == "failed"
    assert "transactions" in done["error"]


async def test_devicehive_client_command_reaches_terminal(tether: Running) -> None:
    """The official DeviceHive client (REST transport) inserts a command for a terminal."""
    from devicehive import DeviceHiveApi

    async with tether.session.post(
        tether.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
    ) as response:
        assert response.status == 201, await response.text()
        refresh = (await response.json())["refreshToken"]

    def insert() -> int:
        api = DeviceHiveApi(tether.url + "/api/rest", refresh_token=refresh)
        command = api.get_device(TERMINAL_ID).send_command(
            "create_objects", parameters={"object": "cards", "values": [{"id": 9, "value": 77}]}
        )
        return int(command.id)

    async with terminal(tether) as device:
        command_id = await asyncio.to_thread(insert)
        done = await finished(tether, command_id)
    assert done["state"] == "succeeded"
    assert done["result"] == {"ids": [9]}
    assert device.api.tables["cards"] == [{"id": 9, "value": 77}]
