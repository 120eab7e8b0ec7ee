"""``tether presence watch``: devices coming online and going offline, live."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from tether.cli_commands.common import Client, out, print_json, with_client
from tether.cli_commands.notifications import (
    SUBSCRIBE_REQUEST,
    DeviceFilter,
    Follower,
    precise_time,
    until_stopped,
)

presence_app = typer.Typer(
    help="Watch devices come online and go offline.\n\n"
    "Example: tether presence watch --device lamp-1",
    no_args_is_help=True,
)


def presence_line(data: dict[str, Any]) -> Text:
    """One readable line: time, device, online or offline."""
    online = bool(data.get("online"))
    return Text.assemble(
        (precise_time(data.get("at")), "dim"),
        "  ",
        (str(data.get("deviceId")), "cyan"),
        "  ",
        ("online", "green") if online else ("offline", "red"),
    )


@presence_app.command("watch")
@with_client()
def watch(
    client: Client,
    device: DeviceFilter = None,
    count: Annotated[
        int | None,
        typer.Option(help="Exit after this many changes.", min=1, show_default=False),
    ] = None,
) -> None:
    """Follow presence changes live until Ctrl-C: one line each (time, device, online or
    offline); with --json, one JSON object per line.

    Example: tether presence watch --device lamp-1 --json
    """
    frame: dict[str, Any] = {
        "type": "subscribe",
        "requestId": SUBSCRIBE_REQUEST,
        "topic": "presence",
    }
    if device:
        frame["deviceIds"] = device

    def show(data: dict[str, Any]) -> None:
        if client.json:
            print_json(data, compact=True)
        else:
            out.print(presence_line(data))

    client.run(lambda api: until_stopped(Follower(api, frame, show, count, "presence").run()))
