"""The Redis bus: joins the processes of ``tether serve --workers N`` and several nodes.

Two connections per process, because Redis puts a connection that has subscribed into
pub/sub mode, where it can no longer run ordinary commands:

- the *subscriber*: one dedicated connection and one reader task. The reader is the only
  thing that ever reads from it; it dispatches messages to local handlers, resolves
  SUBSCRIBE/UNSUBSCRIBE confirmations, and owns reconnection.
- the *publisher*: a :class:`~tether.bus._pipe.CommandPipe` that pipelines PUBLISH (and
  PING) in call order.

Server-side subscriptions follow local interest exactly: a channel is SUBSCRIBEd when
its first local handler arrives and UNSUBSCRIBEd when the last one leaves, so a process
never receives topic traffic nobody in it wants. ``subscribe``/``unsubscribe`` return
only after Redis confirmed, so a message published by another node after ``subscribe``
returned is guaranteed to arrive.

If the subscriber connection drops, the reader reconnects with capped exponential
backoff and re-subscribes every channel that still has handlers. Messages published
during the gap are lost (pub/sub is at-most-once); the store is the source of truth.
A half-open socket (peer vanished without a FIN) is caught by a PING after
``health_check_interval`` seconds of silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import RedisError

from tether.bus._device_keys import HOLD, LISTEN, DeviceKeys
from tether.bus._handlers import HandlerTable
from tether.bus._membership import MEMBERSHIP
from tether.bus._pipe import CommandPipe
from tether.bus.base import Bus
from tether.core.backoff import Backoff
from tether.core.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from tether.bus.base import Handler

logger = logging.getLogger("tether.bus")

_LINK_ERRORS = (RedisError, OSError)


class _LinkDead(Exception):
    """The subscriber connection stopped answering (no PONG after a silent period)."""


class RedisBus(Bus):
    """A :class:`Bus` over Redis pub/sub (redis-py asyncio, RESP2, binary-safe)."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str | None = None,
        namespace: str = "tether",
        health_check_interval: float = 15.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.node_id = node_id or uuid.uuid4().hex
        # Every channel and key carries the cluster's name: pub/sub ignores the database
        # index, so two deployments sharing one Redis would otherwise hear each other.
        self.namespace = namespace
        self._prefix = f"{namespace}."
        self._key_prefix = f"{namespace}:"
        # Tells this process apart from an earlier one that ran under the same node id.
        self._incarnation = uuid.uuid4().hex
        self._health_check_interval = health_check_interval
        self._backoff = (backoff_initial, backoff_max)

        # parse_url handles TCP, TLS (rediss://) and unix sockets, plus query options.
        options: dict[str, Any] = dict(parse_url(url))
        self._connection_class: type[AbstractConnection] = options.pop(
            "connection_class", Connection
        )
        self._connection_kwargs: dict[str, Any] = {
            **options,
            "decode_responses": False,  # payloads are opaque bytes
            "protocol": 2,  # the reader parses RESP2 pub/sub frames
        }
        where = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
        self._where = f"Redis at {where}"
        self._publisher = CommandPipe(self._new_connection("pub"), what=self._where)
        self._devices = DeviceKeys(self._publisher, node_id=self.node_id, namespace=namespace)

        self._handlers = HandlerTable()
        self._conn: AbstractConnection | None = None  # the current subscriber connection
        self._link_up = False  # the reader owns _conn and _live
        self._live: set[str] = set()  # channels SUBSCRIBEd on _conn
        self._acks: deque[asyncio.Future[None]] = deque()  # one per SUBSCRIBE/UNSUBSCRIBE
        self._wire_lock = asyncio.Lock()  # orders writes (and _acks) on the subscriber
        self._start_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def channels(self) -> frozenset[str]:
        """Channels with local handlers (and therefore subscribed while connected)."""
        return self._handlers.channels()

    # -- the Bus interface -------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            self._check_open()
            if self._reader is not None:
                return
            try:
                acks = await self._open_link()
            except _LINK_ERRORS as error:
                raise Unavailable(f"{self._where} is unreachable: {error}") from error
            if self._closed:  # close() ran while we were connecting
                await self._drop_link()
                raise Unavailable("the bus is closed")
            self._reader = asyncio.create_task(self._read_loop(), name="tether.bus.reader")
        await asyncio.gather(*acks)

    async def publish(self, channel: str, payload: bytes) -> None:
        self._check_open()
        await self._publisher.execute("PUBLISH", self._prefix + channel, payload)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        self._check_open()
        self._publisher.submit("PUBLISH", self._prefix + channel, payload).add_done_callback(
            self._publish_done
        )

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._check_open()
        if self._handlers.add(channel, handler):
            await self._sync(channel)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        if self._handlers.remove(channel, handler) and not self._closed:
            await self._sync(channel)

    async def ping(self) -> None:
        self._check_open()
        if self._reader is not None and not self._link_up:
            raise Unavailable(f"{self._where}: subscriber connection is down, reconnecting")
        await self._publisher.execute("PING")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._handlers.clear()  # from here on nothing is dispatched
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
            self._reader = None
        await self._drop_link()
        await self._publisher.close()

    # -- subscriptions -----------------------------------------------------------------

    async def _sync(self, channel: str) -> None:
        """Make Redis's subscription to ``channel`` match the local handler table.

        Deciding under the wire lock, from the table as it is *now*, keeps Redis right
        however subscribe/unsubscribe calls interleave. While the link is down there is
        nothing to send: the next (re)connect subscribes whatever the table then holds.
        """
        async with self._wire_lock:
            conn = self._conn
            if not self._link_up or conn is None or not conn.is_connected:
                return
            wanted = channel in self._handlers
            if wanted == (channel in self._live):
                return
            ack = self._expect_ack()
            try:
                await conn.send_command(
                    "SUBSCRIBE" if wanted else "UNSUBSCRIBE", self._prefix + channel
                )
            except _LINK_ERRORS:
                return  # the reader sees the same dead socket and re-subscribes
            if wanted:
                self._live.add(channel)
            else:
                self._live.discard(channel)
        await ack  # resolved by the reader's confirmation, or when the link drops

    def _expect_ack(self) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append(ack)
        return ack

    # -- the subscriber connection -----------------------------------------------------

    def _new_connection(self, role: str) -> AbstractConnection:
        # A readable CLIENT LIST: which node holds which connection.
        name = re.sub(r"[^\w.:-]", "_", f"tether-bus-{role}:{self.node_id}", flags=re.ASCII)
        return self._connection_class(**{**self._connection_kwargs, "client_name": name})

    async def _open_link(self) -> list[asyncio.Future[None]]:
        """Connect a fresh subscriber and SUBSCRIBE every channel that has handlers."""
        conn = self._new_connection("sub")
        try:
            await conn.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
            async with self._wire_lock:
                channels = self._handlers.channels()
                acks = [self._expect_ack() for _ in channels]
                if channels:
                    await conn.send_command("SUBSCRIBE", *(self._prefix + c for c in channels))
                self._conn, self._live, self._link_up = conn, set(channels), True
        except BaseException:
            self._resolve_acks()
            with contextlib.suppress(*_LINK_ERRORS):
                await conn.disconnect(nowait=True)
            raise
        return acks

    async def _drop_link(self) -> None:
        self._link_up = False
        self._live = set()
        self._resolve_acks()  # waiters return; the next connect re-subscribes for them
        # Under the wire lock: redis-py connections are not safe to close while another
        # task is in the middle of writing to them (the writer vanishes under it).
        async with self._wire_lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(*_LINK_ERRORS):
                    await conn.disconnect(nowait=True)

    def _resolve_acks(self) -> None:
        while self._acks:
            ack = self._acks.popleft()
            if not ack.done():
                ack.set_result(None)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff(*self._backoff)
        restored = False  # once restored, a loss soon after is the same outage
        while True:
            up_since = loop.time()
            try:
                await self._pump()
            except (*_LINK_ERRORS, _LinkDead) as error:
                reason: BaseException = error
            except Exception as error:  # a bug here must not end delivery for good
                logger.exception("bus: subscriber reader failed")
                reason = error
            await self._drop_link()
            # A link that dies again soon after coming back (say, Redis rejects a
            # SUBSCRIBE) is the same outage: keep backing off and keep quiet.
            if restored and loop.time() - up_since < backoff.cap:
                await self._reconnect(backoff, wait_first=True)
                self._resumed()
                continue
            logger.warning(
                "bus: lost the Redis subscriber connection (%r); reconnecting and "
                "re-subscribing %d channel(s)",
                reason,
                len(self._handlers.channels()),
            )
            started = loop.time()
            backoff.reset()
            await self._reconnect(backoff, wait_first=False)
            restored = True
            logger.info("bus: Redis subscriber connection restored in %.2fs", loop.time() - started)
            self._resumed()

    async def _pump(self) -> None:
        """Read frames until the connection fails; dispatch each message inline."""
        conn = self._conn
        assert conn is not None
        ping_pending = False
        while True:
            # disconnect_on_error=False: only _drop_link closes the socket, under the lock.
            frame = await conn.read_response(
                timeout=self._health_check_interval, disconnect_on_error=False
            )
            if frame is None:  # silent for a whole interval: is anybody there?
                if ping_pending:
                    raise _LinkDead(f"no answer to PING in {self._health_check_interval}s")
                ping_pending = True
                async with self._wire_lock:
                    await conn.send_command("PING")
                continue
            ping_pending = False
            kind = frame[0]
            if kind == b"message":
                self._handlers.dispatch(frame[1].decode()[len(self._prefix) :], frame[2])
            elif kind in (b"subscribe", b"unsubscribe") and self._acks:
                ack = self._acks.popleft()
                if not ack.done():
                    ack.set_result(None)

    async def _reconnect(self, backoff: Backoff, *, wait_first: bool) -> None:
        """Open a new link, waiting ``backoff``'s next delay before each retry.

        The first attempt of a new outage goes at once; a relapse (``wait_first``)
        waits first, so a link that keeps dying right after it comes back backs off.
        """
        attempt = 0
        while True:
            if attempt or wait_first:
                await asyncio.sleep(backoff.next())
            attempt += 1
            try:
                await self._open_link()
            except _LINK_ERRORS as error:
                logger.debug("bus: reconnect attempt %d failed: %r", attempt, error)
            except Exception:  # a bug must not end the reader: keep trying, loudly
                logger.exception("bus: reconnect attempt %d failed", attempt)
            else:
                return

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the bus is closed", node_id=self.node_id)

    def _publish_done(self, done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.warning("bus: a publish failed: %s", done.exception())
            self._publish_lost()

    # --- membership -----------------------------------------------------------------------
    # One hash, ``<namespace>:members`` (see bus/_membership.py).

    async def beat(self, ttl: float, *, gap: bool = False) -> int:
        self._check_open()
        return await self._membership(int(ttl * 1000), "gap" if gap else "beat")

    async def leave(self) -> None:
        self._check_open()
        await self._membership(0, "leave")

    async def _membership(self, ttl_ms: int, action: str) -> int:
        key = f"{self._key_prefix}members"
        epoch = await self._publisher.execute(
            "EVAL", MEMBERSHIP, 1, key, self.node_id, self._incarnation, ttl_ms, action
        )
        return int(epoch)

    async def members(self) -> set[str]:
        self._check_open()
        reply = await self._publisher.execute("HKEYS", f"{self._key_prefix}members")
        return {name[5:] for name in map(_text, reply) if name.startswith("node:")}

    # --- holders and listeners ----------------------------------------------------------
    # One hash per device (see bus/_device_keys.py).

    async def hold(self, device_ids: Collection[str], ttl: float) -> None:
        self._check_open()
        await self._devices.mark(HOLD, device_ids, ttl)

    async def release(self, device_ids: Collection[str]) -> None:
        self._check_open()
        await self._devices.unmark(HOLD, device_ids)

    async def holders(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        self._check_open()
        return await self._devices.holders(device_ids)

    async def listen(self, device_ids: Collection[str], ttl: float) -> None:
        self._check_open()
        await self._devices.mark(LISTEN, device_ids, ttl)

    async def unlisten(self, device_ids: Collection[str]) -> None:
        self._check_open()
        await self._devices.unmark(LISTEN, device_ids)

    def route_nowait(
        self,
        device_id: str,
        payload: bytes,
        also: Collection[str] = (),
        unheld: str | None = None,
    ) -> asyncio.Future[Any]:
        self._check_open()
        channels = [self._prefix + channel for channel in also]
        fallback = "" if unheld is None else self._prefix + unheld
        done = self._devices.route(device_id, payload, fallback, channels)
        done.add_done_callback(self._publish_done)
        return done


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
