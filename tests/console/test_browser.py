"""The console in a real Chromium, driven by role and label as a screen reader would.

Against a real ``tether serve`` and real ``tether agent native`` processes: signing in,
live presence, a command to a running agent reaching ``succeeded``, a notification
arriving live and charted, invalid JSON refused, and a client user kept to its network.
Every test also fails on any script error in the page (the ``console`` fixture).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import WebSocketRoute, expect
from tests.console.conftest import Console, Server, stop

pytestmark = pytest.mark.slow


def test_sign_in_refuses_a_wrong_password_then_signs_in_and_out(console: Console) -> None:
    page = console.page
    console.open()
    # By keyboard alone: the login field has the focus, Tab moves on, Enter submits.
    expect(page.get_by_label("Login")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("refused")
    console.sign_in()
    expect(page.get_by_role("link", name="Administration")).to_be_visible()
    expect(page.get_by_text("Live: connected")).to_be_visible()
    token = page.evaluate("sessionStorage.getItem('tether.session')")
    assert "accessToken" in token
    assert "accessToken" not in page.url
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tether.session')") is None


def test_register_a_device_then_presence_follows_its_agent_live(
    console: Console, server: Server
) -> None:
    page = console.page
    console.sign_in()
    console.open("/devices")
    page.get_by_role("link", name="Register a device").click()
    page.get_by_label("Device id").fill("porch-lamp")
    page.get_by_label("Name", exact=True).fill("Porch lamp")
    page.get_by_role("button", name="Register").click()
    page.get_by_role("button", name="Issue credential").click()
    credential = page.get_by_label("New device credential").inner_text().strip()
    assert len(credential) > 20

    console.open("/devices")
    cell = page.get_by_role("row", name=re.compile(r"^porch-lamp\b")).get_by_role("cell").nth(5)
    expect(cell).to_have_text("offline")
    agent = server.agent("porch-lamp", credential)
    expect(cell).to_have_text("online", timeout=30_000)  # no reload: the WebSocket said so
    stop(agent)
    # The agent read its shadow at start; that must not keep it "online" once it is gone.
    expect(cell).to_have_text("offline", timeout=5_000)


def test_a_command_reaches_succeeded_on_a_running_agent(console: Console, server: Server) -> None:
    credential = server.device("hall-lamp", name="Hall lamp")
    server.agent("hall-lamp", credential)
    page = console.page
    console.sign_in()
    console.open("/devices")
    page.get_by_role("link", name="hall-lamp", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("Hall lamp"))).to_contain_text(
        "online", timeout=30_000
    )
    page.get_by_label("Command", exact=True).fill("echo")
    page.get_by_label("Parameters").fill('{"hello": "world"}')
    page.get_by_role("button", name="Send").click()
    row = page.get_by_role("row", name=re.compile(r"^\d+ echo"))
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text('"hello": "world"')
    outcome = page.get_by_text(re.compile(r"^Command \d+ succeeded"))  # the form's own line
    expect(outcome).to_be_visible()


def test_invalid_json_is_refused_before_sending(console: Console, server: Server) -> None:
    server.device("json-check")
    page = console.page
    console.sign_in()
    console.open("/devices/json-check")
    page.get_by_label("Command", exact=True).fill("echo")
    page.get_by_label("Parameters").fill("{not json")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert").filter(has_text="not valid JSON")).to_be_visible()
    expect(page.get_by_label("Parameters")).to_have_attribute("aria-invalid", "true")
    assert server.call("GET", "/api/v1/devices/json-check/commands") == []


def test_a_notification_appears_live_and_is_charted(console: Console, server: Server) -> None:
    credential = server.device("greenhouse", name="Greenhouse sensor")
    server.agent("greenhouse", credential)  # for the screenshots: online, a finished command
    now = datetime.now(UTC)
    # Some history for the chart: a temperature every few minutes over the last hour.
    for minutes, celsius in ((50, 17.5), (40, 18.2), (30, 19.6), (20, 21.0), (10, 20.4)):
        at = (now - timedelta(minutes=minutes)).isoformat()
        note = {"name": "temp", "parameters": {"celsius": celsius}, "timestamp": at}
        server.call("POST", "/api/v1/device/greenhouse/notifications", note, token=credential)
    page = console.page
    console.sign_in()
    console.open("/devices/greenhouse")
    figure = page.locator("figure.chart-figure")
    expect(figure).to_contain_text("temp.celsius: 5 points")
    note = {"name": "temp", "parameters": {"celsius": 22.75}}
    server.call("POST", "/api/v1/device/greenhouse/notifications", note, token=credential)
    table = page.get_by_role("table", name="Latest notifications")
    expect(table.get_by_role("row").nth(1)).to_contain_text("22.75")  # newest first, live
    expect(figure).to_contain_text("temp.celsius: 6 points, last 22.75")
    expect(page.get_by_role("img", name=re.compile("last 22.75"))).to_be_visible()

    # The pictures in docs/console.md, when asked for.
    command = {"name": "steps", "parameters": {"steps": ["measure", "report"]}}
    server.call("POST", "/api/v1/devices/greenhouse/commands?wait=30", command)
    expect(page.get_by_role("row", name=re.compile(r"^\d+ steps"))).to_contain_text("succeeded")
    # The agent is a separate process: on a loaded CI machine it may take seconds to connect.
    heading = page.get_by_role("heading", name=re.compile("Greenhouse"))
    expect(heading).to_contain_text("online", timeout=30_000)
    console.screenshot("device")
    console.open("/devices")
    expect(page.get_by_role("link", name="greenhouse", exact=True)).to_be_visible()
    console.screenshot("devices")
    console.open("/")
    expect(page.get_by_role("table", name=re.compile("per dialect"))).to_be_visible()
    console.screenshot("overview")


def test_a_client_sees_only_the_devices_of_its_network(console: Console, server: Server) -> None:
    network = server.call("POST", "/api/v1/networks", {"name": "north-site"})
    server.device("north-gate", networkId=network["id"])
    server.device("south-gate")
    user = {"login": "north-op", "password": "north-pass-1", "role": "client"}
    made = server.call("POST", "/api/v1/users", user)
    server.call("PUT", f"/api/v1/users/{made['id']}/networks/{network['id']}")
    page = console.page
    console.sign_in("north-op", "north-pass-1")
    expect(page.get_by_role("link", name="Administration")).to_be_hidden()
    console.open("/devices")
    expect(page.get_by_role("link", name="north-gate", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="south-gate", exact=True)).to_have_count(0)
    console.open("/devices/south-gate")
    expect(page.get_by_role("alert")).to_contain_text("No device south-gate that you can see")
    console.open("/admin")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_live_updates_resume_after_the_socket_drops(console: Console, server: Server) -> None:
    credential = server.device("attic-fan")
    page = console.page
    sockets: list[WebSocketRoute] = []

    def through(socket: WebSocketRoute) -> None:  # pass every frame on, but keep a handle
        socket.connect_to_server()
        sockets.append(socket)

    page.route_web_socket(re.compile(r"/api/v1/ws$"), through)
    console.sign_in()
    console.open("/devices/attic-fan")
    live = page.get_by_text(re.compile("^Live: "))
    expect(live).to_have_text("Live: connected")
    sockets[-1].close(code=1012, reason="restarting")  # as if the server went away
    for _ in range(200):  # it connects again by itself (backoff starts at 0.5 s)
        if len(sockets) == 2:
            break
        page.wait_for_timeout(100)
    assert len(sockets) == 2
    expect(live).to_have_text("Live: connected")
    note = {"name": "rpm", "parameters": {"rpm": 1200}}
    server.call("POST", "/api/v1/device/attic-fan/notifications", note, token=credential)
    table = page.get_by_role("table", name="Latest notifications")
    expect(table).to_contain_text('{"rpm":1200}')  # subscribed again on the new socket


def test_commands_notifications_and_administration_pages(console: Console, server: Server) -> None:
    credential = server.device("vault-door")
    command = server.call("POST", "/api/v1/devices/vault-door/commands", {"name": "open"})
    page = console.page
    console.sign_in()

    console.open("/commands?state=pending")
    row = page.get_by_role("row", name=re.compile(rf"^{command['id']} vault-door open"))
    row.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(row).to_contain_text("cancelled")
    assert server.call("GET", f"/api/v1/commands/{command['id']}")["state"] == "cancelled"

    console.open("/notifications")
    page.get_by_label("Device").fill("vault-door")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("button", name="Pause").click()
    note = {"name": "opened", "parameters": {"by": "ana"}}
    server.call("POST", "/api/v1/device/vault-door/notifications", note, token=credential)
    expect(page.get_by_text("1 new while paused")).to_be_visible()
    table = page.get_by_role("table", name=re.compile("Latest notifications"))
    expect(table).not_to_contain_text('"ana"')
    page.get_by_role("button", name="Resume").click()
    expect(table).to_contain_text('{"by":"ana"}')

    made = server.call(
        "POST", "/api/v1/users", {"login": "locked-out", "password": "locked-pass-1"}
    )
    server.call("PATCH", f"/api/v1/users/{made['id']}", {"status": "locked"})
    console.open("/admin")
    users = page.get_by_role("table", name="Users")
    users.get_by_role("row", name=re.compile("^locked-out")).get_by_role("button").click()
    expect(users.get_by_role("row", name=re.compile("^locked-out"))).to_contain_text("active")
    page.get_by_label("New key name").fill("ci-key")
    page.get_by_role("button", name="Create API key").click()
    expect(page.locator(".secret code")).to_contain_text("tk_")
