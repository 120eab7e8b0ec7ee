"""Several processes on PostgreSQL and Redis: real `tether serve` processes, real sockets.

Two separate servers (think: two nodes behind a load balancer) share one database and one
Redis; a device on one is commanded through the other, notifications and long polls cross
between them, and ``--workers`` runs several processes on one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import REDIS_URL, fresh_postgres_schema
from tests.test_durability import free_port

pytestmark = pytest.mark.slow

PASSWORD = "cluster-pass-1"


class Node:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, "server exited during start-up"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready")


def serve(tmp: Path, port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp),
            "--log-level",
            "warning",
            *extra,
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
async def cluster_env(redis_url: str) -> AsyncIterator[dict[str, str]]:
    async with fresh_postgres_schema() as url:
        yield {
            "TETHER_DATABASE_URL": url,
            "TETHER_BUS": "redis",
            "TETHER_REDIS_URL": redis_url,
            "TETHER_ADMIN_PASSWORD": PASSWORD,
        }


@pytest.fixture
async def two_nodes(
    tmp_path: Path, cluster_env: dict[str, str]
) -> AsyncIterator[tuple[Node, Node]]:
    a_port, b_port = free_port(), free_port()
    a = serve(tmp_path / "a", a_port, {**cluster_env, "TETHER_NODE_ID": "node-a"})
    await wait_ready(f"http://127.0.0.1:{a_port}", a)  # A migrates and bootstraps first
    b = serve(tmp_path / "b", b_port, {**cluster_env, "TETHER_NODE_ID": "node-b"})
    try:
        await wait_ready(f"http://127.0.0.1:{b_port}", b)
        yield Node(a_port, a), Node(b_port, b)
    finally:
        stop(a)
        stop(b)


async def login(session: aiohttp.ClientSession, node: Node) -> dict[str, str]:
    async with session.post(
        node.url + "/api/v1/auth/token", json={"login": "admin", "password": PASSWORD}
    ) as r:
        assert r.status == 201, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['accessToken']}"}


async def frame(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), 10)
        if message["type"] == kind:
            return message


async def test_commands_notifications_and_polls_cross_nodes(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    async with aiohttp.ClientSession() as session:
        auth_a, auth_b = await login(session, a), await login(session, b)
        async with session.post(
            b.url + "/api/v1/devices", headers=auth_b, json={"id": "crossing", "name": "crossing"}
        ) as r:
            assert r.status == 201
            assert r.headers["X-Tether-Node"] == "node-b"
        async with session.post(a.url + "/api/v1/devices/crossing/credential", headers=auth_a) as r:
            device_auth = {"Authorization": f"Bearer {(await r.json())['credential']}"}

        async with (
            session.ws_connect(b.ws + "/api/v1/ws", headers=auth_b) as on_b,
            session.ws_connect(a.ws + "/api/v1/ws", headers=auth_a) as on_a,
            session.ws_connect(
                a.ws + "/api/v1/device/ws?deviceId=crossing", headers=device_auth
            ) as device,
        ):
            for client, topic in (
                (on_b, "command_update"),
                (on_b, "notification"),
                (on_a, "notification"),
            ):
                await client.send_json(
                    {
                        "type": "subscribe",
                        "requestId": topic,
                        "topic": topic,
                        "deviceIds": ["crossing"],
                    }
                )
                await frame(client, "response")

            # A command created through B's REST reaches the device connected to A ...
            async with session.post(
                b.url + "/api/v1/devices/crossing/commands", headers=auth_b, json={"name": "open"}
            ) as r:
                created = await r.json()
            pushed = await frame(device, "command")
            assert pushed["command"]["id"] == created["id"]
            await device.send_json(
                {"type": "result", "id": created["id"], "result": {"opened": True}}
            )
            # ... and its result reaches the subscriber on B.
            while True:
                update = await frame(on_b, "event")
                if update["topic"] == "command_update" and update["data"]["state"] == "succeeded":
                    break
            assert update["data"]["result"] == {"opened": True}

            # A notification posted on A reaches subscribers on both nodes.
            await device.send_json(
                {"type": "notification", "name": "door", "parameters": {"open": True}}
            )
            seen_a = await frame(on_a, "event")
            seen_b = await frame(on_b, "event")
            while seen_b["topic"] != "notification":
                seen_b = await frame(on_b, "event")
            assert seen_a["data"]["name"] == seen_b["data"]["name"] == "door"

        # A long poll parked on A wakes for a command created on B.
        poll = asyncio.create_task(
            session.get(a.url + "/api/v1/device/crossing/commands?wait=10", headers=device_auth)
        )
        await asyncio.sleep(0.5)
        async with session.post(
            b.url + "/api/v1/devices/crossing/commands", headers=auth_b, json={"name": "close"}
        ) as r:
            second = await r.json()
        response = await asyncio.wait_for(poll, 10)
        handed = await response.json()
        assert [c["id"] for c in handed] == [second["id"]]


async def test_start_up_refuses_settings_that_cannot_cluster(tmp_path: Path) -> None:
    memory = serve(tmp_path / "m", free_port(), {}, "--workers", "2")
    _, err = memory.communicate(timeout=30)
    assert memory.returncode == 2
    assert b"--bus redis" in err
    sqlite = serve(tmp_path / "s", free_port(), {"TETHER_REDIS_URL": REDIS_URL}, "--bus", "redis")
    _, err = sqlite.communicate(timeout=30)
    assert sqlite.returncode == 2
    assert b"PostgreSQL" in err


async def test_workers_share_one_port(tmp_path: Path, cluster_env: dict[str, str]) -> None:
    port = free_port()
    parent = serve(tmp_path, port, {**cluster_env, "TETHER_NODE_ID": "w"}, "--workers", "2")
    try:
        await wait_ready(f"http://127.0.0.1:{port}", parent)
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while len(seen) < 2 and time.monotonic() < deadline:
            # A new connection each time: the kernel spreads connections across workers.
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as r,
            ):
                seen.add(r.headers["X-Tether-Node"])
            seen.discard("starting")  # that worker is still connecting; ask again
        assert seen == {"w-0", "w-1"}
    finally:
        stop(parent)
    assert parent.returncode == 0


async def test_unreachable_database_is_retried_and_reported(tmp_path: Path, redis_url: str) -> None:
    dead = free_port()  # nothing listens there
    port = free_port()
    process = serve(
        tmp_path,
        port,
        {
            "TETHER_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{dead}/test",
            "TETHER_BUS": "redis",
            "TETHER_REDIS_URL": redis_url,
            "TETHER_ADMIN_PASSWORD": PASSWORD,
        },
    )
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                assert time.monotonic() < deadline, "the listener never came up"
                await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
                body = await r.json()
                assert body["error"]["code"] == "unavailable"
                assert "starting" in body["error"]["message"]
            async with session.get(
                f"http://127.0.0.1:{port}/api/v1/devices", headers={"Authorization": "Bearer any"}
            ) as r:
                assert r.status == 503
        assert process.poll() is None  # still alive, still retrying
    finally:
        stop(process)


async def test_presence_is_the_clusters(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    async with aiohttp.ClientSession() as session:
        auth_b = await login(session, b)
        async with session.post(
            b.url + "/api/v1/devices", headers=auth_b, json={"id": "present", "name": "present"}
        ) as r:
            assert r.status == 201
        async with session.post(b.url + "/api/v1/devices/present/credential", headers=auth_b) as r:
            device_auth = {"Authorization": f"Bearer {(await r.json())['credential']}"}

        async def online_on_b() -> bool:
            async with session.get(b.url + "/api/v1/devices/present", headers=auth_b) as r:
                return bool((await r.json())["online"])

        async with session.ws_connect(b.ws + "/api/v1/ws", headers=auth_b) as watcher:
            await watcher.send_json(
                {"type": "subscribe", "requestId": 1, "topic": "presence", "deviceIds": ["present"]}
            )
            await frame(watcher, "response")
            assert not await online_on_b()
            async with session.ws_connect(
                a.ws + "/api/v1/device/ws?deviceId=present", headers=device_auth
            ):
                came = await frame(watcher, "event")
                assert came["data"] == {**came["data"], "deviceId": "present", "online": True}
                assert await online_on_b()  # held by A, seen from B
                # ... and so do the fleet summary and the presence filter of B.
                async with session.get(b.url + "/api/v1/fleet", headers=auth_b) as r:
                    assert (await r.json())["devices"] == [
                        {"dialect": "native", "online": 1, "offline": 0}
                    ]
                async with session.get(b.url + "/api/v1/devices?online=true", headers=auth_b) as r:
                    assert [d["id"] for d in await r.json()] == ["present"]
            went = await frame(watcher, "event")
            assert went["data"]["online"] is False
            assert not await online_on_b()


async def test_kill_9_a_node_while_commands_flow(two_nodes: tuple[Node, Node]) -> None:
    from tether.api.agent import NativeAgent, Outcome

    a, b = two_nodes
    async with aiohttp.ClientSession() as session:
        auth_b = await login(session, b)
        async with session.post(
            b.url + "/api/v1/devices", headers=auth_b, json={"id": "survivor", "name": "survivor"}
        ) as r:
            assert r.status == 201
        async with session.post(b.url + "/api/v1/devices/survivor/credential", headers=auth_b) as r:
            credential = (await r.json())["credential"]

        async def work(command: Any, report: Any) -> Outcome:
            await asyncio.sleep(0.005)
            return Outcome(result=command.parameters)

        # The device knows both nodes and starts on A.
        agent = NativeAgent([a.url, b.url], "survivor", credential, handler=work)
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.connected.wait(), 10)
        assert agent.base_url == a.url
        acknowledged: list[int] = []

        async def produce() -> None:
            for i in range(400):
                async with session.post(
                    b.url + "/api/v1/devices/survivor/commands",
                    headers=auth_b,
                    json={"name": "echo", "parameters": i},
                ) as r:
                    assert r.status == 201
                    acknowledged.append((await r.json())["id"])
                await asyncio.sleep(0.002)

        producing = asyncio.create_task(produce())
        while len(acknowledged) < 100:
            await asyncio.sleep(0.01)
        a.process.kill()  # SIGKILL, mid-flight
        await producing
        deadline = time.monotonic() + 60
        states: dict[int, str] = {}
        while time.monotonic() < deadline:
            for command_id in acknowledged:
                if states.get(command_id) != "succeeded":
                    async with session.get(
                        f"{b.url}/api/v1/commands/{command_id}", headers=auth_b
                    ) as r:
                        states[command_id] = (await r.json())["state"]
            if all(state == "succeeded" for state in states.values()):
                break
            await asyncio.sleep(0.3)
        await agent.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert agent.base_url == b.url  # it moved to the surviving node
    assert {i: s for i, s in states.items() if s != "succeeded"} == {}
    assert len(agent.executed) == len(set(agent.executed))  # nothing ran twice
    assert set(acknowledged) <= set(agent.executed)


async def test_a_newer_session_on_another_node_replaces_the_old_one(
    two_nodes: tuple[Node, Node],
) -> None:
    a, b = two_nodes
    async with aiohttp.ClientSession() as session:
        auth_b = await login(session, b)
        async with session.post(
            b.url + "/api/v1/devices", headers=auth_b, json={"id": "roamer", "name": "roamer"}
        ) as r:
            assert r.status == 201
        async with session.post(b.url + "/api/v1/devices/roamer/credential", headers=auth_b) as r:
            device_auth = {"Authorization": f"Bearer {(await r.json())['credential']}"}
        old = await session.ws_connect(
            a.ws + "/api/v1/device/ws?deviceId=roamer", headers=device_auth
        )
        await asyncio.sleep(0.3)  # A holds the device now
        async with session.ws_connect(
            b.ws + "/api/v1/device/ws?deviceId=roamer", headers=device_auth
        ) as new:
            message = await asyncio.wait_for(old.receive(), 10)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert old.close_code == 4001
            # The device stays online (on B), and commands reach the new session.
            async with session.post(
                a.url + "/api/v1/devices/roamer/commands",
                headers=await login(session, a),
                json={"name": "ping"},
            ) as r:
                created = await r.json()
            pushed = await frame(new, "command")
            assert pushed["command"]["id"] == created["id"]
        await old.close()
