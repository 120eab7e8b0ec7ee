"""``tether device assign``: assigning a device to a user (its owner) and taking it back.

The CLI runs as a real subprocess against a server started in this process; the native
API's ``PATCH /api/v1/devices/{id}`` with ``ownerId`` does the work.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import ADMIN_PASSWORD, Running, running


def subprocess_env() -> dict[str, str]:
    """The environment without TETHER_* settings; bytecode is cached under the temp dir
    (not in the tree), since compiling every module again costs seconds per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "tether-pycache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def cli(app: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env.update(TETHER_URL=app.url, TETHER_LOGIN="admin", TETHER_PASSWORD=ADMIN_PASSWORD)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tether.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def test_assign_by_login_and_id_then_unassign(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        await app.call("POST", "/api/v1/devices", json={"id": "d1", "name": "d1"}, expect=201)
        user = await app.call(
            "POST",
            "/api/v1/users",
            json={"login": "alice", "password": "alice-pass"},
            expect=201,
        )
        done = await cli(app, "device", "assign", "d1", "--user", "alice")
        assert done.returncode == 0, done.stderr
        assert (await app.call("GET", "/api/v1/devices/d1"))["ownerId"] == user["id"]
        done = await cli(app, "device", "assign", "d1", "--user", "1")
        assert done.returncode == 0, done.stderr
        assert (await app.call("GET", "/api/v1/devices/d1"))["ownerId"] == 1
        done = await cli(app, "device", "assign", "d1", "--unassign")
        assert done.returncode == 0, done.stderr
        assert (await app.call("GET", "/api/v1/devices/d1"))["ownerId"] is None


async def test_assign_refuses_bad_input(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        await app.call("POST", "/api/v1/devices", json={"id": "d1", "name": "d1"}, expect=201)
        done = await cli(app, "device", "assign", "d1")
        assert done.returncode == 2
        assert "--user or --unassign" in done.stderr
        done = await cli(app, "device", "assign", "d1", "--user", "nobody")
        assert done.returncode == 2
        assert "no user with login" in done.stderr
        done = await cli(app, "device", "assign", "missing", "--user", "1")
        assert done.returncode == 1
        assert (await app.call("GET", "/api/v1/devices/d1"))["ownerId"] is None
