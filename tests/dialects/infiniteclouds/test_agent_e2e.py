"""The acceptance flow end to end: ``tether agent keepalive`` as a real subprocess.

The server runs in this process (tests/support.py ``running``), firmware images come from
a separate local aiohttp server, and the agent's hooks are small shell scripts that
leave evidence in the test's directory. Every wait is on an observable condition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.support import ADMIN_PASSWORD, Running, running

from devicehive import DeviceHiveApi

pytestmark = pytest.mark.slow

T = TypeVar("T")
MAC = "02:00:00:aa:bb:01"
DEVICE_ID = "ic-020000aabb01"
TETHER = [sys.executable, "-m", "tether.cli"]
INTERVAL = 0.3
IMAGE = b"\x7fFIRMWARE" * 1000


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30) -> T:
    """Poll ``probe`` until it returns something truthy (CPU contention: generous timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def clean_env() -> dict[str, str]:
    """The environment without TETHER_* settings; bytecode is cached under the temp dir
    (not in the tree), since compiling every module again costs seconds per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "tether-pycache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
async def firmware_server() -> AsyncIterator[str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=IMAGE, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/fw/{name}", image)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/fw")).rstrip("/")
    finally:
        await server.close()


async def device(app: Running) -> dict[str, Any]:
    found: dict[str, Any] = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}")
    return found


async def test_keepalive_agent_end_to_end(tmp_path: Path, firmware_server: str) -> None:
    state = tmp_path / "state"
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    config_hook = script(tmp_path / "config.sh", f'cp "$1" {evidence}/applied.json\n')
    firmware_hook = script(
        tmp_path / "firmware.sh", f'cp "$1" {evidence}/flashed.bin && echo "$IC_FIRMWARE_VERSION"\n'
    )
    command_hook = script(
        tmp_path / "command.sh",
        'params=$(cat)\necho "ran $1 $params as $IC_DEVICE_ID"\n[ "$1" != fail ]\n',
    )
    settings = {
        "keepalive_interval": INTERVAL,
        "missed_keepalives": 3,
        "revision_cache_ttl": 0,
    }
    async with running(tmp_path, infiniteclouds=settings) as app:
        log = tmp_path / "agent.log"
        with log.open("w") as sink:
            agent = subprocess.Popen(
                [
                    *TETHER,
                    "agent",
                    "keepalive",
                    "--url",
                    app.url,
                    "--state-dir",
                    str(state),
                    "--interval",
                    str(INTERVAL),
                    "--register-interval",
                    str(INTERVAL),
                    "--mac",
                    MAC,
                    "--firmware-version",
                    "v1.0.0",
                    "--config-hook",
                    config_hook,
                    "--firmware-hook",
                    firmware_hook,
                    "--command-hook",
                    command_hook,
                ],
                env=clean_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            await run_flow(app, state, evidence, firmware_server)
            # The agent stops: offline after the configured missed intervals.
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, 20) == 0

            async def offline() -> bool:
                return (await device(app))["online"] is False

            await eventually(offline, "the device to go offline")
            gone = datetime.now(UTC)

            async def last_seen() -> Any:
                return (await device(app))["lastSeen"]

            # Offline no sooner than the configured missed intervals after the last keepalive.
            seen = datetime.fromisoformat(await eventually(last_seen, "lastSeen to be written"))
            assert (gone - seen).total_seconds() >= INTERVAL * 3 - 0.05
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
            print(log.read_text())


async def run_flow(app: Running, state: Path, evidence: Path, firmware_url: str) -> None:
    # 1. Registered, unassigned: no token, no keepalive sent or accepted.
    async def registered() -> Any:
        answer = read(state / "last_register_response.json")
        return answer if answer and answer.get("data") else None

    answer = await eventually(registered, "a register answer")
    assert answer["data"] == {"assigned": False, "deviceId": DEVICE_ID}
    found = await device(app)
    assert found["ownerId"] is None
    assert found["attributes"]["macAddress"] == MAC
    assert found["attributes"]["firmwareVersion"] == "v1.0.0"
    assert not (state / "last_keepAlive_request.json").exists()

    # 2. Assigned: a token, keepalives, online.
    await app.call("PATCH", f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": 1}, expect=200)

    async def keeping_alive() -> Any:
        return read(state / "last_keepAlive_response.json")

    answer = await eventually(keeping_alive, "a keepalive answer")
    assert answer["status"] == 200
    assert read(state / "last_register_response.json")["data"]["assigned"] is True

    async def online() -> bool:
        return (await device(app))["online"] is True

    await eventually(online, "the device to be online")
    request = read(state / "last_keepAlive_request.json")
    assert request["statusType"] == "keepAlive"
    assert request["deviceId"] == DEVICE_ID
    assert request["macAddress"] == MAC

    # The first keepalive asked for a status snapshot: it lands in the shadow.
    async def snapshot() -> Any:
        shadow = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}/state")
        return shadow["reported"].get("status")

    status = await eventually(snapshot, "a status snapshot")
    assert "interfaces" in status

    # 3. A config edit raises configUpdate; the hook applies it; the flag clears.
    revision = await app.call(
        "POST",
        "/api/v1/config-revisions",
        json={"deviceId": DEVICE_ID, "document": {"syslog": {"enable": True}}},
        expect=201,
    )
    rev = str(revision["id"])

    async def config_applied() -> bool:
        applied = read(evidence / "applied.json")
        found = await device(app)
        return bool(
            applied
            and applied.get("revisionId") == rev
            and found["attributes"].get("configRevision") == rev
        )

    await eventually(config_applied, "the config revision to be applied and reported")
    assert read(evidence / "applied.json")["syslog"] == {"enable": True}

    async def config_clear() -> bool:
        answer = read(state / "last_keepAlive_response.json") or {}
        trigger = (answer.get("data") or {}).get("triggerEvent") or {}
        return trigger.get("configUpdate") is False

    await eventually(config_clear, "configUpdate to clear")

    # 4. Firmware: a wrong checksum is refused before the hook runs ...
    await app.call(
        "POST",
        "/api/v1/firmware-targets",
        json={
            "version": "v1.1.0",
            "url": f"{firmware_url}/bad.bin",
            "sha256": "00" * 32,
            "deviceId": DEVICE_ID,
        },
        expect=201,
    )

    async def refused() -> Any:
        status = (await device(app))["attributes"].get("firmwareStatus")
        return status if status and status.get("state") == "FAILED" else None

    failure = await eventually(refused, "the bad image to be refused")
    assert "sha256" in failure["message"]
    assert not (evidence / "flashed.bin").exists()
    # ... the right one goes through download, checksum and hook, then is reported.
    await app.call(
        "POST",
        "/api/v1/firmware-targets",
        json={
            "version": "v1.2.0",
            "url": f"{firmware_url}/good.bin",
            "size": len(IMAGE),
            "sha256": hashlib.sha256(IMAGE).hexdigest(),
            "deviceId": DEVICE_ID,
        },
        expect=201,
    )

    async def flashed() -> bool:
        found = await device(app)
        return found["attributes"].get("firmwareVersion") == "v1.2.0"

    await eventually(flashed, "firmware v1.2.0 to be reported")
    assert (evidence / "flashed.bin").read_bytes() == IMAGE

    async def firmware_clear() -> bool:
        answer = read(state / "last_keepAlive_response.json") or {}
        trigger = (answer.get("data") or {}).get("triggerEvent") or {}
        return trigger.get("firmwareUpdate") is False

    await eventually(firmware_clear, "firmwareUpdate to clear")

    # 5. Commands from the native API run through the hook; results complete them.
    ok = await app.call(
        "POST",
        f"/api/v1/devices/{DEVICE_ID}/commands",
        json={"name": "ping", "parameters": {"host": "10.0.0.1"}},
        expect=201,
    )
    bad = await app.call(
        "POST", f"/api/v1/devices/{DEVICE_ID}/commands", json={"name": "fail"}, expect=201
    )

    async def finished(command_id: int) -> Any:
        found = await app.call("GET", f"/api/v1/commands/{command_id}")
        return found if found["state"] in ("succeeded", "failed") else None

    done = await eventually(lambda: finished(ok["id"]), "the ping command to finish")
    assert done["state"] == "succeeded"
    assert done["result"]["output"] == f'ran ping {{"host": "10.0.0.1"}} as {DEVICE_ID}'
    assert done["result"]["exitCode"] == 0
    done = await eventually(lambda: finished(bad["id"]), "the fail command to finish")
    assert done["state"] == "failed"
    assert done["result"]["exitCode"] == 1

    # ... and so does one sent by the official DeviceHive client (its REST transport).
    async with app.session.post(
        app.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
    ) as response:
        assert response.status == 201, await response.text()
        refresh = (await response.json())["refreshToken"]

    def send_through_devicehive() -> int:
        hive = DeviceHiveApi(app.url + "/api/rest", refresh_token=refresh)
        command = hive.send_command(DEVICE_ID, "hive-ping", parameters={"via": "devicehive"})
        return int(command.id)

    hive_id = await asyncio.to_thread(send_through_devicehive)
    done = await eventually(lambda: finished(hive_id), "the DeviceHive command to finish")
    assert done["state"] == "succeeded"
    assert done["result"]["output"] == f'ran hive-ping {{"via": "devicehive"}} as {DEVICE_ID}'

    # 6. Re-assigned to another user: the old token gets 401, the agent registers again.
    old_token = read(state / "last_register_response.json")["data"]["authToken"]
    user = await app.call(
        "POST",
        "/api/v1/users",
        json={"login": "operator", "password": "operator-pass", "role": "client"},
        expect=201,
    )
    await app.call(
        "PATCH", f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": user["id"]}, expect=200
    )

    async def new_token() -> bool:
        answer = read(state / "last_register_response.json") or {}
        token = (answer.get("data") or {}).get("authToken")
        return bool(token and token != old_token)

    await eventually(new_token, "a fresh token after re-assignment")
    again = await app.call(
        "POST", f"/api/v1/devices/{DEVICE_ID}/commands", json={"name": "uptime"}, expect=201
    )
    done = await eventually(lambda: finished(again["id"]), "a command after re-registering")
    assert done["state"] == "succeeded"
