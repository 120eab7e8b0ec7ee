"""What keeps password guessing slow and cheap for the server, without locking anyone out.

Two guards stand in front of every password check, whichever protocol asked for it (the
native API, DeviceHive REST and WebSocket, the eWeLink login):

* :class:`LoginThrottle` counts wrong answers per (login, source address). After
  ``login_free_attempts`` of them, each further failure makes that pair wait a delay that
  doubles up to ``login_delay_max``; while it waits, it is answered 429 with
  ``Retry-After`` *without* a password check. A success clears the pair. The delay ends
  by itself, so nobody, an admin included, can be locked out for good by a stranger;
  a stranger elsewhere is not slowed by the pairs of others. Unknown logins are counted
  exactly like known ones, so the answers say nothing about which logins exist.
* :class:`PasswordGate` bounds how many argon2 checks run at once (each costs tens of
  milliseconds of CPU and 64 MiB), and how many logins may wait for one. Beyond that
  the login is refused at once with 429, so a flood of logins queues no unbounded work
  and leaves CPU for everything else (``/healthz`` among it).

The counts live in this process's memory, in a size-capped TTL cache: a restart
forgets them, and each process of a cluster counts on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cachetools import TTLCache

from tether.core.clock import Clock
from tether.core.errors import TooManyRequests

#: At most this many (login, address) pairs are remembered; the oldest go first.
MAX_TRACKED = 100_000
#: Logins are counted by at most this many characters (a megabyte login costs no memory).
LOGIN_KEY_CHARS = 128
T = TypeVar("T")

#: What a throttled login is told; the same whether or not the login exists.
SLOW_DOWN = "too many failed logins from this address; retry later"


@dataclass
class _Failures:
    count: int
    #: ``clock.monotonic()`` before which this pair is answered 429 without a check.
    wait_until: float


class LoginThrottle:
    def __init__(
        self, clock: Clock, *, free_attempts: int, first_delay: float, max_delay: float
    ) -> None:
        self._clock = clock
        self._free = free_attempts
        self._first = first_delay
        self._max = max(max_delay, first_delay)
        # A pair that stops failing is forgotten after twice the longest delay, so the
        # delay of a persistent guesser keeps growing while an occasional typo decays.
        self._pairs: TTLCache[tuple[str, str], _Failures] = TTLCache(
            maxsize=MAX_TRACKED, ttl=2 * self._max, timer=clock.monotonic
        )

    @staticmethod
    def _key(login: str, source: str) -> tuple[str, str]:
        return login[:LOGIN_KEY_CHARS].casefold(), source

    def check(self, login: str, source: str) -> None:
        """Raise :class:`TooManyRequests` if this pair must still wait."""
        failures = self._pairs.get(self._key(login, source))
        if failures is None:
            return
        left = failures.wait_until - self._clock.monotonic()
        if left > 0:
            raise TooManyRequests(SLOW_DOWN, retry_after=left)

    def failed(self, login: str, source: str) -> None:
        key = self._key(login, source)
        previous = self._pairs.get(key)
        count = 1 if previous is None else previous.count + 1
        over = count - self._free
        delay = 0.0 if over <= 0 else min(self._first * 2 ** min(over - 1, 60), self._max)
        self._pairs[key] = _Failures(count, self._clock.monotonic() + delay)

    def succeeded(self, login: str, source: str) -> None:
        self._pairs.pop(self._key(login, source), None)


class PasswordGate:
    """At most ``concurrency`` password hashes at once, and ``queue`` callers waiting."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = queue
        self._waiting = 0
        self._running: set[asyncio.Future[Any]] = set()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` (a hash in a worker thread) within the bound.

        The slot is held until the work itself ends, even if the caller stops waiting (a
        client that hangs up): otherwise dropped requests would start unbounded threads.
        """
        if self._slots.locked() and self._waiting >= self._queue:
            raise TooManyRequests("too many logins at once; retry shortly", retry_after=1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        task = asyncio.ensure_future(work())
        self._running.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._running.discard(task)
        self._slots.release()
