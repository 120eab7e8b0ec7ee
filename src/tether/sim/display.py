"""What a person sees of a run: a live progress line, and the summary as tables.

The live line (rich ``Live``, on stderr) shows the devices started and connected, the
command and notification rates over the last second or so, drops and errors. Rates come
from the difference between two progress snapshots, so they follow the load as it is now
rather than averaging from the start.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tether.sim.plan import Plan
from tether.sim.shard import Progress
from tether.sim.stats import Latency
from tether.sim.summary import Summary


class LiveProgress:
    """A context manager showing :class:`Progress` snapshots as they arrive."""

    def __init__(self, console: Console, plan: Plan) -> None:
        self.plan = plan
        self._live = Live(console=console, refresh_per_second=4, transient=True)
        self._last: Progress | None = None
        self._rates = (0.0, 0.0)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        self._live.update(Text(f"provisioning {self.plan.devices:,} devices...", style="dim"))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._live.__exit__(kind, error, trace)

    def update(self, progress: Progress) -> None:
        last = self._last
        if last is not None and progress.elapsed - last.elapsed >= 0.4:
            span = progress.elapsed - last.elapsed
            self._rates = (
                (progress.commands_succeeded - last.commands_succeeded) / span,
                (progress.telemetry_sent - last.telemetry_sent) / span,
            )
            self._last = progress
        elif last is None:
            self._last = progress
        self._live.update(self.line(progress))

    def line(self, p: Progress) -> Text:
        commands, notifications = self._rates
        text = Text()
        text.append(f"{p.elapsed:5.1f}s/{self.plan.duration:g}s  ", style="dim")
        text.append(f"started {p.started:,}/{p.devices:,}  ")
        text.append(f"connected {p.connected:,}  ", style="green")
        online = "?" if p.online is None else f"{p.online:,}"
        text.append(f"online {online} (server)  ")
        text.append(f"commands {commands:,.0f}/s  ")
        text.append(f"notifications {notifications:,.0f}/s  ")
        text.append(f"drops {p.drops:,}  ", style="yellow" if p.drops else "")
        text.append(f"errors {p.errors:,}", style="red" if p.errors else "")
        return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render(summary: Summary) -> RenderableType:
    """The summary as a few small tables (``--json`` prints the same as JSON)."""
    s = summary
    head = Text.assemble(
        ("tether sim ", "bold"),
        f"{s.plan.name}: {s.devices:,} devices for {s.plan.duration:g}s against {s.plan.url} ",
        (f"(provisioned in {s.provisioning_seconds:.1f}s)", "dim"),
    )
    fleet = Table(title="Fleet", title_justify="left", show_edge=False, header_style="bold")
    columns = ("dialect", "devices", "connected", "commands", "p50 ms", "p99 ms")
    for column in (*columns, "telemetry", "p50 ms ", "p99 ms "):
        fleet.add_column(column, justify="left" if column == "dialect" else "right")
    for name, entry in s.dialects.items():
        style = "" if entry.connected_at_end == entry.devices else "yellow"
        cmd, tel = entry.command_round_trip, entry.telemetry_round_trip
        fleet.add_row(
            name,
            f"{entry.devices:,}",
            Text(f"{entry.connected_at_end:,}", style=style),
            f"{entry.commands_succeeded:,}",
            _ms(cmd.p50_ms),
            _ms(cmd.p99_ms),
            f"{entry.telemetry_sent:,}",
            _ms(tel.p50_ms),
            _ms(tel.p99_ms),
        )
    latency = Table(
        title="Latency (ms)", title_justify="left", show_edge=False, header_style="bold"
    )
    for column in ("", "count", "rate/s", "p50", "p90", "p99", "p99.9", "max"):
        latency.add_column(column, justify="left" if not column else "right")

    def row(name: str, lat: Latency, rate: str) -> None:
        latency.add_row(
            name,
            f"{lat.count:,}",
            rate,
            *(_ms(v) for v in (lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.p999_ms, lat.max_ms)),
        )

    row("command round trip", s.commands.round_trip, f"{s.commands.per_second:,.1f}")
    row("telemetry", s.telemetry.round_trip, f"{s.telemetry.per_second:,.1f}")
    row("connect", s.connections.connect_time, "")
    c = s.connections
    counts = Text(
        f"connects {c.connects:,}  drops {c.drops:,}  churned {c.churned:,}  "
        f"commands sent {s.commands.sent:,} (succeeded {s.commands.succeeded:,}, skipped "
        f"{s.commands.skipped:,})  telemetry sent {s.telemetry.sent:,} (skipped "
        f"{s.telemetry.skipped:,})"
    )
    parts: list[RenderableType] = [head, fleet, latency, counts]
    if s.errors:
        errors = Table(title="Errors", title_justify="left", show_edge=False, header_style="bold")
        errors.add_column("kind")
        errors.add_column("count", justify="right")
        for kind, n in s.errors.items():
            errors.add_row(Text(kind, style="red"), f"{n:,}")
        parts.append(errors)
    else:
        parts.append(Text("errors: none", style="green"))
    sim = Table(title="Simulator", title_justify="left", show_edge=False, header_style="bold")
    heads = ("pid", "CPU s", "core share", "loop lag p99 ms", "RSS MiB", "peak MiB", "fds")
    for column in (*heads, "fd limit"):
        sim.add_column(column, justify="right")
    for r in s.simulator:
        sim.add_row(
            str(r.pid),
            f"{r.cpu_seconds:.1f}",
            Text(f"{r.core_share:.0%}", style="red" if r.saturated else ""),
            Text(_ms(r.loop_lag_p99_ms), style="red" if r.lagging else ""),
            f"{r.rss_bytes / 2**20:,.0f}",
            f"{r.peak_rss_bytes / 2**20:,.0f}",
            f"{r.open_fds:,}",
            f"{r.fd_limit:,}",
        )
    parts.append(sim)
    parts.extend(Text(f"warning: {w}", style="bold yellow") for w in s.warnings)
    return Group(*parts)
