"""The DeviceHive wire protocol over real sockets: envelopes, errors, polls, ordering,
and devices of other dialects."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.dialects.devicehive.helpers import Server

from tether.api.agent import NativeAgent

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Ws:
    """A raw DeviceHive WebSocket client: requests by id, events in a queue."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())
        self.n = 0

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.frames.put(json.loads(msg.data))

    async def next(self, timeout: float = 15) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def call(self, action: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        request_id = f"r{self.n}"
        await self.ws.send_str(json.dumps({"action": action, "requestId": request_id, **params}))
        while True:
            frame = await self.next()
            if frame.get("requestId") == request_id:
                return frame
            await self.frames.put(frame)  # an event: keep it for later
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def connect(server: Server, token: str | None = None) -> Any:
    url = server.url("ws")
    async with server.run.session.ws_connect(url) as ws:
        client = Ws(ws)
        if token != "":
            answer = await client.call("authenticate", token=token or server.access)
            assert answer["status"] == "success", answer
        try:
            yield client
        finally:
            client.reader.cancel()


async def test_envelope_echoes_action_and_request_id(server: Server) -> None:
    async with connect(server, token="") as c:
        await c.ws.send_str(json.dumps({"action": "server/info"}))
        frame = await c.next()
        assert list(frame)[:3] == ["action", "requestId", "status"]
        assert frame["requestId"] is None
        assert frame["status"] == "success"
        assert set(frame["info"]) == {"apiVersion", "serverTimestamp", "restServerUrl"}
        denied = await c.call("device/list")
        assert (denied["status"], denied["code"]) == ("error", 401)
        unknown = await c.call("no/such")
        assert unknown["code"] == 400
        assert "Illegal argument" in unknown["error"]
        assert unknown["action"] == "no/such"
        assert unknown["requestId"] == f"r{c.n}"


async def test_admin_404_client_403_and_errors(server: Server) -> None:
    async with connect(server) as c:
        missing = await c.call("device/get", deviceId="nope")
        assert (missing["code"], missing["error"]) == (
            404,
            "Device with such deviceId = nope not found",
        )
        bad_id = await c.call("device/save", deviceId="bad id!", device={})
        assert bad_id["code"] == 400
        dup = await c.call("network/insert", network={"name": "Default Network"})
        assert dup["code"] == 403
        assert (await c.call("command/unsubscribe", subscriptionId=999))["code"] == 404
        assert (await c.call("configuration/get", name="nothing"))["code"] == 404
        put = await c.call("configuration/put", name="k1", value="v")
        assert put["configuration"] == {"name": "k1", "value": "v", "entityVersion": 0}
        assert (await c.call("configuration/get", name="k1"))["configuration"]["value"] == "v"
    status, body = await server.rest("GET", "/device/nope")
    assert (status, body["error"]) == (404, 404)
    status, body = await server.rest("GET", "/device", token="not-a-token")
    assert (status, body) == (401, {"error": 401, "message": "invalid token"})
    async with server.run.session.get(server.run.url + "/api/rest/device") as anonymous:
        assert anonymous.status == 401
        assert await anonymous.json() == {"error": 401, "message": "Unauthorized"}
    status, _ = await server.rest("GET", "/device", token=server.refresh)  # refresh-type
    assert status == 401
    async with connect(server, token="") as anonymous:
        refused = await anonymous.call("authenticate", token=server.refresh)
        assert (refused["status"], refused["code"]) == ("error", 401)
    status, _ = await server.rest("GET", "/device/command/poll?waitTimeout=61")
    assert status == 400


async def test_subscribe_answer_first_then_replay_then_live(server: Server) -> None:
    async with connect(server) as c:
        assert (await c.call("device/save", deviceId="pr-1", device={"name": "x"}))[
            "status"
        ] == "success"
        info = (await c.call("server/info"))["info"]
        first = await c.call("command/insert", deviceId="pr-1", command={"command": "old"})
        assert first["command"]["timestamp"] > info["serverTimestamp"]
        await c.ws.send_str(
            json.dumps(
                {
                    "action": "command/subscribe",
                    "requestId": "s",
                    "deviceId": "pr-1",
                    "timestamp": info["serverTimestamp"],
                }
            )
        )
        answer = await c.next()
        assert answer["requestId"] == "s"
        assert "subscriptionId" in answer
        replayed = await c.next()
        assert replayed["command"]["command"] == "old"
        assert "requestId" not in replayed
        assert replayed["subscriptionId"] == answer["subscriptionId"]
        second = await c.call("command/insert", deviceId="pr-1", command={"command": "new"})
        live = await c.next()
        assert (live["action"], live["command"]["id"]) == (
            "command/insert",
            second["command"]["id"],
        )
        assert live["command"]["timestamp"] > replayed["command"]["timestamp"]
        # Pushed to a DeviceHive device's subscription = delivered, in the core too.
        command_id = second["command"]["id"]
        for _ in range(100):
            native = await server.run.call("GET", f"/api/v1/commands/{command_id}")
            if native["state"] == "delivered":
                break
            await asyncio.sleep(0.1)
        assert native["state"] == "delivered"
        listed = await c.call("subscription/list")
        assert [s["deviceId"] for s in listed["subscriptions"]] == ["pr-1"]
        unsub = await c.call("command/unsubscribe", subscriptionId=answer["subscriptionId"])
        assert unsub["status"] == "success"
        assert (await c.call("subscription/list"))["subscriptions"] == []


async def test_rest_long_polls(server: Server) -> None:
    status, _ = await server.rest("PUT", "/device/poll-1", data=b'{"name": "p"}')  # no type
    assert status == 204
    status, body = await server.rest("GET", "/device/poll-1/command/poll?waitTimeout=0")
    assert (status, body) == (200, [])

    async def insert_soon() -> int:
        await asyncio.sleep(0.3)
        status, body = await server.rest(
            "POST", "/device/poll-1/command", data=b'{"command": "go"}'
        )
        assert status == 201
        return int(body["id"])

    task = asyncio.create_task(insert_soon())
    status, body = await server.rest("GET", "/device/poll-1/command/poll?waitTimeout=20")
    command_id = await task
    assert status == 200
    assert [c["id"] for c in body] == [command_id]
    status, _ = await server.rest("GET", f"/device/poll-1/command/{command_id}/poll?waitTimeout=0")
    assert status == 204  # not updated yet
    status, _ = await server.rest(
        "PUT", f"/device/poll-1/command/{command_id}", data=b'{"status": "ok", "result": 7}'
    )
    assert status == 204
    status, body = await server.rest(
        "GET", f"/device/poll-1/command/{command_id}/poll?waitTimeout=5"
    )
    assert (status, body["status"], body["result"]) == (200, "ok", 7)
    status, body = await server.rest(
        "GET",
        f"/device/command/poll?deviceId=poll-1&returnUpdatedCommands=True"
        f"&timestamp={body['timestamp']}&waitTimeout=0&limit=0",
    )
    assert [c["id"] for c in body] == [command_id]
    # Polled by the device = delivered, then completed by its result.
    native = await server.run.call("GET", f"/api/v1/commands/{command_id}")
    assert native["state"] == "succeeded"
    status, _ = await server.rest(
        "POST",
        "/device/poll-1",
        json={"name": "renamed"},
        headers={"X-HTTP-Method-Override": "PUT"},
    )
    assert status == 204
    status, body = await server.rest("GET", "/device/poll-1")
    assert body["name"] == "renamed"
    status, body = await server.rest("GET", "/device/poll-1/notification/poll?waitTimeout=0")
    assert (status, body) == (200, [])


async def test_native_devices_are_commanded_through_devicehive(server: Server) -> None:
    credential = await server.run.device("native-1")
    agent = NativeAgent(server.run.url, "native-1", credential)
    runner = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.connected.wait(), 20)
        status, body = await server.rest(
            "POST", "/device/native-1/command", json={"command": "echo", "parameters": {"a": 1}}
        )
        assert status == 201
        status, done = await server.rest(
            "GET", f"/device/native-1/command/{body['id']}/poll?waitTimeout=20"
        )
        assert (status, done["status"], done["result"]) == (200, "succeeded", {"a": 1})
        status, listed = await server.rest("GET", "/device?name=native-1")
        assert [d["id"] for d in listed] == ["native-1"]
    finally:
        await agent.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await runner
    status, _ = await server.rest("PUT", "/device/dh-seen", json={"name": "dh"})
    native = await server.run.call("GET", "/api/v1/devices/dh-seen")
    assert native["id"] == "dh-seen"


_frames: list[str] = []


@settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["action", "requestId", "deviceId", "command", "timestamp", "x"]),
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=20),
                st.sampled_from(
                    [
                        "command/insert",
                        "device/get",
                        "command/subscribe",
                        "notification/list",
                        "device/save",
                        "user/insert",
                    ]
                ),
                st.lists(st.integers(), max_size=3),
                st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
            ),
        ).map(json.dumps),
    )
)
def _collect(frame: str) -> None:
    _frames.append(frame)


async def test_malformed_frames_get_error_frames_and_the_server_stays(server: Server) -> None:
    _collect()
    async with connect(server) as c:
        for raw in _frames:
            await c.ws.send_str(raw)
            frame = await c.next()
            while "status" not in frame:  # a live event of a subscription the fuzz made
                frame = await c.next()
            assert frame["status"] in ("success", "error")
            if frame["status"] == "error":
                assert isinstance(frame["code"], int), (raw, frame)
                assert frame["code"] < 500, (raw, frame)
            while not c.frames.empty():
                c.frames.get_nowait()
        assert (await c.call("server/info"))["status"] == "success"


async def test_subscription_filters_follow_the_callers_scope(server: Server) -> None:
    async with connect(server) as admin:
        net = await admin.call("network/insert", network={"name": "scope-net"})
        other = await admin.call("network/insert", network={"name": "scope-other"})
        net_id, other_id = net["network"]["id"], other["network"]["id"]
        user = await admin.call(
            "user/insert", user={"login": "scope-dave", "role": 1, "password": "davepass"}
        )
        user_id = user["user"]["id"]
        assigned = await admin.call("user/assignNetwork", userId=user_id, networkId=net_id)
        assert assigned["status"] == "success"
        await admin.call("device/save", deviceId="scope-in", device={"networkId": net_id})
        await admin.call("device/save", deviceId="scope-out", device={"networkId": other_id})
        missing = await admin.call("notification/subscribe", networkIds=[987654])
        assert missing["code"] == 404
        since = (await admin.call("server/info"))["info"]["serverTimestamp"]
    access, _ = await server.tokens("scope-dave", "davepass")
    async with connect(server, token=access) as dave:
        assert (await dave.call("command/subscribe", networkIds=[other_id]))["code"] == 403
        assert (await dave.call("command/subscribe", deviceId="scope-out"))["code"] == 403
        assert (await dave.call("command/subscribe", networkIds=[987654]))["code"] == 403
        sub = await dave.call("notification/subscribe")  # everything dave may see
        assert sub["status"] == "success"
        async with connect(server) as admin:
            await admin.call(
                "notification/insert", deviceId="scope-out", notification={"notification": "x"}
            )
            await admin.call(
                "notification/insert", deviceId="scope-in", notification={"notification": "y"}
            )
        event = await dave.next()
        assert (event["notification"]["deviceId"], event["notification"]["notification"]) == (
            "scope-in",
            "y",
        )
        listed = await dave.call("device/list")
        assert [d["id"] for d in listed["devices"]] == ["scope-in"]
    async with connect(server) as admin:
        replay = await admin.call(
            "notification/subscribe", networkIds=[net_id], timestamp="2000-01-01T00:00:00.000"
        )
        assert replay["status"] == "success"
        event = await admin.next()  # the replay holds only the filtered network's items
        assert event["notification"]["deviceId"] == "scope-in"
        types = await admin.call(
            "command/subscribe", deviceTypeIds=[1], networkIds=[other_id], timestamp=since
        )
        assert types["status"] == "success"
        await admin.call("command/insert", deviceId="scope-in", command={"command": "no"})
        await admin.call("command/insert", deviceId="scope-out", command={"command": "yes"})
        event = await admin.next()
        while event.get("subscriptionId") != types["subscriptionId"]:
            event = await admin.next()
        assert (event["command"]["deviceId"], event["command"]["command"]) == ("scope-out", "yes")
