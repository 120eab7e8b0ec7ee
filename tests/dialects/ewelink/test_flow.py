"""App and device over real sockets: login, list, switch, pushes, query, sysmsg."""

from __future__ import annotations

from pathlib import Path

from tests.dialects.ewelink.helpers import DEVICE, app_socket, device_running, world


async def test_app_switches_device_and_sees_its_reports(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        assert len(login["at"]) == 40
        assert login["user"]["apikey"]
        async with app_socket(w, login) as app:
            async with device_running(w) as device:
                online = await app.push("sysmsg")
                assert online["params"] == {"online": True}
                apikey = login["user"]["apikey"]
                await app.send(
                    {
                        "action": "update",
                        "deviceid": DEVICE,
                        "apikey": apikey,
                        "userAgent": "app",
                        "sequence": 1505608036953,
                        "ts": 0,
                        "params": {"switch": "on"},
                    }
                )
                reply = await app.reply_to(1505608036953)
                assert reply == {
                    "error": 0,
                    "deviceid": DEVICE,
                    "apikey": apikey,
                    "sequence": 1505608036953,
                }
                assert device.params["switch"] == "on"
                first = await app.push("update")
                assert first["from"] == "device"
                assert first["params"]["fwVersion"] == "1.5.5"
                report = await app.push("update")
                assert report["from"] == "device"
                assert report["params"] == {"switch": "on"}
                # The shadow has it; query answers from it.
                await app.send(
                    {
                        "action": "query",
                        "deviceid": DEVICE,
                        "apikey": apikey,
                        "sequence": "q1",
                        "params": ["switch", "fwVersion"],
                    }
                )
                answer = await app.reply_to("q1")
                assert answer["params"] == {"switch": "on", "fwVersion": "1.5.5"}
                # The core saw the command and the report.
                admin = await w.hub.auth.principal(w.r.token)
                commands = await w.hub.commands.list_commands(admin, device_id=DEVICE)
                assert [(c.name, c.state.value, c.parameters) for c in commands] == [
                    ("update", "succeeded", {"switch": "on"})
                ]
                await app.ws.send_str("ping")
                assert await app.recv() == "pong"
            offline = await app.push("sysmsg")
            assert offline["params"] == {"online": False}
