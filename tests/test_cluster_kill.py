"""kill -9 at random points of a burst, many times: no acknowledged command is stranded.

Two ``tether serve`` nodes share PostgreSQL and Redis. The device is connected to node B,
which is never killed (so it can only learn a command from an announcement or from
reconciling, never from a restart of its own). At each kill point a burst of command
creations goes out, most of them to node A; at a random moment inside the burst A gets
SIGKILL. A request the kill cut is retried on B with the same idempotency key, as an app
would. A is started again on its port under the same node id for the next kill point.
At the end every command that was answered 2xx must have succeeded, each key must have
been stored once, and the device must have run each command once.

The kill lands wherever the burst happens to be: before a commit, between a commit and
its announcement, between the announcement and the answer. The case this test exists for
is the middle one: nobody but the store knows the command, and the survivor has to find
out by itself (its peer's liveness beats stop; see hub/cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import CLUSTER_NAME, fresh_postgres_schema
from tests.test_cluster import PASSWORD
from tests.test_durability import free_port
from tether.api.agent import NativeAgent, Outcome

pytestmark = pytest.mark.slow

KILL_POINTS = 20
#: Commands per kill point, and how many of them go to the survivor from the start.
BURST = 16
#: Longest a burst's requests are spread over, seconds; the kill lands within twice that,
#: while the node is busy with them (all at once is how the issue's app sent them).
SPREAD = 0.03
SETTLE = 40.0
DEVICE = "kill-target"


class ForkServer:
    """``tests/forkserver.py`` as a child process: ``spawn`` forks a ``tether`` command."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parent.parent,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready"
        self.children: set[int] = set()

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"argv": argv, "env": env, "log": str(log)}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        pid = int(self.process.stdout.readline())
        self.children.add(pid)
        return pid

    def close(self) -> None:
        if self.process.poll() is not None:
            return
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


@pytest.fixture
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


class Nodes:
    """Two named nodes on fixed ports, (re)started through the fork server."""

    def __init__(self, forks: ForkServer, tmp: Path, env: dict[str, str]) -> None:
        self.forks = forks
        self.tmp = tmp
        self.env = env
        self.ports = {"node-a": free_port(), "node-b": free_port()}
        self.pids: dict[str, int] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self, name: str) -> None:
        argv = ["serve", "--port", str(self.ports[name]), "--data-dir", str(self.tmp / name)]
        argv += ["--log-level", "warning"]
        env = {**self.env, "TETHER_NODE_ID": name}
        pid = self.forks.spawn(argv, env, self.tmp / f"{name}.log")
        self.pids[name] = pid
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert _alive(pid), f"{name} exited during start-up: see {self.tmp}/{name}.log"
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url(name) + "/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{name} did not become ready")

    def kill(self, name: str) -> None:
        os.kill(self.pids[name], signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def nodes(tmp_path: Path, forks: ForkServer, redis_url: str) -> AsyncIterator[Nodes]:
    async with fresh_postgres_schema() as database_url:
        env = {
            "TETHER_DATABASE_URL": database_url,
            "TETHER_BUS": "redis",
            "TETHER_REDIS_URL": redis_url,
            "TETHER_CLUSTER_NAME": CLUSTER_NAME,
            "TETHER_ADMIN_PASSWORD": PASSWORD,
            # Beats every 0.2 s: a killed node is taken for dead about 0.6-0.8 s later.
            "TETHER_NODE_HEARTBEAT": "0.2",
        }
        running = Nodes(forks, tmp_path, env)
        await running.start("node-a")  # migrates and bootstraps first
        await running.start("node-b")
        yield running
        forks.close()  # before the schema goes


async def test_kill_9_at_random_points_strands_no_acknowledged_command(nodes: Nodes) -> None:
    seed = int(os.environ.get("TETHER_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    victim, survivor = "node-a", "node-b"
    acknowledged: dict[str, int] = {}  # idempotency key -> command id

    async with aiohttp.ClientSession() as session:
        async with session.post(
            nodes.url("node-a") + "/api/v1/auth/token",
            json={"login": "admin", "password": PASSWORD},
        ) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['accessToken']}"}
        async with session.post(
            nodes.url(survivor) + "/api/v1/devices", headers=auth, json={"id": DEVICE, "name": "k"}
        ) as r:
            assert r.status == 201
        async with session.post(
            nodes.url(survivor) + f"/api/v1/devices/{DEVICE}/credential", headers=auth
        ) as r:
            credential = (await r.json())["credential"]

        async def work(command: Any, report: Any) -> Outcome:
            return Outcome(result=command.parameters)

        agent = NativeAgent(nodes.url(survivor), DEVICE, credential, handler=work)
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.connected.wait(), 10)

        answered_by_victim = 0
        cut = 0

        async def create(key: str, first: str, delay: float) -> None:
            """POST once to ``first``; whatever the kill cuts is retried on the survivor."""
            nonlocal answered_by_victim, cut
            await asyncio.sleep(delay)
            target = first
            for attempt in range(100):
                try:
                    async with session.post(
                        f"{nodes.url(target)}/api/v1/devices/{DEVICE}/commands",
                        headers=auth,
                        json={"name": "echo", "parameters": key, "idempotencyKey": key},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ) as r:
                        if r.status in (200, 201):
                            acknowledged[key] = (await r.json())["id"]
                            answered_by_victim += target == victim
                            return
                        assert r.status >= 500, await r.text()  # refused for a bad reason
                except (aiohttp.ClientError, TimeoutError):
                    pass
                cut += target == victim
                target = survivor
                await asyncio.sleep(0.02 * min(attempt + 1, 10))
            raise AssertionError(f"command {key} was never acknowledged")

        async def warm_up(name: str) -> None:
            """A fresh process's first request pays for its caches; pay before the burst."""
            async with session.get(f"{nodes.url(name)}/api/v1/devices/{DEVICE}", headers=auth) as r:
                assert r.status == 200

        try:
            for point in range(KILL_POINTS):
                await warm_up(victim)
                to_victim = BURST - BURST // 4
                burst = [
                    create(
                        f"p{point}-{i}",
                        victim if i < to_victim else survivor,
                        rng.uniform(0, SPREAD),
                    )
                    for i in range(BURST)
                ]
                creating = asyncio.gather(*burst)
                # Mid-burst: after the victim answered some (none to all but one), plus a
                # random instant, so the kill lands anywhere in a request's life.
                answered_before = answered_by_victim
                wanted = rng.randrange(0, to_victim - 1)
                while answered_by_victim - answered_before < wanted and not creating.done():
                    await asyncio.sleep(0.0005)
                await asyncio.sleep(rng.uniform(0, 0.005))
                nodes.kill(victim)
                await creating
                await nodes.start(victim)

            # Every acknowledged command ends, without any node being restarted for it.
            deadline = time.monotonic() + SETTLE
            while True:
                async with session.get(
                    f"{nodes.url(survivor)}/api/v1/devices/{DEVICE}/commands?take=1000",
                    headers=auth,
                ) as r:
                    stored = await r.json()
                unfinished = {
                    c["id"]: c["state"]
                    for c in stored
                    if c["id"] in acknowledged.values() and c["state"] != "succeeded"
                }
                if not unfinished or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
        finally:
            await agent.stop()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    context = (
        f"seed {seed} (rerun with TETHER_KILL_SEED={seed}); "
        f"{answered_by_victim} answered by the victim, {cut} cut"
    )
    assert len(acknowledged) == KILL_POINTS * BURST, context
    assert not unfinished, f"stranded: {unfinished}; {context}"
    keys = [c["parameters"] for c in stored]  # each command carries its key
    assert sorted(keys) == sorted(acknowledged), f"stored twice or lost; {context}"
    assert {c["id"] for c in stored} == set(acknowledged.values()), context
    assert len(agent.executed) == len(set(agent.executed)), f"ran twice; {context}"
    assert set(acknowledged.values()) <= set(agent.executed), context
