"""``tether agent devicehive``: a DeviceHive device in the foreground.

Subscribes to its own commands over ``/api/websocket`` (falling back to REST long polling)
and answers each with ``command/update``: the parameters are echoed with status
``done``; ``fail`` answers ``failed`` and ``sleep`` waits ``seconds`` first.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import typer

from tether.cli_commands.common import (
    DEFAULT_URL,
    LogFormatOption,
    LogLevelOption,
    fail,
    setup_logging,
    stop_on_signals,
    tidy_help,
)
from tether.dialects.devicehive.agent import AuthError, DeviceHiveAgent

#: ``tether agent devicehive`` (one command; see :mod:`tether.cli_client`).
devicehive_agent_app = typer.Typer(add_completion=False)


@devicehive_agent_app.command("devicehive")
@tidy_help
def devicehive(
    device_id: Annotated[
        str, typer.Option("--device-id", help="The device to act as.", show_default=False)
    ],
    url: Annotated[
        str, typer.Option(envvar="TETHER_URL", help="Base URL of the Tether server.")
    ] = DEFAULT_URL,
    refresh_token: Annotated[
        str | None,
        typer.Option(
            envvar="TETHER_DEVICEHIVE_REFRESH_TOKEN",
            help="DeviceHive refresh token (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
    login: Annotated[
        str | None, typer.Option(envvar="TETHER_LOGIN", help="Login, if no refresh token.")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(envvar="TETHER_PASSWORD", help="Password (prefer the environment variable)."),
    ] = None,
    transport: Annotated[
        Literal["ws", "http"], typer.Option(help="ws (falls back to http) or http polling.")
    ] = "ws",
    register: Annotated[
        bool, typer.Option(help="Create the device (PUT device/{id}) if it does not exist.")
    ] = True,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Act as a DeviceHive device until interrupted: subscribe to its commands (WebSocket,
    or REST long polls), echo their parameters with status done, and report each result.

    Example: TETHER_DEVICEHIVE_REFRESH_TOKEN=... tether agent devicehive --device-id dh-1
    """
    setup_logging(log_level, log_format)
    if refresh_token is None and (login is None or password is None):
        raise typer.BadParameter("give --refresh-token, or --login and --password")
    agent = DeviceHiveAgent(
        url,
        device_id,
        refresh_token=refresh_token,
        login=login,
        password=password,
        transport=transport,
        register=register,
    )

    async def main() -> None:
        stopping: list[asyncio.Task[None]] = []
        stop_on_signals(lambda: stopping.append(asyncio.create_task(agent.stop())))
        await agent.run()

    try:
        asyncio.run(main())
    except AuthError as error:
        fail(f"refused: {error}")
