"""The login throttle's delays and the bound on password work, on a manual clock."""

from __future__ import annotations

import asyncio

import pytest

from tether.core.clock import ManualClock
from tether.core.errors import TooManyRequests
from tether.hub.logins import LoginThrottle, PasswordGate


def wait_of(throttle: LoginThrottle, login: str, source: str) -> int:
    with pytest.raises(TooManyRequests) as refused:
        throttle.check(login, source)
    return refused.value.retry_after


def test_delays_double_up_to_the_cap_and_end_by_themselves() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(clock, free_attempts=2, first_delay=1.0, max_delay=5.0)
    for _ in range(2):
        throttle.failed("Admin", "10.0.0.1")
        throttle.check("admin", "10.0.0.1")  # free attempts: no wait
    waits = []
    for _ in range(5):
        throttle.failed("admin", "10.0.0.1")
        waits.append(wait_of(throttle, "ADMIN", "10.0.0.1"))  # logins count case-blind
        clock.advance(waits[-1])
        throttle.check("admin", "10.0.0.1")  # the delay has passed
    assert waits == [1, 2, 4, 5, 5]
    throttle.check("admin", "10.0.0.2")  # another address is not slowed
    throttle.failed("admin", "10.0.0.1")
    throttle.succeeded("admin", "10.0.0.1")
    throttle.check("admin", "10.0.0.1")
    throttle.failed("admin", "10.0.0.1")
    throttle.check("admin", "10.0.0.1")  # a success started the count again


async def test_the_gate_holds_its_slot_until_abandoned_work_ends() -> None:
    gate = PasswordGate(concurrency=1, queue=0)
    release = asyncio.Event()

    async def slow() -> int:
        await release.wait()
        return 1

    caller = asyncio.create_task(gate.run(slow))
    await asyncio.sleep(0.01)
    caller.cancel()  # the caller hangs up; the hash it started runs on
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(TooManyRequests):
        await gate.run(slow)
    release.set()
    await asyncio.sleep(0.01)

    async def quick() -> int:
        return 2

    assert await gate.run(quick) == 2
