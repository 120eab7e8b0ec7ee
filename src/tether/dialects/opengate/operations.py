"""Applying OpenGate operation responses to core commands.

One path for every response, whether it came back in the HTTP reply to an operation
request (synchronous), was POSTed to ``operation/response`` (asynchronous, partial or
final), or answers an operation the device fetched from ``operation/pending``. Each step
becomes a :class:`~tether.core.model.CommandStep` through ``hub.commands.progress``; a
final ``resultCode`` completes the command through ``hub.commands.complete``. Those are
conditional transitions, so a repeated or late response never moves a command backwards.
"""

from __future__ import annotations

import logging
from typing import Any

from tether.core.errors import BadRequest, NotFound
from tether.core.lifecycle import TERMINAL, CommandState
from tether.core.model import Command, CommandStep, Device
from tether.dialects.opengate.codec import KNOWN_CODES, OperationResponse, Step, outcome
from tether.hub.service import Hub

log = logging.getLogger("tether.opengate")

#: Terminal states the platform assigned, not the device's own result.
PLATFORM_ENDED = frozenset({CommandState.TIMED_OUT, CommandState.EXPIRED, CommandState.CANCELLED})
#: Notification recording a final response that came after the platform gave up.
LATE_RESPONSE = "opengate.late_response"


async def find_operation(hub: Hub, device: Device, operation_id: str) -> Command:
    """The device's command for this operation id, or a clear 404 naming both."""
    command = await hub.commands.by_ref(device.id, operation_id)
    if command is None:
        raise NotFound(
            f"operation {operation_id!r} is not an operation of device {device.id!r}",
            operation_id=operation_id,
            device_id=device.id,
        )
    return command


def _core_step(hub: Hub, step: Step, response: OperationResponse) -> CommandStep:
    return CommandStep(
        name=step.name,
        state=step.result,
        description=step.description,
        time=step.at or response.at or hub.clock.now(),
        data=step.response,
    )


def _already_recorded(command: Command, step: CommandStep) -> bool:
    """A step repeated with its own timestamp (a final response restating earlier steps)."""
    return any(
        s.name == step.name and s.state == step.state and s.time == step.time for s in command.steps
    )


async def apply_response(hub: Hub, device: Device, response: OperationResponse) -> Command:
    """Record the response's steps and, if final, the result. Returns the command after."""
    if response.device_id is not None and response.device_id != device.id:
        # ``deviceId`` names the target below a gateway; we only serve direct devices.
        log.debug("response %s names deviceId %s on %s", response.id, response.device_id, device.id)
    command = await find_operation(hub, device, response.id)
    if response.name is not None and response.name != command.name:
        raise BadRequest(
            f"operation {response.id!r} is {command.name!r}, not {response.name!r}",
            operation_id=response.id,
        )
    if command.state in TERMINAL:
        # A late or repeated response: the command's record stays as it is (B.8). A final
        # one arriving after the platform gave up (timed out, expired, cancelled) is kept
        # for audit as an ``opengate.late_response`` notification.
        if response.final and command.state in PLATFORM_ENDED:
            await hub.notifications.post_as_device(
                device,
                LATE_RESPONSE,
                {
                    "operationId": response.id,
                    "commandId": command.id,
                    "state": command.state.value,
                    "resultCode": response.result_code,
                    "resultDescription": response.description,
                },
            )
        log.debug(
            "operation %s of %s is already %s; response %s ignored",
            response.id,
            device.id,
            command.state.value,
            response.result_code or "(partial)",
        )
        return command
    steps = [_core_step(hub, raw, response) for raw in response.steps]
    steps = [s for s in steps if not _already_recorded(command, s)]
    final = response.final
    code = response.result_code
    last: CommandStep | None = None
    if final and steps:
        *steps, last = steps
    for step in steps:
        command = await hub.commands.progress(device, command.id, status=code, step=step)
    if not final:
        if not steps:  # OPERATION_PENDING without steps: still a sign of life
            command = await hub.commands.progress(device, command.id, status=code)
        return command
    assert code is not None
    if code not in KNOWN_CODES:
        log.warning(
            "operation %s of %s: unknown resultCode %r, taken as a failure",
            response.id,
            device.id,
            code,
        )
    result: dict[str, Any] = {"resultCode": code, "resultDescription": response.description}
    responses = [s.response for s in response.steps if s.response is not None]
    if responses:
        result["response"] = responses[-1]
    success = outcome(code) == "succeeded"
    error = None if success else f"{code}: {response.description or 'no description'}"
    return await hub.commands.complete(
        device, command.id, success=success, result=result, error=error, status=code, step=last
    )
