"""The native WebSockets' shared plumbing: a connection that sends native frames through
its outbox (:mod:`tether.outbox`: bounded, with a firm close for a peer that stops
reading), and the concurrent frame reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import WSMsgType, web

from tether.api.codec import ErrorFrame, ResponseFrame
from tether.api.views import ErrorBody, encoder
from tether.core import jsonc
from tether.core.errors import PayloadTooLarge, TetherError
from tether.outbox import Outbox
from tether.settings import Settings

log = logging.getLogger("tether.api.ws")


class Connection(Outbox):
    """A native WebSocket: an :class:`~tether.outbox.Outbox` that speaks the native frames."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, settings: Settings) -> None:
        super().__init__(ws, request, settings.send_queue_size, settings.ws_close_timeout)

    def send(self, frame: Any) -> bool:
        """Queue a frame; False (and the connection is cut) when the peer is too slow."""
        return super().send(encoder.encode(frame))

    def reply(self, request_id: str | int | None, data: Any = None) -> None:
        self.send(ResponseFrame(request_id=request_id, data=data))

    def fail(self, request_id: str | int | None, error: TetherError) -> None:
        self.send(
            ErrorFrame(
                request_id=request_id,
                error=ErrorBody(
                    code=error.code, message=error.message, details=error.details or None
                ),
            )
        )


class Frame(Protocol):
    request_id: str | int | None


F = TypeVar("F", bound=Frame)


#: Frames of one connection handled at the same time. Concurrency lets their writes share
#: a group commit; past the bound, reading pauses and TCP pushes back on the peer.
FRAMES_IN_FLIGHT = 64


async def read_frames(conn: Connection, handle: Callable[[str | bytes], Awaitable[None]]) -> None:
    """Feed every data frame of the connection to ``handle`` until the peer goes away.

    Frames are handled concurrently (answers carry the request id), at most
    ``FRAMES_IN_FLIGHT`` at a time; they start in arrival order, so the writes of one
    connection reach the hub's queues in the order they were sent.
    """
    slots = asyncio.Semaphore(FRAMES_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    async def run(data: str | bytes) -> None:
        try:
            await handle(data)
        finally:
            slots.release()

    try:
        async for message in conn.ws:
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                await slots.acquire()
                task = asyncio.create_task(run(message.data))
                running.add(task)
                task.add_done_callback(running.discard)
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        # Let frames already read finish: what the peer sent before leaving still counts.
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def answer_frame(
    conn: Connection,
    data: str | bytes,
    decoder: jsonc.Decoder[F],
    dispatch: Callable[[F], Awaitable[Any]],
    *,
    limit: int,
    reply_without_id: bool,
) -> None:
    """Decode one frame, run it, and answer: a ``response`` or an ``error`` frame.

    Every failure becomes an error frame echoing the request id; nothing a peer sends can
    close the connection or escape into the server.
    """
    request_id = None
    try:
        if len(data) > limit:
            raise PayloadTooLarge(f"frame larger than {limit} bytes")
        frame = decoder.decode(data)
        request_id = frame.request_id
        result = await dispatch(frame)
        if request_id is not None or reply_without_id:
            conn.reply(request_id, result)
    except TetherError as error:
        conn.fail(request_id, error)
    except Exception:
        log.exception("frame handling failed")
        conn.fail(request_id, TetherError("internal server error"))
