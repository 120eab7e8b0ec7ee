"""The fleet simulator: ``tether sim``, and the library the bench drives.

``await run(plan, credentials) -> Summary`` provisions a fleet of simulated devices of
any mix of dialects through the native API, runs each on its dialect's real agent
(:mod:`tether.sim.drivers`), drives telemetry, commands and churn against the server for
``plan.duration`` seconds and returns a typed :class:`Summary` (latency percentiles,
errors by kind, the simulator's own resource use). ``remove(url, name, credentials)``
deletes what a run named ``name`` provisioned. See ``docs/sim.md``.

Modules: ``plan`` (options and bounds), ``provision`` (devices, network, user),
``drivers`` (one per dialect, wrapping the agents), ``shard`` (one process's devices and
load loops), ``runner`` (the run, worker processes), ``worker`` (a worker's entry point),
``stats`` (histograms and tallies), ``resources`` (CPU, memory, descriptors),
``summary`` (the result) and ``display`` (the live progress and the summary as text).
"""

from __future__ import annotations

from tether.sim.client import ApiError, Credentials
from tether.sim.plan import DIALECTS, Plan, PlanError, check, default_mix, parse_mix
from tether.sim.provision import Cleaned
from tether.sim.runner import SimError, remove, run
from tether.sim.shard import Progress
from tether.sim.summary import Summary

__all__ = [
    "DIALECTS",
    "ApiError",
    "Cleaned",
    "Credentials",
    "Plan",
    "PlanError",
    "Progress",
    "SimError",
    "Summary",
    "check",
    "default_mix",
    "parse_mix",
    "remove",
    "run",
]
