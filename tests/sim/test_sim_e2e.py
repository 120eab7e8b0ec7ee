"""``tether sim`` end to end: a small fleet of every dialect against a real ``tether serve``.

One server subprocess (SQLite, as ``tether serve`` runs by default) serves the module.
The library runs in the test's event loop; the command line runs as the real entry point
in a subprocess, workers included. Every run has its own ``--name``, so the runs share
the server without seeing each other's devices.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from tests.test_cli import ADMIN_PASSWORD, TETHER, Server, clean_env, explain
from tests.test_cli import server as started_server  # noqa: F401 (a fixture)
from tether.cli_client import ClientGroup
from tether.sim import DIALECTS, Credentials, Plan, Progress, run
from tether.sim.client import ApiClient, ApiError
from tether.sim.display import LiveProgress, render
from tether.sim.provision import device_id

pytestmark = pytest.mark.slow

ADMIN = Credentials(login="admin", password=ADMIN_PASSWORD)
#: The notification each dialect's telemetry is stored as.
TELEMETRY_NAME = {
    "native-ws": "telemetry",
    "native-http": "telemetry",
    "devicehive": "telemetry",
    "ewelink": "update",
    "controlid": "door",
    "opengate": "sim.telemetry",
    "infiniteclouds": "statistics",
}


@pytest.fixture(scope="module")
def server(started_server: Server) -> Server:  # noqa: F811 (the fixture imported above)
    """The module's ``tether serve``, once it is ready (its hub started), not just up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{started_server.url}/readyz", timeout=2):
                break
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                pytest.fail("tether serve was not ready in 30s")
            time.sleep(0.1)
    return started_server


@pytest.fixture
async def api(server: Server) -> AsyncIterator[ApiClient]:
    async with aiohttp.ClientSession() as session:
        yield ApiClient(server.url, ADMIN, session)


def every_dialect(count: int) -> dict[str, int]:
    return {name: count for name in DIALECTS}


async def test_a_fleet_of_every_dialect_connects_reports_and_runs_commands(
    server: Server,
    api: ApiClient,
) -> None:
    plan = Plan(
        url=server.url,
        name="every",
        mix=every_dialect(2),
        duration=4.0,
        telemetry_interval=0.5,
        command_rate=14.0,
        # Generous: a shared CI machine can stall the server for seconds; a late command
        # would count as an error and this test is about correctness, not latency.
        command_timeout=30.0,
        poll_interval=0.5,
    )
    seen: list[Any] = []
    summary = await run(plan, ADMIN, on_progress=seen.append)
    assert summary.errors == {}, summary.errors
    for name in DIALECTS:
        fleet = summary.dialects[name]
        assert fleet.connected_at_end == fleet.devices == 2, (name, fleet)
        assert fleet.commands_succeeded > 0, (name, fleet)
        assert fleet.telemetry_sent > 0, (name, fleet)
    assert summary.commands.succeeded == summary.commands.sent > 20
    assert summary.commands.round_trip.p50_ms is not None
    assert summary.connections.connects == 14
    assert summary.connections.drops == 0
    assert seen
    assert seen[-1].connected == 14
    # The live view also shows what the server sees: every device of this run online.
    assert any(p.online is not None and p.online >= 14 for p in seen), seen[-3:]
    assert summary.simulator[0].cpu_seconds > 0
    assert summary.simulator[0].rss_bytes > 0
    # The tables (what a person reads) and the live line show the same run.
    console = Console(record=True, width=160)
    console.print(render(summary))
    text = console.export_text()
    for words in ("infiniteclouds", "command round trip", "errors: none", "core share"):
        assert words in text, text
    live = LiveProgress(console, plan)
    live.update(seen[0])
    assert "connected" in live.line(seen[-1]).plain
    # The server stored each dialect's telemetry under the device that sent it.
    for name in DIALECTS:
        the_id = device_id("every", name, 0)
        notes = await api.call("GET", f"/api/v1/devices/{the_id}/notifications")
        assert TELEMETRY_NAME[name] in {n["name"] for n in notes}, (name, notes)


async def test_churn_reconnects_devices_and_a_stop_ends_the_run_early(server: Server) -> None:
    plan = Plan(
        url=server.url,
        name="churn",
        mix={"native-ws": 3, "devicehive": 2, "ewelink": 2, "infiniteclouds": 2},
        duration=60.0,
        telemetry_interval=0.5,
        command_rate=0.0,
        churn_rate=2.0,
        churn_downtime=0.2,
        poll_interval=0.5,
    )
    stop = asyncio.Event()

    def stop_after_3s(progress: Progress) -> None:
        if progress.elapsed >= 3.0:
            stop.set()  # as Ctrl-C does

    summary = await run(plan, ADMIN, stop=stop, on_progress=stop_after_3s)
    assert summary.errors == {}, summary.errors
    assert summary.connections.churned >= 4
    assert summary.connections.connects >= 9 + summary.connections.churned - 2
    assert summary.connections.drops == 0
    # Stopped early, it still summarizes what ran, with rates over the time it ran.
    assert summary.stopped_early
    assert summary.load_seconds < 30
    assert any("stopped early" in w for w in summary.warnings)
    assert summary.telemetry.per_second == pytest.approx(
        summary.telemetry.sent / summary.load_seconds, rel=0.01
    )


async def test_cli_json_summary_with_workers_then_cleanup(
    server: Server,
    api: ApiClient,
) -> None:
    result = await asyncio.to_thread(
        server.cli,
        "sim", "--mix", ",".join(f"{n}=1" for n in DIALECTS), "--name", "cli",
        "--duration", "3", "--telemetry-interval", "500ms", "--command-rate", "7",
        "--command-timeout", "30s",
        "--poll-interval", "500ms", "--processes", "2", "--json", timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, explain(result)
    summary = json.loads(result.stdout)
    assert summary["error_count"] == 0, summary["errors"]
    assert set(summary["dialects"]) == set(DIALECTS)
    assert all(d["connected_at_end"] == 1 for d in summary["dialects"].values())
    assert summary["commands"]["succeeded"] == summary["commands"]["sent"] > 0
    for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "count"):
        assert key in summary["commands"]["round_trip"]
    assert len(summary["simulator"]) == 3  # two workers and the coordinator
    assert {"cpu_seconds", "rss_bytes", "core_share", "open_fds"} <= set(summary["simulator"][0])
    assert summary["plan"]["name"] == "cli"
    assert "password" not in result.stdout

    cleaned = await asyncio.to_thread(server.cli, "sim", "--cleanup", "--name", "cli", "--json")
    assert cleaned.returncode == 0, explain(cleaned)
    assert json.loads(cleaned.stdout) == {
        "name": "cli", "devices": 7, "user": True, "network": True,
    }  # fmt: skip
    for name in DIALECTS:
        with pytest.raises(ApiError) as gone:
            await api.call("GET", f"/api/v1/devices/{device_id('cli', name, 0)}")
        assert gone.value.http_status == 404
    assert await api.call("GET", "/api/v1/networks", params={"name": "sim-cli"}) == []
    assert await api.call("GET", "/api/v1/users", params={"login": "sim-cli"}) == []
    again = await asyncio.to_thread(server.cli, "sim", "--cleanup", "--name", "cli")
    assert again.returncode == 0, explain(again)
    assert "removed 0 devices" in again.stdout


async def test_a_device_id_taken_outside_the_run_is_refused(
    server: Server,
    api: ApiClient,
) -> None:
    taken = device_id("taken", "native-ws", 0)
    await api.call("POST", "/api/v1/devices", body={"id": taken, "name": "someone else's"})
    with pytest.raises(Exception, match="already exists outside network sim-taken"):
        await run(Plan(url=server.url, name="taken", mix={"native-ws": 1}, duration=1), ADMIN)
    device = await api.call("GET", f"/api/v1/devices/{taken}")
    assert device["name"] == "someone else's"  # untouched


async def test_wrong_credentials_fail_before_anything_is_made(server: Server) -> None:
    plan = Plan(url=server.url, name="nope", mix={"native-ws": 1}, duration=1)
    with pytest.raises(ApiError):
        await run(plan, Credentials(login="admin", password="wrong"))


# --- the command line's checks (no server needed) ---------------------------------------------


def cli(*args: str) -> Any:
    app = typer.Typer(cls=ClientGroup)
    app.callback()(lambda: None)
    env = {"TETHER_LOGIN": "admin", "TETHER_PASSWORD": "x", "COLUMNS": "200"}
    return CliRunner().invoke(app, ["sim", *args], env=env)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--mix", "lora=5"], "--mix"),
        (["--mix", "ewelink=many"], "not a whole number"),
        (["--devices", "1000000"], "over the bound of 100000"),
        (["--devices", "5", "--mix", "ewelink=3"], "--devices"),
        (["--duration", "0"], "--duration"),
        (["--duration", "soon"], "is not a duration"),
        (["--name", "Has Space"], "--name"),
        (["--processes", "0"], "--processes"),
        (["--payload", "99999999"], "--payload"),
        (["--url", "ftp://127.0.0.1"], "--url"),
    ],
)
def test_bad_options_are_clear_errors(args: list[str], words: str) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_a_non_local_server_needs_yes() -> None:
    result = cli("--url", "http://192.0.2.10:8080", "--devices", "10")
    assert result.exit_code == 1, result.output
    assert "is not this machine" in result.output
    assert "Refusing without --yes" in result.output


def test_the_command_is_listed_and_documented() -> None:
    result = subprocess.run(
        [*TETHER, "--help"], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert " sim " in result.stdout
    help_text = cli("--help").output
    for option in ("--mix", "--command-rate", "--churn-rate", "--processes", "--cleanup"):
        assert option in help_text
