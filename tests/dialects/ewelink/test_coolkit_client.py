"""The PyPI client ``coolkit-client-phoenix`` (v1 HTTP + WebSocket), unmodified, against Tether.

Only its URLs are redirected (it hard-codes the CoolKit region hosts with https/wss):
``CoolkitSession.get_api_endpoint_url``, ``get_dispatch_endpoint_url`` and
``get_ws_endpoint`` are replaced for the test. Its state is class-level, so it is reset
around the test; importing it creates ``sonoff_client.log`` in the working directory, so
the test runs in a temporary one.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.ewelink.helpers import DEVICE, EMAIL, PASSWORD, device_running, world


async def _until(predicate: Any, what: str) -> None:
    for _ in range(800):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


async def test_coolkit_client_logs_in_lists_switches_and_observes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    const = importlib.import_module("coolkit_client.const")
    session_mod = importlib.import_module("coolkit_client.session")
    control_mod = importlib.import_module("coolkit_client.device_control")
    discover_mod = importlib.import_module("coolkit_client.discover")
    repo_mod = importlib.import_module("coolkit_client.devices_repository")
    session_cls = session_mod.CoolkitSession
    control = control_mod.CoolkitDeviceControl
    repository = repo_mod.CoolkitDevicesRepository
    monkeypatch.setattr(repository, "_devices", {})
    monkeypatch.setattr(control, "_websocket", None)
    monkeypatch.setattr(control, "_ready", False)
    apps = {const.COOLKIT_APP_ID: const.COOLKIT_APP_SECRET.decode()}
    async with world(tmp_path, apps=apps) as w:
        base, ws_base = w.r.url, w.r.ws_url
        monkeypatch.setattr(
            session_cls, "get_api_endpoint_url", classmethod(lambda cls, a: f"{base}/{a}")
        )
        monkeypatch.setattr(
            session_cls, "get_dispatch_endpoint_url", classmethod(lambda cls, a: f"{base}/{a}")
        )
        monkeypatch.setattr(
            session_cls, "get_ws_endpoint", classmethod(lambda cls: f"{ws_base}/api/ws")
        )
        await w.add_device()
        async with device_running(w) as device:
            assert not await session_cls.login(EMAIL, "wrong-password", "us")
            assert await session_cls.login(EMAIL, PASSWORD, "us")
            assert await discover_mod.CoolkitDevicesDiscovery.discover()
            found = repository.get_device(DEVICE)
            assert found is not None
            assert found.brand == "SONOFF"
            assert len(found.switches) == 1
            assert await control.connect()
            listener = asyncio.create_task(control._listen_ws())
            seen: asyncio.Queue[bool] = asyncio.Queue()

            async def on_state(_switch: Any, state: bool) -> None:
                seen.put_nowait(state)

            switch = found.switches[0]
            try:
                await switch.set_state(True)
                await _until(lambda: device.params["switch"] == "on", "the device to switch on")
                switch.add_state_callback("test", on_state)
                # A button press on the device: the pushed report reaches the client.
                await device.change({"switch": "off"})
                assert await asyncio.wait_for(seen.get(), 20) is False
                assert switch.get_state() is False
                await switch.set_state(True)
                assert await asyncio.wait_for(seen.get(), 20) is True  # its own local echo
                await _until(lambda: device.params["switch"] == "on", "the device to switch on")
                await switch.set_state(False)
                await _until(lambda: device.params["switch"] == "off", "the device to switch off")
                assert await asyncio.wait_for(seen.get(), 20) is False
                state = await w.hub.twins.own_state(await w.hub.directory.device(DEVICE))
                assert state.reported["switch"] == "off"
            finally:
                if control._websocket is not None:
                    await control.disconnect()
                for _ in range(10):
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                        await asyncio.wait_for(asyncio.shield(listener), 0.5)
                    if listener.done():
                        break
