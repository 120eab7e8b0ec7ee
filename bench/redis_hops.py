"""The floor under the cluster round trip: two processes ping-ponging over Redis pub/sub.

A command whose app socket is on process B and device socket on process A crosses Redis
twice on its critical path: B tells A about the new command, and A tells B about its
result. Each crossing is a PUBLISH from one process, Redis fanning it out, and the other
process waking up to read it. This module measures exactly that, with nothing else: a
child process subscribed to one channel answers every message on another, and this
process sends at a fixed rate and times each answer. Both ends use plain redis-py on
uvloop, with the message size of a command event. So, measured in the same run as the
round trip, it says how much of what crossing processes adds is the two Redis hops
themselves, which no code in Tether can remove, and how much is Tether's.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass

import redis.asyncio as redis

from bench.common import clean_env, percentile

#: Roughly one ``CommandChanged`` event on the bus.
PAYLOAD = b"x" * 600

_PONG = """
import asyncio, sys, uvloop
import redis.asyncio as redis

async def main(url, there, back):
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(there)
    print("ready", flush=True)
    async for message in pubsub.listen():
        if message["type"] == "message":
            await client.publish(back, message["data"])

uvloop.run(main(*sys.argv[1:4]))
"""


@dataclass(frozen=True)
class Hops:
    """Round trips of two Redis hops (there and back), in seconds, sorted."""

    rate: float
    round_trips: list[float]

    def p(self, q: float) -> float:
        return percentile(self.round_trips, q)


async def measure(url: str, rate: float, seconds: float) -> Hops:
    """Ping-pong ``rate`` times a second for ``seconds`` (after a 1 s warm-up)."""
    tag = f"bench:hops:{time.monotonic_ns()}"
    there, back = f"{tag}:there", f"{tag}:back"
    pong = subprocess.Popen(
        [sys.executable, "-c", _PONG, url, there, back],
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    try:
        assert pong.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(pong.stdout.readline), 15)
        if line.strip() != b"ready":
            raise RuntimeError("the Redis pong process did not start")
        await pubsub.subscribe(back)
        round_trips: list[float] = []
        warmup = round(rate)
        start = time.perf_counter()
        for i in range(warmup + round(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            await client.publish(there, PAYLOAD)
            while True:
                message = await pubsub.get_message(timeout=5)
                if message is None:
                    raise RuntimeError("no answer from the Redis pong process in 5 s")
                if message["type"] == "message":
                    break
            if i >= warmup:
                round_trips.append(time.perf_counter() - sent)
        return Hops(rate, sorted(round_trips))
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        with contextlib.suppress(Exception):
            await client.aclose()
        pong.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            pong.wait(5)
