"""Hostile frames on the live WebSockets: an error frame each, never a crash or a close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.api.test_codec import frame_like
from tests.support import Running, running


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(tmp_path) as server:
        yield server


async def test_hostile_frames_get_error_frames(tether: Running) -> None:
    credential = await tether.device("fuzz-1")
    frames: list[bytes] = []

    # Hypothesis generates the frames; the socket work happens outside its (sync) test.
    @settings(
        max_examples=150, suppress_health_check=list(HealthCheck), database=None, deadline=None
    )
    @given(st.binary(max_size=120) | frame_like.map(msgspec.json.encode))
    def collect(raw: bytes) -> None:
        frames.append(raw)

    collect()
    async with (
        tether.session.ws_connect(
            tether.ws_url + "/api/v1/device/ws?deviceId=fuzz-1",
            headers={"Authorization": f"Bearer {credential}"},
        ) as device_ws,
        tether.session.ws_connect(tether.ws_url + "/api/v1/ws", headers=tether.auth) as client_ws,
    ):
        for ws in (device_ws, client_ws):
            for raw in frames:
                try:
                    await ws.send_str(raw.decode())
                except UnicodeDecodeError:
                    await ws.send_bytes(raw)
            # The connection is still open and still answers.
            await ws.send_str('{"type":"ping","requestId":"alive"}')
            while True:
                reply = await asyncio.wait_for(ws.receive_json(), 10)
                assert reply["type"] in ("response", "error", "event", "command")
                if reply.get("requestId") == "alive":
                    break
            assert not ws.closed
    health = await tether.call("GET", "/healthz")
    assert health["status"] == "ok"
