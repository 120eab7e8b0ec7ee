"""The one backoff: how long to wait before the next retry or reconnect.

Every loop in Tether that retries something remote (the hub waiting for its database,
the Redis bus reconnecting, OpenGate's outbound dispatch, every device agent and
``notifications tail``) takes its delays from a :class:`Backoff`. The delays come from
tenacity's wait strategies: exponential from ``first`` up to ``cap``, half of each delay
fixed and half random ("equal jitter"), so that processes that lost the same server
together do not all come back in the same instant, and none retries sooner than half
the nominal delay.

Those loops are long-lived (a connection is held for hours, then lost), so they do not
fit tenacity's retry-a-call shape; :meth:`Backoff.reset` starts the sequence again once
a connection has worked.
"""

from __future__ import annotations

from tenacity import AsyncRetrying, RetryCallState, wait_exponential, wait_random_exponential


class Backoff:
    """Delays for one retry loop: ``next()`` before each retry, ``reset()`` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"need 0 < first <= cap, got {first} and {cap}")
        self.first = first
        self.cap = cap
        half_first, half_cap = first / 2, cap / 2
        # Only holds the wait strategy: tenacity's strategies read an attempt number
        # from a call state that belongs to a Retrying object.
        self._retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=half_first, max=half_cap)
            + wait_random_exponential(multiplier=half_first, max=half_cap)
        )
        self._state = RetryCallState(self._retrying, None, (), {})
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds (between first/2 and cap)."""
        self.attempts += 1
        self._state.attempt_number = self.attempts
        return float(self._retrying.wait(self._state))

    def reset(self) -> None:
        """Start again from ``first``: the thing being retried worked."""
        self.attempts = 0
