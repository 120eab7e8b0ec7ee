"""Section C1 of scenario ``cluster`` (issue 14): what each added process costs, and what
crossing processes costs beyond the Redis hops it cannot avoid.

* **CPU per command at 1, 2 and 4 processes.** N ``tether serve`` processes on one
  PostgreSQL schema and the Redis bus, N devices: device *i*'s socket on process *i*, its
  app socket on process *i + 1* (so with two or more processes every command crosses),
  each pair driven at ``rate / N`` by the open loop of ``bench/roundtrip.py``. The figure
  is the CPU of all N processes over the run divided by the commands they created. Goal:
  it stays within 15% of one process's as processes are added (it grows when every
  process decodes and applies every other process's events).
* **Round trip at 200/s and 1,000/s.** One process against two (device on A, app on B:
  two Redis hops on the critical path), each rate beside the two-hop floor measured by
  ``bench/redis_hops.py`` at the same rate in the same run. Goal: what crossing adds
  beyond that floor, Tether's own crossing cost, is under 0.5 ms at p50 and at p99.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets
import time
from dataclasses import dataclass

from bench import c1_ops, chart, cluster, redis_hops, roundtrip
from bench.common import Machine, metric_total, ms, now_utc, table
from bench.roundtrip import Load, Outcome, postgres_schema, print_outcome

PROCESS_COUNTS = (1, 2, 4)
#: Each round also runs this many processes with no command crossing (each device's app
#: on the device's own process): the same split of the load, so that what crossing costs
#: and what splitting the load costs (fewer commands per batch and per wake-up on each
#: process) can be told apart.
CONTROL = 2
RATES = (200.0, 1000.0)
#: Rounds of the 1, 2 and 4 process runs, interleaved; each count's median round is shown
#: (the machine is shared: one round alone says more about the neighbours than Tether).
SCALE_ROUNDS = 3
#: Seconds each setup sits idle, connected, before its run: its timers' own CPU.
IDLE = 3.0
#: Command events a process received from the others and decoded (``/metrics``).
_HEARD = "tether_command_events_heard_total"
#: Goals of issue 14.
GOAL_CPU_GROWTH, GOAL_CROSSING = 1.15, 0.0005
#: Share of the offered rate a round-trip setup must complete for its latency to count.
KEPT_UP = 0.97


@dataclass(frozen=True)
class Scale:
    """One process count: how many commands, and what they cost all processes together."""

    processes: int
    created: float
    cpu: list[float]  # CPU seconds per process over the run
    outcomes: list[Outcome]
    #: Whether each command crosses processes (app on the next process), or stays on the
    #: process holding its device (the control: the same split of the load, no crossing).
    crossing: bool = True
    #: Share of the scenario's rate this setup ran (the control of one process at
    #: ``1 / CONTROL`` of it: what a process running fewer commands per second pays).
    share: float = 1.0
    #: CPU seconds the processes used, all together, while idle for as long as the run:
    #: what they cost anyway (beats, timers), whatever the commands.
    idle: float = 0.0
    #: Command events each process received from the others and decoded, over the run.
    heard: list[float] | None = None

    @property
    def label(self) -> str:
        if self.share < 1:
            return f"{self.processes}, at 1/{round(1 / self.share)} of the rate"
        control = not self.crossing and self.processes > 1
        return f"{self.processes}" + (", no crossing" if control else "")

    @property
    def heard_per_command(self) -> float:
        if self.heard is None or not self.created:
            return math.nan
        return sum(self.heard) / self.created

    @property
    def cpu_per_command(self) -> float:
        return sum(self.cpu) / self.created if self.created else math.nan

    @property
    def busy_per_command(self) -> float:
        """CPU per command less the idle processes' own CPU over the same time."""
        return max(0.0, sum(self.cpu) - self.idle) / self.created if self.created else math.nan

    @property
    def unfinished(self) -> int:
        return sum(o.unfinished for o in self.outcomes)

    @property
    def errors(self) -> int:
        return sum(o.errors for o in self.outcomes)


@dataclass(frozen=True)
class Crossing:
    rate: float
    single: Outcome
    pair: Outcome
    hops: redis_hops.Hops

    def beyond_floor(self, q: float) -> float:
        """What crossing added at percentile ``q``, less the two hops' own time."""
        return self.pair.p(q) - self.single.p(q) - self.hops.p(q)


async def _scale(count: int, load: Load, crossing: bool = True, share: float = 1.0) -> Scale:
    async with postgres_schema() as url:
        if url is None:
            raise RuntimeError("PostgreSQL went away")
        password = secrets.token_urlsafe(16)
        nodes = [
            cluster._node(f"{count} processes #{i}", url, f"bench-s{count}-{i}", password)
            for i in range(count)
        ]
        try:
            for node in nodes:  # the first migrates and creates the admin
                await node.start()
            devices = [await nodes[0].device(f"scale-{i}") for i in range(count)]
            quiet = [node.cpu_seconds() for node in nodes]
            await asyncio.sleep(IDLE)
            idle_rate = sum(n.cpu_seconds() - c for n, c in zip(nodes, quiet, strict=True)) / IDLE
            created = [await metric_total(node, cluster._CREATED) or 0.0 for node in nodes]
            heard = [await metric_total(node, _HEARD) for node in nodes]
            cpu = [node.cpu_seconds() for node in nodes]
            started = time.monotonic()
            each = dataclasses.replace(load, rate=load.rate * share / count)
            outcomes = await asyncio.gather(
                *(
                    roundtrip.drive(
                        nodes[(i + 1) % count if crossing else i],
                        f"{count} processes, device {i}",
                        token,
                        credential,
                        each,
                        count_sql=False,
                        device_server=nodes[i],
                        device_id=f"scale-{i}",
                    )
                    for i, (token, credential) in enumerate(devices)
                )
            )
            used = [node.cpu_seconds() - before for node, before in zip(nodes, cpu, strict=True)]
            idle = idle_rate * (time.monotonic() - started)
            after = [await metric_total(node, cluster._CREATED) or 0.0 for node in nodes]
            made = sum(after) - sum(created)
            heard_after = [await metric_total(node, _HEARD) for node in nodes]
            decoded = (
                [b - a for a, b in zip(heard, heard_after, strict=True)]  # type: ignore[operator]
                if None not in (*heard, *heard_after)
                else None
            )
            return Scale(count, made, used, list(outcomes), crossing, share, idle, decoded)
        finally:
            for node in reversed(nodes):
                node.stop()


async def run(load: Load, machine: Machine, command: str) -> str | None:
    """Both figures; the report section, or None when PostgreSQL or Redis is missing."""
    if not await cluster._redis_answers():
        print(f"C1: skipped: Redis at {cluster.REDIS} does not answer PING")
        return None
    async with postgres_schema() as url:
        if url is None:
            print("C1: skipped: it needs PostgreSQL")
            return None
    print(
        f"C1: CPU per command at {', '.join(map(str, PROCESS_COUNTS))} processes "
        f"({load.rate:,.0f} commands/s in all), then round trips at "
        f"{', '.join(f'{rate:,.0f}/s' for rate in RATES)} beside the Redis floor"
    )
    setups = [(1, True, 1.0), (1, True, 1 / CONTROL), (CONTROL, True, 1.0)]
    setups += [(CONTROL, False, 1.0)] + [(n, True, 1.0) for n in PROCESS_COUNTS if n > CONTROL]
    rounds: dict[str, list[Scale]] = {}
    for round_ in range(SCALE_ROUNDS):
        for count, crossing, share in setups:
            scale = await _scale(count, load, crossing, share)
            print(
                f"  round {round_ + 1}, {scale.label} process(es): "
                f"{scale.created:,.0f} commands, "
                f"{scale.cpu_per_command * 1e6:,.0f} us CPU per command (all processes), "
                f"{scale.busy_per_command * 1e6:,.0f} us beyond idle, "
                f"{_heard(scale)} events decoded per command, "
                f"{scale.errors} errors, {scale.unfinished} unfinished"
            )
            rounds.setdefault(scale.label, []).append(scale)
    scales = [_median(runs) for runs in rounds.values()]
    crossings = []
    for rate in RATES:
        at = dataclasses.replace(load, rate=rate)
        single = (await cluster._trip(f"1 process at {rate:,.0f}/s", at, split=False)).outcome
        print_outcome(single)
        pair = (await cluster._trip(f"2 processes at {rate:,.0f}/s", at, split=True)).outcome
        print_outcome(pair)
        hops = await redis_hops.measure(cluster.REDIS, rate, at.duration)
        crossing = Crossing(rate, single, pair, hops)
        print(
            f"  at {rate:,.0f}/s: floor p50 {ms(hops.p(50))} / p99 {ms(hops.p(99))} ms; "
            f"beyond it p50 {_signed(crossing.beyond_floor(50))} / "
            f"p99 {_signed(crossing.beyond_floor(99))} ms"
        )
        crossings.append(crossing)
    ops = c1_ops.measure()
    for op in ops:
        print(f"  {op.name}: {op.baseline * 1e6:.1f} us before, {op.tether * 1e6:.1f} us now")
    return render(load, machine, command, scales, crossings, rounds, ops)


def _median(runs: list[Scale]) -> Scale:
    """The median round by CPU per command, among the rounds that finished every command
    if any did (a round with unfinished commands did less work per command)."""
    clean = [s for s in runs if s.errors == 0 and s.unfinished == 0]
    ordered = sorted(clean or runs, key=lambda s: s.cpu_per_command)
    return ordered[len(ordered) // 2]


# --- the report ------------------------------------------------------------------------


def _signed(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    return ("+" if seconds >= 0 else "-") + ms(abs(seconds))


def _heard(scale: Scale) -> str:
    if scale.heard is None:
        return "n/a"
    each = " + ".join(f"{h / scale.created:.2f}" for h in scale.heard)
    return f"{scale.heard_per_command:.2f} ({each})"


def _render_rounds(rounds: dict[str, list[Scale]] | None) -> str:
    if not rounds or len(next(iter(rounds.values()))) < 2:
        return ""
    lines = [
        f"- {label} process(es): "
        + ", ".join(f"{s.cpu_per_command * 1e6:,.0f} ({s.errors} / {s.unfinished})" for s in runs)
        for label, runs in rounds.items()
    ]
    order = ", ".join(rounds)
    return (
        f"Every round (us of CPU per command, errors / unfinished; the table shows each "
        f"setup's median round, among those that finished every command if any did; "
        f"rounds ran {order}, {order}, ... on a machine shared with "
        f"other work, and *beyond the idle processes' own CPU* subtracts what the same "
        f"processes used while idle for {IDLE:g} s before the run, scaled to its length):"
        f"\n\n" + "\n".join(lines) + "\n\n"
    )


def _crossing_scales(scales: list[Scale]) -> list[Scale]:
    return [s for s in scales if s.crossing and s.share == 1]


def _controls(scales: list[Scale]) -> tuple[Scale, Scale, Scale] | None:
    """One process at a share of the rate, CONTROL processes without crossing and with."""
    slow = next((s for s in scales if s.share < 1), None)
    local = next((s for s in scales if not s.crossing), None)
    if slow is None or local is None:
        return None
    twin = next((s for s in _crossing_scales(scales) if s.processes == local.processes), None)
    return None if twin is None else (slow, local, twin)


def _scale_goal(load: Load, scales: list[Scale]) -> str:
    if load.duration < 5:
        return "not evaluated (a run shorter than 5 s is a smoke test)"
    crossing = _crossing_scales(scales)
    base = crossing[0].cpu_per_command
    growth = {s.processes: s.cpu_per_command / base for s in crossing[1:]}
    worst = max(growth.values())
    clean = all(s.errors == 0 and s.unfinished == 0 for s in scales)
    verdict = "**holds**" if worst <= GOAL_CPU_GROWTH and clean else "**missed**"
    pair = next((s for s in crossing if s.processes == 2), None)
    beyond = [s for s in crossing if s.processes > 2]
    after_two = (
        "; from two processes on, where every command crosses already and only the number "
        "of processes changes: "
        + ", ".join(
            f"{s.processes} processes {s.cpu_per_command / pair.cpu_per_command:.2f}x two"
            for s in beyond
        )
        if pair is not None and beyond
        else ""
    )
    busy = crossing[0].busy_per_command
    beyond_idle = "; beyond the idle processes' own CPU: " + ", ".join(
        f"{s.processes} processes {s.busy_per_command / busy:.2f}x one" for s in crossing[1:]
    )
    return (
        verdict
        + ": CPU per command "
        + ", ".join(f"{n} processes {g:.2f}x one" for n, g in growth.items())
        + f" (goal <= {GOAL_CPU_GROWTH:.2f}x)"
        + after_two
        + beyond_idle
    )


def _split(scales: list[Scale]) -> str:
    """What the controls say: where the difference from one process comes from."""
    controls = _controls(scales)
    if controls is None:
        return ""
    slow, local, twin = controls
    one = scales[0].cpu_per_command
    n = local.processes

    def step(x: Scale, y: Scale | None) -> str:
        against = one if y is None else y.cpu_per_command
        return (
            f"{x.cpu_per_command * 1e6:,.0f} us, {_signed_us((x.cpu_per_command - against) * 1e6)}"
        )

    return (
        f"Where the difference from one process comes from (median rounds, us of CPU per "
        f"command, each step against the one before):\n\n"
        f"1. one process at the full rate: {one * 1e6:,.0f} us;\n"
        f"2. one process at 1/{n} of the rate, as each of {n} processes runs: "
        f"{step(slow, None)} (fewer commands share each batch, statement and wake-up);\n"
        f"3. {n} processes, no command crossing: {step(local, slow)} (the same per-process "
        f"rate, {n} processes sharing the two cores with PostgreSQL, Redis and the load);\n"
        f"4. {n} processes, every command crossing: {step(twin, local)} (the crossing "
        f"itself: three events packed, sent through Redis, parsed and decoded).\n\n"
    )


def _signed_us(us: float) -> str:
    return ("+" if us >= 0 else "-") + f"{abs(us):,.0f}"


def _crossing_goal(load: Load, crossing: Crossing) -> str:
    if load.duration < 5:
        return "not evaluated (smoke test)"
    p50, p99 = crossing.beyond_floor(50), crossing.beyond_floor(99)
    clean = all(o.errors == 0 and o.unfinished == 0 for o in (crossing.single, crossing.pair))
    kept_up = all(
        o.completion_rate >= KEPT_UP * crossing.rate for o in (crossing.single, crossing.pair)
    )
    if not kept_up:
        return (
            f"not measured: a setup completed less than {KEPT_UP:.0%} of "
            f"{crossing.rate:,.0f}/s, so "
            "its latency is queueing behind the machine's other work"
        )
    holds = p50 < GOAL_CROSSING and p99 < GOAL_CROSSING and clean
    return ("**holds**" if holds else "**missed**") + f" ({_signed(p50)} / {_signed(p99)} ms)"


def _short(scale: Scale) -> str:
    """A chart label: the processes, then what sets the setup apart, on a second line."""
    head = f"{scale.processes} process" + ("es" if scale.processes > 1 else "")
    if scale.share < 1:
        return f"{head}\nat 1/{round(1 / scale.share)} rate"
    return head + ("" if scale.crossing else "\nno crossing")


def _charts(scales: list[Scale], crossings: list[Crossing]) -> str:
    cpu = chart.bars(
        "c1_cpu_per_command",
        title="C1: server CPU per command, all processes (median round)",
        y_label="us of CPU per command",
        groups=[_short(s) for s in scales],
        series={"Tether": [s.cpu_per_command * 1e6 for s in scales]},
    )
    groups = [f"p{q} at {c.rate:,.0f}/s" for c in crossings for q in (50, 99)]
    trip = chart.bars(
        "c1_round_trip",
        title="C1: command round trip, one process, two, and the two-hop Redis floor",
        y_label="ms (log scale)",
        groups=groups,
        series={
            "1 process": [c.single.p(q) * 1e3 for c in crossings for q in (50, 99)],
            "2 processes": [c.pair.p(q) * 1e3 for c in crossings for q in (50, 99)],
            "two-hop Redis floor": [c.hops.p(q) * 1e3 for c in crossings for q in (50, 99)],
        },
        log_y=True,
    )
    return cpu + "\n\n" + trip + "\n\n"


def render(
    load: Load,
    machine: Machine,
    command: str,
    scales: list[Scale],
    crossings: list[Crossing],
    rounds: dict[str, list[Scale]] | None = None,
    ops: list[c1_ops.Op] | None = None,
) -> str:
    base = scales[0].cpu_per_command
    busy = scales[0].busy_per_command
    two = next((s.cpu_per_command for s in scales if s.processes == 2 and s.crossing), math.nan)
    scale_rows = [
        [
            s.label,
            f"{s.created:,.0f}",
            f"{s.cpu_per_command * 1e6:,.0f}",
            f"{s.cpu_per_command / base:.2f}x",
            f"{s.cpu_per_command / two:.2f}x" if s.processes >= 2 else "",
            f"{s.busy_per_command * 1e6:,.0f} ({s.busy_per_command / busy:.2f}x)",
            _heard(s),
            " + ".join(f"{c:.2f}" for c in s.cpu),
            f"{s.errors} / {s.unfinished}",
        ]
        for s in scales
    ]
    crossing_rows = [
        [
            f"{c.rate:,.0f}/s",
            f"{ms(c.single.p(50))} / {ms(c.single.p(99))}",
            f"{ms(c.pair.p(50))} / {ms(c.pair.p(99))}",
            f"{ms(c.hops.p(50))} / {ms(c.hops.p(99))}",
            f"{_signed(c.beyond_floor(50))} / {_signed(c.beyond_floor(99))}",
            f"{c.single.completion_rate:,.0f} / {c.pair.completion_rate:,.0f}",
            _crossing_goal(load, c),
        ]
        for c in crossings
    ]
    return (
        "## C1: cluster scaling: CPU per command at 1, 2 and 4 processes; crossing cost "
        "beyond the Redis floor (issue 14)\n\n"
        "Goals (issue 14): CPU per command, summed over every process, stays within 15% of "
        "one process's at 2 and 4; crossing processes costs Tether less than 0.5 ms beyond "
        "the two Redis hops, at p50 and at p99.\n\n"
        f"- Date: {now_utc()}\n"
        f"{machine.markdown()}"
        f"- Command: `{command}`\n"
        f"- Load: {load.rate:,.0f} commands/s in all for the scaling runs (split evenly "
        f"over the processes' device/app pairs), {load.warmup:g} s warm-up, "
        f"{load.duration:g} s measured; every server on PostgreSQL with the Redis bus.\n\n"
        + _charts(scales, crossings)
        + "### CPU per command as processes are added\n\n"
        "Device *i* on process *i*, its app on process *i + 1*: with two or more processes "
        "every command is created on one process and delivered by another, so its events "
        "cross Redis and are encoded and decoded on both sides, which one process never "
        "does. Command events are routed (only to the processes holding or listening for "
        "the device), so a third or fourth process is sent nothing about a pair it has no "
        "part in: from two processes on, the per-command cost should stay flat. The row "
        f"*{CONTROL}, no crossing* is the control: the same {CONTROL} processes and the same "
        "split of the load, but each device's app on the device's own process, so no "
        "command crosses.\n\n"
        + table(
            [
                "processes",
                "commands created",
                "CPU per command, all processes (us)",
                "against one process",
                "against two processes",
                "beyond the idle processes' own CPU (us; against one)",
                "command events decoded per command (each process)",
                "CPU seconds of each process",
                "errors / unfinished",
            ],
            scale_rows,
        )
        + f"\nGoal: {_scale_goal(load, scales)}.\n\n"
        + _split(scales)
        + _render_rounds(rounds)
        + "### Round trip across two processes, beside the two-hop Redis floor\n\n"
        "Latency in ms, p50 / p99: one process holding both sockets, two processes (device "
        "on A, app on B), the floor (two bare redis-py processes ping-ponging a command-"
        "sized message at the same rate, `bench/redis_hops.py`), and what crossing adds "
        "beyond the floor (two processes - one process - floor). A setup that completes "
        "less than the offered rate is saturated (the machine's two cores are shared), and "
        "its latency is then queueing, not crossing.\n\n"
        + table(
            [
                "rate",
                "1 process",
                "2 processes",
                "two-hop floor",
                "beyond the floor",
                "completed/s, 1 / 2 processes",
                "goal",
            ],
            crossing_rows,
        )
        + _render_ops(ops)
    )


def _render_ops(ops: list[c1_ops.Op] | None) -> str:
    if not ops:
        return ""
    return (
        "\n### What one crossing event costs, operation by operation\n\n"
        "Timed in the bench process in the same run (best of 7 timings of 2,000 calls), "
        "each beside the way it was done before this section's changes. A crossing command "
        "has three events (`pending` one way, `sent` and `succeeded` back): the publisher "
        "packs each (one process pays that too, since it also routes every event through "
        "Redis) and the receiver parses and decodes each (one process never does).\n\n"
        + c1_ops.render(ops)
    )
