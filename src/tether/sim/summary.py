"""The end of a run: one typed :class:`Summary`, built from every shard's result.

It is what ``tether sim --json`` prints and what :func:`tether.sim.run` returns to the
bench. Rates are per second of the whole run (the ramp included); latencies are
percentiles in milliseconds; ``errors`` counts failures by kind; ``simulator`` is each
simulator process's own CPU, memory and descriptors, with ``warnings`` saying when the
simulator, not the server, was the limit.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from tether.sim.plan import Plan
from tether.sim.resources import Resources
from tether.sim.stats import DialectTally, Latency, Tally


class DialectFleet(msgspec.Struct, kw_only=True):
    devices: int
    connected_at_end: int
    commands_succeeded: int
    telemetry_sent: int
    command_round_trip: Latency
    telemetry_round_trip: Latency


class Telemetry(msgspec.Struct, kw_only=True):
    sent: int
    #: Due while the device's last two messages were unanswered: not sent, so a slow
    #: server is not buried under a growing backlog.
    skipped: int
    per_second: float
    #: From sending a message to the server's answer (eWeLink: its reply to the update;
    #: InfiniteClouds statistics ride on keepalives and are counted, not timed).
    round_trip: Latency


class Commands(msgspec.Struct, kw_only=True):
    sent: int
    succeeded: int
    #: Due while ``max_in_flight`` commands were out: the simulator's own limit.
    skipped: int
    per_second: float
    #: From the native API request to its answer with the final result (``?wait=``).
    round_trip: Latency


class Connections(msgspec.Struct, kw_only=True):
    #: Sessions that came up, first connects and reconnects.
    connects: int
    connected_at_end: int
    #: Sessions that ended without the simulator asking.
    drops: int
    churned: int
    #: From starting a device to its session being up (protocol handshake included).
    connect_time: Latency


class Summary(msgspec.Struct, kw_only=True):
    plan: Plan
    started_at: datetime
    #: How long the load ran (``plan.duration`` unless stopped early); rates are over it.
    load_seconds: float
    stopped_early: bool
    #: From the first device started to the last one stopped (drain and stop included).
    wall_seconds: float
    provisioning_seconds: float
    devices: int
    dialects: dict[str, DialectFleet]
    connections: Connections
    telemetry: Telemetry
    commands: Commands
    errors: dict[str, int]
    error_count: int
    #: One entry per simulator process.
    simulator: list[Resources]
    warnings: list[str]


def summarize(
    plan: Plan,
    started_at: datetime,
    wall: float,
    load: float,
    provisioning: float,
    tally: Tally,
    connected_by_dialect: dict[str, int],
    resources: list[Resources],
    warnings: list[str],
) -> Summary:
    seconds = max(load, 1e-9)  # the load phase; wall also counts the drain and the stop
    early = load < plan.duration - 0.5
    notes = list(warnings)
    if load < plan.duration - 0.5:
        notes.append(f"stopped early: the load ran {load:.1f}s of {plan.duration:g}s")
    busy = [r for r in resources if r.saturated]
    if busy:
        notes.append(
            f"{len(busy)} of {len(resources)} simulator processes used over 85% of a core: "
            "the simulator may have been the limit, not the server; try --processes "
            f"{min(len(resources) * 2, 64)}"
        )
    late = [r for r in resources if r.lagging]
    if late:
        worst = max(r.loop_lag_p99_ms or 0.0 for r in late)
        notes.append(
            f"{len(late)} simulator processes ran timers late (event-loop lag p99 up to "
            f"{worst:,.0f} ms): the latencies include that much of the simulator's own delay"
        )
    if tally.commands_skipped:
        notes.append(
            f"{tally.commands_skipped} commands were skipped: --max-in-flight "
            f"({plan.max_in_flight}) commands were already waiting"
        )
    if tally.telemetry_skipped:
        notes.append(
            f"{tally.telemetry_skipped} telemetry messages were skipped: their device's last "
            "two were still unanswered"
        )
    return Summary(
        plan=plan,
        started_at=started_at,
        load_seconds=round(load, 3),
        stopped_early=early,
        wall_seconds=round(wall, 3),
        provisioning_seconds=round(provisioning, 3),
        devices=plan.devices,
        dialects={
            name: _dialect(name, count, tally, connected_by_dialect)
            for name, count in plan.mix.items()
        },
        connections=Connections(
            connects=tally.connects,
            connected_at_end=sum(connected_by_dialect.values()),
            drops=tally.drops,
            churned=tally.churned,
            connect_time=tally.connect_time.describe(),
        ),
        telemetry=Telemetry(
            sent=tally.telemetry_sent,
            skipped=tally.telemetry_skipped,
            per_second=round(tally.telemetry_sent / seconds, 1),
            round_trip=tally.telemetry_round_trip.describe(),
        ),
        commands=Commands(
            sent=tally.commands_sent,
            succeeded=tally.commands_succeeded,
            skipped=tally.commands_skipped,
            per_second=round(tally.commands_succeeded / seconds, 1),
            round_trip=tally.command_round_trip.describe(),
        ),
        errors=dict(sorted(tally.errors.items())),
        error_count=tally.error_count,
        simulator=resources,
        warnings=notes,
    )


def _dialect(name: str, devices: int, tally: Tally, connected: dict[str, int]) -> DialectFleet:
    mine = tally.dialects.get(name) or DialectTally()
    return DialectFleet(
        devices=devices,
        connected_at_end=connected.get(name, 0),
        commands_succeeded=mine.commands_succeeded,
        telemetry_sent=mine.telemetry_sent,
        command_round_trip=mine.command_round_trip.describe(),
        telemetry_round_trip=mine.telemetry_round_trip.describe(),
    )
