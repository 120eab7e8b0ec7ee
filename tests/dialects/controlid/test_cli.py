"""``tether agent controlid`` and ``tether controlid ...`` as real subprocesses against a
real server: the builder queues, the emulated terminal runs it, the CLI prints the result."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.dialects.controlid.test_e2e import register
from tests.support import ADMIN_PASSWORD, running

TETHER = [sys.executable, "-m", "tether.cli"]


def env(url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    clean.update(
        TETHER_URL=url,
        TETHER_LOGIN="admin",
        TETHER_PASSWORD=ADMIN_PASSWORD,
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    return clean


async def cli(url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *TETHER,
        *args,
        env=env(url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_builders_and_agent(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        await register(server, "4242")
        agent = await asyncio.create_subprocess_exec(
            *TETHER,
            "agent",
            "controlid",
            "--device-id",
            "4242",
            "--url",
            server.url,
            "--period",
            "0.1",
            env=env(server.url),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            code, out, err = await cli(
                server.url, "controlid", "door", "4242", "--door", "2", "--wait", "30s"
            )
            assert code == 0, (out, err)
            # Titled by how it ended, not "queued".
            assert out.splitlines()[0].strip() == "execute_actions succeeded", out
            [door] = await server.call(
                "GET", "/api/v1/commands?deviceId=4242&name=execute_actions", expect=200
            )
            assert door["state"] == "succeeded"
            assert door["parameters"]["body"] == {
                "actions": [{"action": "door", "parameters": "door=2"}]
            }
            # A bad builder call is refused by the server's shaper before queueing.
            code, out, err = await cli(
                server.url, "controlid", "destroy", "4242", "users", "--where", "{}"
            )
            assert code == 1
            assert "where" in err
            notifications = await server.call(
                "GET", "/api/v1/devices/4242/notifications", expect=200
            )
            assert [n["name"] for n in notifications] == ["door"]
        finally:
            agent.send_signal(signal.SIGTERM)
            _, agent_err = await asyncio.wait_for(agent.communicate(), 30)
        log = agent_err.decode()
        assert "execute_actions -> ok" in log, log
