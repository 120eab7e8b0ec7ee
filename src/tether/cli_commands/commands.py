"""``tether command``: send commands to devices, follow them to a result, cancel them.

With ``--wait``, ``send`` and ``show`` exit with the outcome, so scripts can branch on it:
0 when the command succeeded, 1 when it failed, expired, timed out or was cancelled, and
2 when it is still running after the wait.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

import msgspec
import typer

from tether.api.codec import CommandCreate
from tether.cli_commands.common import (
    MAX_SERVER_WAIT,
    Api,
    Client,
    Col,
    SkipOption,
    emit_list,
    emit_record,
    note,
    parse_duration,
    parse_json,
    with_client,
)
from tether.core.lifecycle import CommandState

command_app = typer.Typer(
    help="Send commands to devices and follow them to a result.\n\n"
    "A command goes pending -> sent -> delivered -> in_progress -> succeeded or failed "
    "(or expired, timed_out, cancelled). With --wait, the exit status is the outcome: "
    "0 succeeded, 1 failed/expired/timed_out/cancelled, 2 still running.\n\n"
    "Example: tether command send lamp-1 set --params '{\"on\": true}' --wait 10",
    no_args_is_help=True,
)

SUCCEEDED = "succeeded"
FAILED = frozenset({"failed", "expired", "timed_out", "cancelled"})
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_RUNNING = 0, 1, 2


COMMAND_COLUMNS = (
    Col("ID", "id"),
    Col("DEVICE", "deviceId", wrap=False),
    Col("NAME", "name"),
    Col("STATE", "state", "state"),
    Col("CREATED", "createdAt", "time"),
    Col("COMPLETED", "completedAt", "time"),
    Col("RESULT / ERROR", "outcome"),
)
COMMAND_FIELDS = (
    Col("id", "id"),
    Col("device", "deviceId"),
    Col("name", "name"),
    Col("parameters", "parameters", "json"),
    Col("state", "state", "state"),
    Col("status", "status"),
    Col("result", "result", "json"),
    Col("error", "error"),
    Col("steps", "stepList", "list"),
    Col("created", "createdAt", "time"),
    Col("delivered", "deliveredAt", "time"),
    Col("completed", "completedAt", "time"),
    Col("expires", "expiresAt", "time"),
    Col("timeout", "timeout", "seconds"),
)

CommandId = Annotated[
    int, typer.Argument(help="Command id (printed by 'send', see 'tether command list').")
]
WaitOption = Annotated[
    str | None,
    typer.Option(
        help="Wait up to this long for a result (seconds or 30s, 5m); the exit status "
        "then says how it ended.",
        show_default=False,
    ),
]


def exit_code(command: dict[str, Any]) -> int:
    """The exit status for a command after a wait: 0 succeeded, 1 failed, 2 running."""
    state = command.get("state")
    if state == SUCCEEDED:
        return EXIT_SUCCEEDED
    if state in FAILED:
        return EXIT_FAILED
    return EXIT_RUNNING


def _display(command: Any) -> Any:
    """The command with two derived keys for tables: ``outcome`` and ``stepList``."""
    if not isinstance(command, dict):
        return command
    steps = [f"{s.get('name')} ({s.get('state')})" for s in command.get("steps") or []]
    error = command.get("error")
    outcome = f"error: {error}" if error is not None else command.get("result")
    return {**command, "outcome": outcome, "stepList": steps}


async def follow(api: Api, command: dict[str, Any], wait: float) -> dict[str, Any]:
    """Wait (up to ``wait`` seconds in all) until the command is terminal."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while exit_code(command) == EXIT_RUNNING:
        remaining = deadline - loop.time()
        if remaining <= 0.01:
            break
        chunk = round(min(remaining, MAX_SERVER_WAIT), 3)
        _, command = await api.call_status(
            "GET", f"/api/v1/commands/{command['id']}", params={"wait": chunk}, wait=chunk
        )
    return command


def outcome_title(what: str, command: dict[str, Any]) -> str:
    """``<what> queued`` while pending, else ``<what> <state>`` (``lamp-on succeeded``)."""
    state = command.get("state")
    return f"{what} queued" if state in (None, "pending") else f"{what} {state}"


def record_fields(command: dict[str, Any]) -> tuple[Col, ...]:
    """The rows worth showing for this command.

    Devices that answer with the result itself (eWeLink, InfiniteClouds, Control iD)
    never acknowledge delivery on its own, so their commands have no delivery time: a
    ``delivered -`` row would read as if the device never got the command.
    """
    if command.get("deliveredAt") is None:
        return tuple(col for col in COMMAND_FIELDS if col.key != "deliveredAt")
    return COMMAND_FIELDS


def _emit(client: Client, command: Any, title: str | None = None) -> None:
    if client.json:
        emit_record(client, command, COMMAND_FIELDS)
    else:
        emit_record(client, _display(command), record_fields(command), title=title)


def finish(client: Client, command: dict[str, Any], wait: float | None, title: str | None) -> None:
    """Print the command; after a wait, exit with its outcome (see :func:`exit_code`)."""
    _emit(client, command, title)
    if wait is None:
        return
    code = exit_code(command)
    if code == EXIT_RUNNING:
        note(
            f"command {command['id']} is still {command['state']} after {wait:g}s; "
            f"follow it with: tether command show {command['id']} --wait 30"
        )
    raise typer.Exit(code)


def _wait_seconds(wait: str | None) -> float | None:
    seconds = parse_duration(wait, "--wait") if wait is not None else None
    return seconds or None  # --wait 0 means do not wait


@command_app.command("send")
@with_client()
def send(
    client: Client,
    device_id: Annotated[str, typer.Argument(help="The device to command.", show_default=False)],
    name: Annotated[
        str, typer.Argument(help="Command name, as the device understands it.", show_default=False)
    ],
    params: Annotated[
        str | None,
        typer.Option(help="Parameters as JSON (or @file.json), e.g. '{\"on\": true}'."),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Execution limit once delivered (30s, 5m, or 'never'); default: the "
            "server's. Past it the command is timed_out.",
            show_default=False,
        ),
    ] = None,
    lifetime: Annotated[
        str | None,
        typer.Option(
            help="Delivery deadline from now (10m, 1h, or 'never'); default: the server's. "
            "Undelivered by then, the command expires.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOption = None,
) -> None:
    """Send a command to a device and print it; with --wait, wait for its result.

    Any device can be commanded this way, whatever its dialect. With --wait the exit
    status is 0 when it succeeded, 1 when it failed (or expired, timed out, was
    cancelled), 2 when it is still running.

    Example: tether command send lamp-1 set --params '{"on": true}' --wait 10s
    """
    body = CommandCreate(
        name=name,
        parameters=parse_json(params, "--params") if params is not None else None,
        timeout=msgspec.UNSET
        if timeout is None
        else parse_duration(timeout, "--timeout", allow_never=True),
        lifetime=msgspec.UNSET
        if lifetime is None
        else parse_duration(lifetime, "--lifetime", allow_never=True),
    )
    seconds = _wait_seconds(wait)

    async def send_one(api: Api) -> dict[str, Any]:
        chunk = round(min(seconds or 0.0, MAX_SERVER_WAIT), 3)
        _, command = await api.call_status(
            "POST",
            f"/api/v1/devices/{quote(device_id, safe='')}/commands",
            body=body,
            params={"wait": chunk or None},
            wait=chunk,
        )
        return await follow(api, command, seconds) if seconds else command

    command = client.run(send_one)
    finish(client, command, seconds, outcome_title("command", command))


@command_app.command("show")
@with_client()
def show(client: Client, command_id: CommandId, wait: WaitOption = None) -> None:
    """Show a command: its state, result or error, and progress steps.

    With --wait, wait for it to finish; the exit status then says how it ended (0
    succeeded, 1 failed, 2 still running).

    Example: tether command show 42 --wait 1m
    """
    seconds = _wait_seconds(wait)

    async def get(api: Api) -> dict[str, Any]:
        command: dict[str, Any] = await api.call("GET", f"/api/v1/commands/{command_id}")
        return await follow(api, command, seconds) if seconds else command

    finish(client, client.run(get), seconds, None)


@command_app.command("list")
@with_client()
def list_commands(
    client: Client,
    device: Annotated[
        list[str] | None, typer.Option(help="Only this device's commands; repeat for several.")
    ] = None,
    state: Annotated[
        list[CommandState] | None,
        typer.Option(help="Only commands in this state; repeat for several."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Only commands with this name.")] = None,
    take: Annotated[
        int, typer.Option(help="At most this many, newest first.", min=1, max=1000)
    ] = 50,
    skip: SkipOption = 0,
) -> None:
    """List commands, newest first.

    Example: tether command list --device lamp-1 --state failed --state timed_out
    """
    params = {
        "deviceId": device or None,
        "state": [s.value for s in state] if state else None,
        "name": name,
        "take": take,
        "skip": skip or None,
        "desc": True,
    }
    rows = client.run(lambda api: api.call("GET", "/api/v1/commands", params=params))
    if not client.json:
        rows = [_display(row) for row in rows]
    emit_list(client, rows, COMMAND_COLUMNS, empty="no commands")


@command_app.command("cancel")
@with_client()
def cancel(client: Client, command_id: CommandId) -> None:
    """Cancel a command that has not finished (a finished one answers 'conflict').

    Example: tether command cancel 42
    """
    row = client.run(lambda api: api.call("POST", f"/api/v1/commands/{command_id}/cancel"))
    _emit(client, row, "command cancelled")
