"""A client that leaves while its request body is still arriving is not a server error.

Churning fleets do it all day (the P7 soak found it in the log): the body read raises
``ConnectionResetError``, and the catch-all error handlers must let aiohttp drop it
quietly instead of logging an unhandled error with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from unittest.mock import Mock

import pytest

from tests.fuzz import server_errors
from tests.support import ADMIN_PASSWORD, running
from tether.web import client_left


async def _leave_mid_body(
    url: str, path: str, headers: dict[str, str], first: str = '{"name": "t", "parameters": {'
) -> None:
    """Send the headers and ``first``, a piece of a longer body, then close the connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("Content-Length: 4096")
    writer.write(("\r\n".join(head) + "\r\n\r\n" + first).encode())
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
    writer.close()
    await writer.wait_closed()
    del reader


async def test_device_leaving_mid_body_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the API's error middleware (here an OpenGate south call, which reads its
    body after authenticating, as in the soak's log)."""
    caplog.set_level(logging.WARNING)
    async with running(tmp_path) as server:
        key = await server.device("leaver", dialect="opengate")
        path = "/south/v80/devices/leaver/collect/iot"
        await _leave_mid_body(server.url, path, {"X-ApiKey": key})
        await asyncio.sleep(0.5)  # the handler sees the reset and finishes
        # The server is unharmed: the same device still posts.
        async with server.session.post(
            server.url + path, headers={"X-ApiKey": key}, json={"datastreams": []}
        ) as response:
            assert response.status < 500, await response.text()
    assert not server_errors(caplog.records)


async def test_devicehive_rest_client_leaving_mid_body_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the DeviceHive REST catch-all (the soak's other ERROR lines)."""
    caplog.set_level(logging.WARNING)
    async with running(tmp_path) as server:
        await server.device("dh-leaver")
        async with server.session.post(
            server.url + "/api/rest/token", json={"login": "admin", "password": ADMIN_PASSWORD}
        ) as response:
            assert response.status == 201
            access = (await response.json())["accessToken"]
        path = "/api/rest/device/dh-leaver/notification"
        # No body byte at all: DeviceHive reads "up to the limit", which returns as soon
        # as any bytes are there, so only an empty body waits for the reset.
        await _leave_mid_body(server.url, path, {"Authorization": f"Bearer {access}"}, "")
        await asyncio.sleep(0.5)
        async with server.session.post(
            server.url + path,
            headers={"Authorization": f"Bearer {access}"},
            json={"notification": "t", "parameters": {}},
        ) as response:
            assert response.status == 201, await response.text()
    assert not server_errors(caplog.records)


def _request(closing: bool | None) -> Mock:
    request = Mock()
    if closing is None:
        request.transport = None
    else:
        request.transport.is_closing.return_value = closing
    return request


@pytest.mark.parametrize(
    ("closing", "error", "left"),
    [
        (None, ConnectionResetError("Connection lost"), True),
        (True, ConnectionResetError("Connection lost"), True),
        # A reset from elsewhere (a device's operation service, the bus) while the
        # client is still there is a real fault.
        (False, ConnectionResetError("peer reset"), False),
        # The client went away, but the handler failed for another reason first.
        (True, RuntimeError("bug"), False),
    ],
)
def test_client_left_only_for_a_reset_of_the_requests_own_connection(
    closing: bool | None, error: BaseException, left: bool
) -> None:
    assert client_left(_request(closing), error) is left
