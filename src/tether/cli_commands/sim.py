"""``tether sim``: run a simulated fleet against a server and report what it measured.

Everything heavy (aiohttp, the agents, the simulator) is imported when the command runs,
not when the command line is built, so ``tether --help`` stays instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tether.cli_commands.common import (
    Client,
    confirm,
    connect_reason,
    err,
    fail,
    note,
    out,
    parse_duration,
    print_json,
    stop_on_signals,
    warn,
    with_client,
)

if TYPE_CHECKING:
    from tether.sim import Credentials, Plan, Summary

#: ``tether sim`` (one command; see :mod:`tether.cli_client`).
sim_app = typer.Typer(add_completion=False)

LOAD = "Load"
FLEET = "Fleet"


def _parse_plan(
    url: str,
    *,
    name: str,
    devices: int | None,
    mix: str | None,
    duration: str,
    connect_rate: float,
    telemetry_interval: str,
    payload: int,
    command_rate: float,
    command_timeout: str,
    max_in_flight: int,
    churn_rate: float,
    churn_downtime: str,
    poll_interval: str,
    processes: int,
    source_addresses: str,
) -> Plan:
    from tether.sim import Plan, PlanError, check, default_mix, parse_mix

    try:
        fleet = parse_mix(mix) if mix else default_mix(100 if devices is None else devices)
        if mix and devices is not None and devices != sum(fleet.values()):
            raise PlanError(
                "--devices", f"{devices} is not the {sum(fleet.values())} devices --mix adds up to"
            )
        return check(
            Plan(
                url=url,
                name=name,
                mix=fleet,
                duration=_seconds(duration, "--duration"),
                connect_rate=connect_rate,
                telemetry_interval=_seconds(telemetry_interval, "--telemetry-interval"),
                payload_bytes=payload,
                command_rate=command_rate,
                command_timeout=_seconds(command_timeout, "--command-timeout"),
                max_in_flight=max_in_flight,
                churn_rate=churn_rate,
                churn_downtime=_seconds(churn_downtime, "--churn-downtime"),
                poll_interval=_seconds(poll_interval, "--poll-interval"),
                processes=processes,
                source_addresses=[a.strip() for a in source_addresses.split(",") if a.strip()],
            )
        )
    except PlanError as error:
        raise typer.BadParameter(error.message.split(": ", 1)[1], param_hint=error.option) from None


def _seconds(value: str, option: str) -> float:
    seconds = parse_duration(value, option)
    assert seconds is not None  # no "never" here
    return seconds


@sim_app.command("sim")
@with_client()
def sim(
    client: Client,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Devices in the default mix of every dialect (100 without --mix).",
            rich_help_panel=FLEET,
            show_default=False,
        ),
    ] = None,
    mix: Annotated[
        str | None,
        typer.Option(
            help="Devices per dialect, e.g. native-ws=50,ewelink=20,controlid=10 (dialects: "
            "native-ws, native-http, devicehive, ewelink, controlid, opengate, infiniteclouds).",
            rich_help_panel=FLEET,
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str,
        typer.Option(
            help="Run name: devices are sim-NAME-..., in network sim-NAME.",
            rich_help_panel=FLEET,
        ),
    ] = "sim",
    duration: Annotated[
        str, typer.Option(help="How long the load runs (30s, 5m).", rich_help_panel=LOAD)
    ] = "30s",
    connect_rate: Annotated[
        float,
        typer.Option(help="Devices started per second (0: all at once).", rich_help_panel=LOAD),
    ] = 200.0,
    telemetry_interval: Annotated[
        str,
        typer.Option(
            help="Each device reports telemetry this often (0: never).", rich_help_panel=LOAD
        ),
    ] = "5s",
    payload: Annotated[
        int, typer.Option(help="Bytes of filler in each telemetry message.", rich_help_panel=LOAD)
    ] = 64,
    command_rate: Annotated[
        float,
        typer.Option(
            help="Commands per second sent through the native API to random connected "
            "devices, each timed until its result.",
            rich_help_panel=LOAD,
        ),
    ] = 10.0,
    command_timeout: Annotated[
        str, typer.Option(help="A command's delivery and execution limit.", rich_help_panel=LOAD)
    ] = "10s",
    max_in_flight: Annotated[
        int, typer.Option(help="Commands waiting for a result at most.", rich_help_panel=LOAD)
    ] = 1000,
    churn_rate: Annotated[
        float,
        typer.Option(help="Devices per second disconnected and reconnected.", rich_help_panel=LOAD),
    ] = 0.0,
    churn_downtime: Annotated[
        str, typer.Option(help="How long a churned device stays away.", rich_help_panel=LOAD)
    ] = "1s",
    poll_interval: Annotated[
        str,
        typer.Option(
            help="How often polling devices (Control iD, InfiniteClouds) poll.",
            rich_help_panel=LOAD,
        ),
    ] = "2s",
    processes: Annotated[
        int,
        typer.Option(help="Simulator processes (when one core cannot generate the load)."),
    ] = 1,
    source_addresses: Annotated[
        str,
        typer.Option(
            help="Local addresses to connect from, comma-separated (e.g. 127.0.0.2,127.0.0.3), "
            "for more connections than one address has ports.",
            show_default=False,
        ),
    ] = "",
    callback_host: Annotated[
        str,
        typer.Option(
            help="Address the server reaches this machine at (OpenGate devices serve "
            "operation requests there)."
        ),
    ] = "127.0.0.1",
    cleanup: Annotated[
        bool,
        typer.Option(
            "--cleanup", help="Delete the devices, user and network of run --name, and exit."
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask before loading a non-local server.")
    ] = False,
) -> None:
    """Simulate a fleet of devices of any mix of dialects against a server.

    It provisions its devices through the native API (namespaced by --name), runs each on
    its dialect's real agent, sends telemetry, commands and churn for --duration, shows
    live progress, and prints a summary: latency percentiles, errors by kind, and its own
    CPU and memory (so a simulator limit is not mistaken for the server's). The devices
    stay for inspection; --cleanup removes them. See docs/sim.md.

    Example: tether sim --url http://127.0.0.1:8080 --devices 200 --duration 20 --json
    """
    import aiohttp

    from tether.cli import _run
    from tether.sim import ApiError, Credentials, SimError, remove
    from tether.sim.plan import is_local

    url = client.url
    plan = _parse_plan(
        url,
        name=name,
        devices=devices,
        mix=mix,
        duration=duration,
        connect_rate=connect_rate,
        telemetry_interval=telemetry_interval,
        payload=payload,
        command_rate=command_rate,
        command_timeout=command_timeout,
        max_in_flight=max_in_flight,
        churn_rate=churn_rate,
        churn_downtime=churn_downtime,
        poll_interval=poll_interval,
        processes=processes,
        source_addresses=source_addresses,
    )
    credentials = Credentials(token=client.token, login=client.login, password=client.password)
    if credentials.token is None and credentials.password is None:
        fail(
            "no credentials: pass --token (or TETHER_TOKEN), or --login and --password "
            "(or TETHER_LOGIN and TETHER_PASSWORD)"
        )
    if not is_local(url) and not cleanup:
        warn(
            f"{url} is not this machine: the simulator will open {plan.devices:,} device "
            "sessions and send load to it."
        )
        confirm("Load that server?", yes)
    try:
        if cleanup:
            cleaned = _run(remove(url, name, credentials))
            if client.json:
                import msgspec

                print_json(msgspec.to_builtins(cleaned))
            else:
                out.print(
                    f"removed {cleaned.devices:,} devices of sim-{name}"
                    + (", its user" if cleaned.user else "")
                    + (" and its network" if cleaned.network else "")
                )
            return
        summary: Summary = _run(
            _run_with_progress(plan, credentials, callback_host, live=not client.json)
        )
    except ApiError as error:
        fail(f"error {error.server_code}: {error.message.split(': ', 1)[-1]}")
    except aiohttp.ClientConnectorError as error:
        fail(f"cannot reach Tether at {url} ({connect_reason(error)}); is 'tether serve' running?")
    except SimError as error:
        fail(f"the simulator failed: {error.message}")
    if client.json:
        import msgspec

        print_json(msgspec.to_builtins(summary))
    else:
        from tether.sim.display import render

        out.print(render(summary))
        if summary.error_count:
            note("errors are counted by kind; see docs/sim.md for what each means")


async def _run_with_progress(
    plan: Plan, credentials: Credentials, callback_host: str, *, live: bool
) -> Summary:
    """The run, with the live progress line on stderr when that is a terminal.

    The first Ctrl-C (or SIGTERM) ends the load early and still prints the summary of
    what ran; a second one interrupts at once.
    """
    from tether.sim import run
    from tether.sim.display import LiveProgress

    loop = asyncio.get_running_loop()

    def second_interrupts() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    stop = stop_on_signals(second_interrupts)
    if not (live and sys.stderr.isatty()):
        return await run(plan, credentials, callback_host=callback_host, stop=stop)
    with LiveProgress(err, plan) as progress:
        return await run(
            plan,
            credentials,
            on_progress=progress.update,
            callback_host=callback_host,
            stop=stop,
        )
