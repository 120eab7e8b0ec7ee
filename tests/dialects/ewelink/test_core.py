"""Cross-dialect: the native API commands an eWeLink device; reports are core notifications;
TH10/TH16 targets and multi-channel switches on the emulated device; firmware upgrade."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.dialects.ewelink.helpers import DEVICE, app_socket, device_running, world
from tests.support import ADMIN_PASSWORD

from tether.cli_commands.agent_ewelink import initial_params


async def _until(predicate: Any, what: str) -> None:
    for _ in range(800):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"timed out waiting for {what}")


async def test_native_api_commands_an_ewelink_device(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        async with device_running(w) as device:
            await w.device_online()
            made = await w.r.call(
                "POST",
                f"/api/v1/devices/{DEVICE}/commands?wait=20",
                json={"name": "update", "parameters": {"switch": "on"}},
                expect=200,
            )
            assert made["state"] == "succeeded"
            assert device.params["switch"] == "on"
            sent = [t for d, t in device.transcript if '"from":"app"' in t]
            assert sent == [
                '{"action":"update","deviceid":"100008db11","apikey":"'
                + str(device.apikey)
                + f'","userAgent":"app","sequence":"{made["id"]}","ts":0,'
                '"params":{"switch":"on"},"from":"app"}'
            ]
            refused = await w.r.call(
                "POST",
                f"/api/v1/devices/{DEVICE}/commands",
                json={"name": "reboot", "parameters": {}},
                expect=400,
            )
            assert "update" in str(refused)
            # Device reports are core notifications named "update".
            listed = await w.r.call("GET", f"/api/v1/devices/{DEVICE}/notifications", expect=200)
            items = listed["items"] if isinstance(listed, dict) else listed
            params = [n["parameters"] for n in items if n["name"] == "update"]
            assert {"switch": "on"} in params
            assert any(p.get("fwVersion") == "1.5.5" for p in params)
            state = await w.r.call("GET", f"/api/v1/devices/{DEVICE}/state", expect=200)
            assert state["reported"]["switch"] == "on"


async def test_th16_targets_apply_on_the_device_and_reach_the_app(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        apikey = login["user"]["apikey"]
        params = initial_params(1, True, {"currentTemperature": "22"})
        async with app_socket(w, login) as app, device_running(w, params=params) as device:
            # The seed's update: switch on below 28 degrees; 22 is below, so it switches on.
            await app.send(
                {
                    "action": "update",
                    "apikey": apikey,
                    "deviceid": DEVICE,
                    "params": {
                        "deviceType": "temperature",
                        "mainSwitch": "on",
                        "targets": [
                            {"targetHigh": "28", "reaction": {"switch": "off"}},
                            {"targetLow": "28", "reaction": {"switch": "on"}},
                        ],
                    },
                    "sequence": "1519293442952",
                    "userAgent": "app",
                }
            )
            assert (await app.reply_to("1519293442952"))["error"] == 0
            await _until(lambda: device.params["switch"] == "on", "the reaction")
            # Warmer than the high target: the first reaction (off) applies.
            await device.change({"currentTemperature": "29.5"})
            assert device.params["switch"] == "off"
            while True:
                pushed = await app.push("update")
                if pushed["params"].get("currentTemperature") == "29.5":
                    break
            assert pushed["params"] == {"currentTemperature": "29.5", "switch": "off"}
            # Manual mode: no reaction any more.
            await app.send(
                {
                    "action": "update",
                    "apikey": apikey,
                    "deviceid": DEVICE,
                    "sequence": "m",
                    "params": {"deviceType": "normal", "mainSwitch": "off"},
                }
            )
            assert (await app.reply_to("m"))["error"] == 0
            await device.change({"currentTemperature": "10"})
            assert device.params["switch"] == "off"
            stored = await w.hub.twins.own_state(await w.hub.directory.device(DEVICE))
            assert stored.reported["targets"][1] == {
                "targetLow": "28",
                "reaction": {"switch": "on"},
            }
            assert stored.reported["currentTemperature"] == "10"


async def test_multi_channel_switches_merge_by_outlet(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        apikey = login["user"]["apikey"]
        async with (
            app_socket(w, login) as app,
            device_running(w, params=initial_params(4, False, None)) as device,
        ):
            await app.send(
                {
                    "action": "update",
                    "apikey": apikey,
                    "deviceid": DEVICE,
                    "sequence": 1,
                    "params": {"switches": [{"outlet": 2, "switch": "on"}]},
                }
            )
            assert (await app.reply_to(1))["error"] == 0
            assert [s["switch"] for s in device.params["switches"]] == ["off", "off", "on", "off"]
            await app.send(
                {
                    "action": "query",
                    "apikey": apikey,
                    "deviceid": DEVICE,
                    "sequence": 2,
                    "params": ["switches"],
                }
            )
            answer = await app.reply_to(2)
            assert answer["params"]["switches"] == [
                {"switch": "off", "outlet": 0},
                {"switch": "off", "outlet": 1},
                {"switch": "on", "outlet": 2},
                {"switch": "off", "outlet": 3},
            ]


async def test_firmware_target_sends_upgrade(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        admin = await w.hub.auth.principal(w.r.token)
        await w.hub.twins.set_firmware(
            admin,
            version="1.6.0",
            url="http://127.0.0.1:9/ota/user1.bin",
            sha256="ab" * 32,
            device_id=DEVICE,
        )
        async with device_running(w) as device:
            await _until(lambda: bool(device.upgrades), "the upgrade")
            [upgrade] = device.upgrades
            assert upgrade["params"] == {
                "model": "ITA-GZ1-GL",
                "version": "1.6.0",
                "binList": [
                    {
                        "downloadUrl": "http://127.0.0.1:9/ota/user1.bin",
                        "digest": "ab" * 32,
                        "name": "user1.bin",
                    }
                ],
            }
            assert upgrade["apikey"] == device.apikey


async def test_devicehive_client_commands_an_ewelink_device(tmp_path: Path) -> None:
    """The official DeviceHive client (REST) switches a Sonoff: cross-dialect both ways."""
    from devicehive import DeviceHiveApi

    async with world(tmp_path) as w:
        await w.add_device()
        async with w.r.session.post(
            w.r.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
        ) as response:
            assert response.status == 201, await response.text()
            refresh = (await response.json())["refreshToken"]

        def insert() -> int:
            api = DeviceHiveApi(w.r.url + "/api/rest", refresh_token=refresh)
            command = api.get_device(DEVICE).send_command(
                "update", parameters={"switch": "on"}, lifetime=30
            )
            return int(command.id)

        async with device_running(w) as device:
            await w.device_online()
            command_id = await asyncio.to_thread(insert)
            await _until(lambda: device.params.get("switch") == "on", "the switch to turn on")
            done = await w.r.call("GET", f"/api/v1/commands/{command_id}?wait=10", expect=200)
            assert done["state"] == "succeeded"


async def test_reports_compare_firmware_through_a_cache(tmp_path: Path) -> None:
    """Design 6: a report carrying ``fwVersion`` reads no firmware target from the store
    within the cache's TTL, and a target set meanwhile is still offered after it."""
    async with world(tmp_path, firmware_cache_ttl=0.5) as w:
        await w.add_device()
        store = w.hub.store.firmware
        reads = 0
        read = store.current

        async def counted(**keys: Any) -> Any:
            nonlocal reads
            reads += 1
            return await read(**keys)

        store.current = counted  # type: ignore[method-assign]
        async with device_running(w) as device:
            connect_reads = reads  # a connect always reads
            for version in ("1.5.5", "1.5.4") * 10:
                await device.request(
                    {**device._message("update"), "params": {"fwVersion": version}}
                )
            assert reads - connect_reads <= 1
            admin = await w.hub.auth.principal(w.r.token)
            await w.hub.twins.set_firmware(
                admin, version="1.6.0", url="http://127.0.0.1:9/ota/user1.bin", device_id=DEVICE
            )
            await asyncio.sleep(0.6)  # the TTL, not a sync
            await device.request({**device._message("update"), "params": {"fwVersion": "1.5.5"}})
            await _until(lambda: bool(device.upgrades), "the upgrade")
            assert device.upgrades[0]["params"]["version"] == "1.6.0"
