"""``tether agent opengate``: an OpenGate device in the foreground.

Platform-driven (default): serve ``operation/request`` on ``--port`` and answer each
operation synchronously or asynchronously (``--mode``). Device-driven
(``--driven-by device``): wake every ``--sleep`` seconds, fetch pending operations, answer
them, sleep again. Both post responses and IoT data to Tether's OpenGate south API.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

import aiohttp
import typer
from aiohttp import web

from tether.cli_commands.common import (
    DEFAULT_URL,
    LogFormatOption,
    LogLevelOption,
    setup_logging,
    stop_on_signals,
    tidy_help,
)
from tether.dialects.opengate.agent import AgentConfig, OpenGateAgent

#: ``tether agent opengate`` (one command; see :mod:`tether.cli_client`).
opengate_agent_app = typer.Typer(add_completion=False)


@opengate_agent_app.command("opengate")
@tidy_help
def opengate(
    device_id: Annotated[
        str, typer.Option("--device-id", help="The device to act as.", show_default=False)
    ],
    api_key: Annotated[
        str,
        typer.Option(
            envvar="TETHER_OPENGATE_API_KEY",
            help="X-ApiKey for Tether: the device's credential or an API key (prefer the "
            "environment variable).",
            show_default=False,
        ),
    ],
    url: Annotated[
        str, typer.Option(envvar="TETHER_URL", help="Base URL of the Tether server.")
    ] = DEFAULT_URL,
    host: Annotated[str, typer.Option(help="Address the operation service listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(help="Port of the operation service (OpenGate uses 1123).", min=0)
    ] = 1123,
    mode: Annotated[
        Literal["sync", "async"],
        typer.Option(
            help="sync: the final response is the HTTP reply; async: reply 201 at once, then "
            "POST partial and final responses."
        ),
    ] = "sync",
    sync_ops: Annotated[
        str,
        typer.Option(
            help="Comma-separated operation names answered synchronously even with --mode async.",
        ),
    ] = "",
    driven_by: Annotated[
        Literal["platform", "device"],
        typer.Option(help="platform: serve operation/request; device: wake, fetch pending, sleep."),
    ] = "platform",
    sleep: Annotated[
        float, typer.Option(help="Seconds asleep between wake-ups (--driven-by device).", min=0)
    ] = 30.0,
    cycles: Annotated[
        int, typer.Option(help="Wake-ups before exiting (0: forever; --driven-by device).", min=0)
    ] = 0,
    request_path: Annotated[
        str, typer.Option(help="Path template of the operation service.")
    ] = "/v80/devices/{device_id}/operation/request",
    expect_key: Annotated[
        str | None,
        typer.Option(help="Refuse operation requests without this X-ApiKey.", show_default=False),
    ] = None,
    step_delay: Annotated[
        float, typer.Option(help="Seconds between partial responses.", min=0)
    ] = 0.1,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run an OpenGate device agent until Ctrl-C or SIGTERM.

    Example: TETHER_OPENGATE_API_KEY=... tether agent opengate --device-id og-1 --port 1123
    --mode async
    """
    from tether.cli import _run

    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} must start with http:// or https://", param_hint="--url")
    setup_logging(log_level, log_format)
    config = AgentConfig(
        device_id=device_id,
        api_key=api_key,
        platform_url=url,
        host=host,
        port=port,
        mode=mode,
        request_path=request_path,
        expect_key=expect_key,
        step_delay=step_delay,
        sync_ops=frozenset(name.strip() for name in sync_ops.split(",") if name.strip()),
    )
    _run(run(config, driven_by, sleep, cycles or None))


async def run(config: AgentConfig, driven_by: str, sleep: float, cycles: int | None) -> None:
    stop = stop_on_signals()
    log = logging.getLogger("tether.agent.opengate")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        agent = OpenGateAgent(config, session)
        if driven_by == "device":
            waking = asyncio.create_task(agent.wake_loop(sleep, cycles))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            stopping.cancel()
            return
        runner = web.AppRunner(agent.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else config.port
        log.info(
            "serving operation requests on http://%s:%s (%s mode)", config.host, bound, config.mode
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
