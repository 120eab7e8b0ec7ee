"""What a simulation run does: the :class:`Plan`, its defaults, bounds and checks.

A plan is plain data (a msgspec Struct), so the same value drives an in-process run, is
sent to worker processes as JSON, and is echoed in the summary. :func:`check` refuses a
plan that would exceed the simulator's bounds (devices, duration, rates) with a
:class:`PlanError` naming the option, before anything touches the server.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import msgspec

from tether.core.errors import BadRequest

#: The simulated device kinds, in the order they are shown. ``native-ws`` and
#: ``native-http`` are the native agent over its two transports; ``keepalive`` is the
#: InfiniteClouds agent (its CLI name, ``tether agent keepalive``).
DIALECTS: tuple[str, ...] = (
    "native-ws",
    "native-http",
    "devicehive",
    "ewelink",
    "controlid",
    "opengate",
    "infiniteclouds",
)
#: ``--mix`` accepts these short names too.
ALIASES = {
    "ws": "native-ws",
    "http": "native-http",
    "native": "native-ws",
    "dh": "devicehive",
    "keepalive": "infiniteclouds",
    "ic": "infiniteclouds",
}
#: The default mix of ``--devices N``: shares of N, mostly the push dialects (they hold a
#: connection each, which is what a fleet costs a server) with some of every poller.
DEFAULT_SHARES: dict[str, int] = {
    "native-ws": 30,
    "native-http": 10,
    "devicehive": 15,
    "ewelink": 20,
    "controlid": 10,
    "opengate": 5,
    "infiniteclouds": 10,
}

#: Hard bounds of one run (a typo must not start a million sockets or run for a week).
MAX_DEVICES = 100_000
MAX_DURATION = 24 * 3600.0
MAX_RATE = 100_000.0
MAX_PAYLOAD = 64 * 1024
MAX_PROCESSES = 64
#: Run names become device names and ids: short, lower-case, no separators of their own.
NAME = re.compile(r"[a-z0-9]{1,16}")


class PlanError(BadRequest):
    """A plan the simulator refuses; ``option`` names the command-line option at fault."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}", option=option)
        self.option = option


class Plan(msgspec.Struct, kw_only=True, frozen=True):
    """One simulation run. Times are seconds, rates per second."""

    url: str = "http://127.0.0.1:8080"
    #: The run's name: devices are ``sim-<name>-...`` in network ``sim-<name>``.
    name: str = "sim"
    #: Devices per dialect (keys from :data:`DIALECTS`).
    mix: dict[str, int] = msgspec.field(default_factory=dict)
    duration: float = 30.0
    #: New device sessions started per second while the fleet ramps up (0: all at once).
    connect_rate: float = 200.0
    #: Each device sends one telemetry message every this many seconds (0: none).
    telemetry_interval: float = 5.0
    #: Bytes of filler added to each telemetry message (where the protocol carries free data).
    payload_bytes: int = 64
    #: Commands per second sent through the native API to random connected devices.
    command_rate: float = 10.0
    #: How long a command may take (delivery and execution) before it counts as timed out.
    command_timeout: float = 10.0
    #: Commands in flight at most; past it a due command is skipped (and counted).
    max_in_flight: int = 1_000
    #: Devices per second disconnected and, ``churn_downtime`` later, reconnected.
    churn_rate: float = 0.0
    churn_downtime: float = 1.0
    #: How often polling devices poll (Control iD period, keepalive interval), seconds.
    poll_interval: float = 2.0
    #: Worker processes generating the load (1: this process).
    processes: int = 1
    #: Local addresses to open connections from, round robin (beyond one address's
    #: ~28,000 ephemeral ports); empty: the system's choice.
    source_addresses: list[str] = msgspec.field(default_factory=list)

    @property
    def devices(self) -> int:
        return sum(self.mix.values())


def default_mix(devices: int) -> dict[str, int]:
    """``devices`` split by :data:`DEFAULT_SHARES`: one of each dialect first when there
    are enough devices, the rest by share, and the counts add up exactly."""
    if devices < 0:
        raise PlanError("--devices", "must be 0 or more")
    base = 1 if devices >= len(DEFAULT_SHARES) else 0
    rest = devices - base * len(DEFAULT_SHARES)
    total = sum(DEFAULT_SHARES.values())
    mix = {name: base + rest * share // total for name, share in DEFAULT_SHARES.items()}
    left = devices - sum(mix.values())
    for name in sorted(DEFAULT_SHARES, key=lambda n: -DEFAULT_SHARES[n])[:left]:
        mix[name] += 1
    return {name: count for name, count in mix.items() if count}


def parse_mix(text: str) -> dict[str, int]:
    """``native-ws=50,ewelink=20`` (short names allowed: ws, http, dh, ic, keepalive)."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, count = part.partition("=")
        name = ALIASES.get(name.strip().lower(), name.strip().lower())
        if not eq or name not in DIALECTS:
            raise PlanError(
                "--mix",
                f"{part!r} is not DIALECT=COUNT with DIALECT one of {', '.join(DIALECTS)}",
            )
        try:
            value = int(count)
        except ValueError:
            raise PlanError("--mix", f"{part!r}: {count!r} is not a whole number") from None
        if value < 0:
            raise PlanError("--mix", f"{part!r}: the count must be 0 or more")
        mix[name] = mix.get(name, 0) + value
    return {name: mix[name] for name in DIALECTS if mix.get(name)}


def is_local(url: str) -> bool:
    """True when ``url`` names this machine (a loopback address or ``localhost``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(plan: Plan) -> Plan:
    """``plan`` if it is within bounds; :class:`PlanError` naming the option otherwise."""
    parts = urlsplit(plan.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlanError("--url", f"{plan.url!r} must be an http:// or https:// URL")
    if not NAME.fullmatch(plan.name):
        raise PlanError("--name", f"{plan.name!r} must be 1-16 lower-case letters or digits")
    unknown = sorted(set(plan.mix) - set(DIALECTS))
    if unknown:
        raise PlanError("--mix", f"unknown dialect {unknown[0]!r}")
    if any(count < 0 for count in plan.mix.values()):
        raise PlanError("--mix", "counts must be 0 or more")
    if plan.devices == 0:
        raise PlanError("--devices", "the fleet is empty: give --devices N or --mix")
    if plan.devices > MAX_DEVICES:
        raise PlanError("--devices", f"{plan.devices} devices is over the bound of {MAX_DEVICES}")
    if not 0 < plan.duration <= MAX_DURATION:
        raise PlanError("--duration", f"must be more than 0 and at most {MAX_DURATION:.0f}s")
    for option, value in (
        ("--connect-rate", plan.connect_rate),
        ("--command-rate", plan.command_rate),
        ("--churn-rate", plan.churn_rate),
    ):
        if not 0 <= value <= MAX_RATE:
            raise PlanError(option, f"must be between 0 and {MAX_RATE:.0f} per second")
    if plan.telemetry_interval < 0 or 0 < plan.telemetry_interval < 0.01:
        raise PlanError("--telemetry-interval", "must be 0 (off) or at least 10ms")
    if not 0 <= plan.payload_bytes <= MAX_PAYLOAD:
        raise PlanError("--payload", f"must be between 0 and {MAX_PAYLOAD} bytes")
    if not 0.1 <= plan.command_timeout <= 120:
        raise PlanError("--command-timeout", "must be between 100ms and 120s")
    if not 1 <= plan.max_in_flight <= 100_000:
        raise PlanError("--max-in-flight", "must be between 1 and 100000")
    if not 0 <= plan.churn_downtime <= 3600:
        raise PlanError("--churn-downtime", "must be between 0 and 3600s")
    if not 0.05 <= plan.poll_interval <= 300:
        raise PlanError("--poll-interval", "must be between 50ms and 300s")
    if not 1 <= plan.processes <= MAX_PROCESSES:
        raise PlanError("--processes", f"must be between 1 and {MAX_PROCESSES}")
    for address in plan.source_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise PlanError("--source-addresses", f"{address!r} is not an IP address") from None
    return plan
