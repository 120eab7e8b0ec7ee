"""``tether serve --workers N``: N processes on one port, supervised by the parent.

A Python process tops out at about one core, so a node runs several. The parent migrates
the database and creates the first admin once, then starts N workers that each run the
full server on the same port (``SO_REUSEPORT``: the kernel spreads connections across
them). Workers join through the Redis bus and share PostgreSQL exactly as separate nodes
do, so one process, N processes and N nodes are one code path. A worker that dies is
started again after a short pause; SIGTERM or SIGINT stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

#: Set in a worker's environment: its index, which also makes it bind with SO_REUSEPORT.
WORKER_ENV = "TETHER_WORKER_INDEX"
RESTART_PAUSE = 1.0
#: A worker that fails sooner than this after starting is not restarted: it would only
#: fail again (a port in use, bad settings), and the supervisor exits with its error.
STARTUP_GRACE = 5.0


def worker_index() -> int | None:
    raw = os.environ.get(WORKER_ENV)
    return int(raw) if raw is not None else None


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The parent's ``serve`` arguments for a worker: the same, minus ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return out


def supervise(serve_args: Sequence[str], workers: int, node_id: str) -> int:
    """Run ``workers`` copies of ``tether serve`` until told to stop; returns the exit code."""
    command = [sys.executable, "-m", "tether.cli", "serve", *worker_argv(serve_args)]
    children: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    stopping = False
    failed = 0

    def start(index: int) -> None:
        env = {
            **os.environ,
            WORKER_ENV: str(index),
            "TETHER_WORKERS": "1",
            "TETHER_NODE_ID": f"{node_id}-{index}",
        }
        children[index] = subprocess.Popen(command, env=env)
        started[index] = time.monotonic()

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        start(index)
    while True:
        time.sleep(0.2)
        for index, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            if stopping:
                del children[index]
            elif code != 0 and time.monotonic() - started[index] < STARTUP_GRACE:
                print(f"worker {index} failed to start (exit {code})", file=sys.stderr, flush=True)
                del children[index]
                failed = code
            else:
                print(
                    f"worker {index} exited with {code}; starting it again",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(RESTART_PAUSE)
                start(index)
        if not children:
            return 0 if stopping and not failed else (failed or 1)
