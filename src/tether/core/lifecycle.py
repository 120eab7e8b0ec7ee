"""The command lifecycle as an explicit transition table.

::

    pending -> sent -> delivered -> in_progress -> succeeded | failed
       \\________\\___ expired (delivery deadline ``expires_at`` passed first)
                      delivered/in_progress -> timed_out (no result within ``timeout``)
    any non-terminal -> cancelled

Two clocks, never mixed: ``expires_at`` bounds *delivery* and ``timeout`` bounds
*execution* (it starts when the command is delivered).

A result is the strongest evidence there is, so a device may finish a command from any
non-terminal state (it may act on a re-sent copy before its acknowledgement lands).
Stores apply a transition as a conditional update, ``WHERE state IN sources(target)``,
so concurrent nodes can never move a command backwards or finish it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tether.core.errors import InvalidTransition
from tether.core.limits import repair_seconds


class CommandState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


S = CommandState

TRANSITIONS: Mapping[CommandState, frozenset[CommandState]] = {
    # SENT -> SENT is a re-send (at-least-once delivery after a lost session).
    S.PENDING: frozenset(
        {S.SENT, S.DELIVERED, S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELLED}
    ),
    S.SENT: frozenset(
        {S.SENT, S.DELIVERED, S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.EXPIRED, S.CANCELLED}
    ),
    S.DELIVERED: frozenset({S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    # IN_PROGRESS -> IN_PROGRESS records another progress step.
    S.IN_PROGRESS: frozenset({S.IN_PROGRESS, S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.TIMED_OUT: frozenset(),
    S.CANCELLED: frozenset(),
}

TERMINAL: frozenset[CommandState] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
ACTIVE: frozenset[CommandState] = frozenset(S) - TERMINAL
#: States in which a command still has to be handed to the device (re-sent if only ``sent``).
DELIVERABLE: frozenset[CommandState] = frozenset({S.PENDING, S.SENT})
#: States that count against a device's in-flight limit.
IN_FLIGHT: frozenset[CommandState] = frozenset({S.SENT, S.DELIVERED, S.IN_PROGRESS})
#: States whose execution deadline (``timeout``) is running.
EXECUTING: frozenset[CommandState] = frozenset({S.DELIVERED, S.IN_PROGRESS})

#: How far along the lifecycle each state is. Every transition in :data:`TRANSITIONS`
#: moves a command to the same stage or a later one, so of two versions of one command the
#: later stage is the newer, whichever clock stamped them. The one step back is a
#: hand-back (``delivered`` -> ``sent``: a poll's answer never reached the device), made by
#: the store outside this table; see :func:`supersedes`.
STAGE: Mapping[CommandState, int] = {
    S.PENDING: 0,
    S.SENT: 1,
    S.DELIVERED: 2,
    S.IN_PROGRESS: 3,
    **{state: 4 for state in TERMINAL},
}


def supersedes(
    state: CommandState, updated_at: datetime, old_state: CommandState, old_updated_at: datetime
) -> bool:
    """Whether a version of a command (``state``, ``updated_at``) is newer than another.

    Versions reach a node from several nodes, each stamped by its own clock, and clocks
    differ (across machines, and DeviceHive's millisecond clock runs up to a second ahead
    under bursts): comparing ``updated_at`` alone once let a node drop a command's result
    as "older" than its creation, so the command held the head of its device's queue
    forever. The lifecycle stage decides first; timestamps only order versions of one
    stage. A hand-back (``delivered`` back to ``sent``) is stamped by the node that made
    the hand-over it undoes, so there its timestamp is comparable and decides.
    """
    stage, old_stage = STAGE[state], STAGE[old_state]
    if stage != old_stage:
        if state is S.SENT and old_state is S.DELIVERED:
            return updated_at > old_updated_at
        return stage > old_stage
    return updated_at >= old_updated_at


def can_transition(current: CommandState, target: CommandState) -> bool:
    return target in TRANSITIONS[current]


def sources(target: CommandState) -> frozenset[CommandState]:
    """Every state from which ``target`` may be reached: the ``WHERE state IN`` set."""
    return frozenset(s for s, nxt in TRANSITIONS.items() if target in nxt)


def check(current: CommandState, target: CommandState) -> None:
    if not can_transition(current, target):
        raise InvalidTransition(
            f"a command cannot go from {current.value} to {target.value}",
            current=current.value,
            target=target.value,
        )


def stamp(target: CommandState, now: datetime) -> dict[str, Any]:
    """The timestamp columns a transition into ``target`` sets, besides ``updated_at``."""
    values: dict[str, Any] = {"state": target, "updated_at": now}
    if target is S.SENT:
        values["sent_at"] = now
    elif target is S.DELIVERED:
        values["delivered_at"] = now
    elif target in TERMINAL:
        values["completed_at"] = now
    return values


def execution_deadline(delivered_at: datetime | None, timeout: float | None) -> datetime | None:
    """When a delivered command times out, or ``None`` if it never does.

    A stored timeout outside the API's bound (written before the bound existed) is read
    as the bound, so the deadline can always be computed and armed.
    """
    if delivered_at is None or timeout is None:
        return None
    return delivered_at + timedelta(seconds=repair_seconds(timeout))


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
