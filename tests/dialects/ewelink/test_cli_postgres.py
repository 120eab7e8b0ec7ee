"""``tether agent ewelink`` as a real process, and the account/token state on PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from tests.dialects.ewelink.helpers import DEVICE, FACTORY, app_socket, device_running, world
from tests.support import ADMIN_PASSWORD


async def test_cli_agent_registers_and_obeys(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tether.cli import main; main()",
            "agent",
            "ewelink",
            "--url",
            w.r.url,
            "--device-id",
            DEVICE,
            "--apikey",
            FACTORY,
            "--switches",
            "2",
            "--log-level",
            "info",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            # A fresh interpreter importing Tether takes a while on a busy machine.
            await w.device_online(seconds=90)
            made = await w.r.call(
                "POST",
                f"/api/v1/devices/{DEVICE}/commands?wait=20",
                json={
                    "name": "update",
                    "parameters": {"switches": [{"outlet": 1, "switch": "on"}]},
                },
                expect=200,
            )
            assert made["state"] == "succeeded"
            # The device answers with the result itself: no delivery time to show as "-".
            assert made["deliveredAt"] is None
            shown = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from tether.cli import main; main()",
                "command",
                "show",
                str(made["id"]),
                "--url",
                w.r.url,
                "--login",
                "admin",
                "--password",
                ADMIN_PASSWORD,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
            record = (await asyncio.wait_for(shown.communicate(), 60))[0].decode()
            assert shown.returncode == 0, record
            assert "succeeded" in record
            assert "delivered" not in record
            state = await w.r.call("GET", f"/api/v1/devices/{DEVICE}/state", expect=200)
            assert state["reported"]["switches"] == [
                {"switch": "off", "outlet": 0},
                {"switch": "on", "outlet": 1},
            ]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output.decode()
        assert b"params changed" in output
        assert f"device {DEVICE} connected to {w.r.url} and registered".encode() in output


@pytest.mark.postgres
async def test_tokens_and_flow_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    async with world(tmp_path, database_url=postgres_url) as w:
        await w.add_device()
        first = await w.login()
        second = await w.login()
        async with w.r.session.get(
            w.r.url + "/api/user/device", headers={"Authorization": "Bearer " + first["at"]}
        ) as response:
            assert (await response.json())["error"] == 401
        stored = await w.hub.dialect_state.get(
            "ewelink", f"at:{w.user_id}:testAppId0000000000000000000000A"
        )
        assert stored is not None
        assert second["at"] not in stored  # only hashes at rest
        async with app_socket(w, second) as app, device_running(w) as device:
            await app.send(
                {
                    "action": "update",
                    "deviceid": DEVICE,
                    "apikey": second["user"]["apikey"],
                    "sequence": "pg",
                    "params": {"switch": "on"},
                }
            )
            assert (await app.reply_to("pg"))["error"] == 0
            assert device.params["switch"] == "on"
        state = await w.hub.twins.own_state(await w.hub.directory.device(DEVICE))
        assert state.reported["switch"] == "on"
