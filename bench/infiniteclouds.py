"""Scenario ``infiniteclouds``: idle keepalives (design P3) against raw aiohttp.

What is measured: how many ``POST /v1/device/registration`` keepalives per second one
Tether process answers for an assigned device with nothing pending (a documented-shape
body, ``Authorization: Bearer <device JWT>``; the reply is the full envelope with
``triggerEvent`` all false), driven by ``wrk -t1 -c64`` with a Lua script that posts the
same body. The same wrk command runs against two raw aiohttp handlers on the same path
(this module, ``--baseline``), each decoding the JSON body and answering the same
envelope bytes:

* ``raw aiohttp + JWT``: also verifies the same kind of HS256 JWT with PyJWT (audience,
  issuer, expiry) on every request. Tether verifies a token's signature once and then
  checks only its expiry, so this row shows what that saves;
* ``raw aiohttp``: compares the header with a constant, like ``bench/baseline.py``.

The ``tether_sql_statements_total`` delta shows an idle keepalive runs no SQL per request
(the config revision and firmware target are cached for ``revision_cache_ttl`` seconds;
``last_seen`` is written behind in batches).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import aiohttp

from bench.common import (
    SQL_COUNTER,
    Machine,
    ServerProcess,
    Tether,
    clean_env,
    free_port,
    machine_busy,
    ms,
    now_utc,
    ratio,
    sql_statements,
    table,
)
from bench.polls import CONNECTIONS, Wrk, _children_cpu

PATH = "/v1/device/registration"
MAC = "c4:4b:d1:a0:32:c1"
DEVICE_ID = "ic-c44bd1a032c1"
BASELINE_KEY = b"bench-infiniteclouds-baseline-key-0123456789"
AUDIENCE = "tether-infiniteclouds"


def keepalive_body() -> bytes:
    return json.dumps(
        {
            "statusType": "keepAlive",
            "deviceId": DEVICE_ID,
            "deviceType": "CE",
            "machineId": "c4:4b:d1:a0:32:c2",
            "macAddress": MAC,
            "timestamp": 1704472804,
            "config": {"revisionId": ""},
        }
    ).encode()


# --- the raw aiohttp baseline (its own process) --------------------------------------------


def serve_baseline(port: int, jwt_check: bool, token: str) -> None:
    import jwt
    import msgspec
    import uvloop
    from aiohttp import web

    reply = msgspec.json.encode(
        {
            "data": {
                "triggerEvent": {
                    "configUpdate": False,
                    "firmwareUpdate": False,
                    "sendStatus": False,
                    "commands": [],
                }
            },
            "message": "success",
            "status": 200,
            "errors": False,
            "httpCode": 200,
            "errorCode": 0,
        }
    )
    expected = f"Bearer {token}"
    decoder = msgspec.json.Decoder()

    async def keepalive(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        if jwt_check:
            try:
                jwt.decode(
                    header.removeprefix("Bearer "),
                    BASELINE_KEY,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    issuer="tether",
                )
            except jwt.PyJWTError:
                return web.Response(status=401)
        elif header != expected:
            return web.Response(status=401)
        body = decoder.decode(await request.read())
        if body.get("statusType") != "keepAlive":
            return web.Response(status=400)
        return web.Response(body=reply, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(PATH, keepalive)
    app.router.add_get("/healthz", healthz)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    uvloop.run(main())


def baseline_token() -> str:
    import jwt

    now = int(time.time())
    claims = {
        "deviceData": {"macAddress": MAC, "deviceId": DEVICE_ID},
        "own": 1,
        "typ": "infiniteclouds-device",
        "iat": now,
        "exp": now + 3600,
        "aud": AUDIENCE,
        "iss": "tether",
    }
    return jwt.encode(claims, BASELINE_KEY, algorithm="HS256")


def baseline_server(name: str, jwt_check: bool, token: str) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.infiniteclouds", "--baseline", "--port", str(port)]
    if jwt_check:
        argv.append("--jwt")
    return ServerProcess(
        name=name,
        argv=argv,
        port=port,
        ready_path="/healthz",
        env=clean_env(BENCH_TOKEN=token),
    )


# --- the measured runs ------------------------------------------------------------------------


async def wrk_lua(server: ServerProcess, script: str, path: str, seconds: int) -> Wrk:
    """One ``wrk -t1 -c64 -s script`` run; server, wrk and machine CPU read around it."""
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", script]
    cpu0, busy0, loop = server.cpu_seconds(), machine_busy(), asyncio.get_running_loop()
    client0 = _children_cpu()
    t0 = loop.time()
    process = await asyncio.create_subprocess_exec(
        *argv,
        server.base_url + path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    taken = loop.time() - t0
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{out.decode(errors='replace')}")
    return dataclasses.replace(
        Wrk.parse(out.decode()),
        server_cpu=(server.cpu_seconds() - cpu0) / taken,
        machine_cpu=(machine_busy() - busy0) / taken,
        client_cpu=(_children_cpu() - client0) / taken,
    )


async def assigned_token(tether: Tether) -> str:
    """Register the bench device, assign it to the admin, register again: its token."""
    admin, _ = await tether.device("bench-native")
    body = json.loads(keepalive_body())
    del body["statusType"]
    async with aiohttp.ClientSession(base_url=tether.base_url) as session:
        async with session.post(PATH, json=body) as response:
            answer = await response.json()
            if answer.get("data", {}).get("deviceId") != DEVICE_ID:
                raise RuntimeError(f"register failed: {answer}")
        headers = {"Authorization": f"Bearer {admin}"}
        async with session.patch(
            f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": 1}, headers=headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"assign failed: {await response.text()}")
        async with session.post(PATH, json=body) as response:
            answer = await response.json()
        token: str = answer["data"]["authToken"]
        # One status snapshot, so sendStatus is false like the baselines' reply.
        status = {**json.loads(keepalive_body()), "statusType": "status"}
        async with session.post(
            PATH, json=status, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"status failed: {await response.text()}")
    return token


async def check_idle(server: ServerProcess, token: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.base_url + PATH,
            data=keepalive_body(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as response,
    ):
        body = await response.json()
        trigger = body["data"]["triggerEvent"]
        if response.status != 200 or any(trigger[k] for k in trigger):
            raise RuntimeError(f"{server.name}: keepalive answered {response.status} {body}")


@dataclasses.dataclass(frozen=True)
class Outcome:
    label: str
    result: Wrk
    sql: float | None = None


async def measure(
    server: ServerProcess, token: str, warmup: int, seconds: int, count_sql: bool
) -> Outcome:
    await check_idle(server, token)
    script = (
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(keepalive_body().decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        if warmup > 0:
            await wrk_lua(server, file.name, PATH, warmup)
        before = await sql_statements(server) if count_sql else None
        result = await wrk_lua(server, file.name, PATH, seconds)
        after = await sql_statements(server) if count_sql else None
    finally:
        os.unlink(file.name)
    sql = after - before if before is not None and after is not None else None
    print(
        f"  {server.name:<24} {result.rate:,.0f} req/s  p50 {ms(result.p50)} ms  "
        f"p99 {ms(result.p99)} ms  non-2xx {result.bad_status}  server CPU {result.server_cpu:.0%}"
    )
    return Outcome(server.name, result, sql)


async def run(seconds: int, warmup: int, machine: Machine, command: str) -> str | None:
    if shutil.which("wrk") is None:
        print("infiniteclouds: skipped: `wrk` is not on PATH")
        return None
    print(f"infiniteclouds: wrk -t1 -c{CONNECTIONS}, {warmup}s warm-up, {seconds}s measured")
    outcomes = []
    token = baseline_token()
    for name, jwt_check in (("raw aiohttp", False), ("raw aiohttp + JWT", True)):
        server = baseline_server(name, jwt_check, token)
        try:
            await server.start()
            outcomes.append(await measure(server, token, warmup, seconds, count_sql=False))
        finally:
            server.stop()
    tether = Tether("Tether")
    try:
        await tether.start()
        token = await assigned_token(tether)
        ours = await measure(tether, token, warmup, seconds, count_sql=True)
    finally:
        tether.stop()
    return render(seconds, warmup, machine, command, outcomes, ours)


def render(
    seconds: int, warmup: int, machine: Machine, command: str, bases: list[Outcome], ours: Outcome
) -> str:
    rows = [
        [
            o.label,
            f"{o.result.rate:,.0f}",
            ratio(ours.result.rate, o.result.rate) if o is not ours else "",
            ms(o.result.p50),
            ms(o.result.p99),
            str(o.result.bad_status),
            f"{o.result.server_cpu:.0%}",
        ]
        for o in [*bases, ours]
    ]
    sql = (
        f"{ours.sql:,.0f} statements over {ours.result.requests:,} keepalives "
        f"(`{SQL_COUNTER}` delta; periodic cache refreshes and the batched last-seen "
        "write, none per request)"
        if ours.sql is not None
        else f"not available (`{SQL_COUNTER}` not exported)"
    )
    return (
        "## InfiniteClouds: idle keepalives (P3)\n\n"
        f"Measured {now_utc()} with `{command}`: wrk -t1 -c{CONNECTIONS}, {warmup} s warm-up, "
        f"{seconds} s measured per server (short runs on a shared 2-core machine: read the "
        "ratios, not the absolute rates). Each request is a documented keepAlive body with a "
        "Bearer device JWT; nothing pending, so every answer is the all-false `triggerEvent` "
        "envelope. `raw aiohttp` compares the header with a constant; `raw aiohttp + JWT` "
        "verifies the JWT with PyJWT on every request, while Tether verifies a token's "
        "signature once and then only checks its expiry.\n\n"
        + machine.markdown()
        + "\n"
        + table(
            [
                "Server",
                "keepalives/s",
                "Tether vs this",
                "p50 ms",
                "p99 ms",
                "non-2xx",
                "server CPU",
            ],
            rows,
        )
        + f"\n\n- SQL during Tether's measured run: {sql}.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="raw aiohttp keepalive baseline")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jwt", action="store_true")
    args = parser.parse_args()
    if args.baseline:
        serve_baseline(args.port, args.jwt, os.environ.get("BENCH_TOKEN", ""))


if __name__ == "__main__":
    main()
