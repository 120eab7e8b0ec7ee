"""Scenario ``inserts`` (P6b): durable command creation through the native API.

Many app clients create commands with ``POST /api/v1/devices/{id}/commands`` (admin
token, ``bench/loadgen.py`` processes, each client keeping a few requests in flight), on
SQLite and on PostgreSQL (a database of its own). No device is connected, so every
command stays ``pending``: what is measured is the durable insert and its answer, which
Tether sends only after the row committed. Afterwards the bench counts the rows in
``commands``: they must equal the answered requests.

Baseline: ``bench/rawstore.py`` (raw aiohttp and the plain driver, the same table and
indexes, group commit: one multi-row ``INSERT ... RETURNING`` per batch).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import chart
from bench.common import Machine, now_utc, ratio, table
from bench.ingest import Load as IngestLoad
from bench.ingest import Outcome, jobs_for, measure, raw, tether

GOAL_INSERTS = 2000.0


@dataclass
class Load:
    clients: int = 200
    window: int = 2
    seconds: float = 10.0
    processes: int = 2

    @classmethod
    def quick(cls) -> Load:
        return cls(clients=20, seconds=2.0)


async def _one(kind: str, store: str, load: Load) -> Outcome:
    label = "Tether" if kind == "tether" else "raw aiohttp + driver"
    outcome = Outcome(label, "http", store)
    make = tether if kind == "tether" else raw
    async with make(store, load.clients) as target:
        shape = IngestLoad(devices=load.clients, processes=load.processes, window=load.window)
        jobs = jobs_for(target, "command", shape, 60)
        await measure(target, outcome, jobs, load.seconds, "commands", fan_out=False)
    print(
        f"  {label} {store}: {outcome.rate:,.0f} commands/s, {outcome.stored:,} stored of "
        f"{outcome.acked:,} answered, errors {outcome.errors}"
    )
    return outcome


async def run(load: Load, machine: Machine, command: str, postgres: bool = True) -> str:
    stores = ("sqlite", "postgresql") if postgres else ("sqlite",)
    pairs = []
    for store in stores:
        print(f"inserts: {store}, {load.clients} clients x {load.window}, {load.seconds:g} s")
        pairs.append((await _one("raw", store, load), await _one("tether", store, load)))
    rows = [
        [
            ours.store,
            f"{base.rate:,.0f}",
            f"{ours.rate:,.0f}",
            ratio(ours.rate, base.rate),
            f"{ours.stored:,} / {ours.acked:,}",
            f"{base.server_cpu_per_post * 1e6:,.0f} / {ours.server_cpu_per_post * 1e6:,.0f}",
            f"{base.server_cpu:.0%} / {ours.server_cpu:.0%}",
            f"{base.client_cpu:.0%} / {ours.client_cpu:.0%}",
        ]
        for base, ours in pairs
    ]
    header = [
        "store",
        "raw (commands/s)",
        "Tether (commands/s)",
        "Tether / raw",
        "Tether stored / answered",
        "server CPU per command, raw / Tether (us)",
        "server CPU, raw / Tether",
        "load generators' CPU, raw / Tether",
    ]
    picture = chart.bars(
        "p6b-inserts",
        title="P6b: durable command inserts per second (HTTP, many clients)",
        y_label="commands stored and answered per second",
        groups=[o.store for _, o in pairs],
        series={
            "Tether": [o.rate for _, o in pairs],
            "raw aiohttp + driver": [b.rate for b, _ in pairs],
        },
    )

    def verdict(o: Outcome) -> str:
        holds = o.rate >= GOAL_INSERTS and o.lost == 0 and not o.errors
        return ("**holds**" if holds else "**missed**") + (
            f": {o.rate:,.0f} commands/s (>= 2,000), {o.stored:,} rows for {o.acked:,} "
            f"answered, errors {o.errors or 'none'}"
        )

    verdicts = "".join(f"- {o.store}: {verdict(o)}\n" for _, o in pairs)
    return (
        "## P6b: durable command inserts\n\n"
        "Goal (issue 17, P6b): >= 2,000 commands/s created and durably stored through the "
        "native API, on SQLite and on PostgreSQL.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.clients} app clients in {load.processes} load-generator processes, "
        f"each keeping {load.window} `POST /api/v1/devices/{{id}}/commands` in flight (one "
        f"device per client, none connected, so commands stay pending), {load.seconds:g} s "
        "per run, a fresh store per run.\n\n"
        + table(header, rows)
        + f"\n{picture}\n\nGoal:\n\n"
        + verdicts
        + "\nHow to read it: a command counts once its `201` arrived, which Tether sends "
        "after the row committed; *stored* is counted in the database afterwards. The "
        "baseline does the same insert (same table and indexes, group commit) with the "
        "driver alone, so the ratio is Tether's application cost: validation, access "
        "checks, id allocation, the command's deadlines, its event.\n"
    )
