"""``tether serve`` tunes the process for many connections: the listen backlog and the GC.

Both matter in a reconnect storm (docs/performance.md, P5): a short accept queue drops
SYNs (each costs the device a retry of a second or more), and CPython's default
collector thresholds made full collections over every held connection the main cost.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_durability import PASSWORD, free_port
from tether.app import tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold(
    restore_gc: None,
) -> None:
    middle, old = gc.get_threshold()[1:]
    gc.unfreeze()
    tune_gc(12_345)
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.get_freeze_count() > 1000  # this process's modules, at least


def test_tune_gc_zero_leaves_the_collector_alone(restore_gc: None) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    tune_gc(0)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def listen_backlog(port: int) -> int | None:
    """The backlog of the socket listening on ``port``: ss shows it as Send-Q."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()  # State Recv-Q Send-Q Local Peer
        return int(fields[2])
    return None


@pytest.mark.skipif(
    not Path("/usr/bin/ss").exists() and not Path("/bin/ss").exists(), reason="needs ss"
)
async def test_serve_applies_the_backlog_and_tunes_the_gc_once_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
        "TETHER_ADMIN_PASSWORD": PASSWORD,
        "TETHER_LISTEN_BACKLOG": "77",
        "TETHER_GC_THRESHOLD": "4321",
    }
    log = tmp_path / "log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether.cli",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--log-level",
                "info",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 30
            while "garbage collector" not in log.read_text():  # logged once ready
                assert process.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                await asyncio.sleep(0.1)
            assert listen_backlog(port) == 77
            line = next(x for x in log.read_text().splitlines() if "garbage collector" in x)
            assert "(4321, 10, 10)" in line
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
