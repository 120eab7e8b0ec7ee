"""Idle and unauthenticated connections are let go (short settings, raw sockets).

* An HTTP request header must be complete within ``http_idle_timeout`` of the connection
  opening, however it is trickled.
* Every WebSocket endpoint closes a socket that has not authenticated within
  ``ws_auth_timeout``, even one that answers pings.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.support import Running, running
from tests.wsraw import connect

SHORT = {"http_idle_timeout": 1.0, "ws_auth_timeout": 0.5}


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """One server for the module: each test opens connections of its own."""
    async with running(tmp_path_factory.mktemp("deadlines"), **SHORT) as server:
        yield server


async def ended_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes the connection within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while await loop.sock_recv(sock, 4096):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


async def test_half_sent_header_is_cut(run: Running) -> None:
    sock = await connect(run)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, b"GET /healthz HTTP/1.1\r\nHost: x")
        assert await ended_by_server(sock, 3)
    finally:
        sock.close()


async def test_trickled_header_is_cut_although_bytes_keep_coming(run: Running) -> None:
    sock = await connect(run)
    loop = asyncio.get_running_loop()

    async def trickle() -> None:
        await loop.sock_sendall(sock, b"GET /healthz HTTP/1.1\r\n")
        for i in range(40):
            await asyncio.sleep(0.2)
            await loop.sock_sendall(sock, f"X-Slow-{i}: 1\r\n".encode())

    sender = asyncio.create_task(trickle())
    try:
        assert await ended_by_server(sock, 3)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        sock.close()


async def test_idle_keep_alive_connection_is_closed_but_a_long_poll_is_not(
    run: Running,
) -> None:
    credential = await run.device("idle-1")
    sock = await connect(run)
    loop = asyncio.get_running_loop()
    try:
        # A long poll outlasts http_idle_timeout: the deadline never cuts a request being
        # handled, only a connection waiting for (the rest of) its next request header.
        request = (
            "GET /api/v1/device/idle-1/commands?wait=1.5 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {credential}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        answer = b""
        async with asyncio.timeout(5):
            while not answer.endswith(b"[]"):
                answer += await loop.sock_recv(sock, 4096)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        # Then the connection idles, kept alive: it is closed after the idle timeout.
        assert await ended_by_server(sock, 3)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/api/v1/ws", 4401),
        ("/api/websocket", 1008),
        ("/api/ws", 1008),
        ("/api/v1/device/ws", 4401),
    ],
)
async def test_unauthenticated_websocket_is_closed(run: Running, path: str, code: int) -> None:
    async with run.session.ws_connect(run.ws_url + path, autoping=True) as ws:
        message = await asyncio.wait_for(ws.receive(), 3)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert message.data == code, message
