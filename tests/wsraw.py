"""WebSocket and HTTP peers on raw sockets, for tests of how the server treats a peer that
misbehaves at the transport level (stops reading, never finishes a header, stays silent).

aiohttp's own client always reads what arrives, so it cannot play a peer that stops
reading; these helpers speak just enough of RFC 6455 over a plain socket to do so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

from tests.support import Running


async def connect(run: Running, *, receive_buffer: int | None = None) -> socket.socket:
    """A non-blocking TCP socket to the server (with a small receive buffer if asked, so
    a peer that stops reading fills up quickly)."""
    host, port = run.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    return sock


async def upgrade(run: Running, path: str, *, receive_buffer: int | None = None) -> socket.socket:
    """Open a WebSocket on ``path``; returns the socket once the 101 has been read."""
    sock = await connect(run, receive_buffer=receive_buffer)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5)
        assert chunk, f"closed during the upgrade: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def send_json(sock: socket.socket, message: Any) -> None:
    """One masked text frame, as a client must send."""
    payload = json.dumps(message).encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await asyncio.get_running_loop().sock_sendall(sock, header + mask + masked)


async def read_frame(sock: socket.socket, timeout: float = 5) -> tuple[int, bytes]:
    """The next frame from the server: (opcode, payload)."""
    loop = asyncio.get_running_loop()

    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            if not chunk:
                raise ConnectionResetError("closed by the server")
            data += chunk
        return data

    async with asyncio.timeout(timeout):
        first, second = await exactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await exactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await exactly(8))
        return first & 0x0F, await exactly(size)


async def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server ends the connection (a close frame, FIN or reset) within
    ``timeout`` seconds, reading and discarding whatever comes first."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                opcode, _ = await read_frame(sock, timeout)
                if opcode == 0x8:
                    return True
    except (ConnectionError, OSError):
        return True
    except TimeoutError:
        return False


def held(run: Running, sock: socket.socket) -> bool:
    """Whether the server still holds this connection (its end is open)."""
    port = sock.getsockname()[1]
    assert run.server.runner is not None
    server = run.server.runner.server
    assert server is not None
    for handler in server.connections:  # type: ignore[attr-defined]
        transport = handler.transport
        if transport is not None and transport.get_extra_info("peername")[1] == port:
            return True
    return False


async def until_released(run: Running, sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the server to let go of the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not held(run, sock):
            return True
        await asyncio.sleep(0.05)
    return not held(run, sock)
