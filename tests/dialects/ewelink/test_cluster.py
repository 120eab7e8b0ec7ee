"""Two nodes on one PostgreSQL and Redis: an app on node B switches a device on node A."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.dialects.ewelink.helpers import (
    APPID,
    DEVICE,
    EMAIL,
    PASSWORD,
    SECRET,
    AppSocket,
    World,
    device_running,
)
from tests.support import running


@pytest.mark.postgres
@pytest.mark.redis
async def test_app_on_one_node_commands_a_device_on_another(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    common: dict[str, Any] = {
        "database_url": postgres_url,
        "bus": "redis",
        "redis_url": redis_url,
        "ewelink": {"apps": {APPID: SECRET}},
    }
    async with running(tmp_path / "a", **common) as a, running(tmp_path / "b", **common) as b:
        user = await a.hub.directory.create_user(None, login=EMAIL, password=PASSWORD)
        node_a = World(a, int(user.id))
        node_b = World(b, int(user.id))
        await node_a.add_device()
        login = await node_b.login()
        async with b.session.ws_connect(b.ws_url + "/api/ws") as ws:
            app = AppSocket(ws)
            await app.send(
                {
                    "action": "userOnline",
                    "at": login["at"],
                    "apikey": login["user"]["apikey"],
                    "userAgent": "app",
                    "sequence": "1",
                }
            )
            assert (await app.recv())["error"] == 0
            async with device_running(node_a) as device:
                # Presence and reports cross nodes: the app on B hears of the device on A.
                online = await app.push("sysmsg", timeout=30)
                assert online["params"] == {"online": True}
                assert online["apikey"] == login["user"]["apikey"]
                await app.send(
                    {
                        "action": "update",
                        "deviceid": DEVICE,
                        "apikey": login["user"]["apikey"],
                        "sequence": "across",
                        "params": {"switch": "on"},
                    }
                )
                reply = await app.reply_to("across", timeout=30)
                assert reply["error"] == 0, reply
                assert device.params["switch"] == "on"
                while True:
                    report = await app.push("update", timeout=30)
                    if report["params"] == {"switch": "on"}:
                        break
                assert report["from"] == "device"
                await device.change({"rssi": -70})
                while True:
                    report = await app.push("update", timeout=30)
                    if report["params"] == {"rssi": -70}:
                        break
            offline = await app.push("sysmsg", timeout=30)
            assert offline["params"] == {"online": False}
        # Gone from node A: node B answers 503 (once the cluster registry says so).
        async with b.session.ws_connect(b.ws_url + "/api/ws") as ws:
            app = AppSocket(ws)
            await app.send(
                {
                    "action": "userOnline",
                    "at": login["at"],
                    "apikey": login["user"]["apikey"],
                    "userAgent": "app",
                    "sequence": "2",
                }
            )
            assert (await app.recv())["error"] == 0
            for attempt in range(100):
                await app.send(
                    {
                        "action": "update",
                        "deviceid": DEVICE,
                        "sequence": attempt,
                        "params": {"switch": "off"},
                    }
                )
                if (await app.reply_to(attempt, timeout=30))["error"] == 503:
                    break
            else:
                raise AssertionError("node B never saw the device go offline")
