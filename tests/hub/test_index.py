"""The in-memory pending index: what a poll consults instead of SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.lifecycle import DELIVERABLE, IN_FLIGHT, TERMINAL, TRANSITIONS, CommandState
from tether.core.model import Command
from tether.hub import index as index_module
from tether.hub.index import CommandIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def command(
    cid: int,
    state: CommandState = CommandState.PENDING,
    device: str = "d",
    at: float = 0,
    expires: datetime | None = None,
) -> Command:
    when = T0 + timedelta(seconds=at)
    return Command(
        id=cid,
        device_id=device,
        name="x",
        state=state,
        created_at=T0,
        updated_at=when,
        expires_at=expires,
    )


def test_pending_then_delivered_then_done() -> None:
    index = CommandIndex()
    index.apply(command(2))
    index.apply(command(1))
    assert index.deliverable("d", T0, 100) == [1, 2]
    index.apply(command(1, CommandState.DELIVERED, at=1))
    assert index.deliverable("d", T0, 100) == [2]
    assert index.in_flight("d") == 1
    index.apply(command(1, CommandState.SUCCEEDED, at=2))
    assert index.in_flight("d") == 0
    assert index.get(1) is None
    assert len(index) == 1


def test_stale_event_is_ignored() -> None:
    index = CommandIndex()
    index.apply(command(1, CommandState.DELIVERED, at=5))
    index.apply(command(1, CommandState.PENDING, at=1))  # older, from another node
    assert index.deliverable("d", T0, 100) == []
    assert index.state(1) is CommandState.DELIVERED


def test_expired_commands_are_not_handed_out() -> None:
    index = CommandIndex()
    index.apply(command(1, expires=T0 + timedelta(seconds=1)))
    assert index.deliverable("d", T0, 100) == [1]
    assert index.deliverable("d", T0 + timedelta(seconds=2), 100) == []


def test_empty_device_costs_a_lookup() -> None:
    index = CommandIndex()
    assert not index.has_deliverable("nobody")
    assert index.deliverable("nobody", T0, 100) == []


def _history(choices: list[int]) -> list[CommandState]:
    """A legal life of one command: each step one of the table's transitions, or the
    store's hand-back (delivered -> sent), picked by ``choices``."""
    states = [CommandState.PENDING]
    for choice in choices:
        current = states[-1]
        nexts = sorted(TRANSITIONS[current])
        if current is CommandState.DELIVERED:
            nexts.append(CommandState.SENT)  # a hand-back
        if not nexts:
            break
        states.append(nexts[choice % len(nexts)])
    return states


@given(
    st.lists(
        st.tuples(st.integers(1, 12), st.sampled_from(["a", "b"]), st.lists(st.integers(0, 99))),
        max_size=20,
    )
)
def test_index_matches_latest_state_of_each_command(
    lives: list[tuple[int, str, list[int]]],
) -> None:
    index = CommandIndex()
    latest: dict[int, Command] = {}
    step = 0
    for cid, device, choices in lives:
        if cid in latest:
            continue
        for state in _history(choices):
            step += 1
            latest[cid] = command(cid, state, device, at=step)
            index.apply(latest[cid])
    for device in ("a", "b"):
        expect_due = sorted(
            c.id for c in latest.values() if c.device_id == device and c.state in DELIVERABLE
        )
        assert index.deliverable(device, T0, 1000) == expect_due
        assert index.in_flight(device) == sum(
            1 for c in latest.values() if c.device_id == device and c.state in IN_FLIGHT
        )


@given(
    st.lists(st.integers(0, 99), max_size=8),
    st.lists(st.floats(-2.0, 2.0), min_size=9, max_size=9),
    st.randoms(use_true_random=False),
)
def test_skewed_clocks_and_any_arrival_order_end_on_the_latest_state(
    choices: list[int], skews: list[float], random: Any
) -> None:
    # Each version stamped by a different node's clock (up to 2 s apart), arriving in any
    # order: the index ends on the state of the last version (hand-backs excluded: the
    # node undoing a hand-over stamps both, so their order is the real one).
    states = _history(choices)
    for i in range(1, len(states)):  # cut before any hand-back
        if states[i - 1] is CommandState.DELIVERED and states[i] is CommandState.SENT:
            states = states[:i]
            break
    versions = [command(1, state, at=i + skews[i]) for i, state in enumerate(states)]
    arrival = list(versions)
    random.shuffle(arrival)
    index = CommandIndex()
    for version in arrival:
        index.apply(version)
    last = versions[-1].state
    if last in TERMINAL:
        assert index.get(1) is None
    else:
        assert index.state(1) is last
        assert index.in_flight("d") == (last in IN_FLIGHT)
        assert index.deliverable("d", T0, 10) == ([1] if last in DELIVERABLE else [])


def test_a_result_stamped_by_a_clock_behind_the_creators_still_ends_the_command() -> None:
    # Seen in a two-node cluster: the creating node's clock ran ahead (DeviceHive's
    # millisecond clock, under a burst), so the holder's "sent" and the device's result
    # bore earlier timestamps than the creation. Compared by time they were dropped, the
    # command stayed pending in the index though pushed, and 32 such entries at the head
    # of the queue stopped every later command to the device.
    index = CommandIndex()
    index.apply(command(1, at=1.0))  # created on the node whose clock is ahead
    index.apply(command(1, CommandState.SENT, at=0.2))
    assert index.state(1) is CommandState.SENT
    index.apply(command(1, CommandState.DELIVERED, at=0.3))
    assert index.in_flight("d") == 1
    index.apply(command(1, CommandState.SUCCEEDED, at=0.4))
    assert index.get(1) is None
    assert index.in_flight("d") == 0


def test_a_hand_back_returns_a_command_to_the_queue() -> None:
    index = CommandIndex()
    index.apply(command(1, at=0))
    index.apply(command(1, CommandState.DELIVERED, at=1))
    assert index.deliverable("d", T0, 10) == []
    index.apply(command(1, CommandState.SENT, at=2))  # the poll's answer never arrived
    assert index.deliverable("d", T0, 10) == [1]
    index.apply(command(1, CommandState.SENT, at=0.5))  # an older re-send, late: ignored
    assert index.deliverable("d", T0, 10) == [1]
    index.apply(command(1, CommandState.DELIVERED, at=3))  # the next poll took it
    assert index.deliverable("d", T0, 10) == []
    assert index.in_flight("d") == 1


def test_limit_bounds_the_answer_and_order_survives_late_arrivals() -> None:
    index = CommandIndex()
    for cid in (5, 1, 9, 3, 7):  # events from several nodes arrive out of order
        index.apply(command(cid))
    assert index.deliverable("d", T0, 3) == [1, 3, 5]
    assert len(index.deliverable("d", T0, 100)) == 5
    index.apply(command(3, CommandState.SENT, at=1))
    assert index.deliverable("d", T0, 10) == [1, 3, 5, 7, 9]  # sent stays re-deliverable
    index.apply(command(3, CommandState.DELIVERED, at=2))
    assert index.deliverable("d", T0, 10) == [1, 5, 7, 9]


def test_an_older_copy_arriving_after_the_end_does_not_bring_a_command_back() -> None:
    # A bus event published twice, or a store row read before the command finished,
    # may arrive after its end: the command must not become deliverable again.
    index = CommandIndex()
    index.apply(command(1, at=0))
    index.apply(command(1, CommandState.SENT, at=1))
    index.apply(command(1, CommandState.SUCCEEDED, at=2))
    assert index.apply(command(1, at=0)) is None
    assert index.apply(command(1, CommandState.SENT, at=1)) is None
    assert index.get(1) is None
    assert index.deliverable("d", T0, 10) == []
    # A command behind it is still offered.
    index.apply(command(2, at=3))
    assert index.deliverable("d", T0, 10) == [2]


def test_a_resync_index_shares_what_finished() -> None:
    old = CommandIndex()
    old.apply(command(1, CommandState.SENT, at=1))
    old.apply(command(1, CommandState.FAILED, at=2))
    fresh = CommandIndex(finished=old.finished)
    fresh.apply(command(1, at=0))  # a stale row replayed onto the new index
    assert fresh.deliverable("d", T0, 10) == []
    assert len(fresh) == 0


def test_finished_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "FINISHED_CAP", 5)
    index = CommandIndex()
    for cid in range(1, 9):
        index.apply(command(cid, CommandState.SUCCEEDED, at=cid))
    assert list(index.finished) == [4, 5, 6, 7, 8]  # the oldest went first
