"""``tether agent ewelink``: an emulated Sonoff that talks to Tether as a real one would.

It follows the golden device transcript (dispatch, register with the factory apikey,
date, full state report, timers query), then applies every ``update`` the cloud forwards,
acks it and reports what changed. ``--switches N`` makes it a multi-channel device,
``--th`` a TH10/TH16 whose temperature drifts every ``--sensor-period`` seconds and whose
targets it applies itself, as the firmware does. It reconnects when the connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from typing import Annotated, Any

import typer

from tether.cli_commands.common import (
    DEFAULT_URL,
    LogFormatOption,
    LogLevelOption,
    parse_json,
    setup_logging,
    stop_on_signals,
    tidy_help,
)
from tether.core.backoff import Backoff
from tether.dialects.ewelink.agent import EmulatedSonoff, RegisterRefused

log = logging.getLogger("tether.ewelink.agent")

#: ``tether agent ewelink`` (one command; see :mod:`tether.cli_client`).
ewelink_agent_app = typer.Typer(add_completion=False)

#: Reconnect delays: from RECONNECT_FIRST doubling up to RECONNECT_MAX seconds.
RECONNECT_FIRST, RECONNECT_MAX = 1.0, 60.0

#: A TH16 as SonoffLAN's tests show it (reference §5.2), in manual mode.
TH16: dict[str, Any] = {
    "version": 8,
    "sledOnline": "on",
    "init": 1,
    "switch": "off",
    "fwVersion": "3.5.0",
    "rssi": -50,
    "startup": "off",
    "pulse": "off",
    "pulseWidth": 500,
    "deviceType": "normal",
    "sensorType": "AM2301",
    "currentHumidity": "45",
    "currentTemperature": "18.8",
    "mainSwitch": "off",
    "targets": [
        {"targetHigh": "20", "reaction": {"switch": "off"}},
        {"targetLow": "18", "reaction": {"switch": "on"}},
    ],
}


def initial_params(switches: int, th: bool, extra: Any) -> dict[str, Any]:
    if th:
        params = dict(TH16)
    elif switches > 1:
        params = {
            "switches": [{"switch": "off", "outlet": i} for i in range(switches)],
            "configure": [{"startup": "off", "outlet": i} for i in range(switches)],
            "fwVersion": "3.5.0",
            "rssi": -50,
            "staMac": "5C:CF:7F:A6:FD:F6",
        }
    else:
        params = {
            "switch": "off",
            "fwVersion": "1.5.5",
            "rssi": -31,
            "staMac": "5C:CF:7F:A6:FD:F6",
            "startup": "off",
        }
    if extra is not None:
        if not isinstance(extra, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--params")
        params.update(extra)
    return params


@ewelink_agent_app.command("ewelink")
@tidy_help
def ewelink(
    device_id: Annotated[
        str, typer.Option("--device-id", help="The deviceid (10 hex chars).", show_default=False)
    ],
    apikey: Annotated[
        str, typer.Option("--apikey", help="The factory apikey (a UUID).", show_default=False)
    ],
    url: Annotated[
        str,
        typer.Option(
            envvar="TETHER_URL", help="Dispatch base: the device POSTs <url>/dispatch/device."
        ),
    ] = DEFAULT_URL,
    params: Annotated[
        str | None,
        typer.Option(
            help="Initial params as a JSON object (merged over the preset).", show_default=False
        ),
    ] = None,
    switches: Annotated[
        int, typer.Option(help="Channels: 1 reports switch, more report switches[].", min=1)
    ] = 1,
    th: Annotated[
        bool, typer.Option("--th", help="Be a TH10/TH16 (UIID 15) with temperature targets.")
    ] = False,
    sensor_period: Annotated[
        float, typer.Option(help="With --th: seconds between sensor readings.", min=0.1)
    ] = 5.0,
    model: Annotated[str, typer.Option(help="Model sent in dispatch and register.")] = "ITA-GZ1-GL",
    ca_file: Annotated[
        str | None, typer.Option(help="CA bundle to verify a TLS cloud with.", show_default=False)
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Do not verify the cloud's TLS certificate.")
    ] = False,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Run an emulated Sonoff until Ctrl-C or SIGTERM, logging what it is told to do.

    Example: tether agent ewelink --device-id 100008db11 --apikey $FACTORY_KEY --th
    """
    from tether.cli import _run

    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} must start with http:// or https://", param_hint="--url")
    setup_logging(log_level, log_format)
    context: ssl.SSLContext | bool | None = None
    if ca_file is not None:
        context = ssl.create_default_context(cafile=ca_file)
    elif insecure:
        context = False
    extra = parse_json(params, "--params") if params is not None else None
    device = EmulatedSonoff(
        url,
        device_id,
        apikey,
        params=initial_params(switches, th, extra),
        model=model,
        ssl_context=context,
        on_change=lambda changed: log.info("params changed: %s", changed),
    )
    _run(serve(device, sensor_period if th else None))


async def serve(device: EmulatedSonoff, sensor_period: float | None) -> None:
    stop = stop_on_signals()
    sensor = asyncio.create_task(drift(device, sensor_period)) if sensor_period else None
    backoff = Backoff(RECONNECT_FIRST, RECONNECT_MAX)
    try:
        while not stop.is_set():
            device.registered.clear()
            run = asyncio.create_task(device.run())
            announce = asyncio.create_task(announce_registered(device, backoff))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([run, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            announce.cancel()
            if stop.is_set():
                await device.close()
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
                return
            delay = backoff.next()
            try:
                run.result()
                log.warning("connection closed; reconnecting in %.1fs", delay)
            except RegisterRefused as refused:
                log.error("%s (is the device registered with this factory apikey?)", refused)
            except Exception as error:
                log.warning("connection failed: %s; retrying in %.1fs", error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        if sensor is not None:
            sensor.cancel()


async def announce_registered(device: EmulatedSonoff, backoff: Backoff) -> None:
    """Say when the device is connected and registered (and start backing off afresh)."""
    await device.registered.wait()
    backoff.reset()
    log.info(
        "device %s connected to %s and registered; waiting for updates",
        device.device_id,
        device.url,
    )


async def drift(device: EmulatedSonoff, period: float) -> None:
    """A TH sensor: the temperature wanders; moves of 0.5 °C or more are reported."""
    reported = float(device.params.get("currentTemperature", 20.0))
    current = reported
    while True:
        await asyncio.sleep(period)
        current += random.uniform(-0.4, 0.4)
        if abs(current - reported) >= 0.5 and device.registered.is_set():
            reported = round(current, 1)
            with contextlib.suppress(Exception):
                await device.change({"currentTemperature": f"{reported:.1f}"})
