"""Subscription filters, matched in memory on every fan-out.

A filter narrows a stream of notifications or command updates by device, network,
device type and name. An empty (``None``) field matches everything. The fields are
frozensets so a match is a few hash lookups, whatever the filter's size.
"""

from __future__ import annotations

import msgspec


class EventFilter(msgspec.Struct, kw_only=True, frozen=True):
    device_ids: frozenset[str] | None = None
    network_ids: frozenset[int] | None = None
    device_type_ids: frozenset[int] | None = None
    names: frozenset[str] | None = None
    #: Only devices of these dialects. A dialect's own watchers (OpenGate's dispatcher,
    #: Control iD's re-queue) use it, so other dialects' traffic never reaches them.
    dialects: frozenset[str] | None = None

    def matches(
        self,
        device_id: str,
        network_id: int | None,
        device_type_id: int | None,
        name: str,
        dialect: str = "native",
    ) -> bool:
        if self.dialects is not None and dialect not in self.dialects:
            return False
        if self.device_ids is not None and device_id not in self.device_ids:
            return False
        if self.network_ids is not None and network_id not in self.network_ids:
            return False
        if self.device_type_ids is not None and device_type_id not in self.device_type_ids:
            return False
        return self.names is None or name in self.names
