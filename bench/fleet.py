"""Many idle device WebSockets: ids, credentials, bulk provisioning and client processes.

Shared by the ``connections`` (P1) and ``storm`` (P5) scenarios. Three things make 20,000
sockets on one loopback machine possible, and each is a machine limit, not a server one:

* **File descriptors.** Every socket is one fd on each side; the server and each client
  process raise ``RLIMIT_NOFILE`` to its hard limit (:func:`raise_fd_limit`), and the
  client side is split over several processes so no client needs more than its share.
* **Ephemeral ports.** One source address reaches one server port through at most the
  ``ip_local_port_range`` ports (about 28,000 here), so each client process connects
  from its own source address in 127.0.0.0/8 (every one of them is loopback on Linux).
* **Client CPU.** A WebSocket handshake costs the client about as much as the server, so
  several client processes share the opening; their CPU is reported beside the server's.

Devices are provisioned straight into Tether's SQLite file in one transaction
(:func:`provision`): creating 20,000 devices and credentials through the API would take
minutes and measure nothing this scenario is about. Credentials are derived from a
per-run secret and the device id (:func:`credential`), so the raw server and the
clients compute them instead of shipping 20,000 of them around.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import resource
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.common import REPO, ServerProcess, clean_env, free_port
from tether.hub.secrets import hash_secret
from tether.store import create_engine
from tether.store.schema import devices

SECRET_ENV = "BENCH_FLEET_SECRET"
DH_TOKEN_ENV = "BENCH_DH_TOKEN"
#: The eWeLink factory apikey every bench Sonoff registers with.
FACTORY = "00000000-0000-4000-8000-000000000000"
DIALECTS = ("native", "ewelink", "devicehive")
#: The listen backlog both servers get in these scenarios (the kernel caps it at somaxconn).
BACKLOG = 4096


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def device_id(dialect: str, n: int) -> str:
    """Device ``n`` of ``dialect``: eWeLink ids are 10 hex digits, the others free-form."""
    if dialect == "ewelink":
        return f"{0x3000000000 + n:010x}"
    return f"{'dh' if dialect == 'devicehive' else 'ws'}-{n}"


def credential(secret: str, the_id: str) -> str:
    """The native device credential of ``the_id`` in a run whose secret is ``secret``."""
    return hmac.new(secret.encode(), the_id.encode(), hashlib.sha256).hexdigest()


async def provision(
    database_url: str, dialect: str, count: int, secret: str, owner_id: int | None
) -> float:
    """Insert ``count`` devices of ``dialect`` into a running Tether's database; seconds.

    SQLite in WAL mode lets this second writer in between the server's transactions; the
    server has never looked these ids up, so it holds no stale cache entry for them.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    now = datetime.now(UTC)
    core_dialect = "native" if dialect == "native" else dialect
    rows: list[dict[str, Any]] = []
    for n in range(count):
        the_id = device_id(dialect, n)
        rows.append(
            {
                "id": the_id,
                "name": the_id,
                "dialect": core_dialect,
                "network_id": None,
                "type_id": None,
                "owner_id": owner_id if dialect == "ewelink" else None,
                "data": None,
                "blocked": False,
                "attributes": {"apikey": FACTORY} if dialect == "ewelink" else {},
                "credential_hash": (
                    hash_secret(credential(secret, the_id)) if dialect == "native" else None
                ),
                "created_at": now,
                "updated_at": now,
                "last_seen": None,
            }
        )
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                await conn.execute(insert(devices), rows[start : start + 5000])
    finally:
        await engine.dispose()
    return loop.time() - started


def raw_server(secret: str, dh_token: str) -> ServerProcess:
    """The raw aiohttp device-socket server (``bench/rawws.py``) on a free port."""
    port = free_port()
    return ServerProcess(
        name="raw aiohttp",
        argv=[
            sys.executable,
            "-m",
            "bench.rawws",
            "--port",
            str(port),
            "--backlog",
            str(BACKLOG),
        ],
        port=port,
        ready_path="/healthz",
        env=clean_env(**{SECRET_ENV: secret, DH_TOKEN_ENV: dh_token}),
    )


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS) in KiB; 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def listen_overflows() -> int:
    """The kernel's count of connections dropped because an accept queue was full (every
    process on the machine: ``TcpExt ListenOverflows`` in ``/proc/net/netstat``)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(fields.get("ListenOverflows", 0))
    return 0


def open_fds(pid: int) -> int:
    with contextlib.suppress(OSError):
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return 0


@dataclass(frozen=True)
class Target:
    """Where the clients connect and how they authenticate."""

    base_url: str
    dialect: str
    secret: str
    dh_token: str = ""


class Clients:
    """``processes`` client processes (``python -m bench.wsclient``), each connecting from
    its own loopback source address, driven by one JSON command per line on stdin."""

    def __init__(self, target: Target, processes: int, in_flight: int) -> None:
        self.target = target
        self.processes = processes
        self.in_flight = in_flight
        self._procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        for k in range(self.processes):
            config = {
                "url": self.target.base_url,
                "dialect": self.target.dialect,
                "secret": self.target.secret,
                "dh_token": self.target.dh_token,
                "source": f"127.0.{10 + k}.1",
                "in_flight": self.in_flight,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.wsclient",
                json.dumps(config),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=clean_env(),
                limit=1 << 24,
            )
            self._procs.append(proc)
        await asyncio.gather(*(self._read(p) for p in self._procs))  # each says "ready"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    async def _read(self, proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {proc.pid} exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, per_process: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send each process its command at the same moment; gather their answers."""
        for proc, cmd in zip(self._procs, per_process, strict=True):
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await asyncio.gather(*(p.stdin.drain() for p in self._procs if p.stdin is not None))
        return list(await asyncio.gather(*(self._read(p) for p in self._procs)))

    async def open_range(self, start: int, stop: int) -> list[dict[str, Any]]:
        """Devices ``start..stop-1`` connect and authenticate; device ``n`` always belongs
        to process ``n % processes``."""
        commands = [
            {"op": "open", "ids": [n for n in range(start, stop) if n % self.processes == k]}
            for k in range(self.processes)
        ]
        return await self.command(commands)

    async def stop(self) -> None:
        for proc in self._procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(Exception):
                    proc.stdin.write(b'{"op":"quit"}\n')
                    await proc.stdin.drain()
        for proc in self._procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._procs.clear()


def new_secret() -> str:
    return secrets.token_urlsafe(16)


def ws_url(base_url: str) -> str:
    return base_url.replace("http", "ws", 1)
