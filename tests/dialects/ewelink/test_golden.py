"""The golden device transcript (reference §4.12), byte for byte except ids and times.

The emulated Sonoff (``tether agent ewelink``) plays the device; a raw WebSocket plays the
app. Every frame the server sends, to the device and to the app, must equal the
reference's, once the factory apikey, the owner's apikey, the port and the date are
replaced by the reference's placeholders.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from tests.dialects.ewelink.helpers import DEVICE, FACTORY, app_socket, device_running, world

GOLDEN = Path(__file__).with_name("golden_device.txt")
DATE = re.compile(r'"date":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"')


def golden() -> list[tuple[str, str]]:
    lines = [line for line in GOLDEN.read_text().splitlines() if line and not line.startswith("#")]
    return [(line[:3], line[4:]) for line in lines]


async def test_server_side_matches_the_golden_transcript(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.add_device()
        login = await w.login()
        owner = login["user"]["apikey"]

        def normal(text: str) -> str:
            text = text.replace(FACTORY, "F").replace(owner, "U")
            return DATE.sub('"date":"DATE"', text)

        script = golden()
        observed: list[tuple[str, str]] = []
        # Dispatch, with the exact request body of the reference.
        method, _, body = script[0][1].partition(" /dispatch/device ")
        assert method == "POST"
        async with w.r.session.post(
            w.r.url + "/dispatch/device", data=body.replace('"F"', f'"{FACTORY}"')
        ) as response:
            assert response.status == 200
            answer = await response.text()
        observed.append(("D>S", script[0][1]))
        port = w.r.url.rsplit(":", 1)[1]
        observed.append(("S>D", normal(answer).replace(f'"port":{port}', '"port":PORT')))

        async with app_socket(w, login) as app, device_running(w) as device:
            raw = await app.ws.receive(timeout=20)
            assert raw.type is aiohttp.WSMsgType.TEXT
            sysmsg = normal(raw.data)
            await app.ws.send_str(
                '{"action":"update","deviceid":"100008db11","apikey":"'
                + owner
                + '","userAgent":"app","sequence":"1505608036953","ts":0,'
                '"params":{"switch":"on"}}'
            )
            while True:  # the device's pushed reports come too; find the reply
                raw = await app.ws.receive(timeout=20)
                assert raw.type is aiohttp.WSMsgType.TEXT
                if '"action"' not in raw.data:
                    break
            app_reply = normal(raw.data)
            await device.ping()
            frames = [(d, normal(t)) for d, t in device.transcript]

        # The device's own report of its new state (not in the reference) is set aside.
        report = (
            '{"userAgent":"device","apikey":"U","deviceid":"100008db11",'
            '"action":"update","params":{"switch":"on"}}'
        )
        if ("D>S", report) in frames:
            at = frames.index(("D>S", report))
            del frames[at]
            after = frames.index(("S>D", '{"error":0,"deviceid":"100008db11","apikey":"U"}'), at)
            del frames[after]
        observed.extend(frames)
        expected = [(d, t) for d, t in script if d != "APP"]
        assert observed == expected
        assert [sysmsg, app_reply] == [t for d, t in script if d == "APP"]
        assert DEVICE in frames[1][1]
