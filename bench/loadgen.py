"""Load-generator processes for ``ingest`` (P6a) and ``inserts`` (P6b).

Python reads and writes only so many frames per second on one core, so the load comes
from several processes (``python -m bench.loadgen '<json job>'``), each from its own
127.x source address. A process opens its share of the devices' connections, prints
``ready``, starts on ``go`` (stdin) and stops sending on ``stop``; it then waits (bounded)
for the answers still owed and prints one JSON report: how many posts the server
acknowledged (answered as stored), errors by kind, acknowledgements per time bin.

Transports:

* ``ws``: each device holds the native device WebSocket and keeps ``window`` notification
  frames with a ``requestId`` unanswered at most (the server stores before answering);
* ``http``: each device posts ``POST /api/v1/device/{id}/notifications`` on its own
  keep-alive connection, one request at a time (HTTP/1.1 has no useful pipelining);
* ``command``: an app client per device posts ``POST /api/v1/devices/{id}/commands``
  with the admin token, ``window`` requests at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sys
import time
from collections import Counter

import aiohttp
import msgspec
import uvloop

#: Acknowledgement histogram bin, seconds.
BIN = 0.5


class Job(msgspec.Struct):
    url: str
    transport: str
    devices: list[tuple[str, str]]
    token: str = ""
    window: int = 8
    source: str = "127.0.0.1"
    payload: str = '{"temperature":21.5,"humidity":40}'


class Report(msgspec.Struct):
    connected: int
    acked: int
    errors: dict[str, int]
    first: float
    last: float
    bins: dict[int, int]
    cpu: float


class _Reply(msgspec.Struct):
    type: str
    requestId: int | str | None = None


async def _main(job: Job) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    errors: Counter[str] = Counter()
    bins: Counter[int] = Counter()
    acked = 0
    first = last = 0.0
    go = asyncio.Event()
    stopping = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, local_addr=(job.source, 0))
    session = aiohttp.ClientSession(connector=connector)
    ws_url = job.url.replace("http://", "ws://")
    decode = msgspec.json.Decoder(_Reply).decode
    body = '{"name":"telemetry","parameters":' + job.payload + "}"

    def ack() -> None:
        nonlocal acked, last
        acked += 1
        last = time.monotonic()
        bins[int(last / BIN)] += 1

    def error(kind: str) -> None:
        errors[kind[:120]] += 1

    async def ws_device(device_id: str, credential: str) -> aiohttp.ClientWebSocketResponse:
        return await session.ws_connect(
            f"{ws_url}/api/v1/device/ws?deviceId={device_id}",
            headers={"Authorization": f"Bearer {credential}"},
            max_msg_size=0,
        )

    async def run_ws(ws: aiohttp.ClientWebSocketResponse) -> None:
        slots = asyncio.Semaphore(job.window)
        frame = '{"type":"notification","requestId":1,"name":"telemetry","parameters":'
        frame += job.payload + "}"

        async def reader() -> None:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                reply = decode(message.data)
                if reply.type == "response":
                    ack()
                else:
                    error(f"ws {reply.type}: {message.data}")
                slots.release()

        reading = asyncio.create_task(reader())
        await go.wait()
        try:
            while not stopping.is_set():
                await slots.acquire()
                if stopping.is_set() or reading.done():
                    slots.release()
                    break
                await ws.send_str(frame)
            # Wait for the answers still owed (bounded).
            for _ in range(job.window):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slots.acquire(), 30)
        except (aiohttp.ClientError, ConnectionError) as exc:
            error(f"ws: {type(exc).__name__}")
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading

    async def run_http(path: str, bearer: str) -> None:
        headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
        await go.wait()

        async def one() -> None:
            while not stopping.is_set():
                try:
                    async with session.post(job.url + path, data=body, headers=headers) as r:
                        await r.read()
                        if r.status in (200, 201):
                            ack()
                        else:
                            error(f"http {r.status}")
                except (aiohttp.ClientError, OSError) as exc:
                    error(f"http: {type(exc).__name__}")
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(one() for _ in range(job.window)))

    tasks: list[asyncio.Future[None]] = []
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    gate = asyncio.Semaphore(64)
    connected = 0

    async def connect(device_id: str, credential: str) -> None:
        nonlocal connected
        async with gate:
            try:
                ws = await ws_device(device_id, credential)
            except (aiohttp.ClientError, OSError) as exc:
                error(f"connect: {type(exc).__name__}: {exc}")
                return
            sockets.append(ws)
            connected += 1
            tasks.append(asyncio.ensure_future(run_ws(ws)))

    if job.transport == "ws":
        await asyncio.gather(*(connect(d, c) for d, c in job.devices))
    elif job.transport == "http":
        for device_id, credential in job.devices:
            path = f"/api/v1/device/{device_id}/notifications"
            tasks.append(asyncio.ensure_future(run_http(path, credential)))
        connected = len(job.devices)
    else:
        for device_id, _ in job.devices:
            tasks.append(
                asyncio.ensure_future(run_http(f"/api/v1/devices/{device_id}/commands", job.token))
            )
        connected = len(job.devices)
    print(f"ready {connected}", flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    await stdin.readline()  # go
    cpu = time.process_time()
    first = time.monotonic()
    go.set()
    await stdin.readline()  # stop
    stopping.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    report = Report(
        connected=connected,
        acked=acked,
        errors=dict(errors),
        first=first,
        last=last,
        bins=dict(bins),
        cpu=time.process_time() - cpu,
    )
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    sys.stdout.flush()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), 10)
    await session.close()


class Group:
    """The load-generator processes of one run, driven over their stdin and stdout."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, jobs: list[Job], env: dict[str, str]) -> int:
        for job in jobs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                msgspec.json.encode(job).decode(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=1 << 24,
            )
            self.processes.append(process)
        connected = 0
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 300)
            if not line.startswith(b"ready"):
                raise RuntimeError(f"a load generator failed: {line!r}")
            connected += int(line.split()[1])
        return connected

    async def say(self, word: bytes) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(word + b"\n")
            await process.stdin.drain()

    async def reports(self) -> list[Report]:
        found = []
        for process in self.processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            found.append(msgspec.json.decode(line, type=Report))
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        return found

    def cpu(self) -> float:
        from bench.common import tree_cpu_seconds

        return sum(tree_cpu_seconds(p.pid) for p in self.processes)

    def kill(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()


if __name__ == "__main__":
    uvloop.run(_main(msgspec.json.decode(sys.argv[1], type=Job)))
