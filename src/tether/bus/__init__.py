"""The cross-process event bus: opaque bytes on named channels.

``memory`` serves a single process; ``redis`` joins the workers of one node and several
nodes. The hub is the only user; it decides what the bytes mean (see ``base.py`` for
the contract both backends keep).
"""

from __future__ import annotations

from typing import Literal

from tether.bus.base import Bus, Handler
from tether.bus.memory import MemoryBus
from tether.bus.redis import RedisBus

__all__ = ["Bus", "Handler", "MemoryBus", "RedisBus", "create_bus"]


def create_bus(
    kind: Literal["memory", "redis"],
    *,
    redis_url: str,
    node_id: str | None,
    namespace: str = "tether",
) -> Bus:
    """Build the backend named by ``settings.bus`` (not started: call ``start()``).

    ``namespace`` (the cluster's name) prefixes every Redis channel and key.
    """
    if kind == "memory":
        return MemoryBus(node_id=node_id)
    if kind == "redis":
        return RedisBus(redis_url, node_id=node_id, namespace=namespace)
    raise ValueError(f"unknown bus kind {kind!r} (expected 'memory' or 'redis')")
