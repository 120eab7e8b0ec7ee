"""The native API end to end over real sockets: REST, device WS/HTTP, client WS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.support import Running, running

from tether.api.agent import NativeAgent


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path) as server:
        yield server


@contextlib.asynccontextmanager
async def agent(
    server: Running, device_id: str, credential: str, **options: Any
) -> AsyncIterator[NativeAgent]:
    device = NativeAgent(server.url, device_id, credential, **options)
    task = asyncio.create_task(device.run())
    try:
        await asyncio.wait_for(device.connected.wait(), 5)
        yield device
    finally:
        await device.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_frame(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5
) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), timeout)
        if frame["type"] == kind:
            return frame


async def test_round_trip_ws_device_to_ws_client_and_rest_wait(tether: Running) -> None:
    credential = await tether.device("lamp-1")
    async with (
        agent(tether, "lamp-1", credential),
        tether.session.ws_connect(tether.ws_url + "/api/v1/ws", headers=tether.auth) as client,
    ):
        await client.send_json(
            {
                "type": "subscribe",
                "requestId": 1,
                "topic": "command_update",
                "deviceIds": ["lamp-1"],
            }
        )
        subscribed = await next_frame(client, "response")
        assert subscribed["requestId"] == 1
        sub_id = subscribed["data"]["subscriptionId"]

        done = await tether.call(
            "POST",
            "/api/v1/devices/lamp-1/commands?wait=5",
            json={"name": "echo", "parameters": {"on": True}},
            expect=200,
        )
        assert done["state"] == "succeeded"
        assert done["result"] == {"on": True}
        assert done["deliveredAt"] is not None

        states = []
        while "succeeded" not in states:
            event = await next_frame(client, "event")
            assert event["subscriptionId"] == sub_id
            assert event["data"]["id"] == done["id"]
            states.append(event["data"]["state"])
        assert states[-1] == "succeeded"
        assert "sent" in states


async def test_create_command_over_client_ws(tether: Running) -> None:
    credential = await tether.device("lamp-2")
    async with (
        agent(tether, "lamp-2", credential),
        tether.session.ws_connect(tether.ws_url + "/api/v1/ws") as client,
    ):
        await client.send_json({"type": "authenticate", "requestId": "a", "token": tether.token})
        assert (await next_frame(client, "response"))["requestId"] == "a"
        await client.send_json(
            {
                "type": "command.create",
                "requestId": "c",
                "deviceId": "lamp-2",
                "name": "echo",
                "parameters": [1, 2],
            }
        )
        created = await next_frame(client, "response")
        command_id = created["data"]["id"]
        final = await tether.call("GET", f"/api/v1/commands/{command_id}?wait=5", expect=200)
        assert final["result"] == [1, 2]


async def test_http_long_poll_agent(tether: Running) -> None:
    credential = await tether.device("meter-1")
    async with agent(tether, "meter-1", credential, transport="http", poll_wait=2):
        for i in range(3):
            done = await tether.call(
                "POST",
                "/api/v1/devices/meter-1/commands?wait=5",
                json={"name": "echo", "parameters": i},
                expect=200,
            )
            assert done["result"] == i


async def test_offline_device_gets_queued_commands_in_order(tether: Running) -> None:
    credential = await tether.device("gate-1")
    ids = []
    for i in range(5):
        made = await tether.call(
            "POST",
            "/api/v1/devices/gate-1/commands",
            json={"name": "echo", "parameters": i},
            expect=201,
        )
        assert made["state"] == "pending"
        ids.append(made["id"])
    async with agent(tether, "gate-1", credential) as device:
        for command_id in ids:
            final = await tether.call("GET", f"/api/v1/commands/{command_id}?wait=5", expect=200)
            assert final["state"] == "succeeded"
        assert device.executed == ids


async def test_expired_command_is_never_delivered(tether: Running) -> None:
    credential = await tether.device("late-1")
    made = await tether.call(
        "POST",
        "/api/v1/devices/late-1/commands",
        json={"name": "echo", "lifetime": 0.2},
        expect=201,
    )
    await asyncio.sleep(0.5)
    expired = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert expired["state"] == "expired"
    async with tether.session.get(
        tether.url + "/api/v1/device/late-1/commands",
        headers={"Authorization": f"Bearer {credential}"},
    ) as r:
        assert r.status == 200
        assert await r.json() == []


async def test_delivered_command_without_result_times_out(tether: Running) -> None:
    credential = await tether.device("mute-1")
    made = await tether.call(
        "POST", "/api/v1/devices/mute-1/commands", json={"name": "echo", "timeout": 0.3}, expect=201
    )
    headers = {"Authorization": f"Bearer {credential}"}
    async with tether.session.get(
        tether.url + "/api/v1/device/mute-1/commands", headers=headers
    ) as r:
        handed = await r.json()
    assert [c["id"] for c in handed] == [made["id"]]
    final = await tether.call("GET", f"/api/v1/commands/{made['id']}?wait=3", expect=200)
    assert final["state"] == "timed_out"


async def test_duplicate_result_changes_nothing(tether: Running) -> None:
    credential = await tether.device("dup-1")
    made = await tether.call(
        "POST", "/api/v1/devices/dup-1/commands", json={"name": "echo"}, expect=201
    )
    headers = {"Authorization": f"Bearer {credential}"}
    base = f"{tether.url}/api/v1/device/dup-1/commands/{made['id']}"
    async with tether.session.post(
        base + "/result", headers=headers, json={"result": {"n": 1}}
    ) as r:
        assert r.status == 200
        first = await r.json()
    async with tether.session.post(
        base + "/result", headers=headers, json={"success": False, "error": "late"}
    ) as r:
        assert r.status == 200
        second = await r.json()
    assert first["state"] == second["state"] == "succeeded"
    assert second["result"] == {"n": 1}
    assert second["updatedAt"] == first["updatedAt"]


async def test_progress_steps_then_result(tether: Running) -> None:
    credential = await tether.device("fw-1")
    async with agent(tether, "fw-1", credential):
        done = await tether.call(
            "POST",
            "/api/v1/devices/fw-1/commands?wait=5",
            json={"name": "steps", "parameters": {"steps": ["download", "install"]}},
            expect=200,
        )
    assert [s["name"] for s in done["steps"]] == ["download", "install"]
    assert done["state"] == "succeeded"


async def test_wait_answers_202_while_running(tether: Running) -> None:
    credential = await tether.device("slow-1")
    async with agent(tether, "slow-1", credential):
        running_now = await tether.call(
            "POST",
            "/api/v1/devices/slow-1/commands?wait=0.2",
            json={"name": "sleep", "parameters": {"seconds": 1}},
            expect=202,
        )
        assert running_now["state"] in ("sent", "delivered")
        final = await tether.call("GET", f"/api/v1/commands/{running_now['id']}?wait=5", expect=200)
        assert final["state"] == "succeeded"


async def test_a_device_can_only_act_as_itself(tether: Running) -> None:
    mine = await tether.device("mine-1")
    await tether.device("other-1")
    made = await tether.call(
        "POST", "/api/v1/devices/other-1/commands", json={"name": "echo"}, expect=201
    )
    headers = {"Authorization": f"Bearer {mine}"}
    async with tether.session.get(
        tether.url + "/api/v1/device/other-1/commands", headers=headers
    ) as r:
        assert r.status == 401
    async with tether.session.post(
        f"{tether.url}/api/v1/device/mine-1/commands/{made['id']}/result",
        headers=headers,
        json={"result": 1},
    ) as r:
        assert r.status == 404
    untouched = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert untouched["state"] == "pending"


async def test_blocked_device_refuses_commands_and_connections(tether: Running) -> None:
    credential = await tether.device("bad-1")
    await tether.call("POST", "/api/v1/devices/bad-1/block", expect=200)
    refused = await tether.call(
        "POST", "/api/v1/devices/bad-1/commands", json={"name": "echo"}, expect=403
    )
    assert refused["error"]["code"] == "device_blocked"
    async with tether.session.get(
        tether.url + "/api/v1/device/bad-1/commands",
        headers={"Authorization": f"Bearer {credential}"},
    ) as r:
        assert r.status == 403


async def test_bad_input_gets_clear_errors_and_server_survives(tether: Running) -> None:
    credential = await tether.device("robust-1")
    cases = [
        (b"{not json", 400, "bad_request"),
        (b'{"name": 5}', 400, "bad_request"),
        (b'{"name": "x", "bogus": 1}', 400, "bad_request"),
        (b'{"name": "x", "timeout": -1}', 400, "bad_request"),
        (b'{"name": "' + b"x" * (2 << 20) + b'"}', 413, "payload_too_large"),
    ]
    for body, status, code in cases:
        reply = await tether.call(
            "POST", "/api/v1/devices/robust-1/commands", data=body, expect=status
        )
        assert reply["error"]["code"] == code
        assert reply["error"]["message"]
    missing = await tether.call(
        "POST", "/api/v1/devices/nope/commands", json={"name": "x"}, expect=404
    )
    assert missing["error"]["code"] == "not_found"
    await tether.call("GET", "/api/v1/commands", token="garbage", expect=401)

    # The device WebSocket answers bad frames with error frames and stays open.
    async with tether.session.ws_connect(
        tether.ws_url + "/api/v1/device/ws?deviceId=robust-1",
        headers={"Authorization": f"Bearer {credential}"},
    ) as ws:
        for bad in (
            "nope",
            '{"type":"warp"}',
            '{"type":"result","id":"x"}',
            '{"type":"result","id":999999,"requestId":7}',
        ):
            await ws.send_str(bad)
            error = await next_frame(ws, "error")
            assert error["error"]["code"] in ("bad_request", "not_found")
        await ws.send_str('{"type":"ping","requestId":"p"}')
        assert (await next_frame(ws, "response"))["requestId"] == "p"
    # ... and nothing already accepted was lost.
    ok = await tether.call(
        "POST", "/api/v1/devices/robust-1/commands", json={"name": "x"}, expect=201
    )
    assert (await tether.call("GET", f"/api/v1/commands/{ok['id']}"))["state"] == "pending"


async def test_wrong_device_credential_is_refused(tether: Running) -> None:
    await tether.device("cred-1")
    async with tether.session.get(
        tether.url + "/api/v1/device/cred-1/commands", headers={"Authorization": "Bearer wrong"}
    ) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "unauthorized"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await tether.session.ws_connect(
            tether.ws_url + "/api/v1/device/ws?deviceId=cred-1",
            headers={"Authorization": "Bearer wrong"},
        )
    assert refused.value.status == 401


async def test_notifications_reach_subscribed_client(tether: Running) -> None:
    credential = await tether.device("th-1")
    async with tether.session.ws_connect(
        tether.ws_url + "/api/v1/ws", headers=tether.auth
    ) as client:
        await client.send_json(
            {"type": "subscribe", "requestId": 1, "topic": "notification", "names": ["temperature"]}
        )
        await next_frame(client, "response")
        device = NativeAgent(tether.url, "th-1", credential, session=tether.session)
        await device.notify("humidity", {"rh": 40})
        posted = await device.notify("temperature", {"c": 21.5})
        event = await next_frame(client, "event")
        assert event["topic"] == "notification"
        assert event["data"]["id"] == posted["id"]
        assert event["data"]["parameters"] == {"c": 21.5}
    listed = await tether.call("GET", "/api/v1/devices/th-1/notifications", expect=200)
    assert {n["name"] for n in listed} == {"humidity", "temperature"}


async def test_cancel_pending_command(tether: Running) -> None:
    await tether.device("cx-1")
    made = await tether.call(
        "POST", "/api/v1/devices/cx-1/commands", json={"name": "x"}, expect=201
    )
    cancelled = await tether.call("POST", f"/api/v1/commands/{made['id']}/cancel", expect=200)
    assert cancelled["state"] == "cancelled"
    again = await tether.call("POST", f"/api/v1/commands/{made['id']}/cancel", expect=409)
    assert again["error"]["code"] == "conflict"


async def test_idempotency_key_returns_the_same_command(tether: Running) -> None:
    await tether.device("idem-1")
    body = {"name": "x", "idempotencyKey": "k-1"}
    first = await tether.call("POST", "/api/v1/devices/idem-1/commands", json=body, expect=201)
    second = await tether.call("POST", "/api/v1/devices/idem-1/commands", json=body, expect=201)
    assert first["id"] == second["id"]


async def test_empty_polls_run_no_sql(tmp_path: Path) -> None:
    # last_seen is written behind on a timer; push it out of the measured window.
    async with running(tmp_path, write_behind_interval=3600) as tether:
        await assert_empty_polls_run_no_sql(tether)


async def assert_empty_polls_run_no_sql(tether: Running) -> None:
    from tether.store.engine import SQL_STATEMENTS

    credential = await tether.device("quiet-1")
    headers = {"Authorization": f"Bearer {credential}"}
    url = tether.url + "/api/v1/device/quiet-1/commands"
    async with tether.session.get(url, headers=headers) as r:  # warm the device cache
        assert await r.json() == []
    before = SQL_STATEMENTS._value.get()
    for _ in range(200):
        async with tether.session.get(url, headers=headers) as r:
            assert r.status == 200
            assert await r.json() == []
    assert SQL_STATEMENTS._value.get() == before
    # ... while a poll that does hand a command over does touch the store.
    await tether.call("POST", "/api/v1/devices/quiet-1/commands", json={"name": "x"}, expect=201)
    before = SQL_STATEMENTS._value.get()
    async with tether.session.get(url, headers=headers) as r:
        assert len(await r.json()) == 1
    assert SQL_STATEMENTS._value.get() > before


async def _stored_unannounced(tether: Running, device_id: str, key: str, lifetime: float) -> int:
    """A command committed by a node that died before telling anyone: in the store only."""
    hub = tether.hub
    admin = await hub.store.users.get_by_login("admin")
    assert admin is not None
    now = hub.clock.now()
    command, created = await hub.store.commands.insert(
        device_id=device_id,
        name="echo",
        parameters={"stored": "unannounced"},
        created_by=admin.id,
        now=now,
        expires_at=now + timedelta(seconds=lifetime),
        timeout=30,
        idempotency_key=key,
    )
    assert created
    assert hub.index.get(command.id) is None
    return command.id


async def test_an_idempotent_replay_announces_the_command(tether: Running) -> None:
    """The retry of a cut request is delivered even if its first attempt was never
    announced; and nothing is stored twice."""
    credential = await tether.device("replayed-1")
    stored = await _stored_unannounced(tether, "replayed-1", "cut-1", lifetime=60)
    async with agent(tether, "replayed-1", credential) as device:
        body = {"name": "echo", "parameters": {"retry": True}, "idempotencyKey": "cut-1"}
        again = await tether.call(
            "POST", "/api/v1/devices/replayed-1/commands", json=body, expect=201
        )
        assert again["id"] == stored
        final = await tether.call("GET", f"/api/v1/commands/{stored}?wait=5", expect=200)
        assert final["state"] == "succeeded"
        assert device.executed == [stored]
    listed = await tether.call("GET", "/api/v1/devices/replayed-1/commands", expect=200)
    assert [c["id"] for c in listed] == [stored]


async def test_an_idempotent_replay_arms_the_deadlines(tether: Running) -> None:
    await tether.device("replayed-2")  # offline: only the expiry can end the command
    stored = await _stored_unannounced(tether, "replayed-2", "cut-2", lifetime=0.4)
    body = {"name": "echo", "idempotencyKey": "cut-2"}
    await tether.call("POST", "/api/v1/devices/replayed-2/commands", json=body, expect=201)
    await asyncio.sleep(0.8)
    final = await tether.call("GET", f"/api/v1/commands/{stored}", expect=200)
    assert final["state"] == "expired"
