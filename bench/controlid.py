"""Scenario ``controlid``: a fleet of idle Control iD terminals polling ``GET /push``.

Three things are measured, each with wrk (separate process) against ``tether serve``
(separate process) with ``TETHER_CONTROLID__AUTO_REGISTER=true``:

1. **The fleet.** ``--terminals`` terminals (10,000 by default) each polling every 5 s
   (jittered 4-6 s) with nothing pending: wrk opens one keep-alive connection per terminal
   and a Lua ``delay`` spaces each connection's polls. wrk's Lua state is per thread, not
   per connection, so each request takes the next ``deviceId`` in turn (every id is still
   polled about every 5 s). Offered rate: terminals / 5 s. Reported: achieved rate,
   latency, non-2xx answers and socket errors.
2. **P3: poll handling against raw aiohttp.** ``wrk -t1 -c64`` as fast as it goes, the same
   rotating ``GET /push?deviceId=<id>&uuid=<uuid>`` against Tether and against a raw
   aiohttp handler on the same path that only checks ``deviceId`` is digits and answers
   an empty 200 (this module, ``--baseline``). The ratio is the share of aiohttp's own
   request rate Tether keeps after routing, the device lookup, presence and its
   in-memory queue check.
3. **No SQL for empty polls.** The ``tether_sql_statements_total`` delta on ``/metrics``
   across both measured runs, against the number of polls.

Before measuring, every terminal polls once by hand (which registers it) and once more
(which loads it into the directory cache); those polls are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

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
    serve_app,
    sql_statements,
    table,
)
from bench.polls import Wrk

#: Realistic 16-digit ids: this prefix and nine digits (Lua numbers are doubles, and
#: LuaJIT prints large ones in exponent form, so the id is built as text).
ID_PREFIX = "4408955"
PERIOD_LOW_MS, PERIOD_HIGH_MS = 4000, 6000
CONNECTIONS = 64
GOAL_SHARE = 0.5

_ROTATE = """
local n = {offset}
local count = {count}
local prefix = "{prefix}"
math.randomseed(os.time())
function setup(thread)
  thread:set("offset", math.random(0, count - 1))
end
function init(args)
  n = tonumber(offset) or 0
end
function request()
  n = (n + 1) % count
  local id = prefix .. string.format("%09d", n)
  return wrk.format("GET", "/push?deviceId=" .. id .. "&uuid=bench-" .. n)
end
"""
_PERIODIC = """
function delay()
  return math.random({low}, {high})
end
"""


def lua(count: int, periodic: bool) -> Path:
    text = _ROTATE.format(offset=0, count=count, prefix=ID_PREFIX)
    if periodic:
        text += _PERIODIC.format(low=PERIOD_LOW_MS, high=PERIOD_HIGH_MS)
    handle = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    handle.write(text)
    handle.close()
    return Path(handle.name)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def wrk(
    server: ServerProcess, script: Path, seconds: int, threads: int, connections: int
) -> Wrk:
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        server.base_url,
    ]
    cpu0, busy0, client0 = server.cpu_seconds(), machine_busy(), _children_cpu()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    taken = loop.time() - t0
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{out.decode(errors='replace')}")
    parsed = Wrk.parse(out.decode())
    return dataclasses.replace(
        parsed,
        server_cpu=(server.cpu_seconds() - cpu0) / taken,
        machine_cpu=(machine_busy() - busy0) / taken,
        client_cpu=(_children_cpu() - client0) / taken,
    )


async def poll_all(server: ServerProcess, count: int, concurrency: int = 64) -> float:
    """Every terminal polls once by hand; each must get an empty 200. Returns seconds."""
    started = time.monotonic()
    ids = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for n in ids:
                url = f"{server.base_url}/push?deviceId={ID_PREFIX}{n:09d}&uuid=warm-{n}"
                async with session.get(url) as response:
                    body = await response.read()
                    if response.status != 200 or body:
                        raise RuntimeError(f"poll {n}: {response.status} {body[:200]!r}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


def tether_server() -> Tether:
    return Tether("Tether", env={"TETHER_CONTROLID__AUTO_REGISTER": "true"})


def baseline_server() -> ServerProcess:
    port = free_port()
    return ServerProcess(
        name="raw aiohttp /push",
        argv=[sys.executable, "-m", "bench.controlid", "--baseline", "--port", str(port)],
        port=port,
        ready_path="/healthz",
        env=clean_env(),
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    pairs: list[tuple[Wrk, Wrk]]
    fleet: Wrk
    base_fleet: Wrk
    sql: float | None
    polls: int
    register_seconds: float
    terminals: int


PAIRS = 3


async def run(
    terminals: int, seconds: int, fleet_seconds: int, machine: Machine, command: str
) -> str | None:
    if shutil.which("wrk") is None:
        print("controlid: skipped: `wrk` is not on PATH (apt-get install -y wrk).")
        return None
    fast, periodic = lua(terminals, periodic=False), lua(terminals, periodic=True)
    base_server, tether = baseline_server(), tether_server()
    try:
        print(
            f"controlid: {terminals:,} terminals; {PAIRS} alternating P3 pairs of {seconds}s, "
            f"fleet run {fleet_seconds}s"
        )
        await base_server.start()
        await tether.start()
        registered = await poll_all(tether, terminals)
        await poll_all(tether, terminals)
        print(f"  {terminals:,} terminals registered by their first poll in {registered:.1f}s")
        await wrk(base_server, fast, 1, 1, CONNECTIONS)  # warm-ups
        await wrk(tether, fast, 1, 1, CONNECTIONS)
        before = await sql_statements(tether)
        pairs: list[tuple[Wrk, Wrk]] = []
        for n in range(PAIRS):
            # Alternate which goes first: the shared machine's load drifts.
            if n % 2 == 0:
                base = await wrk(base_server, fast, seconds, 1, CONNECTIONS)
                ours = await wrk(tether, fast, seconds, 1, CONNECTIONS)
            else:
                ours = await wrk(tether, fast, seconds, 1, CONNECTIONS)
                base = await wrk(base_server, fast, seconds, 1, CONNECTIONS)
            pairs.append((base, ours))
            print(
                f"  pair {n + 1}: baseline {base.rate:,.0f} req/s, Tether {ours.rate:,.0f} req/s "
                f"({ours.rate / base.rate:.0%}); CPU/request {_cpu_us(base):.0f} vs "
                f"{_cpu_us(ours):.0f} us"
            )
        # The same fleet against the baseline: what wrk and this machine can carry at all.
        base_fleet = await wrk(base_server, periodic, fleet_seconds, 2, terminals)
        base_server.stop()
        print(
            f"  baseline fleet {base_fleet.rate:,.0f} polls/s, p99 {ms(base_fleet.p99)} ms, "
            f"errors {base_fleet.socket_errors}"
        )
        fleet = await wrk(tether, periodic, fleet_seconds, 2, terminals)
        after = await sql_statements(tether)
        print(
            f"  fleet {fleet.rate:,.0f} polls/s (offered {terminals / 5:,.0f}), "
            f"p99 {ms(fleet.p99)} ms, non-2xx {fleet.bad_status}, errors {fleet.socket_errors}"
        )
    finally:
        base_server.stop()
        tether.stop()
        fast.unlink(missing_ok=True)
        periodic.unlink(missing_ok=True)
    sql = after - before if before is not None and after is not None else None
    polls = sum(o.requests for _, o in pairs) + fleet.requests
    outcome = Outcome(pairs, fleet, base_fleet, sql, polls, registered, terminals)
    return render(outcome, seconds, fleet_seconds, machine, command)


def _cpu_us(result: Wrk) -> float:
    return result.server_cpu / result.rate * 1e6 if result.rate else math.nan


def _sql_line(outcome: Outcome) -> str:
    if outcome.sql is None:
        return f"- SQL statements: `{SQL_COUNTER}` not exported, so this run cannot show it.\n"
    head = (
        f"- SQL statements during both measured runs: {outcome.sql:,.0f} "
        f"(`{SQL_COUNTER}` delta) for {outcome.polls:,} empty polls"
    )
    if outcome.sql == 0:
        return head + ": empty polls ran no SQL.\n"
    if outcome.sql * 1000 < outcome.polls:
        return head + (
            ": far below one per poll. The polls ran none; what was counted is the "
            "timer-driven write-behind of `last_seen` (one batched statement every "
            "`write_behind_interval`, 2 s).\n"
        )
    return head + f": **empty polls run SQL** ({outcome.sql / outcome.polls:.3f} each).\n"


def render(
    outcome: Outcome, seconds: int, fleet_seconds: int, machine: Machine, command: str
) -> str:
    ranked = sorted(outcome.pairs, key=lambda pair: pair[1].rate / pair[0].rate)
    b, t = ranked[len(ranked) // 2]
    f = outcome.fleet
    rows = [
        ["requests/s", f"{b.rate:,.0f}", f"{t.rate:,.0f}", ratio(t.rate, b.rate)],
        ["p50 latency (ms)", ms(b.p50), ms(t.p50), ratio(t.p50, b.p50)],
        ["p99 latency (ms)", ms(b.p99), ms(t.p99), ratio(t.p99, b.p99)],
        ["non-2xx answers", str(b.bad_status), str(t.bad_status), ""],
        ["socket errors", b.socket_errors, t.socket_errors, ""],
        ["server CPU (share of one core)", f"{b.server_cpu:.0%}", f"{t.server_cpu:.0%}", ""],
        [
            "server CPU per request (us)",
            f"{b.server_cpu / b.rate * 1e6:,.0f}",
            f"{t.server_cpu / t.rate * 1e6:,.0f}",
            ratio(t.server_cpu / t.rate, b.server_cpu / b.rate),
        ],
        ["whole machine busy (cores)", f"{b.machine_cpu:.2f}", f"{t.machine_cpu:.2f}", ""],
    ]
    share = t.rate / b.rate if b.rate else math.nan
    offered = outcome.terminals / 5
    g = outcome.base_fleet
    fleet_rows = [
        ["terminals (one connection each)", f"{outcome.terminals:,}", f"{outcome.terminals:,}"],
        ["offered polls/s (every 4-6 s)", f"{offered:,.0f}", f"{offered:,.0f}"],
        [
            "achieved polls/s (the run's end cuts each terminal's last cycle)",
            f"{g.rate:,.0f}",
            f"{f.rate:,.0f}",
        ],
        ["polls", f"{g.requests:,}", f"{f.requests:,}"],
        [
            "p50 / p90 / p99 latency (ms)",
            f"{ms(g.p50)} / {ms(g.p90)} / {ms(g.p99)}",
            f"{ms(f.p50)} / {ms(f.p90)} / {ms(f.p99)}",
        ],
        ["non-2xx answers", str(g.bad_status), str(f.bad_status)],
        ["socket errors", g.socket_errors, f.socket_errors],
        ["server CPU (share of one core)", f"{g.server_cpu:.0%}", f"{f.server_cpu:.0%}"],
        ["wrk CPU (share of one core)", f"{g.client_cpu:.0%}", f"{f.client_cpu:.0%}"],
        ["whole machine busy (cores)", f"{g.machine_cpu:.2f}", f"{f.machine_cpu:.2f}"],
    ]
    pair_rows = [
        [
            str(n + 1),
            f"{pb.rate:,.0f}",
            f"{pt.rate:,.0f}",
            ratio(pt.rate, pb.rate),
            f"{_cpu_us(pb):,.0f}",
            f"{_cpu_us(pt):,.0f}",
            ratio(_cpu_us(pt), _cpu_us(pb)),
        ]
        for n, (pb, pt) in enumerate(outcome.pairs)
    ]
    cpu_share = _cpu_us(b) / _cpu_us(t) if _cpu_us(t) else math.nan
    need = _cpu_us(t) * offered / 1e6
    sustained = f.bad_status == 0 and f.socket_errors == "none" and f.rate >= 0.85 * offered
    base_sustained = g.bad_status == 0 and g.socket_errors == "none" and g.rate >= 0.85 * offered
    verdict = ("**holds**" if share >= GOAL_SHARE and t.bad_status == 0 else "**missed**") + (
        f": {share:.0%} of raw aiohttp's rate (goal >= 50%)"
    )
    if seconds < 5:
        verdict = "not evaluated (a run shorter than 5 s is a smoke test)"
    return (
        "## Control iD: idle terminals polling `GET /push`\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- A short run on a shared 2-core machine (other work was running): P3 runs of "
        f"{seconds} s, a fleet run of {fleet_seconds} s. wrk and the server are separate "
        "processes; each terminal registered itself on its first poll "
        f"({outcome.register_seconds:.1f} s for all), then polled once more before "
        "measuring.\n\n"
        "### The fleet: every terminal polls every ~5 s, nothing pending\n\n"
        f"`wrk -t2 -c{outcome.terminals} -d{fleet_seconds}s -s <rotate ids, delay 4-6 s>`\n\n"
        + table(["", "raw aiohttp /push handler", "Tether"], fleet_rows)
        + "\n"
        + (
            "- Sustained without errors by Tether: **yes**.\n"
            if sustained
            else "- Sustained without errors by Tether: **no** (see the rows above).\n"
        )
        + (
            ""
            if base_sustained
            else "- Nor by the raw aiohttp handler with the same wrk command on the same "
            "machine: the load generator and this shared machine limit the fleet run, so "
            "compare the two columns rather than either against the offered rate.\n"
        )
        + "\n### P3: empty-poll handling against raw aiohttp, same request shape\n\n"
        f"`wrk -t1 -c{CONNECTIONS} -d{seconds}s -s <rotate ids over {outcome.terminals:,}>`, "
        f"{len(outcome.pairs)} pairs in alternating order (every pair below; the table is "
        "the median pair by rate ratio).\n\n"
        + table(
            [
                "pair",
                "baseline req/s",
                "Tether req/s",
                "ratio",
                "baseline CPU/req (us)",
                "Tether CPU/req (us)",
                "ratio",
            ],
            pair_rows,
        )
        + "\n"
        + table(["", "raw aiohttp /push handler", "Tether", "ratio"], rows)
        + "\n"
        + f"- By server CPU per request (less sensitive to the machine's other load than the "
        f"rate), Tether does {cpu_share:.0%} of the baseline's work rate. At the median "
        f"pair's {_cpu_us(t):,.0f} us per idle poll, {outcome.terminals:,} terminals polling "
        f"every 5 s need about {need:.2f} of one core.\n"
        + _sql_line(outcome)
        + f"- Design goal P3: {verdict}\n"
    )


# --- the raw aiohttp baseline ---------------------------------------------------------------


async def _push(request: object) -> object:
    from aiohttp import web

    assert isinstance(request, web.Request)
    device = request.query.get("deviceId", "")
    if not device.isdigit() or len(device) > 20:
        return web.Response(status=400, body=b"")
    return web.Response(body=b"")


async def serve_baseline(port: int) -> None:
    from aiohttp import web

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/push", _push)  # type: ignore[arg-type]
    await serve_app(app, port)


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description="raw aiohttp /push baseline")
    parser.add_argument("--baseline", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(serve_baseline(parser.parse_args().port))


if __name__ == "__main__":
    main()
