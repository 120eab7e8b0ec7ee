"""``tether agent controlid`` (an emulated terminal) and ``tether controlid ...`` (builders).

The agent is :class:`tether.dialects.controlid.agent.Terminal`: it polls ``<url>/push``
every ``--period`` seconds with the terminal's ``deviceId``, runs what it gets against an
in-memory local API and posts ``/result``; opening a door sends a Monitor ``door`` event.

The builders queue the common local-API commands for a terminal through the native API
(``POST /api/v1/devices/<id>/commands``), so the server's Control iD shaper checks them
before they are queued; ``tether command send <id> <endpoint> --params ...`` reaches any
other endpoint.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from tether.cli_commands.commands import finish, follow, outcome_title
from tether.cli_commands.common import (
    DEFAULT_URL,
    MAX_SERVER_WAIT,
    Api,
    Client,
    LogFormatOption,
    LogLevelOption,
    fail,
    parse_duration,
    parse_json,
    setup_logging,
    stop_on_signals,
    tidy_help,
    with_client,
)

if TYPE_CHECKING:
    # Imported where the agent starts: the builders below (and --help) need no aiohttp.
    from tether.dialects.controlid.agent import Terminal

#: ``tether agent controlid`` (one command; see :mod:`tether.cli_client`).
controlid_agent_app = typer.Typer(add_completion=False)

controlid_app = typer.Typer(
    help="Queue Control iD local-API commands for a terminal (checked before queueing).\n\n"
    "Example: tether controlid door 4408955728035889 --door 1 --wait 30s",
    no_args_is_help=True,
)


@controlid_agent_app.command("controlid")
@tidy_help
def controlid(
    device_id: Annotated[
        int,
        typer.Option(
            "--device-id", help="The terminal's deviceId (int64).", show_default=False, min=0
        ),
    ],
    url: Annotated[
        str,
        typer.Option(
            envvar="TETHER_URL",
            help="push_remote_address: the base the terminal appends /push and /result to.",
        ),
    ] = DEFAULT_URL,
    monitor_url: Annotated[
        str | None,
        typer.Option(
            help="Monitor base (http://host:port/path); events go to <base>/<topic>. "
            "Default: <url>/api/notifications.",
            show_default=False,
        ),
    ] = None,
    period: Annotated[
        float, typer.Option(help="push_request_period: seconds between empty polls.", min=0.01)
    ] = 5.0,
    timeout: Annotated[
        int,
        typer.Option(help="push_request_timeout: milliseconds to wait for an answer.", min=100),
    ] = 15000,
    uuid: Annotated[
        bool, typer.Option(help="Send a uuid on each poll (newer firmware does).")
    ] = True,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run an emulated terminal until Ctrl-C or SIGTERM, logging every command it runs.

    Example: tether agent controlid --device-id 4408955728035889 --url http://127.0.0.1:8080
    """
    from tether.cli import _run

    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} must start with http:// or https://", param_hint="--url")
    setup_logging(log_level, log_format)
    from tether.dialects.controlid.agent import Terminal

    terminal = Terminal(
        url,
        device_id,
        period=period,
        timeout=timeout / 1000,
        monitor_url=monitor_url or url.rstrip("/") + "/api/notifications",
        send_uuid=uuid,
    )
    _run(run_terminal(terminal))


async def run_terminal(terminal: Terminal) -> None:
    stop = stop_on_signals()
    logging.getLogger("tether.controlid.agent").info(
        "terminal %s polling %s/push every %ss",
        terminal.device_id,
        terminal.base_url,
        terminal.period,
    )
    await terminal.run(stop)


# --- builders ------------------------------------------------------------------------------

DeviceArg = Annotated[str, typer.Argument(help="The terminal's device id.", show_default=False)]
WaitOpt = Annotated[
    str | None,
    typer.Option(help="Wait up to this long for the result (30s, 5m).", show_default=False),
]


def queue(client: Client, device_id: str, name: str, parameters: Any, wait: str | None) -> None:
    """Create the command (the server shapes and checks it) and print it or its outcome."""
    seconds = parse_duration(wait, "--wait") if wait is not None else None

    async def send(api: Api) -> dict[str, Any]:
        chunk = round(min(seconds or 0.0, MAX_SERVER_WAIT), 3)
        _, command = await api.call_status(
            "POST",
            f"/api/v1/devices/{device_id}/commands",
            body={"name": name, "parameters": parameters},
            params={"wait": chunk or None},
            wait=chunk,
        )
        return await follow(api, command, seconds) if seconds else command

    command = client.run(send)
    finish(client, command, seconds, outcome_title(name, command))


def _json(value: str | None, option: str) -> Any:
    return parse_json(value, option) if value is not None else None


@controlid_app.command("door")
@with_client()
def door(client: Client, device_id: DeviceArg, door: int = 1, wait: WaitOpt = None) -> None:
    """Open a door relay (execute_actions door).

    Example: tether controlid door 4408955728035889 --door 1 --wait 30s
    """
    action = {"action": "door", "parameters": f"door={door}"}
    queue(client, device_id, "execute_actions", {"actions": [action]}, wait)


@controlid_app.command("secbox")
@with_client()
def secbox(
    client: Client, device_id: DeviceArg, id: int = 65793, reason: int = 3, wait: WaitOpt = None
) -> None:
    """Open through the security box (execute_actions sec_box).

    Example: tether controlid secbox 4408955728035889
    """
    action = {"action": "sec_box", "parameters": f"id={id}, reason={reason}"}
    queue(client, device_id, "execute_actions", {"actions": [action]}, wait)


@controlid_app.command("catra")
@with_client()
def catra(
    client: Client,
    device_id: DeviceArg,
    allow: Annotated[
        Literal["clockwise", "anticlockwise", "both"], typer.Option(help="Direction to free.")
    ] = "both",
    wait: WaitOpt = None,
) -> None:
    """Free a turnstile (execute_actions catra).

    Example: tether controlid catra 4408955728035889 --allow clockwise
    """
    action = {"action": "catra", "parameters": f"allow={allow}"}
    queue(client, device_id, "execute_actions", {"actions": [action]}, wait)


@controlid_app.command("message")
@with_client()
def message(
    client: Client,
    device_id: DeviceArg,
    text: Annotated[str, typer.Argument(help="What to show.", show_default=False)],
    timeout_ms: Annotated[int, typer.Option(help="How long it stays, ms.", min=0)] = 5000,
    wait: WaitOpt = None,
) -> None:
    """Show a message on the screen (message_to_screen).

    Example: tether controlid message 4408955728035889 "Welcome" --timeout-ms 3000
    """
    queue(client, device_id, "message_to_screen", {"message": text, "timeout": timeout_ms}, wait)


ObjectArg = Annotated[str, typer.Argument(help="Table, e.g. users, cards.", show_default=False)]
WhereOpt = Annotated[
    str | None,
    typer.Option(help='Filter as JSON, e.g. \'{"users": {"id": 1000}}\'.', show_default=False),
]


@controlid_app.command("load")
@with_client()
def load(
    client: Client,
    device_id: DeviceArg,
    object: ObjectArg,
    where: WhereOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Read rows of a table (load_objects).

    Example: tether controlid load 4408955728035889 users --where '{"users": {"id": 1000}}'
    """
    body: dict[str, Any] = {"object": object}
    if where is not None:
        body["where"] = _json(where, "--where")
    queue(client, device_id, "load_objects", body, wait)


@controlid_app.command("create")
@with_client()
def create(
    client: Client,
    device_id: DeviceArg,
    object: ObjectArg,
    values: Annotated[str, typer.Option(help="Rows as a JSON list.", show_default=False)],
    wait: WaitOpt = None,
) -> None:
    """Insert rows (create_objects).

    Example: tether controlid create 4408955728035889 users --values '[{"id": 1000, "name": "Ana"}]'
    """
    queue(
        client,
        device_id,
        "create_objects",
        {"object": object, "values": _json(values, "--values")},
        wait,
    )


@controlid_app.command("modify")
@with_client()
def modify(
    client: Client,
    device_id: DeviceArg,
    object: ObjectArg,
    values: Annotated[str, typer.Option(help="New values as a JSON object.", show_default=False)],
    where: Annotated[str, typer.Option(help="Which rows, as JSON.", show_default=False)],
    wait: WaitOpt = None,
) -> None:
    """Change rows (modify_objects).

    Example: tether controlid modify 4408955728035889 users --values '{"name": "Ana"}' --where ...
    """
    body = {"object": object, "values": _json(values, "--values"), "where": _json(where, "--where")}
    queue(client, device_id, "modify_objects", body, wait)


@controlid_app.command("destroy")
@with_client()
def destroy(
    client: Client,
    device_id: DeviceArg,
    object: ObjectArg,
    where: Annotated[str, typer.Option(help="Which rows, as JSON.", show_default=False)],
    wait: WaitOpt = None,
) -> None:
    """Delete rows (destroy_objects).

    Example: tether controlid destroy 4408955728035889 users --where '{"users": {"id": 1000}}'
    """
    queue(
        client,
        device_id,
        "destroy_objects",
        {"object": object, "where": _json(where, "--where")},
        wait,
    )


@controlid_app.command("config")
@with_client()
def config(
    client: Client,
    device_id: DeviceArg,
    set_: Annotated[
        list[str],
        typer.Option("--set", help="section.key=value, repeatable.", show_default=False),
    ],
    wait: WaitOpt = None,
) -> None:
    """Change settings (set_configuration), e.g. --set general.language=pt_BR.

    Example: tether controlid config 4408955728035889 --set general.language=pt_BR
    """
    body: dict[str, dict[str, str]] = {}
    for item in set_:
        path, eq, value = item.partition("=")
        section, dot, key = path.partition(".")
        if not eq or not dot or not section or not key:
            fail(f"--set {item!r}: expected section.key=value")
        body.setdefault(section, {})[key] = value
    queue(client, device_id, "set_configuration", body, wait)


@controlid_app.command("image")
@with_client()
def image(
    client: Client,
    device_id: DeviceArg,
    user_id: Annotated[int, typer.Option(help="The user the photo is for.", min=0)],
    file: Annotated[Path, typer.Option(help="JPEG file.", exists=True, dir_okay=False)],
    match: Annotated[bool, typer.Option(help="Ask the terminal to check the face.")] = False,
    wait: WaitOpt = None,
) -> None:
    """Upload a user's face photo (user_set_image, sent as base64 octet-stream).

    Example: tether controlid image 4408955728035889 --user-id 1000 --file ana.jpg
    """
    encoded = base64.b64encode(file.read_bytes()).decode()
    parameters = {"user_id": user_id, "image": encoded, "match": int(match)}
    queue(client, device_id, "user_set_image", parameters, wait)
