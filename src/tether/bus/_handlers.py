"""Local handler bookkeeping and fault-isolated dispatch, shared by every backend.

Both backends need exactly the same rules (first/last subscriber detection, duplicate
subscriptions ignored, one raising handler never hurting the others), so they live here
once instead of being re-implemented, slightly differently, per backend.

Each channel maps to an immutable tuple of handlers that is replaced on every change
(copy-on-write). Subscriptions change rarely and messages arrive often, so dispatch
iterates a tuple with no allocation and no "dict changed size" hazard if a handler
(indirectly) changes the subscriptions while a message is being delivered.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.bus.base import Handler

logger = logging.getLogger("tether.bus")


class HandlerTable:
    """Which local handlers listen on which channel."""

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: dict[str, tuple[Handler, ...]] = {}

    def add(self, channel: str, handler: Handler) -> bool:
        """Register ``handler``; return True if it is the channel's first handler."""
        if inspect.iscoroutinefunction(handler):
            # Calling it would only create a coroutine that is never awaited.
            raise TypeError(f"bus handlers must be plain functions, got {handler!r}")
        current = self._channels.get(channel, ())
        if handler in current:
            return False
        self._channels[channel] = (*current, handler)
        return not current

    def remove(self, channel: str, handler: Handler) -> bool:
        """Unregister ``handler``; return True if it was the channel's last handler."""
        current = self._channels.get(channel, ())
        if handler not in current:
            return False
        rest = tuple(h for h in current if h != handler)
        if rest:
            self._channels[channel] = rest
            return False
        del self._channels[channel]
        return True

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels

    def channels(self) -> frozenset[str]:
        """The channels that currently have at least one local handler."""
        return frozenset(self._channels)

    def clear(self) -> None:
        """Forget every handler (used by ``close()``: nothing is dispatched afterwards)."""
        self._channels = {}

    def dispatch(self, channel: str, payload: bytes) -> None:
        """Call every handler of ``channel``; log (never raise) a handler's exception."""
        for handler in self._channels.get(channel, ()):
            try:
                handler(channel, payload)
            except Exception:
                logger.exception("bus handler %r failed on channel %r", handler, channel)
