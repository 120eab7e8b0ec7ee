"""What the ``tether`` command costs to start, as a user runs it.

Each test runs the real entry point in a fresh interpreter (no server needed) with
Python's import log on, and reads which modules it loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "asyncpg", "redis", "aiohttp")
#: The issue's bound for ``tether --version``: "well under 250 modules".
VERSION_MODULE_BUDGET = 250
#: What the ``tether`` console script runs, under its own name (completion reads it).
ENTRY_POINT = "import sys; sys.argv[0] = 'tether'; from tether.cli import main; main()"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``tether ARGS`` as the console script runs it, with Python's import log on."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "_"))}
    environment.update(env)
    if "COLUMNS" not in env:
        environment.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY_POINT, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def imported(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` lines: ``import time: self | total | name``."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_version_imports_no_heavy_library() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "tether 0.1.0\n"
    names = imported(result.stderr)
    assert "tether.cli" in names  # the import log is on
    assert len(names) < VERSION_MODULE_BUDGET, sorted(names)
    assert not top_level(names) & set(HEAVY)


def test_completing_a_group_name_imports_no_group() -> None:
    """A TAB after ``tether dev`` lists group names without importing their modules."""
    result = run(_TETHER_COMPLETE="complete_bash", COMP_WORDS="tether dev", COMP_CWORD="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["devicetype", "device"]
    names = imported(result.stderr)
    assert "tether.cli" in names
    assert not top_level(names) & set(HEAVY)
    assert not any(name.startswith("tether.cli_commands.devices") for name in names)


def test_a_client_group_imports_only_what_it_uses() -> None:
    result = run("device", "list", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    names = imported(result.stderr)
    assert "tether.cli_commands.common" in names  # the group was loaded
    assert not top_level(names) & set(HEAVY)
    assert not any(
        name.startswith(("tether.cli_commands.agent", "tether.dialects")) for name in names
    )


def test_the_full_help_imports_no_heavy_library() -> None:
    """``tether --help`` lists every group (loading them) without their I/O libraries."""
    result = run("--help", COLUMNS="200")
    assert result.returncode == 0, result.stderr[-2000:]
    for group in ("device", "config", "firmware", "presence", "controlid", "agent"):
        assert f" {group} " in result.stdout
    names = imported(result.stderr)
    assert "tether.cli" in names  # the import log is on
    assert not top_level(names) & set(HEAVY)
