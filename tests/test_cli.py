"""The ``tether`` client commands end to end, as a user runs them.

One real ``tether serve`` subprocess (SQLite in a temp dir) serves the whole module; every
command runs as its own ``python -m tether.cli`` subprocess, and a ``tether agent native``
subprocess plays the device.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "adminpass"
TETHER = [sys.executable, "-m", "tether.cli"]
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any TETHER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    return env


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Server:
    url: str
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        settings = {"TETHER_URL": self.url, "TETHER_LOGIN": "admin"}
        settings["TETHER_PASSWORD"] = ADMIN_PASSWORD
        return clean_env(**{**settings, **extra})

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run one ``tether`` command as the admin."""
        return subprocess.run(
            [*TETHER, *args],
            env=self.env() if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, explain(result)
        return json.loads(result.stdout)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("tether-data")
    port = free_port()
    log = data / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*TETHER, "serve", "--port", str(port), "--data-dir", str(data)],
            env=clean_env(TETHER_ADMIN_PASSWORD=ADMIN_PASSWORD),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"tether serve exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=2):
                break
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                stop(process)
                pytest.fail(f"tether serve did not answer in {START_TIMEOUT}s:\n{log.read_text()}")
            time.sleep(0.1)
    try:
        yield Server(url, log)
    finally:
        stop(process)


@dataclass
class Device:
    id: str
    credential: str
    created: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def device(server: Server) -> Device:
    """A device made with ``device create --with-credential --json``."""
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    created = server.json(
        "device",
        "create",
        "--id",
        device_id,
        "--name",
        "Bench lamp",
        "--data",
        '{"room": "lab"}',
        "--with-credential",
    )
    return Device(device_id, created["credential"], created)


@dataclass
class Agent:
    process: subprocess.Popen[str]
    log: Path


@pytest.fixture(scope="module")
def agent(
    server: Server, device: Device, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Agent]:
    log = tmp_path_factory.mktemp("agent") / "agent.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*TETHER, "agent", "native", "--device-id", device.id, "--log-level", "info"],
            env=clean_env(TETHER_URL=server.url, TETHER_DEVICE_CREDENTIAL=device.credential),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        yield Agent(process, log)
    finally:
        code = stop(process)
        assert code == 0, f"agent exited {code}:\n{log.read_text()}"
        assert "stopping" in log.read_text()


def post_notification(server: Server, device: Device, name: str, parameters: Any) -> None:
    request = urllib.request.Request(
        f"{server.url}/api/v1/device/{device.id}/notifications",
        data=json.dumps({"name": name, "parameters": parameters}).encode(),
        headers={
            "Authorization": f"Bearer {device.credential}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


# --- tests ------------------------------------------------------------------------------------


def test_help_through_the_real_entry_point(server: Server) -> None:
    """``main()`` registers the client groups (each group's help: test_cli_units.py)."""
    root = server.cli("--help")
    assert root.returncode == 0, explain(root)
    for group in (
        "user",
        "apikey",
        "network",
        "devicetype",
        "device",
        "command",
        "notifications",
        "agent",
    ):
        assert f" {group} " in root.stdout
    result = server.cli("command", "--help")
    assert result.returncode == 0, explain(result)
    assert "2 still running" in result.stdout


def test_device_create_with_credential(server: Server, device: Device) -> None:
    assert device.created["id"] == device.id
    assert device.created["hasCredential"] is True
    assert device.created["data"] == {"room": "lab"}
    assert len(device.credential) >= 20
    # the human form prints the secret once, with the warning
    result = server.cli("device", "create", "--id", f"{device.id}-b", "--with-credential")
    assert result.returncode == 0, explain(result)
    assert "credential:" in result.stdout
    assert "not shown again" in result.stderr
    assert server.cli("device", "delete", f"{device.id}-b", "--yes").returncode == 0


def test_command_send_wait_succeeds(server: Server, device: Device, agent: Agent) -> None:
    result = server.cli(
        "command", "send", device.id, "echo", "--params", '{"x": 1}', "--wait", "20", "--json"
    )
    assert result.returncode == 0, explain(result) + agent.log.read_text()
    command = json.loads(result.stdout)
    assert command["state"] == "succeeded"
    assert command["result"] == {"x": 1}
    # the human form of the same, through a table
    result = server.cli(
        "command",
        "send",
        device.id,
        "steps",
        "--params",
        '{"steps": ["warm", "run"]}',
        "--wait",
        "20s",
    )
    assert result.returncode == 0, explain(result)
    assert "succeeded" in result.stdout
    assert "warm (done), run (done)" in result.stdout
    log = agent.log.read_text()
    assert f"command {command['id']} echo" in log
    assert "succeeded" in log


def test_failing_command_exits_1(server: Server, device: Device, agent: Agent) -> None:
    result = server.cli(
        "command",
        "send",
        device.id,
        "fail",
        "--params",
        '{"error": "overheated"}',
        "--wait",
        "20",
        "--json",
    )
    assert result.returncode == 1, explain(result)
    command = json.loads(result.stdout)
    assert command["state"] == "failed"
    assert command["error"] == "overheated"


def test_still_running_exits_2_then_show_waits(
    server: Server, device: Device, agent: Agent
) -> None:
    result = server.cli(
        "command",
        "send",
        device.id,
        "sleep",
        "--params",
        '{"seconds": 1.5}',
        "--wait",
        "0.3",
        "--json",
    )
    assert result.returncode == 2, explain(result)
    command = json.loads(result.stdout)
    assert command["state"] not in ("succeeded", "failed")
    assert f"tether command show {command['id']} --wait" in result.stderr
    result = server.cli("command", "show", str(command["id"]), "--wait", "20", "--json")
    assert result.returncode == 0, explain(result)
    assert json.loads(result.stdout)["result"] == {"slept": 1.5}


def test_notifications_tail_receives_a_device_notification(server: Server, device: Device) -> None:
    tail = subprocess.Popen(
        [*TETHER, "notifications", "tail", "--device", device.id, "--count", "1", "--json"],
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        # post until the tail has subscribed and received one (it exits after --count 1)
        deadline = time.monotonic() + 20
        while tail.poll() is None and time.monotonic() < deadline:
            post_notification(server, device, "temp", {"c": 21})
            with contextlib.suppress(subprocess.TimeoutExpired):
                tail.wait(0.3)
        out, err = tail.communicate(timeout=5)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.strip().splitlines()
    assert len(lines) == 1
    received = json.loads(lines[0])
    assert received["deviceId"] == device.id
    assert received["name"] == "temp"
    assert received["parameters"] == {"c": 21}
    assert "following notifications" in err
    # and the stored history, newest first
    listed = server.json("notifications", "list", "--device", device.id, "--name", "temp")
    assert listed
    assert listed[0]["parameters"] == {"c": 21}


def test_wrong_password_is_a_readable_error(server: Server) -> None:
    result = server.cli("device", "list", env=server.env(TETHER_PASSWORD="wrong"))
    assert result.returncode == 1
    assert result.stderr.startswith("error unauthorized: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_unreachable_url_exits_1(server: Server) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = server.cli("device", "list", "--url", url)
    assert result.returncode == 1
    assert f"cannot reach Tether at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_management_round_trip(server: Server, device: Device) -> None:
    """Users, API keys, networks, device types and devices through the CLI."""
    network = server.json("network", "create", "--name", "greenhouse", "--description", "B2")
    kind = server.json("devicetype", "create", "--name", "thermostat")
    assert any(n["id"] == network["id"] for n in server.json("network", "list"))
    assert any(t["id"] == kind["id"] for t in server.json("devicetype", "list"))

    login = f"user-{uuid.uuid4().hex[:6]}"
    user = server.json("user", "create", "--login", login, "--password", "secret-pass-1")
    assert (user["login"], user["role"]) == (login, "client")
    assert server.cli("user", "grant-network", str(user["id"]), str(network["id"])).returncode == 0
    assert server.json("user", "show", str(user["id"]))["networkIds"] == [network["id"]]
    locked = server.json("user", "update", str(user["id"]), "--status", "locked")
    assert locked["status"] == "locked"

    key = server.json("apikey", "create", "--name", "ci", "--expires-in", "1d")
    assert key["key"].startswith("tk_")
    me = server.cli(
        "user",
        "show",
        "me",
        "--json",
        env=clean_env(TETHER_URL=server.url, TETHER_TOKEN=key["key"]),
    )
    assert me.returncode == 0, explain(me)
    assert json.loads(me.stdout)["login"] == "admin"
    assert server.cli("apikey", "revoke", str(key["id"])).returncode == 0
    revoked = server.cli(
        "device", "list", env=clean_env(TETHER_URL=server.url, TETHER_TOKEN=key["key"])
    )
    assert revoked.returncode == 1
    assert revoked.stderr.startswith("error unauthorized")

    updated = server.json(
        "device",
        "update",
        device.id,
        "--network-id",
        str(network["id"]),
        "--type-id",
        str(kind["id"]),
    )
    assert (updated["networkId"], updated["typeId"]) == (network["id"], kind["id"])
    assert server.json("device", "block", device.id)["blocked"] is True
    assert server.json("device", "unblock", device.id)["blocked"] is False
    listed = server.cli("device", "list", "--network-id", str(network["id"]))
    assert listed.returncode == 0, explain(listed)
    assert device.id in listed.stdout

    refused = server.cli("network", "delete", str(network["id"]), "--yes")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error bad_request")
    missing = server.cli("device", "show", "no-such-device")
    assert (missing.returncode, missing.stderr.split(":")[0]) == (1, "error not_found")


def test_cancel_a_command_nobody_takes(server: Server) -> None:
    idle = f"idle-{uuid.uuid4().hex[:6]}"
    server.json("device", "create", "--id", idle)
    command = server.json("command", "send", idle, "reboot", "--lifetime", "1h", "--timeout", "30s")
    assert command["state"] == "pending"
    cancelled = server.json("command", "cancel", str(command["id"]))
    assert cancelled["state"] == "cancelled"
    shown = server.cli("command", "show", str(command["id"]), "--wait", "1")
    assert shown.returncode == 1  # cancelled counts as not succeeded
    listed = server.json("command", "list", "--device", idle, "--state", "cancelled")
    assert [c["id"] for c in listed] == [command["id"]]


def admin_call(server: Server, method: str, path: str, body: Any = None) -> Any:
    """The native API directly, as the admin: set-up that is not what a test is about
    (each CLI call is a fresh interpreter, seconds on a busy machine)."""

    def call(method: str, path: str, body: Any, token: str | None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            server.url + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    login = {"login": "admin", "password": ADMIN_PASSWORD}
    token = call("POST", "/api/v1/auth/token", login, None)["accessToken"]
    return call(method, path, body, token)


def test_piped_tables_do_not_wrap(server: Server, device: Device) -> None:
    """Sent to a file or pipe (no COLUMNS), a table keeps every cell on one line."""
    name = "A rather long device name that would not fit in eighty columns, by far " + "x" * 40
    long_id = f"wide-{uuid.uuid4().hex[:6]}"
    admin_call(server, "POST", "/api/v1/devices", {"id": long_id, "name": name})
    env = server.env()
    env.pop("COLUMNS")
    listed = server.cli("device", "list", "--name", name, env=env)
    assert listed.returncode == 0, explain(listed)
    row = next(line for line in listed.stdout.splitlines() if long_id in line)
    assert name in row


def test_device_attributes_owner_desired_state_and_config(server: Server) -> None:
    login = f"own-{uuid.uuid4().hex[:6]}"
    owner = admin_call(
        server, "POST", "/api/v1/users", {"login": login, "password": "secret-pass-2"}
    )
    device_id = f"sonoff-{uuid.uuid4().hex[:6]}"
    apikey = "6f5a1e7c-0000-4000-8000-000000000001"
    created = server.json(
        "device",
        "create",
        "--id",
        device_id,
        "--dialect",
        "ewelink",
        "--owner",
        login,
        "--attributes",
        json.dumps({"apikey": apikey}),
    )
    assert created["ownerId"] == owner["id"]
    assert created["attributes"]["apikey"] == apikey
    state = server.json("device", "desire", device_id, '{"switch": "on"}')
    assert state["desired"] == {"switch": "on"}
    stored = admin_call(server, "GET", f"/api/v1/devices/{device_id}/state")
    assert stored["desired"] == {"switch": "on"}

    published = server.json("config", "publish", '{"interval": 30}', "--device", device_id)
    assert published["deviceId"] == device_id
    assert server.json("device", "config", device_id)["document"] == {"interval": 30}
    listed = server.json("config", "list", "--device", device_id)
    assert [c["id"] for c in listed] == [published["id"]]

    target = server.json(
        "firmware",
        "set",
        "--version",
        "1.2.0",
        "--image-url",
        "http://fw.test/1.2.0.bin",
        "--device",
        device_id,
    )
    assert target["version"] == "1.2.0"
    assert target["id"] in [t["id"] for t in server.json("firmware", "list")]
    assert server.cli("firmware", "delete", str(target["id"]), "--yes").returncode == 0
    remaining = admin_call(server, "GET", "/api/v1/firmware-targets")
    assert target["id"] not in [t["id"] for t in remaining]


def test_network_and_devicetype_show_update_and_paging(server: Server) -> None:
    for group, path in (("network", "/api/v1/networks"), ("devicetype", "/api/v1/device-types")):
        made = admin_call(server, "POST", path, {"name": f"g-{uuid.uuid4().hex[:6]}"})
        updated = server.json(group, "update", str(made["id"]), "--description", "Ground floor")
        assert (updated["name"], updated["description"]) == (made["name"], "Ground floor")
        assert server.json(group, "show", str(made["id"]))["description"] == "Ground floor"
    prefix = f"page-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        admin_call(
            server, "POST", "/api/v1/devices", {"id": f"{prefix}-{n}", "name": f"{prefix}-{n}"}
        )
    pattern = f"{prefix}-%"
    first = admin_call(server, "GET", f"/api/v1/devices?namePattern={quote(pattern)}&take=2")
    rest = server.json("device", "list", "--name", pattern, "--take", "2", "--skip", "2")
    assert len(first) == 2
    assert len(rest) == 1
    assert {d["id"] for d in first + rest} == {f"{prefix}-{n}" for n in range(3)}


def test_notification_sent_as_the_device_and_presence_watched(server: Server) -> None:
    device_id = f"watched-{uuid.uuid4().hex[:6]}"
    credential = server.json("device", "create", "--id", device_id, "--with-credential")[
        "credential"
    ]
    device_env = clean_env(TETHER_URL=server.url, TETHER_DEVICE_CREDENTIAL=credential)
    sent = server.cli(
        "notifications",
        "send",
        device_id,
        "door",
        "--params",
        '{"open": true}',
        "--json",
        env=device_env,
    )
    assert sent.returncode == 0, explain(sent)
    assert json.loads(sent.stdout)["parameters"] == {"open": True}
    listed = admin_call(server, "GET", f"/api/v1/devices/{device_id}/notifications")
    assert [n["name"] for n in listed] == ["door"]

    watch = subprocess.Popen(
        [*TETHER, "presence", "watch", "--device", device_id, "--count", "1", "--json"],
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    agent = None
    try:
        deadline = time.monotonic() + 30
        while "following presence" not in (watch.stderr.readline() if watch.stderr else ""):
            assert time.monotonic() < deadline, "watch never subscribed"
            assert watch.poll() is None, "watch exited before subscribing"
        # the agent's session brings the device online; --telemetry makes it report by itself
        agent = subprocess.Popen(
            [*TETHER, "agent", "native", "--device-id", device_id, "--telemetry", "0.2"],
            env=device_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        out, _ = watch.communicate(timeout=30)
        change = json.loads(out.strip().splitlines()[0])
        assert (change["deviceId"], change["online"]) == (device_id, True)
        deadline = time.monotonic() + 30
        path = f"/api/v1/devices/{device_id}/notifications?name=telemetry"
        while not (found := admin_call(server, "GET", path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert found
        assert {"count", "uptime", "temperature"} <= set(found[0]["parameters"])
    finally:
        for process in (watch, agent):
            if process is not None:
                stop(process)
