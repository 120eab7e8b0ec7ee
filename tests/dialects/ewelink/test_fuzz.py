"""Arbitrary frames on ``/api/ws``, as an app and as a device: the server answers, and the
connection and the server survive (checked by a normal request afterwards)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tests.dialects.ewelink.helpers import DEVICE, FACTORY, app_socket, world

ACTIONS = ["update", "query", "date", "register", "userOnline", "upgrade", "x", None, 5, []]
VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "on",
    [],
    {},
    [1, "a"],
    {"switch": "on"},
    {"switches": [{"outlet": "a"}, 3]},
    {"targets": "nope"},
    "x" * 300,
]


def frame(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.1:
        return rng.choice(["", "ping", "{", "[]", "null", "42", '"str"', "\u0000", "{}"])
    body: dict[str, Any] = {}
    action = rng.choice(ACTIONS)
    if action is not None:
        body["action"] = action
    for key in ("deviceid", "apikey", "params", "sequence", "d_seq", "error", "userAgent"):
        if rng.random() < 0.6:
            body[key] = rng.choice([*VALUES, DEVICE])
    return json.dumps(body)


async def test_random_frames_from_apps_and_devices(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    async with world(tmp_path, ack_timeout=0.3) as w:
        await w.add_device()
        login = await w.login()
        async with w.r.session.ws_connect(w.r.ws_url + "/api/ws") as device:
            await device.send_json(
                {"action": "register", "deviceid": DEVICE, "apikey": FACTORY, "userAgent": "device"}
            )
            first = await device.receive(timeout=20)
            assert json.loads(first.data)["error"] == 0, first
            async with app_socket(w, login) as app:
                for _ in range(150):
                    await device.send_str(frame(rng))
                    text = frame(rng)
                    if '"userOnline"' not in text:  # a second userOnline is fine too
                        await app.ws.send_str(text)
                # Both connections still answer normal requests.
                await device.send_json(
                    {"action": "date", "deviceid": DEVICE, "apikey": "k", "sequence": "last"}
                )
                while True:
                    data = (await device.receive(timeout=30)).data
                    if data == "pong":  # the answer to a text "ping" among the frames
                        continue
                    reply = json.loads(data)
                    if reply.get("sequence") == "last" and "date" in reply:
                        break
                await app.send(
                    {"action": "query", "deviceid": DEVICE, "sequence": "final", "params": []}
                )
                answer = await app.reply_to("final", timeout=30)
                assert answer["error"] == 0
                assert isinstance(answer["params"], dict)
        async with w.r.session.get(
            w.r.url + "/api/user/device", headers={"Authorization": "Bearer " + login["at"]}
        ) as response:
            listed = await response.json()
        assert [d["deviceid"] for d in listed] == [DEVICE]
