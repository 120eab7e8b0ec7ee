"""The ``Bus`` interface: a dumb, fast transport of opaque bytes on named channels.

The bus knows nothing about commands or notifications; the hub above it decides what
the bytes mean. Keeping it that small is what lets the in-memory backend (one process),
the Redis backend (many processes and nodes) and a future NATS backend share one
contract test suite.

Contract (every backend, checked by ``tests/bus/test_contract.py``):

- Many local handlers may subscribe to one channel; each receives every message once.
  The backend subscribes upstream on the first local handler and unsubscribes after the
  last one leaves, so a process only carries traffic it has listeners for. Subscribing
  the same handler twice is a no-op; unsubscribing an unknown one is a no-op.
- Messages on one channel reach each handler in ``publish`` call order (per bus
  instance; across processes, in the order the backend received them).
- ``publish`` never waits for handlers: they run later, on the event loop.
- A handler that raises is logged on ``tether.bus`` and affects nothing else.
- After ``close()`` no handler is called again and ``publish`` raises ``Unavailable``.
- Delivery is at most once: a message published while a subscriber's connection is down
  is lost to it. Durable state lives in the store; the bus only says "look now".
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import Any

Handler = Callable[[str, bytes], None]
"""``handler(channel, payload)``; called on the event loop, so it must not block.

It is a plain function on purpose: an ``async`` handler would let one slow consumer
stall the single reader of a Redis connection. Handlers that need to await something
hand the payload to their own queue or task.
"""


logger = logging.getLogger("tether.bus")


class Bus(ABC):
    """Publish/subscribe of opaque ``bytes`` on named channels between processes."""

    node_id: str
    """This process's id on the bus (its directed channel is ``node.<node_id>``)."""

    shared: bool = True
    """Whether other processes can hear this bus. The hub skips publishing on a bus that
    reaches no one else, since every event is already applied in-process."""

    @abstractmethod
    async def start(self) -> None:
        """Connect. Idempotent. Subscriptions made before ``start`` go live here."""

    @abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send ``payload`` to every subscriber of ``channel``, without waiting for them.

        Raises ``tether.core.errors.Unavailable`` when the bus is closed or the backend
        cannot take the message.
        """

    @abstractmethod
    def publish_nowait(self, channel: str, payload: bytes) -> None:
        """:meth:`publish` without waiting: same order, failures are only logged.

        For events whose loss a listener recovers from anyway (see :meth:`on_resume`), so
        a caller is never failed after its change was already stored.
        """

    @abstractmethod
    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` for every later message on ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``channel``; a no-op if it was not subscribed."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise ``tether.core.errors.Unavailable`` unless the backend is reachable."""

    @abstractmethod
    async def close(self) -> None:
        """Stop all delivery and release connections. Idempotent."""

    # --- gaps ----------------------------------------------------------------------------

    def on_resume(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever delivery resumes after an outage.

        Pub/sub keeps nothing: what was published while this process could not hear is
        gone, so a listener that keeps state from events (the hub's pending index) uses
        this to re-read that state from the store.
        """
        self._listen("resume", callback)

    def _resumed(self) -> None:
        self._call_back("resume")

    # --- lost publishes -------------------------------------------------------------------

    def on_publish_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a message given to :meth:`publish_nowait` was not sent.

        Its listeners never heard it, and nothing on their side shows the gap; the
        publisher reports it (see :meth:`beat`) so they re-read what it stood for.
        """
        self._listen("publish-lost", callback)

    def _publish_lost(self) -> None:
        self._call_back("publish-lost")

    def _listen(self, what: str, callback: Callable[[], None]) -> None:
        self.__dict__.setdefault("_callbacks", {}).setdefault(what, []).append(callback)

    def _call_back(self, what: str) -> None:
        for callback in self.__dict__.get("_callbacks", {}).get(what, []):
            try:
                callback()
            except Exception:
                logger.exception("bus: a %s callback failed", what)

    # --- membership -----------------------------------------------------------------------
    # The nodes of a cluster and one counter, the *epoch*, which moves whenever a node may
    # have stored something that nobody heard announced. Every node re-reads the store
    # when it sees the epoch move; nothing else is needed to recover from a peer's death.

    @abstractmethod
    async def beat(self, ttl: float, *, gap: bool = False) -> int:
        """Record this node as alive for ``ttl`` seconds; return the cluster's epoch.

        The epoch moves when a member stopped beating for ``ttl`` (it died, or lost the
        backend), when a node joins, when a node id reappears as a new process, when a
        node leaves, and when a caller passes ``gap=True`` (some of its publishes were
        lost).
        """

    @abstractmethod
    async def members(self) -> set[str]:
        """The node ids of the cluster's members, as of the last beat of any of them."""

    @abstractmethod
    async def leave(self) -> None:
        """Stop being a member, moving the epoch (what this node announced last may
        still be in flight when it goes)."""

    # --- who holds which device ---------------------------------------------------------
    # The device -> node map of a cluster: a node "holds" a device while it has its live
    # session or recent polls. Entries expire unless refreshed, so a node that dies stops
    # holding its devices within one TTL.

    @abstractmethod
    async def hold(self, device_ids: Collection[str], ttl: float) -> None:
        """Record that this node holds these devices, for ``ttl`` seconds."""

    @abstractmethod
    async def release(self, device_ids: Collection[str]) -> None:
        """This node no longer holds these devices."""

    @abstractmethod
    async def holders(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        """For each device held by any node, the ids of the nodes holding it."""

    # --- directed routing -----------------------------------------------------------------
    # Beside its holders, a device has *listeners*: nodes with subscribers for its command
    # events, or callers waiting for one of its results. A routed publish reaches exactly
    # the holders and listeners (and whatever channels the caller adds), so a node that
    # has nothing to do with a device never reads its events.

    @abstractmethod
    async def listen(self, device_ids: Collection[str], ttl: float) -> None:
        """Record that this node listens for these devices' events, for ``ttl`` seconds."""

    @abstractmethod
    async def unlisten(self, device_ids: Collection[str]) -> None:
        """This node no longer listens for these devices."""

    @abstractmethod
    def route_nowait(
        self,
        device_id: str,
        payload: bytes,
        also: Collection[str] = (),
        unheld: str | None = None,
    ) -> asyncio.Future[Any]:
        """Publish ``payload`` on ``node.<id>`` of every *other* node that holds or listens
        for ``device_id``, on ``unheld`` if no node at all (this one included) holds it,
        and on each channel of ``also``; no channel twice.

        The returned future says whether some node held the device (truthy) when the
        message went out; it fails like a publish (and the failure is reported anyway).

        Holders and listeners are read where the message is sent (one Redis script), so
        a node that recorded its hold before this call is among the recipients. Like
        :meth:`publish_nowait`: in order with the other publishes, failures reported to
        :meth:`on_publish_lost`.
        """
