"""A WebSocket connection with a bounded send queue and its own writer task.

Handlers never await the network to send: they drop an encoded frame into the queue and
move on. If a peer reads so slowly that its queue fills, it is disconnected with close
code 1008 ("slow consumer") and every other connection carries on unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

from tether.api.codec import ErrorFrame, ResponseFrame
from tether.api.views import ErrorBody, encoder
from tether.core import jsonc
from tether.core.errors import PayloadTooLarge, TetherError
from tether.hub import metrics

log = logging.getLogger("tether.api.ws")

CLOSE_SLOW_CONSUMER = WSCloseCode.POLICY_VIOLATION
_CLOSE = object()


class Connection:
    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
        self._limit = queue_size
        # One spare slot, so the close marker fits even when the queue is full.
        self._queue: asyncio.Queue[bytes | object] = asyncio.Queue(queue_size + 1)
        self._writer = asyncio.create_task(self._write())
        self._close: tuple[int, str] | None = None

    def send(self, frame: Any) -> bool:
        """Queue a frame; False (and the connection closes) when the peer is too slow."""
        if self._close is not None:
            return False
        if self._queue.qsize() >= self._limit:
            metrics.SLOW_CONSUMERS.inc()
            log.warning("closing a slow consumer: its send queue of %d is full", self._limit)
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            return False
        self._queue.put_nowait(encoder.encode(frame))
        return True

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

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (from any task, without awaiting)."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self._queue.put_nowait(_CLOSE)

    async def _write(self) -> None:
        ws = self.ws
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSE:
                    break
                assert isinstance(item, bytes)
                await ws.send_frame(item, WSMsgType.TEXT)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return
        code, reason = self._close or (WSCloseCode.OK, "")
        with contextlib.suppress(Exception):
            await ws.close(code=code, message=reason.encode()[:120])

    async def finish(self) -> None:
        """Stop the writer once the reader loop ended."""
        if not self._writer.done():
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._writer


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
