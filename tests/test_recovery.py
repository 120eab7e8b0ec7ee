"""Secrets at rest and the way back in, with real ``tether serve`` and ``tether user``
processes.

* The data directory is created 0700 and its files 0600, whatever the umask; the generated
  admin password goes to a 0600 file, never to the log; looser modes are warned about.
* ``tether user set-password`` and ``tether user unlock`` work on the server's database
  with the server stopped, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from tests.conftest import fresh_postgres_schema
from tests.support import ADMIN_PASSWORD, running
from tests.test_cli import START_TIMEOUT, TETHER, clean_env, free_port, stop
from tether.cli_commands.users import user_app
from tether.core.model import UserStatus

pytestmark = pytest.mark.slow


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def login_status(url: str, login: str, password: str) -> int:
    body = json.dumps({"login": login, "password": password}).encode()
    request = urllib.request.Request(
        url + "/api/v1/auth/token", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@contextmanager
def serve(data: Path, log: Path, **env: str) -> Iterator[str]:
    """A ``tether serve`` with a umask of 022 (the usual default), until ready."""
    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*TETHER, "serve", "--port", str(port), "--data-dir", str(data)],
            env=clean_env(**env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: os.umask(0o022),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2):
                    break
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url
    finally:
        stop(process)


def test_first_start_keeps_secrets_private_and_out_of_the_log(tmp_path: Path) -> None:
    data = tmp_path / "tether-data"
    log_path = tmp_path / "serve.log"
    with serve(data, log_path) as url:
        password_file = data / "admin-password"
        password = password_file.read_text().strip()
        assert login_status(url, "admin", password) == 201
        assert mode(data) == 0o700
        for name in ("tether.db", "tether.db-wal", "tether.db-shm", "admin-password"):
            assert mode(data / name) == 0o600, name
    log = log_path.read_text()
    assert password not in log
    assert str(password_file) in log.replace("\n", "")
    assert "holds secrets" not in log


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[str]]:
    """The ``tether user`` options that name the server's database, on each store."""
    if request.param == "sqlite":
        yield ["--data-dir", str(tmp_path / "data")]
        return
    async with fresh_postgres_schema() as url:
        yield ["--database-url", url]


def settings_of(options: list[str]) -> dict[str, Any]:
    return {"database_url": options[1]} if options[0] == "--database-url" else {}


async def user_cli(*args: str, stdin: str = "") -> Result:
    """``tether user ...`` in this process (the database code is what is tested), in a
    thread with its own event loop, as the command line runs it."""
    root = typer.Typer()
    root.callback()(lambda: None)
    root.add_typer(user_app, name="user")
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, root, ["user", *args], input=stdin)


async def test_set_password_and_unlock_with_the_server_stopped(
    tmp_path: Path, database: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, **settings_of(database)) as r:
        store = r.hub.store
        admin = await store.users.get_by_login("admin")
        assert admin is not None
        # What the old code did for good after ten wrong passwords, and a lost password.
        await store.users.update(admin.id, status=UserStatus.LOCKED, password_hash=None)
    # The server is stopped.
    done = await user_cli(
        "set-password", "admin", "--password-stdin", *database, stdin=ADMIN_PASSWORD + "\n"
    )
    assert done.exit_code == 0, done.output
    done = await user_cli("unlock", "admin", *database)
    assert done.exit_code == 0, done.output
    missing = await user_cli("unlock", "nobody", *database)
    assert missing.exit_code == 1
    assert "no user 'nobody'" in missing.output

    data = tmp_path / "data"
    if database[0] == "--data-dir":
        elsewhere = await user_cli("unlock", "admin", "--data-dir", str(tmp_path / "elsewhere"))
        assert elsewhere.exit_code == 1
        assert "no database at" in elsewhere.output
        assert not (tmp_path / "elsewhere").exists()
        (data / "tether.db").chmod(0o644)
        data.chmod(0o755)

    caplog.set_level(logging.INFO, "tether")
    overrides = {"admin_password": "ignored-now", **settings_of(database)}
    # The harness logs in as admin with ADMIN_PASSWORD: only the recovery made that work.
    async with running(tmp_path, **overrides) as r:
        me = await r.call("GET", "/api/v1/users/me", expect=200)
        assert me["status"] == "active"
        async with r.session.post(
            r.url + "/api/v1/auth/token", json={"login": "admin", "password": "ignored-now"}
        ) as refused:
            assert refused.status == 401
    assert "tether user set-password" in caplog.text  # why admin_password did nothing
    if database[0] == "--data-dir":
        assert f"{data / 'tether.db'} holds secrets but has mode 644" in caplog.text
        assert f"{data} holds secrets but has mode 755" in caplog.text
