"""Scenario ``devicehive``: the DeviceHive WebSocket command round trip beside the native one.

Same open-loop schedule and latency definition as ``bench/roundtrip.py`` (latency counts
from each command's due time, so a server that falls behind shows as latency), on one
fresh Tether (SQLite) per protocol:

* **native**: ``command.create`` on ``/api/v1/ws``; the device answers on
  ``/api/v1/device/ws``; the app sees the ``succeeded`` update (``roundtrip.drive``);
* **DeviceHive**: the app sends ``command/insert`` on ``/api/websocket`` and follows
  ``command/subscribe`` with ``returnUpdatedCommands``; the device (another DeviceHive
  socket, subscribed to its commands) answers each ``command/insert`` event with
  ``command/update {status: "done", result}``; latency ends when the app's
  ``command/update`` event with status ``done`` arrives.

The ratio shows what DeviceHive's wire form (one more JSON round per command, the
hand-over to ``delivered``, per-request dispatch) costs over the native protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import msgspec

from bench.common import Machine, Tether, ms, now_utc, ratio, sql_statements, table
from bench.roundtrip import DEVICE, Load, Outcome, _Run, drive, print_outcome, send_open_loop

DH_DEVICE = "bench-dh"
_INSERT = (
    '{"action":"command/insert","requestId":%d,"deviceId":"' + DH_DEVICE + '",'
    '"command":{"command":"echo","parameters":{"i":%d}}}'
)


class _Params(msgspec.Struct):
    i: int = -1


class _Cmd(msgspec.Struct):
    id: int = 0
    status: str | None = None
    parameters: msgspec.Raw = msgspec.Raw(b"null")


class _Frame(msgspec.Struct):
    action: str = ""
    status: str | None = None
    error: str | None = None
    command: _Cmd | None = None
    subscription_id: int | None = msgspec.field(default=None, name="subscriptionId")


async def _call(ws: aiohttp.ClientWebSocketResponse, action: str, **params: Any) -> Any:
    await ws.send_str(json.dumps({"action": action, "requestId": action, **params}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
        if frame.get("requestId") == action:
            if frame.get("status") != "success":
                raise RuntimeError(f"{action} failed: {frame}")
            return frame


async def _device(ws: aiohttp.ClientWebSocketResponse, run: _Run) -> None:
    decode = msgspec.json.Decoder(_Frame).decode
    async for message in ws:
        frame = decode(message.data)
        if frame.action == "command/insert" and frame.command is not None and frame.subscription_id:
            params = bytes(frame.command.parameters).decode() or "null"
            await ws.send_str(
                '{"action":"command/update","requestId":0,"deviceId":"'
                + DH_DEVICE
                + f'","commandId":{frame.command.id},'
                + f'"command":{{"status":"done","result":{params}}}}}'
            )
        elif frame.status == "error":
            run.error(f"device: {frame.error}"[:200])


async def _app(ws: aiohttp.ClientWebSocketResponse, run: _Run) -> None:
    decode = msgspec.json.Decoder(_Frame).decode
    params_of = msgspec.json.Decoder(_Params).decode
    async for message in ws:
        now = time.perf_counter()
        frame = decode(message.data)
        if frame.action == "command/update" and frame.command is not None:
            if frame.command.status == "done":
                run.complete(params_of(frame.command.parameters).i, now)
            elif frame.command.status in ("failed", "expired", "timed_out", "cancelled"):
                run.error(f"app: a command ended {frame.command.status}")
        elif frame.status == "error":
            run.error(f"app: {frame.error}"[:200])


async def _devicehive(load: Load) -> Outcome:
    server = Tether("Tether DeviceHive WS")
    try:
        await server.start()
        token, _ = await server.device(DEVICE)  # admin token (the native device is unused)
        run = _Run(load, server.cpu_seconds)
        url = server.base_url.replace("http", "ws", 1) + "/api/websocket"
        async with aiohttp.ClientSession() as session:
            device = await session.ws_connect(url)
            app = await session.ws_connect(url)
            for ws in (device, app):
                await _call(ws, "authenticate", token=token)
            await _call(device, "device/save", deviceId=DH_DEVICE, device={"name": DH_DEVICE})
            await _call(device, "command/subscribe", deviceId=DH_DEVICE)
            await _call(app, "command/subscribe", deviceId=DH_DEVICE, returnUpdatedCommands=True)
            sql_before = await sql_statements(server)
            tasks = [
                asyncio.create_task(_device(device, run)),
                asyncio.create_task(_app(app, run)),
            ]
            try:
                await send_open_loop(app, run, lambda i: _INSERT % (i + 1, i))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.finished.wait(), load.drain)
                run.mark()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await app.close()
                await device.close()
            sql_after = await sql_statements(server)
        sql = None if sql_before is None or sql_after is None else sql_after - sql_before
        outcome = run.outcome("Tether DeviceHive WS", sql)
        if outcome.errors:
            print(f"  DeviceHive run had errors; the end of its log:\n{server.output()[-2000:]}")
        return outcome
    finally:
        server.stop()


async def _native(load: Load) -> Outcome:
    server = Tether("Tether native WS")
    try:
        await server.start()
        token, credential = await server.device(DEVICE)
        return await drive(server, "Tether native WS", token, credential, load, count_sql=True)
    finally:
        server.stop()


async def run(load: Load, machine: Machine, command: str) -> str:
    print(f"devicehive: {load.rate:,.0f} commands/s, {load.warmup:g}s warm-up, {load.duration:g}s")
    native = await _native(load)
    print_outcome(native)
    dh = await _devicehive(load)
    print_outcome(dh)
    rows = [
        ["commands measured", f"{native.measured:,}", f"{dh.measured:,}", ""],
        [
            "completed per second",
            f"{native.completion_rate:,.0f}",
            f"{dh.completion_rate:,.0f}",
            ratio(dh.completion_rate, native.completion_rate),
        ],
    ]
    for q, name in ((50, "p50"), (90, "p90"), (99, "p99"), (100, "max")):
        rows.append(
            [f"{name} latency (ms)", ms(native.p(q)), ms(dh.p(q)), ratio(dh.p(q), native.p(q))]
        )
    rows += [
        [
            "errors / unfinished",
            f"{native.errors} / {native.unfinished}",
            f"{dh.errors} / {dh.unfinished}",
            "",
        ],
        [
            "server CPU per completed command (us)",
            f"{native.cpu_per_command * 1e6:,.0f}",
            f"{dh.cpu_per_command * 1e6:,.0f}",
            ratio(dh.cpu_per_command, native.cpu_per_command),
        ],
        [
            "SQL statements per command",
            "-" if native.sql_per_command is None else f"{native.sql_per_command:.2f}",
            "-" if dh.sql_per_command is None else f"{dh.sql_per_command:.2f}",
            "",
        ],
        [
            "whole machine CPU busy (share of one core)",
            f"{native.machine_cpu:.0%}",
            f"{dh.machine_cpu:.0%}",
            "",
        ],
    ]
    errors = "".join(
        f"- {o.label}: {count:,} x `{kind}`\n"
        for o in (native, dh)
        for kind, count in o.error_kinds.items()
    )
    return (
        "## DeviceHive WebSocket command round trip (beside the native one)\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.rate:,.0f} commands/s open loop, {load.warmup:g} s warm-up, "
        f"{load.duration:g} s measured, SQLite, one fresh server per protocol. DeviceHive: "
        "the app inserts with `command/insert` and follows `command/subscribe` with "
        "`returnUpdatedCommands`; the device (a DeviceHive socket subscribed to its "
        "commands) answers each with `command/update {status: done, result}`. Native: as "
        "in the P2 round trip. Ratio = DeviceHive / native, measured in the same run.\n\n"
        + table(["", native.label, dh.label, "ratio"], rows)
        + "\nWhen commands are left unfinished, the server saturated below the offered rate "
        "(on a shared machine, other work counts too); completed per second and server CPU "
        "per completed command are then the comparable rows.\n"
        + ("\nErrors seen:\n\n" + errors if errors else "")
    )
