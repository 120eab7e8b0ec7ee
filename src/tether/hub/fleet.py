"""The fleet as a whole: presence counts per dialect, recent activity, and the presence filter.

Presence is not a column: it lives in each process's memory and, across a cluster, in the
bus's holder keys (``Hub.online``). So "how many are online" and "only the online ones"
are answered by asking about the devices a caller sees: one narrow query (id and
dialect) for the counts, and for a filtered list a walk through the ordered device list in
pages until the requested page of matches is full. Both cost a look-up per device seen,
which is why the console asks for the summary every few seconds and not per event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tether.core.access import Action, Principal, require
from tether.core.lifecycle import CommandState
from tether.core.model import Device

if TYPE_CHECKING:
    from tether.hub.service import Hub

#: Devices read per step of a presence-filtered list, and presence look-ups per step of a
#: summary (each one a Redis round trip, pipelined, on a cluster).
SCAN_PAGE = 500


@dataclass(frozen=True)
class DialectPresence:
    dialect: str
    online: int
    offline: int


@dataclass(frozen=True)
class FleetSummary:
    node_id: str
    at: datetime
    devices: list[DialectPresence]
    #: Commands created since ``commands_since``, by state.
    commands_since: datetime
    commands: dict[CommandState, int]
    #: Notifications per minute, oldest first; the first minute starts at ``minutes_since``.
    minutes_since: datetime
    notifications_per_minute: list[int]


class Fleet:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def summary(self, principal: Principal, *, minutes: int = 60) -> FleetSummary:
        """Devices online/offline per dialect, and the last ``minutes`` of activity:
        commands created in that time by state, and notifications per minute."""
        hub = self._hub
        require(principal, Action.GET_DEVICE)
        dialects = await hub.store.devices.dialects_of(principal=principal)
        ids = list(dialects)
        up: Counter[str] = Counter()
        for start in range(0, len(ids), SCAN_PAGE):  # bounded look-ups in flight
            up.update(dialects[d] for d in await hub.online(ids[start : start + SCAN_PAGE]))
        total: Counter[str] = Counter(dialects.values())
        now = hub.clock.now()
        since = now - timedelta(minutes=minutes)
        commands: dict[CommandState, int] = {}
        if Action.GET_DEVICE_COMMAND in principal.actions:
            commands = await hub.store.commands.count_by_state(
                created_after=since, principal=principal
            )
        # Whole minutes, the current one last (still filling up).
        first = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        per_minute = [0] * minutes
        if Action.GET_DEVICE_NOTIFICATION in principal.actions:
            per_minute = await hub.store.notifications.count_per_bucket(
                start=first, width=timedelta(minutes=1), buckets=minutes, principal=principal
            )
        return FleetSummary(
            node_id=hub.node_id,
            at=now,
            devices=[
                DialectPresence(name, up[name], count - up[name])
                for name, count in sorted(total.items())
            ],
            commands_since=since,
            commands=commands,
            minutes_since=first,
            notifications_per_minute=per_minute,
        )

    async def list_devices(
        self,
        principal: Principal,
        *,
        online: bool,
        skip: int = 0,
        take: int = 100,
        **filters: Any,
    ) -> list[Device]:
        """Like ``Directory.list_devices``, keeping only devices whose presence is ``online``."""
        hub = self._hub
        wanted: list[Device] = []
        offset = 0
        while len(wanted) < skip + take:
            batch = await hub.directory.list_devices(
                principal, skip=offset, take=SCAN_PAGE, **filters
            )
            present = await hub.online([d.id for d in batch])
            wanted.extend(d for d in batch if (d.id in present) is online)
            if len(batch) < SCAN_PAGE:
                break
            offset += SCAN_PAGE
        return wanted[skip : skip + take]
