"""Durability: kill -9 a real server mid-flight, restart it, and lose nothing.

Every command the server acknowledged (201) before the kill must still exist after the
restart and end correctly: the agent reconnects, gets what was not yet finished (at least
once; it deduplicates by id), and every command ends ``succeeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import fresh_postgres_schema
from tether.api.agent import NativeAgent, Outcome

pytestmark = pytest.mark.slow

PASSWORD = "durable-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        env = {**os.environ, "TETHER_ADMIN_PASSWORD": PASSWORD, **self.env}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether.cli",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir.parent / "log", "ab"),
        )
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "server exited during start-up"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise TimeoutError("server did not become ready")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    async with contextlib.AsyncExitStack() as stack:
        env: dict[str, str] = {}
        if request.param == "postgresql":
            env["TETHER_DATABASE_URL"] = await stack.enter_async_context(fresh_postgres_schema())
        (tmp_path / "data").mkdir()
        running = Server(tmp_path / "data", free_port(), env)
        try:
            yield running
        finally:
            running.stop()


async def slow_echo(command: Any, report: Any) -> Outcome:
    await asyncio.sleep(0.005)
    return Outcome(result=command.parameters)


async def test_kill_9_mid_flight_loses_no_acknowledged_command(server: Server) -> None:
    await server.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            server.url + "/api/v1/auth/token", json={"login": "admin", "password": PASSWORD}
        ) as r:
            token = (await r.json())["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}
        async with session.post(
            server.url + "/api/v1/devices",
            headers=auth,
            json={"id": "durable-1", "name": "durable"},
        ) as r:
            assert r.status == 201
        async with session.post(
            server.url + "/api/v1/devices/durable-1/credential", headers=auth
        ) as r:
            credential = (await r.json())["credential"]

        agent = NativeAgent(server.url, "durable-1", credential, handler=slow_echo)
        agent_task = asyncio.create_task(agent.run())
        acknowledged: list[int] = []
        killed = asyncio.Event()

        async def send(i: int) -> None:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(
                    server.url + "/api/v1/devices/durable-1/commands",
                    headers=auth,
                    json={"name": "echo", "parameters": i},
                ) as r:
                    if r.status == 201:
                        acknowledged.append((await r.json())["id"])

        async def producer() -> None:
            i = 0
            while not killed.is_set():
                await asyncio.gather(*(send(i + k) for k in range(10)))
                i += 10

        producing = asyncio.create_task(producer())
        while len(acknowledged) < 150:
            await asyncio.sleep(0.01)
        server.kill()
        killed.set()
        await producing
        before_restart = list(acknowledged)
        assert len(before_restart) >= 150

        await server.start()
        async with session.post(
            server.url + "/api/v1/auth/token", json={"login": "admin", "password": PASSWORD}
        ) as r:
            token = (await r.json())["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}

        states: dict[int, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for command_id in before_restart:
                if states.get(command_id) == "succeeded":
                    continue
                async with session.get(
                    f"{server.url}/api/v1/commands/{command_id}", headers=auth
                ) as r:
                    assert r.status == 200, f"acknowledged command {command_id} is gone"
                    states[command_id] = (await r.json())["state"]
            if all(s == "succeeded" for s in states.values()):
                break
            await asyncio.sleep(0.2)
        await agent.stop()
        agent_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent_task

    unfinished = {i: s for i, s in states.items() if s != "succeeded"}
    assert not unfinished, f"commands not finished after restart: {unfinished}"
    # Each acknowledged command ran on the device, and none ran twice.
    assert set(before_restart) <= set(agent.executed)
    assert len(agent.executed) == len(set(agent.executed))
