"""The in-memory index of active commands, kept current by command events.

It answers "does this device have anything to deliver?" and "how many are in flight?"
without SQL, which is what makes an empty poll or an idle keepalive free. Only light
entries are kept (ids, states, deadlines); full commands come back from the store's
conditional update at the moment one is actually handed over.

Events from several nodes may arrive out of order, stamped by clocks that disagree: the
lifecycle stage orders two versions of a command, not their timestamps
(``core.lifecycle.supersedes``), so a late copy never undoes a command's progress or its
end. A stale event can only make the index optimistic (claim finds nothing and corrects
it), never lose a command: the store's conditional transitions have the last word.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime

from tether.core.lifecycle import (
    DELIVERABLE,
    IN_FLIGHT,
    TERMINAL,
    CommandState,
    is_expired,
    supersedes,
)
from tether.core.model import Command


class Tracked:
    __slots__ = ("delivered_at", "device_id", "expires_at", "id", "state", "timeout", "updated_at")

    def __init__(self, command: Command) -> None:
        self.id = command.id
        self.device_id = command.device_id
        self.state = command.state
        self.updated_at = command.updated_at
        self.expires_at = command.expires_at
        self.delivered_at = command.delivered_at
        self.timeout = command.timeout


#: Most full commands kept for hand-over (about 1 KiB each).
PAYLOAD_CAP = 100_000
#: Most finished command ids remembered (see ``CommandIndex.finished``); the oldest go first.
FINISHED_CAP = 100_000


class CommandIndex:
    def __init__(
        self, loading: set[str] | None = None, finished: dict[int, None] | None = None
    ) -> None:
        #: Devices whose commands are still being read from the store (hub.routing): they
        #: count as having something deliverable, so a poll goes on to wait for the read.
        self._loading: set[str] = loading if loading is not None else set()
        self._by_id: dict[int, Tracked] = {}
        # Per device, deliverable ids kept sorted, so the oldest are always at the front and
        # a hand-over looks at a bounded slice however long the queue behind it is.
        self._deliverable: dict[str, list[int]] = {}
        self._in_flight: dict[str, set[int]] = {}
        # The full command of deliverable entries, so a live session can be handed one
        # without reading it back. Capped: past it, hand-overs read from the store.
        self._payloads: dict[int, Command] = {}
        #: Ids of commands seen finishing here (insertion-ordered, capped). A finished
        #: command leaves the index, so without this an older copy arriving after its end
        #: (a bus event published twice, a store read begun before it finished and replayed
        #: by a resync) would bring it back as deliverable: an entry already pushed to the
        #: session is never offered again, and it would hold the head of the device's
        #: queue, so nothing behind it would be offered either. A resync's new index shares
        #: the old one's (``finished``).
        self.finished: dict[int, None] = finished if finished is not None else {}
        #: ``has_deliverable(device_id)``: asked on every poll and keepalive, so without
        #: a cluster (nothing is ever loading) it is the dict's own lookup, no Python call.
        self.has_deliverable: Callable[[str], bool] = (
            self._deliverable.__contains__ if loading is None else self._deliverable_or_loading
        )

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, command_id: int) -> Tracked | None:
        return self._by_id.get(command_id)

    def apply(self, command: Command) -> Tracked | None:
        """Record the command's new state; returns the tracked entry (None once finished)."""
        if command.id in self.finished:
            return None  # finished already: any other version is older
        old = self._by_id.get(command.id)
        if old is not None:
            if not supersedes(command.state, command.updated_at, old.state, old.updated_at):
                return old  # an older version, arriving late
            self._unlink(old)
        if command.state in TERMINAL:
            self._by_id.pop(command.id, None)
            if len(self.finished) >= FINISHED_CAP:
                del self.finished[next(iter(self.finished))]
            self.finished[command.id] = None
            return None
        entry = Tracked(command)
        self._by_id[command.id] = entry
        if entry.state in DELIVERABLE:
            if len(self._payloads) < PAYLOAD_CAP:
                self._payloads[entry.id] = command
            queue = self._deliverable.setdefault(entry.device_id, [])
            if not queue or queue[-1] < entry.id:
                queue.append(entry.id)  # the usual case: ids arrive in order
            else:
                bisect.insort(queue, entry.id)
        if entry.state in IN_FLIGHT:
            self._in_flight.setdefault(entry.device_id, set()).add(entry.id)
        return entry

    def forget(self, command_id: int) -> None:
        entry = self._by_id.pop(command_id, None)
        if entry is not None:
            self._unlink(entry)

    def forget_device(self, device_id: str) -> set[int]:
        """Drop every command of the device (this process stopped tracking it); their ids."""
        ids = {*self._deliverable.get(device_id, ()), *self._in_flight.get(device_id, ())}
        for command_id in ids:
            self.forget(command_id)
        return ids

    def _unlink(self, entry: Tracked) -> None:
        self._payloads.pop(entry.id, None)
        queue = self._deliverable.get(entry.device_id)
        if queue is not None and entry.state in DELIVERABLE:
            at = bisect.bisect_left(queue, entry.id)
            if at < len(queue) and queue[at] == entry.id:
                del queue[at]
            if not queue:
                del self._deliverable[entry.device_id]
        flying = self._in_flight.get(entry.device_id)
        if flying is not None:
            flying.discard(entry.id)
            if not flying:
                del self._in_flight[entry.device_id]

    def payload(self, command_id: int) -> Command | None:
        """The full command, if it is deliverable and kept in memory."""
        return self._payloads.get(command_id)

    def _deliverable_or_loading(self, device_id: str) -> bool:
        return device_id in self._deliverable or device_id in self._loading

    def deliverable(self, device_id: str, now: datetime, limit: int) -> list[int]:
        """Up to ``limit`` ids to hand over, oldest first, skipping expired ones.

        The work is bounded by ``limit`` (plus expired ids, which the sweeper removes), not
        by the length of the device's queue.
        """
        queue = self._deliverable.get(device_id)
        if not queue:
            return []
        due: list[int] = []
        by_id = self._by_id
        for command_id in queue:
            if not is_expired(by_id[command_id].expires_at, now):
                due.append(command_id)
                if len(due) >= limit:
                    break
        return due

    def in_flight(self, device_id: str) -> int:
        flying = self._in_flight.get(device_id)
        return len(flying) if flying else 0

    def state(self, command_id: int) -> CommandState | None:
        entry = self._by_id.get(command_id)
        return entry.state if entry else None
