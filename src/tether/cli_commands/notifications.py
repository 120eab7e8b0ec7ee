"""``tether notifications``: what devices report, stored (``list``) or live (``tail``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.text import Text

from tether.cli_commands.common import (
    DEFAULT_URL,
    Api,
    ApiError,
    Client,
    Col,
    SkipOption,
    compact_json,
    emit_list,
    make_client,
    note,
    out,
    parse_duration,
    parse_json,
    print_json,
    stop_on_signals,
    with_client,
)
from tether.core.backoff import Backoff

notifications_app = typer.Typer(
    help="Read what devices report: the stored history, or live as it arrives.\n\n"
    "Example: tether notifications tail --device lamp-1 --name temp",
    no_args_is_help=True,
)

COLUMNS = (
    Col("ID", "id"),
    Col("TIME", "timestamp", "time"),
    Col("DEVICE", "deviceId", wrap=False),
    Col("NAME", "name"),
    Col("PARAMETERS", "parameters", "json"),
)

DeviceFilter = Annotated[
    list[str] | None,
    typer.Option("--device", help="Only this device; repeat for several.", show_default=False),
]
NameFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--name", help="Only this notification name; repeat for several.", show_default=False
    ),
]

SUBSCRIBE_REQUEST = 1
#: Reconnect delays: from RECONNECT_FIRST doubling up to RECONNECT_MAX seconds.
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0


def precise_time(value: Any) -> str:
    """``2025-01-02 03:04:05.678Z`` (UTC) from an ISO-8601 time."""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def notification_line(data: dict[str, Any]) -> Text:
    """One readable line: time, device, name, parameters as compact JSON."""
    return Text.assemble(
        (precise_time(data.get("timestamp")), "dim"),
        "  ",
        (str(data.get("deviceId")), "cyan"),
        "  ",
        (str(data.get("name")), "bold"),
        "  ",
        compact_json(data.get("parameters")),
    )


@notifications_app.command("list")
@with_client()
def list_notifications(
    client: Client,
    device: DeviceFilter = None,
    name: NameFilter = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only the last stretch of time, e.g. 15m, 2h, 7d.", show_default=False),
    ] = None,
    take: Annotated[
        int, typer.Option(help="At most this many, newest first.", min=1, max=1000)
    ] = 50,
    skip: SkipOption = 0,
) -> None:
    """List stored notifications, newest first.

    Example: tether notifications list --device lamp-1 --since 1h
    """
    start = None
    if since is not None:
        seconds = parse_duration(since, "--since") or 0.0
        start = (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    params = {
        "deviceId": device or None,
        "name": name or None,
        "start": start,
        "take": take,
        "skip": skip or None,
        "desc": True,
    }
    rows = client.run(lambda api: api.call("GET", "/api/v1/notifications", params=params))
    emit_list(client, rows, COLUMNS, empty="no notifications")


@notifications_app.command("tail")
@with_client()
def tail(
    client: Client,
    device: DeviceFilter = None,
    name: NameFilter = None,
    count: Annotated[
        int | None,
        typer.Option(help="Exit after this many notifications.", min=1, show_default=False),
    ] = None,
) -> None:
    """Follow notifications live until Ctrl-C: one line each (time, device, name, parameters).

    With --json, one JSON object per line instead (pipe it into jq). Reconnects by itself
    if the connection drops; notifications sent meanwhile are in 'notifications list'.

    Example: tether notifications tail --device lamp-1 --name temp --json
    """
    frame: dict[str, Any] = {
        "type": "subscribe",
        "requestId": SUBSCRIBE_REQUEST,
        "topic": "notification",
    }
    if device:
        frame["deviceIds"] = device
    if name:
        frame["names"] = name

    def show(data: dict[str, Any]) -> None:
        if client.json:
            print_json(data, compact=True)
        else:
            out.print(notification_line(data))

    client.run(lambda api: until_stopped(Follower(api, frame, show, count).run()))


@notifications_app.command("send")
def send(
    device_id: Annotated[str, typer.Argument(help="The device sending it.", show_default=False)],
    name: Annotated[str, typer.Argument(help="Notification name.", show_default=False)],
    params: Annotated[
        str | None,
        typer.Option(help="Parameters as JSON (or @file.json), e.g. '{\"c\": 21}'."),
    ] = None,
    credential: Annotated[
        str,
        typer.Option(
            envvar="TETHER_DEVICE_CREDENTIAL",
            help="The device's secret (prefer the environment variable).",
            show_default=False,
        ),
    ] = "",
    url: Annotated[
        str, typer.Option(envvar="TETHER_URL", help="Base URL of the Tether server.")
    ] = DEFAULT_URL,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the stored notification as JSON.")
    ] = False,
) -> None:
    """Send a notification as the device, over the native device API (as the device would).

    Example: TETHER_DEVICE_CREDENTIAL=... tether notifications send lamp-1 temp --params '{"c": 21}'
    """
    if not credential:
        raise typer.BadParameter("give the device's credential", param_hint="--credential")
    body = {"name": name, "parameters": parse_json(params, "--params") if params else None}
    client = make_client(
        url=url, token=credential, login=None, password=None, json_output=json_output
    )
    path = f"/api/v1/device/{quote(device_id, safe='')}/notifications"
    row = client.run(lambda api: api.call("POST", path, body=body))
    if client.json:
        print_json(row)
    else:
        out.print(Text.assemble("sent: ", notification_line(row)))


async def until_stopped(work: Any) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives (then end quietly)."""
    stop = stop_on_signals()
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopper):
            pending.cancel()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if task.done() and not task.cancelled():
        task.result()  # re-raise its failure


class Follower:
    """One subscription on the client WebSocket, re-established when the connection drops."""

    def __init__(
        self,
        api: Api,
        frame: dict[str, Any],
        show: Any,
        count: int | None,
        what: str = "notifications",
    ) -> None:
        self.api = api
        self.what = what
        self.frame = frame
        self.show = show
        self.count = count
        self.received = 0
        self.subscribed_once = False

    async def run(self) -> None:
        import aiohttp

        backoff = Backoff(RECONNECT_FIRST, RECONNECT_MAX)
        while True:
            try:
                if await self._session():
                    return
                backoff.reset()
                reason = "the server closed the connection"
            except aiohttp.WSServerHandshakeError as error:
                if error.status in (401, 403):
                    if self.subscribed_once and self.api.relogin():
                        reason = "the token expired"
                    else:
                        raise ApiError(
                            error.status, "unauthorized", "the server refused the credentials"
                        ) from None
                elif not self.subscribed_once:
                    raise
                else:
                    reason = f"HTTP {error.status}"
            except (aiohttp.ClientError, OSError) as error:
                if not self.subscribed_once:
                    raise
                reason = str(error) or type(error).__name__
            delay = backoff.next()
            note(f"connection lost ({reason}); reconnecting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """Subscribe and print events; True once ``count`` events were shown."""
        import aiohttp

        headers = {"Authorization": f"Bearer {await self.api.token()}"}
        async with self.api.session.ws_connect(
            self.api.ws_base + "/api/v1/ws", headers=headers, heartbeat=30.0
        ) as ws:
            await ws.send_str(json.dumps(self.frame))
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                kind = data.get("type")
                if kind == "event":
                    self.show(data.get("data") or {})
                    self.received += 1
                    if self.count is not None and self.received >= self.count:
                        return True
                elif kind == "response" and data.get("requestId") == SUBSCRIBE_REQUEST:
                    if not self.subscribed_once:
                        note(f"following {self.what} at {self.api.base} (Ctrl-C to stop)")
                    self.subscribed_once = True
                elif kind == "error":
                    error = data.get("error") or {}
                    raise ApiError(
                        400, str(error.get("code", "error")), str(error.get("message", data))
                    )
        if not self.subscribed_once:
            raise ApiError(0, "closed", "the server closed the connection before subscribing")
        return False
