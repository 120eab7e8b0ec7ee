"""Helpers for the OpenGate tests: real sockets, agents as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from tests.support import Running

TETHER = [sys.executable, "-m", "tether.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def og_device(tether: Running, device_id: str, **attributes: Any) -> str:
    """An OpenGate device with ``attributes``; returns its X-ApiKey (its credential)."""
    return await tether.device(device_id, dialect="opengate", attributes=attributes)


def south(tether: Running, device_id: str, tail: str) -> str:
    return f"{tether.url}/south/v80/devices/{device_id}/{tail}"


@contextlib.asynccontextmanager
async def agent_process(*args: str, ready: str | None = "serving") -> AsyncIterator[Any]:
    """``tether agent opengate ...`` as a subprocess; waits for its ready line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = await asyncio.create_subprocess_exec(
        *TETHER,
        "agent",
        "opengate",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            lines.append(raw.decode(errors="replace"))

    reader = asyncio.create_task(read())
    try:
        if ready is not None:
            async with asyncio.timeout(120):
                while not any(ready in line for line in lines):
                    if process.returncode is not None:
                        raise AssertionError("agent exited:\n" + "".join(lines))
                    await asyncio.sleep(0.05)
        process.lines = lines  # type: ignore[attr-defined]
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def next_frame(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 90
) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await asyncio.wait_for(ws.receive_json(), timeout)
        if frame["type"] == kind:
            return frame


@contextlib.asynccontextmanager
async def watching(
    tether: Running, device_id: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A native client WebSocket subscribed to the device's command updates."""
    async with tether.session.ws_connect(
        tether.ws_url + "/api/v1/ws", headers=tether.auth
    ) as client:
        await client.send_json(
            {
                "type": "subscribe",
                "requestId": 1,
                "topic": "command_update",
                "deviceIds": [device_id],
            }
        )
        await next_frame(client, "response")
        yield client


async def updates_until(
    client: aiohttp.ClientWebSocketResponse, command_id: int, final: str
) -> list[dict[str, Any]]:
    """Every update of the command seen by the subscribed client, until ``final``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["state"] != final:
        event = await next_frame(client, "event")
        if event["data"]["id"] == command_id:
            seen.append(event["data"])
            if event["data"]["state"] in ("failed", "expired", "timed_out", "cancelled"):
                break
    return seen


async def wait_state(
    tether: Running, command_id: int, states: set[str], timeout: float = 60
) -> dict[str, Any]:
    """Poll the native API until the command is in one of ``states``."""
    async with asyncio.timeout(timeout):
        while True:
            command: dict[str, Any] = await tether.call(
                "GET", f"/api/v1/commands/{command_id}", expect=200
            )
            if command["state"] in states:
                return command
            await asyncio.sleep(0.05)
