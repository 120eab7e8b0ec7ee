"""A WebSocket peer that stops reading is cut off, and its socket let go, within the close
deadline: the outbox overflows, the 1008 close frame cannot get past what the peer never
read, and the transport is aborted (``tether.outbox``).

Each peer is a raw socket with a small receive buffer that reads its first answers and
then nothing; notifications of 16 KiB are posted until the server lets it go.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from tests.support import ADMIN_PASSWORD, Running, running
from tests.wsraw import held, read_frame, send_json, until_released, upgrade

SETTINGS: dict[str, Any] = {"send_queue_size": 8, "ws_close_timeout": 0.5}
BLOB = "x" * 16384


async def flood_until_released(run: Running, sock: socket.socket, device_id: str) -> None:
    device = await run.hub.directory.device(device_id)
    assert device is not None
    for i in range(600):  # about 10 MB, past any kernel buffer; it is cut long before
        await run.hub.notifications.post_as_device(device, "update", {"i": i, "blob": BLOB})
        if not held(run, sock):
            break
    assert await until_released(run, sock, 3), "the server still holds a peer that reads nothing"


async def test_native_client_ws_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    async with running(tmp_path, **SETTINGS) as run:
        await run.device("loud-1")
        sock = await upgrade(run, f"/api/v1/ws?token={run.token}", receive_buffer=4096)
        try:
            await send_json(sock, {"type": "subscribe", "requestId": 1, "topic": "notification"})
            await read_frame(sock)  # subscribed; from here on the peer reads nothing
            await flood_until_released(run, sock, "loud-1")
        finally:
            sock.close()


async def test_devicehive_ws_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    async with running(tmp_path, **SETTINGS) as run:
        async with run.session.post(
            run.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
        ) as r:
            token = (await r.json())["accessToken"]
        await run.device("loud-2")
        sock = await upgrade(run, "/api/websocket", receive_buffer=4096)
        try:
            await send_json(sock, {"action": "authenticate", "requestId": 1, "token": token})
            await read_frame(sock)
            await send_json(sock, {"action": "notification/subscribe", "requestId": 2})
            await read_frame(sock)
            await flood_until_released(run, sock, "loud-2")
        finally:
            sock.close()


async def test_ewelink_app_socket_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    from tests.dialects.ewelink.helpers import APPID, FACTORY, SECRET, World

    async with running(tmp_path, ewelink={"apps": {APPID: SECRET}}, **SETTINGS) as run:
        user = await run.hub.directory.create_user(
            None, login="a@example.com", password="password-9"
        )
        world = World(run, int(user.id))
        await world.add_device("100008db99", FACTORY)
        login = await world.login("a@example.com", "password-9")
        sock = await upgrade(run, "/api/ws", receive_buffer=4096)
        try:
            online = {
                "action": "userOnline",
                "at": login["at"],
                "apikey": login["user"]["apikey"],
                "appid": APPID,
                "userAgent": "app",
                "sequence": "1",
            }
            await send_json(sock, online)
            await read_frame(sock)  # online; the app's state pushes now pile up unread
            await flood_until_released(run, sock, "100008db99")
        finally:
            sock.close()
