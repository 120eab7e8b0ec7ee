"""``tether agent``: run a device agent in the foreground.

``tether agent native`` connects as one device over the native device API and executes
the commands sent to it with :func:`tether.api.agent.default_handler` (``echo``,
``sleep``, ``fail``, ``steps``; anything else is echoed back). Other agents (one per
dialect) are added to :data:`agent_app` as commands of their own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Annotated, Literal
from urllib.parse import quote

import aiohttp
import typer

from tether.api.agent import Handler, NativeAgent, Outcome, Report, default_handler
from tether.api.views import CommandView
from tether.cli_commands.common import (
    DEFAULT_URL,
    ApiError,
    LogFormatOption,
    LogLevelOption,
    compact_json,
    error_of,
    fail,
    setup_logging,
    stop_on_signals,
    tidy_help,
)

log = logging.getLogger("tether.cli.agent")

#: ``tether agent native`` (one command; see :mod:`tether.cli_client`).
native_agent_app = typer.Typer(add_completion=False)

#: How often the agent's connection state is checked, to log connects and disconnects.
WATCH_INTERVAL = 0.25


def logging_handler(inner: Handler) -> Handler:
    """``inner``, logging each command it executes (and how it ended) at INFO."""

    async def handle(command: CommandView, report: Report) -> Outcome:
        started = time.monotonic()
        log.debug("command %s %s %s received", command.id, command.name, command.parameters)
        outcome = await inner(command, report)
        took = time.monotonic() - started
        if outcome.success:
            log.info(
                "command %s %s %s -> succeeded in %.3fs: %s",
                command.id,
                command.name,
                compact_json(command.parameters),
                took,
                compact_json(outcome.result),
            )
        else:
            log.info(
                "command %s %s %s -> failed in %.3fs: %s",
                command.id,
                command.name,
                compact_json(command.parameters),
                took,
                outcome.error,
            )
        return outcome

    return handle


@native_agent_app.command("native")
@tidy_help
def native(
    device_id: Annotated[
        str,
        typer.Option(
            "--device-id",
            envvar="TETHER_DEVICE_ID",
            help="The device to act as (registered with 'tether device create').",
            show_default=False,
        ),
    ],
    credential: Annotated[
        str,
        typer.Option(
            envvar="TETHER_DEVICE_CREDENTIAL",
            help="The device's secret (from 'tether device credential'); prefer the "
            "environment variable, which stays out of the process list.",
            show_default=False,
        ),
    ],
    url: Annotated[
        str,
        typer.Option(
            envvar="TETHER_URL",
            help="Base URL of the Tether server; several, comma-separated, for the nodes of a "
            "cluster (the agent moves to the next when one cannot be reached).",
        ),
    ] = (DEFAULT_URL),
    transport: Annotated[
        Literal["ws", "http"],
        typer.Option(
            help="ws: commands are pushed over a WebSocket; http: long-poll for them (for "
            "networks that block WebSockets)."
        ),
    ] = "ws",
    poll_wait: Annotated[
        float,
        typer.Option(
            help="Seconds each HTTP long-poll waits for a command (--transport http).", min=0.0
        ),
    ] = 30.0,
    telemetry: Annotated[
        float | None,
        typer.Option(
            help="Also send a 'telemetry' notification every this many seconds (a counter, "
            "uptime and a drifting temperature), to watch with 'tether notifications tail'.",
            min=0.1,
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run the native device agent until Ctrl-C or SIGTERM, logging every command it runs.

    It reconnects by itself when the server restarts, and runs a re-sent command only
    once. The built-in handler answers echo, sleep {"seconds": s}, fail {"error": "..."}
    and steps {"steps": ["a", "b"]}; any other command is echoed back.

    Example: TETHER_DEVICE_CREDENTIAL=... tether agent native --device-id lamp-1 --telemetry 5
    """
    from tether.cli import _run

    urls = [part.strip() for part in url.split(",") if part.strip()]
    for one in urls or [url]:
        if not one.startswith(("http://", "https://")):
            raise typer.BadParameter(
                f"{one!r} must start with http:// or https://", param_hint="--url"
            )
    setup_logging(log_level, log_format)
    agent = NativeAgent(
        urls,
        device_id,
        credential,
        transport=transport,
        handler=logging_handler(default_handler),
        poll_wait=poll_wait,
    )
    try:
        _run(run_agent(agent, telemetry))
    except ApiError as error:
        fail(f"error {error.code}: {error.message}")


async def preflight(agent: NativeAgent) -> None:
    """Fail fast on a refused credential; only warn when the server is not up yet."""
    url = f"{agent.base_url}/api/v1/device/{quote(agent.device_id, safe='')}/state"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(url, headers=agent.headers) as response,
        ):
            if response.status in (400, 401, 403, 404):
                raise error_of(response.status, response.reason, await response.read())
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        log.warning("cannot reach Tether at %s yet (%s); retrying", agent.base_url, error)


async def run_agent(agent: NativeAgent, telemetry: float | None = None) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly."""
    await preflight(agent)
    stop = stop_on_signals()
    running = asyncio.create_task(agent.run())
    helpers = [asyncio.create_task(watch(agent))]
    if telemetry is not None:
        helpers.append(asyncio.create_task(send_telemetry(agent, telemetry)))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping")
    for helper in helpers:
        helper.cancel()
    stopping.cancel()
    await agent.stop()
    try:
        await asyncio.wait_for(running, 5.0)
    except (TimeoutError, asyncio.CancelledError):
        pass
    except Exception as error:  # the agent is gone either way; say why
        log.warning("agent stopped with an error: %s", error)


async def send_telemetry(agent: NativeAgent, period: float) -> None:
    """Every ``period`` seconds while connected, a ``telemetry`` notification.

    Its parameters change on every send (a counter, the uptime, a temperature that
    wanders by up to 0.2 degrees), so a watcher sees the device is alive and reporting.
    """
    started = time.monotonic()
    count = 0
    temperature = 21.0
    while True:
        await asyncio.sleep(period)
        if not agent.connected.is_set():
            continue
        count += 1
        temperature = round(temperature + random.uniform(-0.2, 0.2), 2)
        parameters = {
            "count": count,
            "uptime": round(time.monotonic() - started, 1),
            "temperature": temperature,
        }
        try:
            await agent.notify("telemetry", parameters)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("telemetry %d not sent: %s", count, error)
        else:
            log.debug("telemetry %d sent: %s", count, compact_json(parameters))


async def watch(agent: NativeAgent) -> None:
    """Log each time the agent connects and disconnects."""
    connected = False
    while True:
        if not connected:
            await agent.connected.wait()
            connected = True
            log.info(
                "device %s connected to %s (%s); waiting for commands",
                agent.device_id,
                agent.base_url,
                agent.transport,
            )
        await asyncio.sleep(WATCH_INTERVAL)
        if not agent.connected.is_set():
            connected = False
            log.info("device %s disconnected; reconnecting", agent.device_id)
