"""``tether agent keepalive start|stop|status`` behaves like an init script.

``start`` daemonises the agent (PID file, log file) and a second ``start`` says it is
already running; ``status`` exits 0 while it runs and 3 once stopped; ``stop`` ends it.
The daemon really talks to a server: its register answer shows up in the state dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.support import running

pytestmark = pytest.mark.slow


def subprocess_env() -> dict[str, str]:
    """The environment without TETHER_* settings; bytecode is cached under the temp dir
    (not in the tree), since compiling every module again costs seconds per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "tether-pycache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def keepalive(*args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tether.cli", "agent", "keepalive", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def test_start_status_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with running(tmp_path) as app:
        options = [
            "--url",
            app.url,
            "--state-dir",
            str(state),
            "--mac",
            "02:00:00:cc:dd:01",
            "--register-interval",
            "0.2",
        ]
        done = await keepalive("status", "--state-dir", str(state))
        assert done.returncode == 3, done
        assert "stopped" in done.stdout
        done = await keepalive("start", *options)
        assert done.returncode == 0, done
        assert "started" in done.stdout
        pid = int((state / "keepalive.pid").read_text())
        try:
            done = await keepalive("start", *options)
            assert done.returncode == 0, done
            assert "already running" in done.stdout
            assert int((state / "keepalive.pid").read_text()) == pid
            done = await keepalive("status", "--state-dir", str(state))
            assert done.returncode == 0, done
            assert f"running (pid {pid})" in done.stdout

            async def registered() -> None:
                while not (state / "last_register_response.json").exists():
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(registered(), 30)
            answer = json.loads((state / "last_register_response.json").read_text())
            assert answer["data"]["deviceId"] == "ic-020000ccdd01"
        finally:
            done = await keepalive("stop", "--state-dir", str(state))
        assert done.returncode == 0, done
        assert "stopped" in done.stdout
        assert not (state / "keepalive.pid").exists()
        done = await keepalive("status", "--state-dir", str(state))
        assert done.returncode == 3, done
        done = await keepalive("stop", "--state-dir", str(state))
        assert done.returncode == 0
        assert "not running" in done.stdout
        log = (state / "keepalive.log").read_text()
        assert "registered; waiting for assignment" in log
        assert "stopping" in log


async def test_start_fails_cleanly_on_bad_options(tmp_path: Path) -> None:
    done = await keepalive("start", "--url", "ftp://x", "--state-dir", str(tmp_path))
    assert done.returncode == 2
    done = await keepalive("status", "--state-dir", str(tmp_path))
    assert done.returncode == 3
