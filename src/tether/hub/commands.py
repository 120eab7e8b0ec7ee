"""Commands: creation by apps, hand-over to devices, progress and results.

Every state change is a conditional transition in the store followed by one event on
the bus; this module never mutates a command any other way. The caller of
:meth:`Commands.create` is answered only after the insert committed, so an
acknowledged command survives a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from tether.core import limits
from tether.core.access import Action, Principal, require, require_device
from tether.core.errors import BadRequest, Conflict, DeviceBlocked, NotFound
from tether.core.lifecycle import TERMINAL, CommandState, stamp
from tether.core.model import Command, CommandStep, Device
from tether.hub import metrics
from tether.store import NewCommand

if TYPE_CHECKING:
    from tether.hub.service import Hub

MAX_NAME_LENGTH = 128

#: Marks "use the server default" apart from an explicit ``None`` ("never").
DEFAULT: Any = object()


def validate_name(name: Any, what: str = "command") -> str:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{what} name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"{what} name is longer than {MAX_NAME_LENGTH} characters")
    return name


@dataclass(frozen=True)
class Shaped:
    """A command as its device's dialect will carry it: checked parameters, and a ref."""

    parameters: Any
    #: The dialect's correlation key, fixed at creation so every API sees it (OpenGate's
    #: operation UUID, for one); None leaves it to be set on delivery, or unset.
    ref: str | None = None


#: Checks and normalises a command for one dialect's devices: ``(name, parameters) ->
#: Shaped``, raising :class:`~tether.core.errors.BadRequest` for what the device could not
#: run. Dialects register theirs in :attr:`Commands.shapers` when the hub is ready.
CommandShaper = Callable[[str, Any], Shaped]


class Commands:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        #: By dialect name: applied to every command created for a device of that dialect,
        #: whichever API created it, so bad input is refused before it is queued.
        self.shapers: dict[str, CommandShaper] = {}
        self._waiters: dict[int, list[asyncio.Future[Command]]] = {}
        # Per command, the device's moves take turns (see _move).
        self._turns: dict[int, tuple[asyncio.Lock, list[int]]] = {}

    # --- app side -------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        device_id: str,
        name: str,
        parameters: Any = None,
        *,
        timeout: float | None = DEFAULT,
        lifetime: float | None = DEFAULT,
        idempotency_key: str | None = None,
        ref: str | None = None,
    ) -> Command:
        """Store a new command for the device and start delivering it.

        ``lifetime`` (seconds) bounds delivery; ``timeout`` (seconds) bounds execution once
        delivered. Either may be ``None`` for "never"; omitted, the server defaults apply.
        A repeated ``idempotency_key`` returns the command created the first time.
        """
        hub = self._hub
        require(principal, Action.CREATE_DEVICE_COMMAND)
        device = require_device(
            principal,
            Action.CREATE_DEVICE_COMMAND,
            await hub.directory.device(device_id),
            device_id,
        )
        if device.blocked:
            raise DeviceBlocked(f"device {device_id!r} is blocked", device_id=device_id)
        validate_name(name)
        shaper = self.shapers.get(device.dialect)
        if shaper is not None:
            shaped = shaper(name, parameters)
            parameters = shaped.parameters
            ref = ref if ref is not None else shaped.ref
        settings = hub.settings
        if timeout is DEFAULT:
            timeout = settings.command_timeout
        if lifetime is DEFAULT:
            lifetime = settings.command_lifetime
        # Whichever API created it, the same bound: nothing out of range reaches the
        # deadline arithmetic below or the sweeper.
        if timeout is not None:
            timeout = limits.check_seconds("timeout", timeout)
        if lifetime is not None:
            lifetime = limits.check_seconds("lifetime", lifetime)
        now = hub.clock.now()
        expires_at = None if lifetime is None else now + timedelta(seconds=lifetime)
        if idempotency_key is None:
            # The common case goes through group commit (see hub.writer).
            command = await hub.writer.insert(
                NewCommand(
                    device_id=device.id,
                    name=name,
                    parameters=parameters,
                    created_by=principal.user_id,
                    created_at=now,
                    expires_at=expires_at,
                    timeout=timeout,
                    ref=ref,
                )
            )
            created = True
        else:
            command, created = await hub.store.commands.insert(
                device_id=device.id,
                name=name,
                parameters=parameters,
                created_by=principal.user_id,
                now=now,
                expires_at=expires_at,
                timeout=timeout,
                ref=ref,
                idempotency_key=idempotency_key,
            )
        if created:
            metrics.COMMANDS_CREATED.inc()
            await hub.command_changed(command, device, created=True)
        elif command.state not in TERMINAL:
            # A replay is announced like a fresh create: the first attempt may have been
            # cut after its commit by the death of the node that stored it, before anyone
            # was told, and this retry is the earliest chance to tell them. It arms the
            # deadlines too. Announcing twice is harmless: the index keeps one version and
            # subscribers deduplicate by id.
            await hub.command_changed(command, device, created=True)
        return command

    async def get(self, principal: Principal, command_id: int) -> Command:
        hub = self._hub
        require(principal, Action.GET_DEVICE_COMMAND)
        command = await hub.store.commands.get(command_id)
        if command is None:
            raise NotFound(f"command {command_id} not found")
        device = await hub.directory.device(command.device_id)
        require_device(principal, Action.GET_DEVICE_COMMAND, device, command.device_id)
        return command

    async def by_ref(self, device_id: str, ref: str) -> Command | None:
        """The device's newest command with this dialect correlation key. No access check:
        for a dialect that has already identified the device."""
        return await self._hub.store.commands.get_by_ref(device_id, ref)

    async def list_commands(
        self, principal: Principal, *, device_id: str | None = None, **filters: Any
    ) -> list[Command]:
        """Commands the caller can see, filtered (see ``CommandRepo.list`` for filters)."""
        hub = self._hub
        require(principal, Action.GET_DEVICE_COMMAND)
        if device_id is not None:
            require_device(
                principal,
                Action.GET_DEVICE_COMMAND,
                await hub.directory.device(device_id),
                device_id,
            )
        return await hub.store.commands.list(device_id=device_id, principal=principal, **filters)

    async def cancel(self, principal: Principal, command_id: int) -> Command:
        await self.get(principal, command_id)
        require(principal, Action.CREATE_DEVICE_COMMAND)
        command = await self._transition(command_id, CommandState.CANCELLED, error="cancelled")
        if command is None:
            current = await self._hub.store.commands.get(command_id)
            state = current.state.value if current else "gone"
            raise Conflict(f"command {command_id} is already {state}", state=state)
        return command

    async def wait(self, command_id: int, timeout: float) -> Command | None:
        """The command once terminal, or as it stands when ``timeout`` seconds pass."""
        store = self._hub.store
        command = await store.commands.get(command_id)
        if command is None or command.state in TERMINAL or timeout <= 0:
            return command
        device_id = command.device_id
        waiter: asyncio.Future[Command] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(command_id, []).append(waiter)
        try:
            # Heard here from now on, wherever the device is (hub.routing).
            await self._hub.routing.listen([device_id])
            # Re-read once registered: the result may have landed in between.
            command = await store.commands.get(command_id)
            if command is None or command.state in TERMINAL:
                return command
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    return await waiter
            return await store.commands.get(command_id)
        finally:
            self._hub.routing.forget_soon([device_id])
            waiters = self._waiters.get(command_id)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._waiters[command_id]

    def resolve_waiters(self, command: Command) -> None:
        for waiter in self._waiters.pop(command.id, ()):
            if not waiter.done():
                waiter.set_result(command)

    # --- device side ----------------------------------------------------------------------

    async def push_from_memory(self, device_id: str, command_ids: list[int]) -> list[Command]:
        """Hand commands to a live session as ``sent`` without waiting for the store.

        Only for commands whose full payload the index holds. ``sent`` is written behind:
        if it is lost, the command is still pending in the store and goes out again (at
        least once), while creation and results stay durable before anyone is told.
        """
        hub = self._hub
        ref = await hub.device_ref(device_id)
        handed = []
        for command_id in command_ids:
            command = hub.index.payload(command_id)
            if command is None:
                continue
            now = hub.clock.now()
            sent = msgspec.structs.replace(command, **stamp(CommandState.SENT, now))
            hub.writer.transition_later(sent, CommandState.SENT, device_id=device_id)
            await hub.command_changed(sent, ref=ref)
            handed.append(sent)
        metrics.COMMANDS_DELIVERED.inc(len(handed))
        return handed

    async def hand_over(
        self, device_id: str, command_ids: list[int], target: CommandState
    ) -> list[Command]:
        """Move deliverable commands to ``sent`` or ``delivered`` in one statement.

        Returns those that moved, oldest first. Any that did not (another node got there
        first, or it expired) means the index was stale: those are re-read and corrected.
        """
        hub = self._hub
        handed = await hub.store.commands.transition_many(
            device_id, command_ids, target, now=hub.clock.now()
        )
        if len(handed) < len(command_ids):
            moved = {command.id for command in handed}
            for command_id in command_ids:
                if command_id not in moved:
                    current = await hub.store.commands.get(command_id)
                    if current is None:
                        hub.index.forget(command_id)
                    else:
                        hub.index.apply(current)
        if handed:
            metrics.COMMANDS_DELIVERED.inc(len(handed))
            ref = await hub.device_ref(device_id)
            for command in handed:
                await hub.command_changed(command, ref=ref)
        return handed

    async def hand_back(self, device_id: str, handed: list[Command]) -> list[Command]:
        """Commands handed to a connection that turned out to be gone go back to the queue.

        They return to ``sent`` (offered again on the next poll or session, as any
        unconfirmed hand-over is), unless the device has moved them on already.
        """
        hub = self._hub
        back = await hub.store.commands.hand_back(device_id, handed, now=hub.clock.now())
        if back:
            ref = await hub.device_ref(device_id)
            for command in back:
                await hub.command_changed(command, ref=ref)
        return back

    async def acknowledge(self, device: Device, command_id: int) -> Command:
        """The device confirms receipt of a pushed command."""
        return await self._move(device, command_id, CommandState.DELIVERED, {})

    async def progress(
        self,
        device: Device,
        command_id: int,
        *,
        status: str | None = None,
        step: CommandStep | None = None,
        result: Any = None,
        ref: str | None = None,
    ) -> Command:
        """A partial result: the command is running, optionally with a new step.

        ``ref`` records a dialect correlation key learned on hand-over (Control iD's
        per-poll ``uuid``, for one).
        """
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if result is not None:
            fields["result"] = result
        if ref is not None:
            fields["ref"] = ref
        return await self._move(device, command_id, CommandState.IN_PROGRESS, fields, step)

    async def complete(
        self,
        device: Device,
        command_id: int,
        *,
        success: bool,
        result: Any = None,
        error: str | None = None,
        status: str | None = None,
        step: CommandStep | None = None,
    ) -> Command:
        """The final result. Repeating it for a finished command changes nothing."""
        fields: dict[str, Any] = {"result": result, "error": None if success else error}
        if status is not None:
            fields["status"] = status
        target = CommandState.SUCCEEDED if success else CommandState.FAILED
        return await self._move(device, command_id, target, fields, step)

    async def _move(
        self,
        device: Device,
        command_id: int,
        target: CommandState,
        fields: dict[str, Any],
        step: CommandStep | None = None,
    ) -> Command:
        """A device's transition of its own command, appending ``step`` if given.

        A device's frames are handled concurrently, so its moves of one command take
        turns, in arrival order (the lock is the first thing each awaits): an ack, the
        progress steps and the result apply in the order the device sent them.
        """
        lock, users = self._turns.setdefault(command_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                if step is not None:
                    current = await self._current(device, command_id)
                    if current.state in TERMINAL:
                        return current
                    fields["steps"] = (*current.steps, step)
                command = await self._transition(command_id, target, device=device, **fields)
                return command or await self._current(device, command_id)
        finally:
            users[0] -= 1
            if not users[0]:
                del self._turns[command_id]

    async def _current(self, device: Device, command_id: int) -> Command:
        command = await self._hub.store.commands.get(command_id)
        if command is None or command.device_id != device.id:
            raise NotFound(f"command {command_id} not found for this device")
        return command

    async def _transition(
        self, command_id: int, target: CommandState, *, device: Device | None = None, **fields: Any
    ) -> Command | None:
        hub = self._hub
        command = await hub.writer.transition(
            command_id, target, device_id=device.id if device else None, fields=fields
        )
        if command is not None:
            await hub.command_changed(command, device)
        return command

    async def fire_deadline(self, command_id: int, expired: bool) -> Command | None:
        """Called by the sweeper when a delivery or execution deadline passes; the command
        as moved, or None if it had already moved on."""
        if expired:
            return await self._transition(
                command_id, CommandState.EXPIRED, error="not delivered before it expired"
            )
        return await self._transition(
            command_id, CommandState.TIMED_OUT, error="no result within the timeout"
        )
