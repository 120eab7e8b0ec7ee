"""The sending side of every server WebSocket: a bounded queue, one writer, a firm close.

Handlers never await the network to send: they drop an encoded frame into the outbox and
move on (:meth:`Outbox.send`), or, when they produce a stream that should be paced by the
socket (a replay), wait for room (:meth:`Outbox.put`). A peer that stops reading fills
its queue and is cut off as a slow consumer, and every other connection carries on.

Cutting a peer that does not read needs care: a close frame sits behind everything the
kernel and the transport already hold for it, and a transport closed with unsent data
waits for the peer forever. So a close is given ``close_timeout`` seconds: if the close
frame (1008 for a slow consumer) has not left the process by then, the transport is
aborted, which frees the socket and its kernel buffers at once.

Every socket that has not authenticated is also given a deadline to do so
(:meth:`Outbox.require_auth`). The native API, DeviceHive and eWeLink WebSockets all send
through this, so this is also where a stopping server finds every WebSocket it must close
with 1001 "going away" (:data:`OPEN_SOCKETS`, :func:`close_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from tether.hub import metrics

log = logging.getLogger("tether.outbox")

CLOSE_SLOW_CONSUMER = WSCloseCode.POLICY_VIOLATION
#: A peer that has not authenticated in time (the native API's code for a refused login).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_GOING_AWAY = WSCloseCode.GOING_AWAY


class Outbox:
    """The send side of one WebSocket.

    An idle connection is the common case (P1 in ``docs/performance.md``: 20,000 idle
    devices per process), so an outbox with nothing to send holds no queue and no task:
    the deque is made on the first frame and the writer task runs only while there is
    something to write, and both are let go once everything queued has left.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.BaseRequest,
        queue_size: int,
        close_timeout: float,
    ) -> None:
        self.ws = ws
        self._transport = request.transport
        self._close_timeout = close_timeout
        self._size = queue_size
        self._queue: deque[bytes] | None = None
        #: Set when the queue has room again, for a paced sender waiting in :meth:`put`.
        self._room: asyncio.Future[None] | None = None
        self._close: tuple[int, str] | None = None
        self._auth_deadline: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        # Weak: a handler that dies without finish() must not keep its socket listed.
        app = request.config_dict if isinstance(request, web.Request) else {}
        self._registry: weakref.WeakSet[Outbox] | None = app.get(OPEN_SOCKETS)
        if self._registry is not None:
            self._registry.add(self)

    def require_auth(
        self, authenticated: Callable[[], bool], within: float, code: int = CLOSE_UNAUTHENTICATED
    ) -> None:
        """Close the connection unless ``authenticated()`` holds ``within`` seconds from
        now: an anonymous socket costs a file descriptor and memory, so nobody may keep
        one open without proving who they are."""

        def check() -> None:
            if not authenticated():
                log.info("closing a WebSocket that did not authenticate within %ss", within)
                self.close(code, "authentication timeout")

        self._auth_deadline = asyncio.get_running_loop().call_later(within, check)

    @property
    def closing(self) -> bool:
        return self._close is not None

    def _full(self) -> bool:
        return self._queue is not None and len(self._queue) >= self._size

    def _enqueue(self, data: bytes | str) -> None:
        if self._queue is None:
            self._queue = deque()
        self._queue.append(data.encode() if isinstance(data, str) else data)
        self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="tether-ws-writer"
            )

    def send(self, data: bytes | str) -> bool:
        """Queue a text frame; False (and the peer is cut off) when its queue is full."""
        if self._close is not None:
            return False
        if self._full():
            self.cut(CLOSE_SLOW_CONSUMER, "slow consumer: send queue full")
            return False
        self._enqueue(data)
        return True

    async def put(self, data: bytes | str) -> bool:
        """Queue a text frame, waiting for room: for a stream paced by the socket (a
        replay). A full queue does not cut a paced sender; False once closing."""
        while self._close is None and self._full():
            if self._room is None or self._room.done():
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)
        if self._close is not None:
            return False
        self._enqueue(data)
        return True

    def _wake_paced(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self._room = None

    def cut(self, code: int, reason: str) -> None:
        """Close at once, dropping what is queued: for a peer that does not keep up."""
        if self._close is not None:
            return
        metrics.SLOW_CONSUMERS.inc()
        log.warning("cutting off a WebSocket peer (%d, %s)", code, reason)
        self._drop_queued()
        self.close(code, reason)

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (from any task, without awaiting); the
        transport is aborted if the close frame is not out within ``close_timeout``."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self._wake_paced()  # a paced sender finds it closing
        self._start_writer()  # it sends what is queued, then the close frame
        asyncio.get_running_loop().call_later(self._close_timeout, self._expire)

    def _drop_queued(self) -> None:
        """Empty the queue, which also lets any paced sender through (to find it closing)."""
        self._queue = None
        self._wake_paced()

    def _expire(self) -> None:
        """The close deadline passed: whatever is still on its way to the peer is stuck
        because the peer does not read; drop the connection."""
        transport = self._transport
        writing = self._writer is not None and not self._writer.done()
        if transport is not None and (writing or transport.get_write_buffer_size() > 0):
            log.warning("aborting a WebSocket whose peer did not take its close frame")
            transport.abort()
        if self._writer is not None:
            self._writer.cancel()
        self._drop_queued()

    async def _write(self) -> None:
        """Send what is queued, oldest first; then the close frame if closing, else end
        (the next frame starts a new writer)."""
        try:
            await self._drain()
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None  # a finished task is still a few hundred bytes

    async def _drain(self) -> None:
        ws = self.ws
        try:
            while self._queue:
                item = self._queue.popleft()
                self._wake_paced()
                await ws.send_frame(item, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            # The connection is gone: nothing more can be sent on it.
            self._close = self._close or (WSCloseCode.ABNORMAL_CLOSURE, "")
            self._drop_queued()
            return
        except asyncio.CancelledError:
            return
        self._queue = None
        if self._close is None:
            return
        code, reason = self._close
        with contextlib.suppress(Exception):
            await ws.close(code=code, message=reason.encode()[:120])

    async def finish(self) -> None:
        """Stop the writer once the reader loop ended. A close deadline already armed
        stays armed: the transport may still hold what a non-reading peer never took."""
        if self._close is None:
            self._close = (WSCloseCode.OK, "")
        if self._registry is not None:
            self._registry.discard(self)
        if self._auth_deadline is not None:
            self._auth_deadline.cancel()
        writer = self._writer
        if writer is not None:
            if not writer.done():
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        self._drop_queued()


#: Every open server WebSocket of an application (see :func:`close_all`).
OPEN_SOCKETS: web.AppKey[weakref.WeakSet[Outbox]] = web.AppKey(
    "open_sockets", weakref.WeakSet[Outbox]
)


def close_all(app: web.Application, reason: str = "server shutting down") -> int:
    """Close every open WebSocket of ``app`` with 1001 "going away", after the frames
    already queued for it; returns how many. Each peer gets its close frame (and, if it
    does not take it within ``ws_close_timeout``, an abort); the handlers then end as
    their peers answer."""
    sockets = list(app.get(OPEN_SOCKETS, ()))
    for outbox in sockets:
        outbox.close(CLOSE_GOING_AWAY, reason)
    return len(sockets)
