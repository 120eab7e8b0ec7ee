"""The sweeper: deadlines fire in order, disarmed ones never fire, memory stays bounded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tether.core.clock import SystemClock
from tether.hub.sweeper import Deadline, Sweeper


async def test_deadlines_fire_in_time_order_and_disarmed_ones_never() -> None:
    clock = SystemClock()
    fired: list[tuple[int, Deadline]] = []
    done = asyncio.Event()

    async def fire(command_id: int, kind: Deadline) -> None:
        fired.append((command_id, kind))
        if len(fired) == 2:
            done.set()

    sweeper = Sweeper(clock, fire)
    now = clock.now()
    sweeper.arm(now + timedelta(milliseconds=60), 2, Deadline.TIMEOUT)
    sweeper.arm(now + timedelta(milliseconds=20), 1, Deadline.EXPIRE)
    sweeper.arm(now + timedelta(milliseconds=40), 3, Deadline.EXPIRE)
    sweeper.disarm(3, Deadline.EXPIRE)
    sweeper.start()
    try:
        await asyncio.wait_for(done.wait(), 2)
        await asyncio.sleep(0.05)
    finally:
        await sweeper.stop()
    assert fired == [(1, Deadline.EXPIRE), (2, Deadline.TIMEOUT)]


async def test_disarmed_deadlines_do_not_accumulate() -> None:
    async def fire(command_id: int, kind: Deadline) -> None:
        raise AssertionError("nothing should fire")

    sweeper = Sweeper(SystemClock(), fire)
    far = datetime.now(UTC) + timedelta(days=1)
    for command_id in range(50_000):
        sweeper.arm(far, command_id, Deadline.EXPIRE)
        sweeper.disarm(command_id, Deadline.EXPIRE)
    assert len(sweeper) == 0
    assert len(sweeper._heap) <= 1024 + 2
