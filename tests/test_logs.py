"""The one logging setup: text or JSON lines, with the request and device ids of the work."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tether import logs
from tether.web import log_context_middleware


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


SERVE = [sys.executable, "-m", "tether.cli", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("restore_logging")
def test_json_format_is_one_object_per_line_with_the_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", "json")
    log = logging.getLogger("tether.test")
    with logs.bind(request="r-1", device="lamp-1"):
        log.info("hello %s", "there")
    log.debug("not at info")
    log.warning("no ids here")
    lines = json_lines(capsys.readouterr().err)
    assert len(lines) == 2
    first, second = lines
    assert first["message"] == "hello there"
    assert (first["level"], first["logger"]) == ("INFO", "tether.test")
    assert (first["request_id"], first["device_id"]) == ("r-1", "lamp-1")
    assert str(first["time"]).endswith("Z")  # ISO 8601, UTC
    assert "request_id" not in second


@pytest.mark.usefixtures("restore_logging")
def test_text_format_and_the_access_logger(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("warning", "text")
    logging.getLogger("tether.test").warning("plain")
    assert logging.getLogger(logs.ACCESS_LOGGER).getEffectiveLevel() == logging.WARNING
    err = capsys.readouterr().err
    assert " WARNING tether.test: plain" in err
    assert not json_lines(err)


@pytest.mark.usefixtures("restore_logging")
async def test_a_request_logs_with_its_request_and_device_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("info", "json")

    async def handler(request: web.Request) -> web.Response:
        logging.getLogger("tether.test").info("handling")
        return web.Response(text="ok")

    app = web.Application(middlewares=[log_context_middleware])
    app.router.add_get("/api/v1/device/{device_id}/state", handler)
    app.router.add_get("/push", handler)
    async with TestClient(TestServer(app)) as client:
        given = await client.get("/api/v1/device/lamp-7/state", headers={"X-Request-Id": "abc"})
        assert given.headers["X-Request-Id"] == "abc"
        made = await client.get("/api/v1/device/lamp-8/state")
        generated = made.headers["X-Request-Id"]
        assert len(generated) == 32
        polled = await client.get("/push?deviceId=4242", headers={"X-Request-Id": "x\ty"})
        assert polled.headers["X-Request-Id"] != "x\ty"  # not printable: replaced
    handled = [
        line for line in json_lines(capsys.readouterr().err) if line["message"] == "handling"
    ]
    assert [(line["request_id"], line["device_id"]) for line in handled] == [
        ("abc", "lamp-7"),
        (generated, "lamp-8"),
        (polled.headers["X-Request-Id"], "4242"),
    ]


def test_serve_with_json_logs_writes_only_json_lines(tmp_path: Path) -> None:
    """``tether serve --log-format json``: every line it writes is one JSON object, the
    access log's (``access_log = true``) included."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(
        TETHER_ADMIN_PASSWORD="json-admin-1", TETHER_LOG_FORMAT="json", TETHER_ACCESS_LOG="true"
    )
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [*SERVE, "--port", str(port), "--data-dir", str(tmp_path / "data")],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    messages = [str(line["message"]) for line in lines]
    assert any(message.startswith("Tether ") and "listening on" in message for message in messages)
    assert any(message.startswith("ready as node") for message in messages)
    assert any(message.startswith("stopped in") for message in messages)
    assert all({"level", "logger", "message", "time"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    ready = [line for line in access if line["status"] == 200 and line["route"] == "/readyz"]
    assert ready, access
    assert ready[0]["method"] == "GET"
    assert ready[0]["path"] == "/readyz"
    assert len(str(ready[0]["request_id"])) == 32
    assert float(str(ready[0]["duration_ms"])) >= 0
