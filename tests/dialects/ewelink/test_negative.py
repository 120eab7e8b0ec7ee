"""Negative cases: each gets the protocol's error, and the connection and server survive."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from tests.dialects.ewelink.helpers import (
    APPID,
    DEVICE,
    EMAIL,
    FACTORY,
    PASSWORD,
    app_socket,
    device_running,
    world,
)

from tether.dialects.ewelink.agent import EmulatedSonoff, RegisterRefused


async def test_login_errors_and_stale_token(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        url = w.r.url + "/api/user/login"
        body = json.dumps({"appid": APPID, "email": EMAIL, "password": PASSWORD})
        # A bad signature: 406, HTTP 200, with the info string clients print.
        async with w.r.session.post(
            url, data=body, headers={"Authorization": "Sign AAAA"}
        ) as response:
            assert response.status == 200
            bad = await response.json(content_type=None)
        assert bad["error"] == 406
        assert bad["info"]
        # A wrong password: 401.
        wrong = await w.login(password="not-the-password")
        assert wrong["error"] == 401
        assert wrong["info"]
        # The server survives, and a new login invalidates the previous `at`.
        first = await w.login()
        second = await w.login()
        assert first["at"] != second["at"]
        assert first["user"]["apikey"] == second["user"]["apikey"]
        stale = {"Authorization": "Bearer " + first["at"]}
        async with w.r.session.get(w.r.url + "/api/user/device", headers=stale) as response:
            assert response.status == 200
            assert (await response.json())["error"] == 401
        async with w.r.session.ws_connect(w.r.ws_url + "/api/ws") as ws:
            await ws.send_json(
                {
                    "action": "userOnline",
                    "at": first["at"],
                    "apikey": first["user"]["apikey"],
                    "userAgent": "app",
                    "sequence": "s1",
                }
            )
            refused = json.loads((await ws.receive(timeout=20)).data)
            assert refused == {
                "error": 406,
                "reason": "Authentication Failed",
                "apikey": first["user"]["apikey"],
                "sequence": "s1",
                "actionName": "userOnline",
            }
            assert (await ws.receive(timeout=20)).type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            )
        fresh = {"Authorization": "Bearer " + second["at"]}
        async with w.r.session.get(w.r.url + "/api/user/device", headers=fresh) as response:
            assert await response.json() == []


async def test_offline_device_gets_503_at_once(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        async with app_socket(w, login) as app:
            started = time.monotonic()
            await app.send(
                {
                    "action": "update",
                    "deviceid": DEVICE,
                    "apikey": login["user"]["apikey"],
                    "sequence": "off-1",
                    "params": {"switch": "on"},
                }
            )
            reply = await app.reply_to("off-1")
            assert time.monotonic() - started < 2
            assert reply == {
                "error": 503,
                "reason": "Device Offline",
                "deviceid": DEVICE,
                "apikey": login["user"]["apikey"],
                "sequence": "off-1",
            }
            await app.ws.send_str("ping")
            assert await app.recv() == "pong"


async def test_device_that_never_acks_gets_504_and_the_session_survives(tmp_path: Path) -> None:
    async with world(tmp_path, ack_timeout=0.5) as w:
        await w.add_device()
        login = await w.login()
        apikey = login["user"]["apikey"]
        async with app_socket(w, login) as app, device_running(w, ack=False) as device:
            await app.send(
                {
                    "action": "update",
                    "deviceid": DEVICE,
                    "apikey": apikey,
                    "sequence": 77,
                    "params": {"switch": "on"},
                }
            )
            reply = await app.reply_to(77)
            assert reply == {
                "error": 504,
                "reason": "Request Timeout",
                "deviceid": DEVICE,
                "apikey": apikey,
                "sequence": 77,
            }
            assert device.params["switch"] == "off"
            # The app and the device connection are still usable.
            await app.send(
                {
                    "action": "query",
                    "deviceid": DEVICE,
                    "apikey": apikey,
                    "sequence": 78,
                    "params": [],
                }
            )
            answer = await app.reply_to(78)
            assert answer["params"]["switch"] == "off"
            assert (await device.request({**device._message("date")}))["error"] == 0
            admin = await w.hub.auth.principal(w.r.token)
            [command] = await w.hub.commands.list_commands(admin, device_id=DEVICE)
            assert command.state.value in ("expired", "cancelled", "timed_out")


async def test_unknown_factory_apikey_is_refused_and_the_socket_survives(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        impostor = EmulatedSonoff(w.r.url, DEVICE, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(RegisterRefused) as refused:
            await asyncio.wait_for(impostor.run(), 30)
        assert refused.value.code == 403
        register = next(t for d, t in impostor.transcript if d == "S>D")
        assert json.loads(register) == {"error": 403, "reason": "Forbidden", "deviceid": DEVICE}
        # The same socket may retry: a raw connection gets 403, then registers properly.
        async with w.r.session.ws_connect(w.r.ws_url + "/api/ws") as ws:
            await ws.send_json({"action": "register", "deviceid": DEVICE, "apikey": "nope"})
            assert json.loads((await ws.receive(timeout=20)).data)["error"] == 403
            await ws.send_str("not json")
            assert json.loads((await ws.receive(timeout=20)).data) == {
                "error": 400,
                "reason": "Bad Request",
            }
            await ws.send_json(
                {
                    "action": "register",
                    "deviceid": DEVICE,
                    "apikey": FACTORY,
                    "userAgent": "device",
                    "d_seq": 5,
                }
            )
            ok = json.loads((await ws.receive(timeout=20)).data)
            assert ok["error"] == 0
            assert ok["d_seq"] == 5
            assert ok["apikey"] == (await w.login())["user"]["apikey"]
            # An update without params is acked (seen in the wild), d_seq echoed.
            await ws.send_json(
                {"action": "update", "deviceid": DEVICE, "apikey": ok["apikey"], "d_seq": 6}
            )
            assert json.loads((await ws.receive(timeout=20)).data) == {
                "error": 0,
                "deviceid": DEVICE,
                "apikey": ok["apikey"],
                "d_seq": 6,
            }
            await ws.send_json({"action": "bogus", "deviceid": DEVICE, "sequence": 9})
            bogus = json.loads((await ws.receive(timeout=20)).data)
            assert bogus["error"] == 400
            assert bogus["sequence"] == 9


async def test_app_cannot_update_a_device_it_does_not_own(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        other = await w.add_user("other@example.com")
        await w.add_device(owner=other)
        login = await w.login()
        async with app_socket(w, login) as app, device_running(w) as device:
            await app.send(
                {
                    "action": "update",
                    "deviceid": DEVICE,
                    "apikey": login["user"]["apikey"],
                    "sequence": "x",
                    "params": {"switch": "on"},
                }
            )
            reply = await app.reply_to("x")
            assert reply["error"] == 403
            assert reply["reason"] == "Forbidden"
            await app.send({"action": "query", "deviceid": DEVICE, "sequence": "y", "params": []})
            assert (await app.reply_to("y"))["error"] == 403
            assert device.params["switch"] == "off"
            # Not pushed to this app either (no sysmsg/report for someone else's device).
            assert not [f for f in app.pushed if f.get("deviceid") == DEVICE]
            await app.ws.send_str("ping")
            assert await app.recv() == "pong"
