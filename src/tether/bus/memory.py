"""The in-process bus: the default for a single ``tether serve`` process.

Delivery is deferred with ``loop.call_soon`` rather than calling handlers inside
``publish``. That keeps the two backends observably alike (with Redis a handler never
runs inside the publisher's call stack either), so code that works on one cannot depend
on re-entrancy that the other lacks. ``call_soon`` callbacks run in FIFO order, which
is what gives per-channel publish ordering.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from tether.bus._handlers import HandlerTable
from tether.bus.base import Bus
from tether.core.errors import Unavailable

if TYPE_CHECKING:
    from tether.bus.base import Handler


class MemoryBus(Bus):
    shared = False

    """A bus whose only "nodes" are the handlers inside this process."""

    def __init__(self, *, node_id: str | None = None) -> None:
        self.node_id = node_id or uuid.uuid4().hex
        # kind ("hold" or "listen") -> device id -> node id -> expiry (monotonic)
        self._marks: dict[str, dict[str, dict[str, float]]] = {"hold": {}, "listen": {}}
        self._handlers = HandlerTable()
        self._closed = False
        self._epoch = 0

    @property
    def channels(self) -> frozenset[str]:
        """Channels with local handlers (what a networked backend would subscribe to)."""
        return self._handlers.channels()

    async def start(self) -> None:
        self._check_open()

    async def publish(self, channel: str, payload: bytes) -> None:
        self.publish_nowait(channel, payload)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        self._check_open()
        if channel in self._handlers:
            # Handlers are looked up at delivery time, so one removed in between is
            # not called, exactly as with a networked backend.
            asyncio.get_running_loop().call_soon(self._deliver, channel, payload)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        self._check_open()
        self._handlers.add(channel, handler)

    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.remove(channel, handler)

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        self._handlers.clear()

    def _deliver(self, channel: str, payload: bytes) -> None:
        if not self._closed:
            self._handlers.dispatch(channel, payload)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the bus is closed", node_id=self.node_id)

    # --- membership: a single process, whose own publishes cannot be lost -------------

    async def beat(self, ttl: float, *, gap: bool = False) -> int:
        self._check_open()
        if gap:
            self._epoch += 1
        return self._epoch

    async def leave(self) -> None:
        self._epoch += 1

    async def members(self) -> set[str]:
        return {self.node_id}

    # --- holders and listeners ----------------------------------------------------------

    async def hold(self, device_ids: Collection[str], ttl: float) -> None:
        self._mark("hold", device_ids, ttl)

    async def release(self, device_ids: Collection[str]) -> None:
        self._unmark("hold", device_ids)

    async def holders(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for device_id in device_ids:
            live = self._live("hold", device_id)
            if live:
                found[device_id] = live
        return found

    async def listen(self, device_ids: Collection[str], ttl: float) -> None:
        self._mark("listen", device_ids, ttl)

    async def unlisten(self, device_ids: Collection[str]) -> None:
        self._unmark("listen", device_ids)

    def route_nowait(
        self,
        device_id: str,
        payload: bytes,
        also: Collection[str] = (),
        unheld: str | None = None,
    ) -> asyncio.Future[Any]:
        holders = self._live("hold", device_id)
        nodes = holders | self._live("listen", device_id)
        sent = {f"node.{self.node_id}"}
        fallback = [unheld] if unheld is not None and not holders else []
        for channel in [*(f"node.{node}" for node in sorted(nodes)), *fallback, *also]:
            if channel not in sent:
                sent.add(channel)
                self.publish_nowait(channel, payload)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(1 if holders else 0)
        return done

    def _mark(self, kind: str, device_ids: Collection[str], ttl: float) -> None:
        expires = time.monotonic() + ttl
        for device_id in device_ids:
            self._marks[kind].setdefault(device_id, {})[self.node_id] = expires

    def _unmark(self, kind: str, device_ids: Collection[str]) -> None:
        marks = self._marks[kind]
        for device_id in device_ids:
            nodes = marks.get(device_id)
            if nodes is not None:
                nodes.pop(self.node_id, None)
                if not nodes:
                    del marks[device_id]

    def _live(self, kind: str, device_id: str) -> set[str]:
        now = time.monotonic()
        return {n for n, expires in self._marks[kind].get(device_id, {}).items() if expires > now}
