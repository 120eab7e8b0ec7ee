"""Presence: sessions and polling activity, transitions, write-behind."""

from __future__ import annotations

from datetime import datetime

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
