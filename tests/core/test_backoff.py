"""The one backoff: bounded, growing, jittered, and restartable."""

from __future__ import annotations

import pytest

from tether.core.backoff import Backoff


def test_delays_grow_from_half_first_to_cap_and_reset() -> None:
    backoff = Backoff(0.5, 10.0)
    delays = [backoff.next() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(0.25 <= delay <= 10.0 for delay in delays)
    assert min(delays[6:]) >= 5.0  # at the cap: half fixed, half random
    backoff.reset()
    assert backoff.next() <= 0.5


def test_jitter_spreads_processes_that_retry_together() -> None:
    delays = {round(Backoff(1.0, 8.0).next(), 6) for _ in range(20)}
    assert len(delays) > 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="first <= cap"):
        Backoff(5.0, 1.0)
