"""Presence: sessions and polling activity, transitions, write-behind."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from tether.core.clock import ManualClock
from tether.hub.presence import Presence


def make() -> tuple[Presence, ManualClock, list[tuple[str, bool]]]:
    clock = ManualClock()
    changes: list[tuple[str, bool]] = []

    def on_change(device_id: str, online: bool, at: datetime) -> None:
        changes.append((device_id, online))

    return Presence(clock, default_timeout=10, on_change=on_change), clock, changes


def test_session_device_is_online_while_connected() -> None:
    presence, _, changes = make()
    presence.session_opened("d")
    presence.session_opened("d")
    presence.session_closed("d")
    assert presence.is_online("d")
    presence.session_closed("d")
    assert not presence.is_online("d")
    assert changes == [("d", True), ("d", False)]


def test_polling_device_goes_offline_after_silence() -> None:
    presence, clock, changes = make()
    presence.activity("p")
    clock.advance(5)
    presence.activity("p")
    clock.advance(9)
    assert presence.sweep() == []
    clock.advance(2)
    assert presence.sweep() == ["p"]
    assert changes == [("p", True), ("p", False)]


def test_per_device_timeout() -> None:
    presence, clock, _ = make()
    presence.activity("slow", timeout=60)
    clock.advance(30)
    assert presence.sweep() == []


def test_last_seen_is_written_behind_in_one_batch() -> None:
    presence, _, _ = make()
    presence.activity("a")
    presence.activity("b")
    presence.activity("a")
    dirty = presence.take_dirty()
    assert set(dirty) == {"a", "b"}
    assert presence.take_dirty() == {}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "close", "poll", "sweep", "wait"]),
            st.sampled_from(["a", "b", "c"]),
        ),
        max_size=60,
    )
)
def test_online_count_follows_every_transition(steps: list[tuple[str, str]]) -> None:
    """The count is kept incrementally; it must always equal a recount."""
    presence, clock, changes = make()
    sessions: dict[str, int] = {}
    for op, device in steps:
        if op == "open":
            presence.session_opened(device)
            sessions[device] = sessions.get(device, 0) + 1
        elif op == "close" and sessions.get(device):
            presence.session_closed(device)
            sessions[device] -= 1
        elif op == "poll":
            presence.activity(device)
        elif op == "sweep":
            presence.sweep()
        else:
            clock.advance(6)
        assert presence.online_count() == len(presence.online_ids())
        online_now: set[str] = set()
        for changed, online in changes:  # replaying the announced transitions ...
            (online_now.add if online else online_now.discard)(changed)
        assert online_now == presence.online_ids()  # ... gives who is online


def test_seen_moves_last_seen_without_making_a_device_online() -> None:
    presence, _, changes = make()
    presence.seen("quiet")
    assert not presence.is_online("quiet")
    assert changes == []
    assert set(presence.take_dirty()) == {"quiet"}


def test_a_closed_session_leaves_no_poll_behind() -> None:
    presence, _, changes = make()
    presence.seen("ws")  # e.g. the agent read its shadow before connecting
    presence.session_opened("ws")
    presence.session_closed("ws")
    assert not presence.is_online("ws")
    assert changes == [("ws", True), ("ws", False)]
