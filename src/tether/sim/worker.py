"""A simulator worker process: ``python -m tether.sim.worker`` (started by the runner).

It reads one :class:`~tether.sim.shard.Job` as JSON from stdin, runs that shard on
uvloop, and writes one JSON line per progress tick and a last line with its
:class:`~tether.sim.shard.Result` to stdout. Nothing else goes to stdout.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import msgspec

from tether.sim.shard import Job, Progress, Shard


def main() -> None:
    job = msgspec.json.decode(sys.stdin.buffer.read(), type=Job)
    out = sys.stdout.buffer

    def emit(message: msgspec.Struct) -> None:
        out.write(msgspec.json.encode(message) + b"\n")
        out.flush()

    def on_progress(progress: Progress) -> None:
        emit(progress)

    async def work() -> None:
        # The parent's Ctrl-C reaches the whole process group: ignore it and stop when
        # the parent says so (SIGTERM), ending the load early but still reporting.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        emit(await Shard(job, on_progress, stop).run())

    try:
        import uvloop

        uvloop.run(work())
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(work())


if __name__ == "__main__":
    main()
