"""Shared fixtures: real PostgreSQL and Redis, skipped locally when absent, mandatory in CI.

Outside CI a missing service skips its tests with the reason; with ``CI=true`` the same
absence fails the run, so a green CI always means the tests ran against the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get(
    "TETHER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TETHER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"

# Many tests start real ``tether`` processes (servers, agents), each importing all of
# Tether. With PYTHONDONTWRITEBYTECODE set (as on our CI machines) every one of them
# compiled every module again, seconds each under load; a bytecode cache outside the
# tree, inherited by every subprocess, compiles once.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "tether-pycache"))


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with minimal cost in this process: the same code paths, a millisecond each.

    Production parameters cost ~0.1-0.4 s of CPU per hash on a CI machine, and nearly
    every test creates or logs in a user. Servers started as subprocesses keep the real
    parameters.
    """
    from argon2 import PasswordHasher

    from tether.hub import secrets

    monkeypatch.setattr(
        secrets, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )


def service_missing(what: str, error: BaseException) -> None:
    """Skip (locally) or fail (in CI) because a backing service is unreachable."""
    reason = f"{what} is not reachable: {error!r}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true makes this mandatory)")
    pytest.skip(reason)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a fresh schema dropped afterwards."""
    async with fresh_postgres_schema() as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_postgres_schema() -> AsyncIterator[str]:
    """:func:`postgres_url` for code that cannot request a fixture."""
    import asyncpg

    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), 5)
    except Exception as error:
        service_missing(f"PostgreSQL at {dsn}", error)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The test Redis URL (database 15), flushed before and after."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(client.ping(), 5)
    except Exception as error:
        await client.aclose()
        service_missing(f"Redis at {REDIS_URL}", error)
    await client.flushdb()
    try:
        yield REDIS_URL
    finally:
        await client.flushdb()
        await client.aclose()
