"""Issue 18's eWeLink conformance gaps, each over real sockets against a running Tether.

The v2 catch-all, the three v2 calls ``ewelink-api-next`` makes (home page, batch status,
OTA query), the order of an app's ack and the report it caused, the echo of an app's
update to the owner's other sessions, sessions of a replaced ``at``, and the refresh
answer's user. The real npm client is driven in ``test_ewelink_api_next.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from tests.dialects.ewelink.helpers import (
    APPID,
    DEVICE,
    EMAIL,
    SECRET,
    AppSocket,
    app_socket,
    device_running,
    world,
)
from tests.dialects.ewelink.test_v2_tls import v2, v2_login

from tether.dialects.ewelink import codec

#: A second app id, so a v2 login does not replace the WebSocket sessions' ``at``.
OTHER_APP = "otherAppId000000000000000000000B"


def update(apikey: str, sequence: str, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": "update",
        "deviceid": DEVICE,
        "apikey": apikey,
        "userAgent": "app",
        "sequence": sequence,
        "ts": 0,
        "params": params,
    }


async def test_unknown_v2_paths_answer_200_with_api_not_found(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        at = (await v2_login(w))["data"]["at"]
        for method, path in (
            ("POST", "/v2/no/such/api"),
            ("GET", "/v2/homepage"),  # a known path with the wrong method
            ("PUT", "/v2/device/thing"),
            ("POST", "/v2/"),
        ):
            answer = await v2(w, method, path, at, json={})
            assert answer == {"error": 403, "msg": "API not found", "data": {}}, path


async def test_home_page_answers_what_is_asked(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        data = (await v2_login(w))["data"]
        body = {"getUser": {}, "getFamily": {}, "getThing": {"num": 30}, "getScene": {}}
        answer = await v2(w, "POST", "/v2/homepage", data["at"], json=body)
        assert answer["error"] == 0, answer
        page = answer["data"]
        assert page["userInfo"]["apikey"] == data["user"]["apikey"]
        assert page["userInfo"]["email"] == EMAIL
        assert page["familyInfo"]["currentFamilyId"] == "home"
        assert [t["itemData"]["deviceid"] for t in page["thingInfo"]["thingList"]] == [DEVICE]
        assert page["sceneInfo"] == {"sceneList": [], "total": 0}
        assert "messageInfo" not in page
        answer = await v2(w, "POST", "/v2/homepage", "not-a-token", json=body)
        assert answer["error"] == 401


async def test_batch_status_switches_devices_and_reports_each(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        at = (await v2_login(w))["data"]["at"]
        async with device_running(w) as device:
            body = {
                "thingList": [
                    {"type": 1, "id": DEVICE, "params": {"switch": "on"}},
                    {"type": 1, "id": "10000fffff", "params": {"switch": "on"}},
                    {"type": 3, "id": "group-1", "params": {"switch": "on"}},
                ],
                "timeout": 3000,
            }
            answer = await v2(w, "POST", "/v2/device/thing/batch-status", at, json=body)
            assert answer["error"] == 0, answer
            assert answer["data"]["respList"] == [
                {"type": 1, "id": DEVICE, "error": 0},
                {"type": 1, "id": "10000fffff", "error": 403},
                {"type": 3, "id": "group-1", "error": 400},
            ]
            assert device.params["switch"] == "on"
            # timeout 0: sent, not waited for.
            body = {"thingList": [{"type": 1, "id": DEVICE, "params": {"switch": "off"}}]}
            answer = await v2(w, "POST", "/v2/device/thing/batch-status", at, json=body)
            assert answer["data"]["respList"] == [{"type": 1, "id": DEVICE, "error": 0}]
            for _ in range(400):
                if device.params["switch"] == "off":
                    break
                await asyncio.sleep(0.025)
            assert device.params["switch"] == "off"
        for bad in ({"thingList": []} | {"timeout": 8001}, {"thingList": "x"}):
            answer = await v2(w, "POST", "/v2/device/thing/batch-status", at, json=bad)
            assert answer["error"] == 400, bad
        offline = {"thingList": [{"type": 1, "id": DEVICE, "params": {"switch": "on"}}]}
        answer = await v2(w, "POST", "/v2/device/thing/batch-status", at, json=offline)
        assert answer["data"]["respList"] == [{"type": 1, "id": DEVICE, "error": 503}]


async def test_ota_query_answers_from_the_firmware_targets(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        at = (await v2_login(w))["data"]["at"]
        query = {
            "deviceInfoList": [{"deviceid": DEVICE, "model": "ITA-GZ1-GL", "version": "1.5.5"}]
        }
        answer = await v2(w, "POST", "/v2/device/ota/query", at, json=query)
        assert answer == {"error": 0, "msg": "", "data": {"otaInfoList": []}}
        admin = await w.hub.auth.principal(w.r.token)
        url = "http://127.0.0.1:9/ota/user1.bin"
        await w.hub.twins.set_firmware(
            admin, version="1.6.0", url=url, sha256="ab" * 32, device_id=DEVICE
        )
        answer = await v2(w, "POST", "/v2/device/ota/query", at, json=query)
        assert answer["data"]["otaInfoList"] == [
            {
                "deviceid": DEVICE,
                "model": "ITA-GZ1-GL",
                "version": "1.6.0",
                "binList": [{"downloadUrl": url, "digest": "ab" * 32, "name": "user1.bin"}],
            }
        ]
        current = {"deviceInfoList": [{"deviceid": DEVICE, "version": "1.6.0"}]}
        answer = await v2(w, "POST", "/v2/device/ota/query", at, json=current)
        assert answer["data"]["otaInfoList"] == []


async def next_about_switch(app: AppSocket) -> dict[str, Any]:
    """The next frame that is an answer or a push carrying ``switch``."""
    while True:
        frame = await app.recv()
        if frame == "pong":
            continue
        assert isinstance(frame, dict), frame
        if "action" not in frame or "switch" in frame.get("params", {}):
            return frame


async def test_app_ack_comes_before_the_report_it_caused(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        apikey = login["user"]["apikey"]
        async with app_socket(w, login) as app, device_running(w):
            assert "fwVersion" in (await app.push("update"))["params"]  # its start-up report
            for n, state in enumerate(("on", "off") * 5):
                await app.send(update(apikey, f"s{n}", {"switch": state}))
                first = await next_about_switch(app)
                assert "action" not in first, first  # the ack, not the device's report
                assert (first["sequence"], first["error"]) == (f"s{n}", 0)
                report = await next_about_switch(app)
                assert report["action"] == "update"
                assert report["from"] == "device"
                assert report["params"] == {"switch": state}


async def test_app_update_is_echoed_to_the_owners_other_sessions(tmp_path: Path) -> None:
    async with world(tmp_path, apps={APPID: SECRET, OTHER_APP: SECRET}) as w:
        await w.add_device()
        login = await w.login()
        apikey = login["user"]["apikey"]
        async with (
            app_socket(w, login) as sender,
            app_socket(w, login) as other,
            device_running(w),
        ):
            await sender.send(update(apikey, "e1", {"switch": "on"}))
            assert (await sender.reply_to("e1"))["error"] == 0
            echo = await other.push("update")
            while echo["from"] != "app":  # the device's start-up report may come first
                echo = await other.push("update")
            assert echo == {
                "action": "update",
                "deviceid": DEVICE,
                "apikey": apikey,
                "userAgent": "app",
                "sequence": "e1",
                "ts": 0,
                "params": {"switch": "on"},
                "from": "app",
            }
            # The sender gets only the device's report, never its own update back.
            report = await sender.push("update")
            while report["params"] != {"switch": "on"}:
                assert report["from"] == "device"
                report = await sender.push("update")
            assert report["from"] == "device"
            assert all(f.get("from") != "app" for f in sender.pushed)
            # An update over HTTP has no session of its own: every session hears of it.
            at = (await v2_login(w, appid=OTHER_APP))["data"]["at"]
            body = {"type": 1, "id": DEVICE, "params": {"switch": "off"}}
            answer = await v2(w, "POST", "/v2/device/thing/status", at, json=body)
            assert answer["error"] == 0
            for app in (sender, other):
                echo = await app.push("update")
                while echo["from"] != "app":
                    echo = await app.push("update")
                assert echo["params"] == {"switch": "off"}


async def closed_with_406(app: AppSocket) -> None:
    while True:
        frame = await app.recv()
        if frame == "pong":
            continue
        if isinstance(frame, dict) and frame.get("error") == 406:
            break
        assert isinstance(frame, dict), frame
    message = await app.recv()
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message


async def test_sessions_of_a_replaced_at_are_closed_with_406(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        first = await w.login()
        async with app_socket(w, first) as old:
            second = await w.login()  # same account and app: replaces first["at"]
            await closed_with_406(old)
            async with app_socket(w, second) as current:
                # Replaced elsewhere (another node's login, here written directly): the
                # session finds out at its next heartbeat.
                await w.hub.dialect_state.delete("ewelink", f"tok:{codec.token_hash(second['at'])}")
                await current.ws.send_str("ping")
                assert await current.recv() == "pong"
                await closed_with_406(current)


async def test_refresh_answers_the_user_like_the_login(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        data = (await v2_login(w))["data"]
        refreshed = await v2(w, "POST", "/v2/user/refresh", data["at"], json={"rt": data["rt"]})
        assert refreshed["error"] == 0
        assert refreshed["data"]["user"] == data["user"] | {"countryCode": ""}
        assert refreshed["data"]["region"] == data["region"]
