"""``python -m bench``: run the benchmark scenarios and write ``docs/performance.md``.

Each scenario measures Tether and a baseline in the same run and reports the ratio: a raw
aiohttp server for the design section 10 goals, one Tether process for ``cluster`` (issue
3). ``--quick`` is a ~20 s smoke test of the harness itself: short
runs at a lower rate whose numbers mean little, so it prints its report instead of
overwriting the measured one (pass ``--output`` to write it somewhere anyway).
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
from pathlib import Path

import uvloop

from bench import cluster, polls, roundtrip
from bench.chart import CHARTS_ENV
from bench.common import REPORT, Machine, update_report

FULL_DURATION = 15.0
QUICK_DURATION = 1.5


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--scenario",
        choices=(
            "roundtrip",
            "polls",
            "cluster",
            "c1",
            "controlid",
            "ewelink",
            "infiniteclouds",
            "devicehive",
            "fanout",
            "ingest",
            "inserts",
            "connections",
            "storm",
            "soak",
            "all",
        ),
        default="all",
        help="connections (P1) and storm (P5) take several minutes each, soak (P7) takes "
        "--soak-minutes (30) plus a minute: none is part of all; run them on their own",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help=f"measured seconds per run [default: {FULL_DURATION:g}, {QUICK_DURATION:g} quick]",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke-test the harness (~20 s, lower rate)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="round-trip commands per second (also in cluster) [default: 2000, 200 quick]",
    )
    parser.add_argument(
        "--ewelink-devices",
        type=int,
        help="idle eWeLink devices in the ewelink fleet run [default: 10000, 300 quick]",
    )
    parser.add_argument(
        "--fleet",
        type=int,
        help="connections/storm: idle device sockets per server [default: 20000, 1000 "
        "quick; capped by the open-file limit]",
    )
    parser.add_argument(
        "--fleet-dialects",
        help="connections/storm: comma-separated dialects [default: "
        "native,ewelink,devicehive; storm: native,ewelink]",
    )
    parser.add_argument(
        "--fleet-clients",
        type=int,
        default=4,
        help="connections/storm: client processes, each from its own 127.0.x.1 address "
        "[default: %(default)s]",
    )
    parser.add_argument(
        "--no-postgres",
        action="store_true",
        help="skip the round trip on PostgreSQL and the cluster scenario (it needs it)",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=30.0,
        help="soak: minutes of the churn soak [default: 30]",
    )
    parser.add_argument(
        "--soak-part",
        choices=("churn", "idle", "both"),
        default="both",
        help="soak: the churn soak (run it unlocked), the idle-CPU part (locked), or both",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"report file [default: {REPORT.relative_to(REPORT.parents[1])}; quick: none]",
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> int:
    command = shlex.join(["uv", "run", "--group", "bench", "python", "-m", "bench", *sys.argv[1:]])
    output: Path | None = args.output or (None if args.quick else REPORT)
    if output is None:
        # A smoke test draws its charts aside: docs/perf/ holds the measured ones.
        charts = tempfile.mkdtemp(prefix="tether-bench-charts-")
        os.environ[CHARTS_ENV] = charts
        print(f"charts of this run go to {charts}")
    duration = args.duration or (QUICK_DURATION if args.quick else FULL_DURATION)
    machine = Machine.probe()

    def emit(key: str, body: str) -> None:
        """Write a finished scenario at once, so a later failure cannot lose it."""
        if output is None:
            print("\n" + body)
        else:
            update_report(output, key, body)
            print(f"wrote the {key} section of {output}")

    load = roundtrip.Load(
        rate=args.rate or (200.0 if args.quick else 2000.0),
        warmup=0.5 if args.quick else 2.0,
        duration=duration,
        drain=2.0 if args.quick else 5.0,
    )
    seconds = max(1, math.ceil(duration))  # wrk takes whole seconds
    warmup = 1 if args.quick else 3
    if args.scenario in ("roundtrip", "all"):
        emit("roundtrip", await roundtrip.run(load, machine, command, not args.no_postgres))
    if args.scenario in ("polls", "all"):
        section = await polls.run(seconds, warmup, machine, command)
        if section is not None:
            emit("polls", section)
    if args.scenario in ("cluster", "c1", "all"):  # c1: only the C1 part of cluster
        if args.no_postgres:
            print("cluster: skipped (--no-postgres): every process shares PostgreSQL")
        else:
            from bench import cluster_c1

            # C1 first: it needs only PostgreSQL and Redis (the part after it needs wrk).
            section = await cluster_c1.run(load, machine, command)
            if section is not None:
                emit("c1", section)
            section = (
                await cluster.run(load, seconds, warmup, machine, command)
                if args.scenario != "c1"
                else None
            )
            if section is not None:
                emit("cluster", section)
    if args.scenario in ("controlid", "all"):
        from bench import controlid

        terminals = 1000 if args.quick else 10_000
        section = await controlid.run(terminals, seconds, max(seconds, 40), machine, command)
        if section is not None:
            emit("controlid", section)
    if args.scenario in ("ewelink", "all"):
        from bench import ewelink

        devices = args.ewelink_devices or (300 if args.quick else 10_000)
        rate = args.rate or (200.0 if args.quick else 1000.0)
        emit("ewelink", await ewelink.run(rate, duration, devices, machine, command))
    if args.scenario in ("infiniteclouds", "all"):
        from bench import infiniteclouds

        section = await infiniteclouds.run(seconds, warmup, machine, command)
        if section is not None:
            emit("infiniteclouds", section)
    fleet = args.fleet or (1000 if args.quick else 20_000)
    default_dialects = "native,ewelink" if args.scenario == "storm" else "native,ewelink,devicehive"
    fleet_dialects = [d for d in (args.fleet_dialects or default_dialects).split(",") if d]
    if args.scenario == "connections":
        from bench import connections

        emit(
            "p1",
            await connections.run(fleet, fleet_dialects, args.fleet_clients, 250, machine, command),
        )
    if args.scenario == "storm":
        from bench import storm

        emit("p5", await storm.run(fleet, fleet_dialects, args.fleet_clients, machine, command))
    if args.scenario in ("devicehive", "all"):
        from bench import devicehive

        emit("devicehive", await devicehive.run(load, machine, command))
    if args.scenario in ("fanout", "all"):
        from bench import fanout

        fan = (
            fanout.Load(subscribers=500, processes=2, pings=5, seconds=2)
            if args.quick
            else fanout.Load()
        )
        emit("p4", await fanout.run(fan, machine, command))
    if args.scenario in ("ingest", "all"):
        from bench import ingest

        emit(
            "p6a",
            await ingest.run(
                ingest.Load.quick() if args.quick else ingest.Load(),
                machine,
                command,
                not args.no_postgres,
            ),
        )
    if args.scenario in ("inserts", "all"):
        from bench import inserts

        emit(
            "p6b",
            await inserts.run(
                inserts.Load.quick() if args.quick else inserts.Load(),
                machine,
                command,
                not args.no_postgres,
            ),
        )
    if args.scenario == "soak":
        from bench import soak

        emit("p7", await soak.run(args.soak_part, args.soak_minutes, machine, command))
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main(parse(sys.argv[1:]))))
