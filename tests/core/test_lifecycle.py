"""The command lifecycle: table properties, and a stateful model of concurrent nodes."""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tether.core.errors import InvalidTransition
from tether.core.lifecycle import (
    ACTIVE,
    DELIVERABLE,
    EXECUTING,
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    CommandState,
    can_transition,
    check,
    execution_deadline,
    is_expired,
    sources,
    stamp,
)

S = CommandState
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_terminal_states_have_no_way_out() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.EXPIRED, S.TIMED_OUT, S.CANCELLED} == TERMINAL
    for state in TERMINAL:
        assert not TRANSITIONS[state]


def test_every_active_state_can_finish_or_be_cancelled() -> None:
    for state in ACTIVE:
        assert S.CANCELLED in TRANSITIONS[state]
        assert S.SUCCEEDED in TRANSITIONS[state]
        assert S.FAILED in TRANSITIONS[state]


def test_nothing_goes_back_to_pending() -> None:
    assert sources(S.PENDING) == frozenset()


def test_two_clocks_are_never_mixed() -> None:
    # expired only before delivery, timed_out only after it
    assert sources(S.EXPIRED) == DELIVERABLE
    assert sources(S.TIMED_OUT) == EXECUTING
    assert not (sources(S.EXPIRED) & EXECUTING)


def test_in_flight_states() -> None:
    assert {S.SENT, S.DELIVERED, S.IN_PROGRESS} == IN_FLIGHT


@pytest.mark.parametrize("state", list(S))
def test_sources_agree_with_table(state: CommandState) -> None:
    for source in S:
        assert (source in sources(state)) == can_transition(source, state)


def test_check_raises_clear_error() -> None:
    with pytest.raises(InvalidTransition, match="succeeded to pending"):
        check(S.SUCCEEDED, S.PENDING)


def test_stamp_sets_the_right_timestamp() -> None:
    assert stamp(S.SENT, NOW)["sent_at"] == NOW
    assert stamp(S.DELIVERED, NOW)["delivered_at"] == NOW
    for state in TERMINAL:
        assert stamp(state, NOW)["completed_at"] == NOW
    assert "completed_at" not in stamp(S.IN_PROGRESS, NOW)


def test_deadlines() -> None:
    assert execution_deadline(None, 5) is None
    assert execution_deadline(NOW, None) is None
    assert (execution_deadline(NOW, 5) - NOW).total_seconds() == 5  # type: ignore[operator]
    assert is_expired(NOW, NOW)
    assert not is_expired(None, NOW)


class ConcurrentNodes(RuleBasedStateMachine):
    """Several nodes race transitions on one command through conditional updates.

    The "store" applies a transition only when the current state is in ``sources(target)``
    (what ``WHERE state IN (...)`` does). Whatever the interleaving, the command never
    leaves a terminal state, and it finishes at most once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.state = S.PENDING
        self.history: list[CommandState] = [S.PENDING]
        self.finishes = 0

    @rule(to=st.sampled_from(list(S)))
    def conditional_update(self, to: CommandState) -> None:
        applied = self.state in sources(to)
        assert applied == can_transition(self.state, to)
        if applied:
            self.state = to
            self.history.append(to)
            if to in TERMINAL:
                self.finishes += 1

    @precondition(lambda self: self.state in TERMINAL)
    @rule(to=st.sampled_from(list(S)))
    def late_update_changes_nothing(self, to: CommandState) -> None:
        assert self.state not in sources(to)

    @invariant()
    def finished_at_most_once(self) -> None:
        assert self.finishes <= 1
        assert (self.finishes == 1) == (self.state in TERMINAL)

    @invariant()
    def never_back_to_pending(self) -> None:
        assert S.PENDING not in self.history[1:]

    @invariant()
    def timeouts_only_after_delivery(self) -> None:
        if self.state is S.TIMED_OUT:
            assert {S.DELIVERED, S.IN_PROGRESS} & set(self.history)
        if self.state is S.EXPIRED:
            assert S.DELIVERED not in self.history
            assert S.IN_PROGRESS not in self.history


TestConcurrentNodes = ConcurrentNodes.TestCase
TestConcurrentNodes.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
