"""One real ``tether serve`` and one real Chromium for the console's browser tests.

Both are module-scoped: starting a server and a browser costs seconds, and the tests keep
apart by naming what they create. Chromium is Debian's package (``/usr/bin/chromium``,
installed by ``.ci/run``); without it the tests are skipped locally and fail in CI.

With ``TETHER_CONSOLE_SCREENSHOTS=<dir>`` the tests also save the screenshots that
docs/console.md shows; without it they write nothing, so a CI run leaves the tree clean.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Playwright, sync_playwright
from tests.conftest import service_missing

CHROMIUM = os.environ.get("TETHER_TEST_CHROMIUM", "/usr/bin/chromium")
ADMIN_PASSWORD = "console-admin-1"
SCREENSHOTS = os.environ.get("TETHER_CONSOLE_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str = ""
    agents: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """One REST call (as the admin unless ``token``); raises on an error status."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token or self.token}",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def device(self, device_id: str, **fields: Any) -> str:
        """Register a device and return its new credential."""
        self.call("POST", "/api/v1/devices", {"id": device_id, "name": device_id, **fields})
        return str(self.call("POST", f"/api/v1/devices/{device_id}/credential")["credential"])

    def agent(self, device_id: str, credential: str) -> subprocess.Popen[bytes]:
        """``tether agent native`` for the device, as a user would run it."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tether.cli", "agent", "native", "--device-id", device_id,
             "--url", self.url, "--log-level", "warning"],
            env={**os.environ, "TETHER_DEVICE_CREDENTIAL": credential},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.agents.append(process)
        return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("console")
    port = free_port()
    log = open(data / "server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "serve", "--port", str(port),
         "--data-dir", str(data / "data"), "--log-level", "warning"],
        env={**os.environ, "TETHER_ADMIN_PASSWORD": ADMIN_PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )  # fmt: skip
    running = Server(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (data / "server.log").read_text()
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(running.url + "/readyz", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        login = {"login": "admin", "password": ADMIN_PASSWORD}
        running.token = running.call("POST", "/api/v1/auth/token", login, token="-")["accessToken"]
        yield running
    finally:
        for agent in running.agents:
            stop(agent)
        stop(process)
        log.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        service_missing(f"Chromium at {CHROMIUM}", FileNotFoundError(CHROMIUM))
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class Console:
    """A browser tab on the console, recording every script error it sees."""

    page: Page
    server: Server
    errors: list[str] = field(default_factory=list)

    def open(self, route: str = "/") -> None:
        self.page.goto(f"{self.server.url}/#{route}")

    def sign_in(self, login: str = "admin", password: str = ADMIN_PASSWORD) -> None:
        self.page.goto(self.server.url + "/")
        self.page.get_by_label("Login").fill(login)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Fleet overview").wait_for()

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Browser, server: Server) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    seen = Console(page, server)

    def on_console(message: ConsoleMessage) -> None:
        # A refused request (403, 404) is logged by the browser itself: not a script error.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            seen.errors.append(message.text)

    def on_error(error: Error) -> None:
        seen.errors.append(f"uncaught: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        yield seen
        assert seen.errors == [], "the console had script errors"
    finally:
        context.close()
