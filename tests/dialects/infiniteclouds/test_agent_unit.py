"""The device agent against a scripted fake cloud (in process, real sockets).

Covers what the end-to-end flow cannot provoke on demand: a failing config endpoint must
not hold commands back, a command re-sent by the cloud runs once, a 401 makes the agent
register again, and unsent results survive a restart of the agent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tether.dialects.infiniteclouds.agent import AgentConfig, KeepaliveAgent


def envelope(data: Any, status: int = 200, message: str = "success") -> web.Response:
    body = {
        "data": data,
        "message": message,
        "status": status,
        "errors": status >= 400,
        "httpCode": status,
        "errorCode": 0 if status < 400 else status,
    }
    return web.json_response(body, status=status)


class FakeCloud:
    def __init__(self) -> None:
        self.registers = 0
        self.keepalives: list[dict[str, Any]] = []
        self.refuse_next_keepalive = False
        self.statistics = 0
        self.got_result = asyncio.Event()

    async def registration(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "statusType" not in body:
            self.registers += 1
            token = f"token-{self.registers}"
            return envelope({"assigned": True, "deviceId": "ic-1", "authToken": token})
        if request.headers.get("Authorization") != f"Bearer token-{self.registers}":
            return envelope(None, 401, "Invalid token")
        if self.refuse_next_keepalive:
            self.refuse_next_keepalive = False
            return envelope(None, 401, "Token expired")
        self.keepalives.append(body)
        if body["statusType"] == "statistics":
            self.statistics += 1
        if body.get("commands"):
            self.got_result.set()
        command = {"commandId": "1", "command": "echo", "params": {"a": 1}}
        trigger = {"configUpdate": True, "firmwareUpdate": False, "commands": [command]}
        return envelope({"triggerevent": trigger})  # lowercase, as in the statistics sample

    async def config(self, request: web.Request) -> web.Response:
        return envelope(None, 404, "No config for this device")


@pytest.fixture
async def cloud() -> AsyncIterator[tuple[FakeCloud, str]]:
    fake = FakeCloud()
    app = web.Application()
    app.router.add_post("/v1/device/registration", fake.registration)
    app.router.add_get("/v1/device/config", fake.config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_commands_run_once_despite_a_failing_config_and_a_401(
    cloud: tuple[FakeCloud, str], tmp_path: Path
) -> None:
    fake, url = cloud
    fake.refuse_next_keepalive = True
    config = AgentConfig(url=url, state_dir=tmp_path, interval=0.05, mac="02:00:00:00:00:07")
    agent = KeepaliveAgent(config)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(fake.got_result.wait(), 30)
        # Let it keep alive a few more times while the cloud keeps re-sending command 1.
        seen = len(fake.keepalives)
        while len(fake.keepalives) < seen + 3:
            await asyncio.sleep(0.02)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    assert fake.registers == 2  # the 401 made it register again
    results = [r for body in fake.keepalives for r in body.get("commands") or []]
    assert [r["commandId"] for r in results] == ["1"]  # ran and reported once
    assert results[0]["status"] == "SUCCEEDED"
    assert json.loads(results[0]["output"]) == {"a": 1}
    assert (tmp_path / "last_keepAlive_request.json").exists()
    register = json.loads((tmp_path / "last_register_response.json").read_text())
    assert register["data"]["authToken"] == "token-2"
    state = json.loads((tmp_path / "keepalive_state.json").read_text())
    assert state["done"] == ["1"]
    assert state["results"] == []
    assert state["configRevision"] is None  # the config could not be fetched


async def test_unsent_results_survive_a_restart(tmp_path: Path) -> None:
    config = AgentConfig(url="http://127.0.0.1:9", state_dir=tmp_path, mac="02:00:00:00:00:08")
    agent = KeepaliveAgent(config)
    await agent.run_commands([{"commandId": "5", "command": "echo", "params": {}}])
    await agent.run_commands([{"commandId": "6", "command": "reboot", "params": {}}])
    again = KeepaliveAgent(config)
    assert [r["commandId"] for r in again.state.results] == ["5", "6"]
    assert again.state.results[1]["status"] == "FAILED"  # no hook for reboot
    assert not await again.run_commands([{"commandId": "5", "command": "echo"}])
    # Another MAC in the same directory starts clean.
    other = KeepaliveAgent(AgentConfig(url=config.url, state_dir=tmp_path, mac="02:00:00:00:00:09"))
    assert other.state.results == []
    assert other.token is None


async def test_statistics_replace_a_keepalive_every_interval(
    cloud: tuple[FakeCloud, str], tmp_path: Path
) -> None:
    fake, url = cloud
    config = AgentConfig(
        url=url,
        state_dir=tmp_path,
        interval=0.05,
        mac="02:00:00:00:00:0a",
        statistics_interval=3600,
    )
    agent = KeepaliveAgent(config)
    task = asyncio.create_task(agent.run())
    try:
        while len(fake.keepalives) < 5:
            await asyncio.sleep(0.02)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 10)
    kinds = [body["statusType"] for body in fake.keepalives]
    assert kinds[0] == "statistics"
    assert set(kinds[1:]) == {"keepAlive"}  # the next one is an hour away
    sent = json.loads((tmp_path / "last_statistics_request.json").read_text())
    assert "system" in sent
    assert sent["nicCount"] == len(sent["interfaces"])
    assert (tmp_path / "last_statistics_response.json").exists()
