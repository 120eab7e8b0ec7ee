"""Re-queue lost commands, but only those that are safe to run twice.

A command handed to a terminal whose ``/result`` never came is ``timed_out`` (by this
dialect's result deadline or the core's execution timeout). The terminal may or may not
have run it. Re-running ``load_objects`` or ``set_configuration`` is harmless; re-running
``execute_actions`` (a door), ``create_objects`` or ``reboot`` is not, so those stay
``timed_out`` for a person (or an app) to decide (reference A.7).

The core lifecycle has no way back from ``timed_out``, so a re-queue is a *new* command
with the same name and envelope, linked by ``parameters.requeued_from`` (the original's
id, never sent to the terminal) and counted by ``parameters.attempt``. It is created with
the idempotency key ``controlid-requeue-<id>``: every node of a cluster sees the timeout
event, and only one copy results.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tether.core.errors import TetherError
from tether.core.filters import EventFilter
from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.dialects.controlid.terminals import DIALECT, SYSTEM
from tether.hub.service import Hub
from tether.hub.subscriptions import Subscription, Topic
from tether.settings.controlid import ControlIdSettings

log = logging.getLogger("tether.controlid")


def endpoints_of(parameters: Any) -> list[str]:
    if not isinstance(parameters, dict):
        return []
    if isinstance(parameters.get("transactions"), list):
        return [
            str(item.get("endpoint"))
            for item in parameters["transactions"]
            if isinstance(item, dict)
        ]
    endpoint = parameters.get("endpoint")
    return [endpoint] if isinstance(endpoint, str) else []


def may_requeue(command: Command, settings: ControlIdSettings) -> bool:
    """True for a timed-out command whose every endpoint is idempotent, within the limit."""
    if command.state is not CommandState.TIMED_OUT or not settings.requeue_idempotent:
        return False
    endpoints = endpoints_of(command.parameters)
    if not endpoints or not set(endpoints) <= set(settings.idempotent_endpoints):
        return False
    attempt = command.parameters.get("attempt", 1)
    return isinstance(attempt, int) and attempt <= settings.max_requeues


class Requeuer:
    """Watches command updates for timed-out Control iD commands (a hub subscription)."""

    def __init__(self, hub: Hub, settings: ControlIdSettings) -> None:
        self.hub = hub
        self.settings = settings
        self._queue: asyncio.Queue[Command] = asyncio.Queue(10_000)
        self.subscription: Subscription | None = None

    def offer(self, subscription: Subscription, item: Any) -> bool:
        if isinstance(item, Command) and item.state is CommandState.TIMED_OUT:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                log.error("controlid requeue backlog full; command %s not re-queued", item.id)
        return True

    async def run(self) -> None:
        self.subscription = await self.hub.subscribe(
            SYSTEM, Topic.COMMAND_UPDATE, EventFilter(dialects=frozenset({DIALECT})), self
        )
        try:
            while True:
                command = await self._queue.get()
                try:
                    await self.handle(command)
                except Exception:
                    log.exception("controlid requeue of command %s failed", command.id)
        finally:
            await self.hub.unsubscribe(self.subscription.id)

    async def handle(self, command: Command) -> Command | None:
        device = await self.hub.directory.device(command.device_id)
        if device is None or device.dialect != DIALECT:
            return None
        if not may_requeue(command, self.settings):
            log.warning(
                "controlid command %s (%s) timed out and is not re-queued: %s",
                command.id,
                ",".join(endpoints_of(command.parameters)) or command.name,
                "not idempotent or re-queue limit reached",
            )
            return None
        parameters = dict(command.parameters)
        parameters["requeued_from"] = command.id
        parameters["attempt"] = int(parameters.get("attempt", 1)) + 1
        try:
            copy = await self.hub.commands.create(
                SYSTEM,
                command.device_id,
                command.name,
                parameters,
                timeout=command.timeout,
                idempotency_key=f"controlid-requeue-{command.id}",
            )
        except TetherError as error:
            log.warning("controlid command %s not re-queued: %s", command.id, error)
            return None
        log.info("controlid command %s timed out; re-queued as %s", command.id, copy.id)
        return copy
