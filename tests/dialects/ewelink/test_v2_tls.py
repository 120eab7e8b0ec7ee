"""The v2 HTTP API (reference §3.2-3.5 examples) and the TLS listener (trustme CA)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from tests.dialects.ewelink.helpers import (
    APPID,
    DEVICE,
    EMAIL,
    FACTORY,
    PASSWORD,
    SECRET,
    World,
    device_running,
    world,
)

from tether.dialects.ewelink import codec
from tether.dialects.ewelink.agent import EmulatedSonoff


async def v2_login(w: World, password: str = PASSWORD, appid: str = APPID) -> dict[str, Any]:
    body = json.dumps({"countryCode": "+1", "password": password, "email": EMAIL})
    headers = {
        "X-CK-Appid": appid,
        "X-CK-Nonce": "2plz69ax",
        "Authorization": "Sign " + codec.sign(SECRET, body.encode()),
        "Content-Type": "application/json",
    }
    async with w.r.session.post(w.r.url + "/v2/user/login", data=body, headers=headers) as r:
        assert r.status == 200
        return dict(await r.json())


async def v2(w: World, method: str, path: str, at: str, **kwargs: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {at}", "X-CK-Appid": APPID, "X-CK-Nonce": "n0nce123"}
    async with w.r.session.request(method, w.r.url + path, headers=headers, **kwargs) as r:
        assert r.status == 200
        return dict(await r.json())


async def test_v2_login_things_status_and_tokens(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        assert (await v2_login(w, password="wrong-one"))["error"] == 10001
        assert (await v2_login(w, appid="unknownApp"))["error"] == 407
        login = await v2_login(w)
        assert login["error"] == 0
        assert login["msg"] == ""
        data = login["data"]
        assert len(data["at"]) == 40
        assert len(data["rt"]) == 40
        assert data["region"] == "us"
        assert data["user"]["email"] == EMAIL
        assert data["user"]["countryCode"] == "+1"
        at = data["at"]
        things = await v2(w, "GET", "/v2/device/thing?num=0", at)
        assert things["error"] == 0
        assert things["data"]["total"] == 1
        [thing] = things["data"]["thingList"]
        assert thing["itemType"] == 1
        assert thing["index"] == 0
        item = thing["itemData"]
        assert item["deviceid"] == DEVICE
        assert item["apikey"] == data["user"]["apikey"]
        assert item["devicekey"] == FACTORY
        assert item["online"] is False
        assert item["extra"]["uiid"] == 1
        # Device offline: the HTTP control path says 503 in the body.
        offline = await v2(
            w,
            "POST",
            "/v2/device/thing/status",
            at,
            json={"type": 1, "id": DEVICE, "params": {"switch": "on"}},
        )
        assert offline["error"] == 503
        assert offline["data"] == {}
        async with device_running(w) as device:
            await w.device_online()
            chosen = await v2(
                w,
                "POST",
                "/v2/device/thing",
                at,
                json={"thingList": [{"itemType": 1, "id": DEVICE}]},
            )
            assert chosen["data"]["thingList"][0]["itemData"]["online"] is True
            done = await v2(
                w,
                "POST",
                "/v2/device/thing/status",
                at,
                json={"type": 1, "id": DEVICE, "params": {"switch": "on"}},
            )
            assert done == {"error": 0, "msg": "", "data": {}}
            assert device.params["switch"] == "on"
            status = await v2(
                w,
                "GET",
                f"/v2/device/thing/status?type=1&id={DEVICE}&params=switch%7CfwVersion",
                at,
            )
            assert status == {
                "error": 0,
                "msg": "",
                "data": {"params": {"switch": "on", "fwVersion": "1.5.5"}},
            }
        # Dispatch needs no Authorization.
        async with w.r.session.get(w.r.url + "/dispatch/app") as r:
            dispatched = await r.json()
        assert dispatched["error"] == 0
        assert dispatched["reason"] == "ok"
        assert dispatched["domain"] == "127.0.0.1"
        assert dispatched["port"] == int(w.r.url.rsplit(":", 1)[1])
        profile = await v2(w, "GET", "/v2/user/profile", at)
        assert profile["data"]["user"]["apikey"] == data["user"]["apikey"]
        family = await v2(w, "GET", "/v2/family", at)
        assert family["data"]["familyList"][0]["id"] == family["data"]["currentFamilyId"]
        # Refresh: a new pair; the old at stops working.
        refreshed = await v2(w, "POST", "/v2/user/refresh", at, json={"rt": data["rt"]})
        new_at = refreshed["data"]["at"]
        assert (await v2(w, "GET", "/v2/device/thing", at))["error"] == 401
        assert (await v2(w, "GET", "/v2/device/thing", new_at))["error"] == 0
        assert (await v2(w, "DELETE", "/v2/user/logout", new_at))["error"] == 0
        assert (await v2(w, "GET", "/v2/device/thing", new_at))["error"] == 401


def test_signature_test_vector() -> None:
    body = b'{"countryCode":"+1","password":"pw","email":"u@example.com"}'
    assert codec.sign("testAppSecret", body) == "3j0yxJIERL77exJ57Ab0bNe73nTkMo5owNwzyz3dZKo="
    assert codec.verify_sign(
        "testAppSecret", body, "Sign 3j0yxJIERL77exJ57Ab0bNe73nTkMo5owNwzyz3dZKo="
    )
    assert not codec.verify_sign(
        "testAppSecret", body + b" ", "Sign 3j0yxJIERL77exJ57Ab0bNe73nTkMo5owNwzyz3dZKo="
    )


async def test_tls_listener_serves_devices_and_apps(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with world(
        tmp_path, tls_cert=cert_file, tls_key=key_file, tls_port=0, tls_host="127.0.0.1"
    ) as w:
        await w.add_device()
        base = w.r.listeners["ewelink-tls"]
        assert base.startswith("https://127.0.0.1:")

        device = EmulatedSonoff(base, DEVICE, FACTORY, ssl_context=client_ctx)
        task = asyncio.create_task(device.run())
        try:
            await asyncio.wait_for(device.registered.wait(), 30)
            body = json.dumps({"appid": APPID, "email": EMAIL, "password": PASSWORD})
            headers = {"Authorization": "Sign " + codec.sign(SECRET, body.encode())}
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    base + "/api/user/login", data=body, headers=headers, ssl=client_ctx
                ) as r:
                    login = await r.json()
                async with session.ws_connect(
                    base.replace("https", "wss") + "/api/ws", ssl=client_ctx
                ) as ws:
                    await ws.send_json(
                        {
                            "action": "userOnline",
                            "at": login["at"],
                            "apikey": login["user"]["apikey"],
                            "userAgent": "app",
                            "sequence": "1",
                        }
                    )
                    assert json.loads((await ws.receive(timeout=20)).data)["error"] == 0
                    await ws.send_json(
                        {
                            "action": "update",
                            "deviceid": DEVICE,
                            "apikey": login["user"]["apikey"],
                            "sequence": "tls",
                            "params": {"switch": "on"},
                        }
                    )
                    while True:
                        frame = json.loads((await ws.receive(timeout=20)).data)
                        if frame.get("sequence") == "tls":
                            break
                    assert frame["error"] == 0
            assert device.params["switch"] == "on"
            # Plain HTTPS without trusting the CA is refused by the client: it is real TLS.
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(base + "/dispatch/app") as r:
                        raise AssertionError(f"untrusted TLS accepted: {r.status}")
                except aiohttp.ClientConnectorCertificateError:
                    pass
        finally:
            await device.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
