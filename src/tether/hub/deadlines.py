"""The deadlines of the commands this process tracks: delivery expiry and execution timeout.

A command's deadlines are armed by exactly one process of a cluster: the holder of its
device, or the device's owner while nobody holds it (hub.routing). This module keeps the
pending index and the sweeper's timers in step with each command change, and decides what
a deadline does when it comes due.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tether.core import limits
from tether.core.lifecycle import DELIVERABLE, EXECUTING, execution_deadline
from tether.core.model import Command
from tether.hub.sweeper import Deadline

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.hub")


class Deadlines:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def rearm(self, command: Command) -> None:
        """Track a stored command; one bad row is reported, never fatal to start-up."""
        timeout = command.timeout
        if timeout is not None and limits.repair_seconds(timeout) != timeout:
            log.warning(
                "command %s has a stored timeout of %r seconds, outside 0..%d: "
                "its deadline is armed with %r",
                command.id,
                timeout,
                limits.DURATION_MAX,
                limits.repair_seconds(timeout),
            )
        try:
            self.track(command)
        except Exception:
            log.exception("command %s could not be re-armed; it is left as stored", command.id)

    def track(self, command: Command) -> None:
        """Keep the command in the index, with its deadlines if this process owns them."""
        self._hub.index.apply(command)
        self._hub.reconciler.note(command)
        self._hub.routing.noted(command)
        self.arm(command)

    def forget_device(self, device_id: str) -> None:
        """Forget the device's commands and their deadlines (another process keeps them)."""
        for command_id in self._hub.index.forget_device(device_id):
            self._hub.sweeper.disarm(command_id, Deadline.EXPIRE)
            self._hub.sweeper.disarm(command_id, Deadline.TIMEOUT)

    def arm(self, command: Command) -> None:
        """Arm (or disarm) the command's delivery and execution deadlines; only the
        processes tracking its device arm them: its holder, or its owner while nobody holds
        it (hub.routing)."""
        if not self._hub.routing.tracks(command.device_id):
            self._hub.sweeper.disarm(command.id, Deadline.EXPIRE)
            self._hub.sweeper.disarm(command.id, Deadline.TIMEOUT)
        elif command.state in DELIVERABLE and command.expires_at is not None:
            self._hub.sweeper.arm(command.expires_at, command.id, Deadline.EXPIRE)
        else:
            self._hub.sweeper.disarm(command.id, Deadline.EXPIRE)
        deadline = (
            execution_deadline(command.delivered_at, command.timeout)
            if command.state in EXECUTING
            else None
        )
        if deadline is not None:
            self._hub.sweeper.arm(deadline, command.id, Deadline.TIMEOUT)
        else:
            self._hub.sweeper.disarm(command.id, Deadline.TIMEOUT)

    async def due(self, command_id: int, kind: Deadline) -> None:
        entry = self._hub.index.get(command_id)
        if entry is None or not self._hub.routing.tracks(entry.device_id):
            return  # finished, or its device's deadlines moved to another process
        state = entry.state
        if kind is Deadline.EXPIRE and state in DELIVERABLE:
            moved = await self._hub.commands.fire_deadline(command_id, expired=True)
        elif kind is Deadline.TIMEOUT and state in EXECUTING:
            moved = await self._hub.commands.fire_deadline(command_id, expired=False)
        else:
            return
        if moved is None:
            # The command had moved on unheard (an owner is not told about a device's
            # commands while another process holds it): learn where it stands, which
            # also re-arms whatever deadline it now has.
            current = await self._hub.store.commands.get(command_id)
            if current is None:
                self._hub.index.forget(command_id)
            else:
                self.track(current)
