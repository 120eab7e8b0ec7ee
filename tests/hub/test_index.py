"""The in-memory pending index: what a poll consults instead of SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.lifecycle import DELIVERABLE, IN_FLIGHT, TERMINAL, CommandState
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


@given(
    st.lists(
        st.tuples(
            st.integers(1, 20), st.sampled_from(list(CommandState)), st.sampled_from(["a", "b"])
        ),
        max_size=80,
    )
)
def test_index_matches_latest_state_of_each_command(
    events: list[tuple[int, CommandState, str]],
) -> None:
    index = CommandIndex()
    latest: dict[int, Command] = {}
    owner: dict[int, str] = {}
    for step, (cid, state, device) in enumerate(events):
        device = owner.setdefault(cid, device)
        if cid in latest and latest[cid].state in TERMINAL:
            continue  # nothing follows a terminal state
        cmd = msgspec.structs.replace(command(cid, state, device, at=step))
        latest[cid] = cmd
        index.apply(cmd)
    for device in ("a", "b"):
        expect_due = sorted(
            c.id for c in latest.values() if c.device_id == device and c.state in DELIVERABLE
        )
        assert index.deliverable(device, T0, 1000) == expect_due
        assert index.in_flight(device) == sum(
            1 for c in latest.values() if c.device_id == device and c.state in IN_FLIGHT
        )


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
