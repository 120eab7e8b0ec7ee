"""The per-device routing hash on Redis: which nodes hold a device, which listen for it.

One hash per device, ``<namespace>:route:<device>``:

* ``h:<node>`` -> expiry (epoch ms): the node holds the device (its live session, or its
  recent polls), so it delivers the device's commands;
* ``l:<node>`` -> expiry: the node listens for the device's command events (it has
  subscribers for them, or callers waiting for a result).

The key expires with its longest-lived field, so a device nobody refreshes leaves
nothing behind. Everything about one device is one key, so each script below touches a
single key and runs unchanged on a Redis Cluster shard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.bus._pipe import CommandPipe

HOLD, LISTEN = "h:", "l:"

#: Set one field and make the key live at least ``ttl`` ms (PEXPIRE GT would not do: a key
#: without a TTL counts as infinite to it, so a fresh key would never get one).
MARK = """
local key, field, expires, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call('HSET', key, field, expires)
if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
return 0
"""

#: Publish one command event to the nodes that need it, in one round trip: every node
#: holding or listening for the device (unexpired, this node excluded), the ``unheld``
#: channel if no node (this one included) holds the device, then each extra channel; no
#: channel twice. ARGV: now (ms), the node channel prefix, this node's id, the payload, the
#: unheld channel ('' for none), extra channels. Returns 1 if some node holds the device.
ROUTE = """
local key, now, node_prefix, payload = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[4]
local done = {[node_prefix .. ARGV[3]] = true}
local held = false
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > now then
    if string.sub(fields[i], 1, 2) == 'h:' then held = true end
    local channel = node_prefix .. string.sub(fields[i], 3)
    if not done[channel] then
      done[channel] = true
      redis.call('PUBLISH', channel, payload)
    end
  end
end
if not held and ARGV[5] ~= '' and not done[ARGV[5]] then
  done[ARGV[5]] = true
  redis.call('PUBLISH', ARGV[5], payload)
end
for i = 6, #ARGV do
  if not done[ARGV[i]] then
    done[ARGV[i]] = true
    redis.call('PUBLISH', ARGV[i], payload)
  end
end
if held then return 1 end
return 0
"""


class DeviceKeys:
    """Holds, listens and routed publishes of one node, over the bus's command pipe."""

    def __init__(self, pipe: CommandPipe, *, node_id: str, namespace: str) -> None:
        self._pipe = pipe
        self._node_id = node_id
        self._key_prefix = f"{namespace}:route:"
        self._node_channels = f"{namespace}.node."

    def key(self, device_id: str) -> str:
        return self._key_prefix + device_id

    async def mark(self, kind: str, device_ids: Collection[str], ttl: float) -> None:
        expires = int((time.time() + ttl) * 1000)
        field, ttl_ms = kind + self._node_id, int(ttl * 1000)
        await asyncio.gather(
            *(
                self._pipe.execute("EVAL", MARK, 1, self.key(d), field, expires, ttl_ms)
                for d in device_ids
            )
        )

    async def unmark(self, kind: str, device_ids: Collection[str]) -> None:
        field = kind + self._node_id
        await asyncio.gather(*(self._pipe.execute("HDEL", self.key(d), field) for d in device_ids))

    async def holders(self, device_ids: Collection[str]) -> dict[str, set[str]]:
        ids = list(device_ids)
        replies = await asyncio.gather(
            *(self._pipe.execute("HGETALL", self.key(device_id)) for device_id in ids)
        )
        now = time.time() * 1000
        found: dict[str, set[str]] = {}
        for device_id, reply in zip(ids, replies, strict=True):
            live = {
                name[len(HOLD) :]
                for name, expires in map(_texts, _pairs(reply))
                if name.startswith(HOLD) and int(expires) > now
            }
            if live:
                found[device_id] = live
        return found

    def route(
        self, device_id: str, payload: bytes, unheld: str, also: list[str]
    ) -> asyncio.Future[Any]:
        now = int(time.time() * 1000)
        return self._pipe.submit(
            "EVAL",
            ROUTE,
            1,
            self.key(device_id),
            now,
            self._node_channels,
            self._node_id,
            payload,
            unheld,
            *also,
        )


def _texts(pair: tuple[Any, Any]) -> tuple[str, str]:
    return _text(pair[0]), _text(pair[1])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """HGETALL's answer as (field, value) pairs, whether the client gave a dict or a list."""
    if isinstance(reply, dict):
        return list(reply.items())
    items = list(reply or [])
    return list(zip(items[0::2], items[1::2], strict=True))
