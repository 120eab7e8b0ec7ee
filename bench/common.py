"""Shared plumbing for the benchmarks: server subprocesses, percentiles, the report file.

Every server under test (Tether and the raw-aiohttp baselines) runs in its own process,
so the load generator and the server each get one of the machine's two cores, and the
server's CPU time can be read from ``/proc`` for the measured window only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO

import aiohttp
import aiohttp.web

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "docs" / "performance.md"
HOST = "127.0.0.1"
#: Tether's counter of SQL statements sent to the database (on /metrics).
SQL_COUNTER = "tether_sql_statements_total"
#: Seconds a server gets to start answering its readiness URL.
START_TIMEOUT = 30.0


# --- machine ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on (written at the top of each report section)."""

    cores: int
    cpu_model: str
    python: str
    libraries: str
    kernel: str
    revision: str
    load_average: str

    @classmethod
    def probe(cls) -> Machine:
        cpu_model = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        libraries = ", ".join(
            f"{name} {_version(name)}" for name in ("aiohttp", "uvloop", "msgspec", "sqlalchemy")
        )
        return cls(
            cores=len(os.sched_getaffinity(0)),
            cpu_model=cpu_model,
            python=platform.python_version(),
            libraries=libraries,
            kernel=platform.release(),
            revision=_git_revision(),
            load_average=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        )

    def markdown(self) -> str:
        return (
            f"- Machine: {self.cores} cores (nproc), {self.cpu_model}, Python {self.python}, "
            f"Linux {self.kernel}\n"
            f"- Libraries: {self.libraries}\n"
            f"- Tree: {self.revision}\n"
            f"- Load average when the run started: {self.load_average}\n"
        )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _git_revision() -> str:
    """HEAD, plus the server files that differ from it: the tree under test is shared."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    if not head:
        return "unknown"
    if not status:
        return f"git {head}, clean under src/"
    paths = [line[3:] for line in status]
    listed = ", ".join(f"`{path}`" for path in paths[:6]) + (", ..." if len(paths) > 6 else "")
    return f"git {head} with {len(paths)} changed or new files under src/ ({listed})"


# --- ports and processes --------------------------------------------------------------------


async def serve_app(app: aiohttp.web.Application, port: int, backlog: int = 128) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` until SIGINT or SIGTERM: every raw baseline's
    ``main``. ``backlog`` is the listen queue (aiohttp's default 128; the fleet baselines
    raise it as Tether's ``listen_backlog`` does, so a storm is not cut by SYN drops)."""
    runner = aiohttp.web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, HOST, port, backlog=backlog).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def free_port() -> int:
    """A loopback port nobody listens on.

    Bound *without* SO_REUSEPORT, so a port that another process holds with SO_REUSEPORT
    (as ``tether serve`` does) is never handed out: sharing one would split our load.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def listeners(port: int) -> int:
    """How many sockets listen on ``port`` (any address), read from /proc/net/tcp{,6}."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (of any of its threads), from /proc; [] if it is gone."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(x) for x in (task / "children").read_text().split()]
    return sorted(children)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` itself plus that of its children it has already reaped.

    0 for a process that is gone (a reaped child's time moves to its parent's count).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and all its descendants, live or reaped.

    A process's own counters miss its live children (``--workers`` runs the server in
    child processes), so the tree is walked; a child reaped meanwhile is in its parent's
    ``cutime``/``cstime`` and is counted exactly once either way.
    """
    return process_cpu_seconds(pid) + sum(tree_cpu_seconds(child) for child in child_pids(pid))


@dataclass
class ServerProcess:
    """A server under test, started as a subprocess and stopped with SIGTERM."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    #: Sockets that must listen on ``port`` (``tether serve --workers N`` has N).
    sockets: int = 1
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        """Start it and wait until ``ready_path`` answers 200 from this very process."""
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited during start-up:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self.base_url + self.ready_path) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT}s")
                await asyncio.sleep(0.1)
        while listeners(self.port) < self.sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the other workers may still be starting
        if listeners(self.port) != self.sockets:
            found = listeners(self.port)
            self.stop()
            raise RuntimeError(
                f"port {self.port} has {found} listeners, expected {self.sockets}: "
                "results would be mixed"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far, child processes included."""
        assert self.process is not None
        return tree_cpu_seconds(self.process.pid)

    def output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s to it and any children it left behind."""
        if self.process is not None and self.process.poll() is None:
            children = child_pids(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for child in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def machine_busy() -> float:
    """CPU seconds all processes on the machine have been busy (every core, from /proc/stat).

    Compared with the server's and the load generator's own CPU over the same window, it
    shows how much else was running: this machine is shared, and a busy neighbour skews
    latency.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


#: The bench servers' ``metrics_token``: /metrics is closed to anonymous readers.
METRICS_TOKEN = secrets.token_urlsafe(16)
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus every ``TETHER_*`` variable: servers run on their defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(extra)
    return env


class Tether(ServerProcess):
    """``tether serve`` on a fresh data directory, with one device ready for the bench."""

    def __init__(
        self,
        name: str,
        database_url: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        password: str | None = None,
        sockets: int = 1,
    ) -> None:
        """``env`` adds ``TETHER_*`` settings, ``args`` adds ``serve`` options; nodes that
        share a database must share ``password`` (the one that bootstraps the admin wins).

        Ready means ``/readyz``: ``/healthz`` answers as soon as the process listens, while
        the store may still be connecting (API calls then answer 503 ``starting``).
        """
        self.password = password or secrets.token_urlsafe(16)
        self._data_dir = tempfile.TemporaryDirectory(prefix="tether-bench-")
        port = free_port()
        extra = {
            "TETHER_ADMIN_PASSWORD": self.password,
            "TETHER_METRICS_TOKEN": METRICS_TOKEN,
            **(env or {}),
        }
        if database_url:
            extra["TETHER_DATABASE_URL"] = database_url
        super().__init__(
            name=name,
            argv=[
                sys.executable,
                "-c",
                "from tether.cli import app; app()",
                "serve",
                "--port",
                str(port),
                "--data-dir",
                self._data_dir.name,
                "--log-level",
                "warning",
                *args,
            ],
            port=port,
            ready_path="/readyz",
            env=clean_env(**extra),
            sockets=sockets,
        )

    async def device(self, device_id: str) -> tuple[str, str]:
        """Log in as admin, create ``device_id``; returns (access token, device credential).

        A successful login with this run's random password also proves the port is ours.
        """
        async with aiohttp.ClientSession(base_url=self.base_url) as session:
            async with session.post(
                "/api/v1/auth/token", json={"login": "admin", "password": self.password}
            ) as response:
                body = await response.json()
                if response.status not in (200, 201):
                    raise RuntimeError(f"login failed: {response.status} {body}")
                token: str = body["accessToken"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(
                "/api/v1/devices", json={"id": device_id, "name": device_id}, headers=headers
            ) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"device create failed: {await response.text()}")
            async with session.post(
                f"/api/v1/devices/{device_id}/credential", headers=headers
            ) as response:
                if response.status not in (200, 201):
                    raise RuntimeError(f"credential failed: {await response.text()}")
                credential: str = (await response.json())["credential"]
        return token, credential

    def stop(self) -> None:
        super().stop()
        self._data_dir.cleanup()


async def metric_total(server: ServerProcess, name: str) -> float | None:
    """A counter on the server's ``/metrics`` (summed over labels), None if absent.

    With ``--workers`` the answer comes from whichever worker the kernel picks.
    """
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base_url + "/metrics", headers=METRICS_AUTH) as response,
    ):
        text = await response.text() if response.status == 200 else ""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    ]
    return sum(values) if values else None


async def sql_statements(server: ServerProcess) -> float | None:
    """The server's ``tether_sql_statements_total`` (summed over labels), None if absent."""
    return await metric_total(server, SQL_COUNTER)


def baseline(credential: str) -> ServerProcess:
    """The raw-aiohttp baseline server (``bench/baseline.py``) on a free port."""
    port = free_port()
    return ServerProcess(
        name="raw aiohttp baseline",
        argv=[sys.executable, "-m", "bench.baseline", "--port", str(port)],
        port=port,
        ready_path="/healthz",
        env=clean_env(BENCH_CREDENTIAL=credential),
    )


# --- numbers -------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an already sorted sequence."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds with sensible precision for a table."""
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "∞"
    value = seconds * 1000
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def ratio(ours: float, theirs: float) -> str:
    if not (math.isfinite(ours) and math.isfinite(theirs)) or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- the report file -----------------------------------------------------------------------

_INTRO = """\
# Performance

Measured by `bench/` (`uv run python -m bench`). Each scenario runs Tether and a raw
aiohttp server with no application logic (`bench/baseline.py`) in the same run, on the
same machine, with the same load generator, and reports Tether as a ratio to that
baseline. The goals are those of design section 10, per process on a 2-core machine.
Servers and load generators are separate processes; all traffic stays on 127.0.0.1.

Each section below is rewritten by the benchmark that owns it (between its
`bench:` markers); text outside the markers is kept. `--quick` runs are smoke tests of
the harness and do not write here unless `--output` is given.
"""


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def update_report(path: Path, key: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- bench:key -->`` markers."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else _INTRO
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
