"""``tether agent devicehive``: the device side over WebSocket and over HTTP polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
import typer
from tests.dialects.devicehive.helpers import Server
from typer.testing import CliRunner

from tether.cli_client import ClientGroup
from tether.dialects.devicehive.agent import DeviceHiveAgent


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_agent_runs_commands_and_reports_results(
    server: Server, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.devicehive.agent")
    device_id = f"agent-{transport}"
    agent = DeviceHiveAgent(
        server.run.url, device_id, refresh_token=server.refresh, transport=transport, poll_wait=5
    )
    runner = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.connected.wait(), 20)
        ids = []
        for name, params in (("echo", {"n": 1}), ("fail", {"error": "no"})):
            status, body = await server.rest(
                "POST", f"/device/{device_id}/command", json={"command": name, "parameters": params}
            )
            assert status == 201
            ids.append(body["id"])
        results = []
        for command_id in ids:
            status, body = await server.rest(
                "GET", f"/device/{device_id}/command/{command_id}/poll?waitTimeout=20"
            )
            assert status == 200
            results.append((body["status"], body["result"]))
        assert results == [("done", {"n": 1}), ("failed", {"error": "no"})]
        # An operator sees it connect and what it runs.
        logged = [r.getMessage() for r in caplog.records if r.name == "tether.devicehive.agent"]
        assert any(f"device {device_id} connected to" in line for line in logged), logged
        assert any(f"command {ids[0]} echo" in line and "-> done" in line for line in logged)
        assert any(f"command {ids[1]} fail" in line and "-> failed" in line for line in logged)
        states = [(await server.run.call("GET", f"/api/v1/commands/{i}"))["state"] for i in ids]
        assert states == ["succeeded", "failed"]
        note_id = await agent.notify("temp", {"v": 3})
        status, notes = await server.rest("GET", f"/device/{device_id}/notification")
        assert [n["id"] for n in notes] == [note_id]
    finally:
        await agent.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, 40)


def test_cli_offers_the_agent() -> None:
    app = typer.Typer(cls=ClientGroup)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["agent", "devicehive", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "--device-id" in result.output
    assert "--refresh-token" in result.output


@pytest.mark.asyncio(loop_scope="module")
async def test_agent_waits_for_a_server_that_is_not_up_yet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like the native agent, it retries an unreachable server instead of crashing."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = DeviceHiveAgent(f"http://127.0.0.1:{port}", "early", refresh_token="t")
    caplog.set_level(logging.WARNING, logger="tether.devicehive.agent")
    runner = asyncio.create_task(agent.run())
    try:
        for _ in range(100):
            if any("cannot reach" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        assert not runner.done(), runner
        assert any(
            f"cannot reach http://127.0.0.1:{port}" in r.getMessage() for r in caplog.records
        )
    finally:
        await agent.stop()
        await asyncio.wait_for(runner, 10)
