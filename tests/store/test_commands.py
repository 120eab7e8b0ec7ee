"""CommandRepo: persistence, idempotency and the conditional lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind, device_principal
from tether.core.errors import BadRequest, NotFound
from tether.core.lifecycle import ACTIVE, TERMINAL, CommandState
from tether.core.model import Command, CommandStep, Role
from tether.store import Store

from .conftest import NOW, add_device, at

S = CommandState


async def _insert(store: Store, device_id: str = "d1", **kw: Any) -> Command:
    values: dict[str, Any] = {
        "device_id": device_id,
        "name": "reboot",
        "parameters": {"delay": 1},
        "created_by": None,
        "now": NOW,
    }
    values.update(kw)
    command, created = await store.commands.insert(**values)
    assert created
    return command


@pytest.fixture
async def cstore(store: Store) -> Store:
    await add_device(store, "d1")
    await add_device(store, "d2")
    return store


async def test_insert_and_get(cstore: Store) -> None:
    user = await cstore.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    command, created = await cstore.commands.insert(
        device_id="d1",
        name="set",
        parameters={"on": True, "levels": [1, 2]},
        created_by=user.id,
        now=NOW,
        expires_at=at(60),
        timeout=2.5,
        ref="abc",
    )
    assert created
    assert isinstance(command.id, int)
    assert command.device_id == "d1"
    assert command.state is S.PENDING
    assert command.parameters == {"on": True, "levels": [1, 2]}
    assert command.created_by == user.id
    assert command.created_at == command.updated_at == NOW
    assert command.expires_at == at(60)
    assert command.timeout == 2.5
    assert command.steps == ()
    assert await cstore.commands.get(command.id) == command
    assert await cstore.commands.get(command.id + 1000) is None
    assert await cstore.commands.get_by_ref("d1", "abc") == command
    assert await cstore.commands.get_by_ref("d2", "abc") is None


async def test_insert_in_another_state_and_ids_increase(cstore: Store) -> None:
    first = await _insert(cstore)
    second = await _insert(cstore, state=S.SENT)
    assert second.state is S.SENT
    assert second.id > first.id


async def test_insert_for_unknown_device_is_not_found(cstore: Store) -> None:
    with pytest.raises(NotFound):
        await cstore.commands.insert(
            device_id="nope", name="x", parameters=None, created_by=None, now=NOW
        )


async def test_idempotency_key_returns_the_same_command(cstore: Store) -> None:
    user = await cstore.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    other = await cstore.users.create(login="v", role=Role.CLIENT, password_hash=None, now=NOW)
    kw: dict[str, Any] = {"name": "x", "parameters": 1, "now": NOW, "idempotency_key": "k"}
    first, created = await cstore.commands.insert(device_id="d1", created_by=user.id, **kw)
    assert created
    again, created = await cstore.commands.insert(device_id="d1", created_by=user.id, **kw)
    assert not created
    assert again == first
    # The key is scoped to the creator and the device.
    by_other, created = await cstore.commands.insert(device_id="d1", created_by=other.id, **kw)
    assert created
    assert by_other.id != first.id
    on_d2, created = await cstore.commands.insert(device_id="d2", created_by=user.id, **kw)
    assert created
    assert on_d2.device_id == "d2"
    # No key: never deduplicated.
    kw.pop("idempotency_key")
    a, _ = await cstore.commands.insert(device_id="d1", created_by=user.id, **kw)
    b, _ = await cstore.commands.insert(device_id="d1", created_by=user.id, **kw)
    assert a.id != b.id
    # An anonymous creator is deduplicated too.
    kw["idempotency_key"] = "anon"
    c1, created1 = await cstore.commands.insert(device_id="d1", created_by=None, **kw)
    c2, created2 = await cstore.commands.insert(device_id="d1", created_by=None, **kw)
    assert (created1, created2) == (True, False)
    assert c1 == c2


async def test_concurrent_idempotent_inserts_create_one_command(cstore: Store) -> None:
    user = await cstore.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    results = await asyncio.gather(
        *(
            cstore.commands.insert(
                device_id="d1",
                name="x",
                parameters=None,
                created_by=user.id,
                now=NOW,
                idempotency_key="race",
            )
            for _ in range(20)
        )
    )
    assert sum(created for _, created in results) == 1
    assert len({command.id for command, _ in results}) == 1


async def test_transition_stamps_and_sets_fields(cstore: Store) -> None:
    command = await _insert(cstore)
    sent = await cstore.commands.transition(command.id, S.SENT, now=at(1))
    assert sent is not None
    assert sent.state is S.SENT
    assert (sent.sent_at, sent.updated_at, sent.delivered_at) == (at(1), at(1), None)
    delivered = await cstore.commands.transition(command.id, S.DELIVERED, now=at(2), ref="r-1")
    assert delivered is not None
    assert (delivered.delivered_at, delivered.ref) == (at(2), "r-1")
    step = CommandStep(name="download", state="done", time=at(3), data={"pct": 100})
    progressing = await cstore.commands.transition(
        command.id, S.IN_PROGRESS, now=at(3), status="working", steps=(step,)
    )
    assert progressing is not None
    assert progressing.steps == (step,)
    assert progressing.status == "working"
    done = await cstore.commands.transition(
        command.id, S.SUCCEEDED, now=at(4), result={"ok": [1, 2]}, status="done"
    )
    assert done is not None
    assert done.state is S.SUCCEEDED
    assert done.completed_at == at(4)
    assert done.result == {"ok": [1, 2]}
    assert done.steps == (step,)
    assert (done.sent_at, done.delivered_at, done.created_at) == (at(1), at(2), NOW)
    assert await cstore.commands.get(command.id) == done


async def test_transition_refuses_wrong_source_state(cstore: Store) -> None:
    command = await _insert(cstore)
    # delivered -> sent is backwards; nothing ever goes back to pending.
    assert await cstore.commands.transition(command.id, S.DELIVERED, now=at(1)) is not None
    assert await cstore.commands.transition(command.id, S.SENT, now=at(2)) is None
    assert await cstore.commands.transition(command.id, S.PENDING, now=at(2)) is None
    # expired is only reachable before delivery.
    assert await cstore.commands.transition(command.id, S.EXPIRED, now=at(2)) is None
    # timed_out is only reachable after delivery.
    fresh = await _insert(cstore)
    assert await cstore.commands.transition(fresh.id, S.TIMED_OUT, now=at(2)) is None
    current = await cstore.commands.get(command.id)
    assert current is not None
    assert current.state is S.DELIVERED
    assert current.updated_at == at(1)


async def test_transition_checks_the_device(cstore: Store) -> None:
    command = await _insert(cstore, "d1")
    assert await cstore.commands.transition(command.id, S.SENT, now=at(1), device_id="d2") is None
    moved = await cstore.commands.transition(command.id, S.SENT, now=at(1), device_id="d1")
    assert moved is not None
    assert moved.state is S.SENT
    assert await cstore.commands.transition(10**9, S.SENT, now=at(1)) is None


async def test_a_command_cannot_finish_twice(cstore: Store) -> None:
    command = await _insert(cstore)
    first = await cstore.commands.transition(command.id, S.SUCCEEDED, now=at(1), result=1)
    assert first is not None
    for target in (S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.IN_PROGRESS):
        assert await cstore.commands.transition(command.id, target, now=at(2), result=2) is None
    stored = await cstore.commands.get(command.id)
    assert stored is not None
    assert (stored.state, stored.result, stored.completed_at) == (S.SUCCEEDED, 1, at(1))


async def test_transition_refuses_unknown_fields(cstore: Store) -> None:
    command = await _insert(cstore)
    with pytest.raises(BadRequest):
        await cstore.commands.transition(command.id, S.SENT, now=at(1), device="x")
    with pytest.raises(BadRequest):
        await cstore.commands.transition(command.id, S.SENT, now=at(1), created_at=at(1))


@pytest.mark.parametrize("target", [S.SUCCEEDED, S.FAILED, S.CANCELLED])
async def test_concurrent_completion_has_exactly_one_winner(
    cstore: Store, target: CommandState
) -> None:
    command = await _insert(cstore)
    assert await cstore.commands.transition(command.id, S.DELIVERED, now=at(1))
    results = await asyncio.gather(
        *(
            cstore.commands.transition(command.id, target, now=at(2), result={"by": i})
            for i in range(20)
        )
    )
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    stored = await cstore.commands.get(command.id)
    assert stored == winners[0]


async def test_deliverable_in_flight_and_active(cstore: Store) -> None:
    c = [await _insert(cstore, "d1") for _ in range(6)]
    other = await _insert(cstore, "d2")
    await cstore.commands.transition(c[0].id, S.SENT, now=at(1))
    await cstore.commands.transition(c[1].id, S.DELIVERED, now=at(1))
    await cstore.commands.transition(c[2].id, S.IN_PROGRESS, now=at(1))
    await cstore.commands.transition(c[3].id, S.SUCCEEDED, now=at(1))
    deliverable = await cstore.commands.deliverable("d1", 10)
    assert [x.id for x in deliverable] == [c[0].id, c[4].id, c[5].id]
    assert [x.id for x in await cstore.commands.deliverable("d1", 2)] == [c[0].id, c[4].id]
    assert await cstore.commands.deliverable("nope", 5) == []
    assert await cstore.commands.count_in_flight("d1") == 3
    assert await cstore.commands.count_in_flight("d2") == 0
    active = await cstore.commands.active()
    assert [x.id for x in active] == [c[0].id, c[1].id, c[2].id, c[4].id, c[5].id, other.id]
    assert all(x.state in ACTIVE for x in active)


async def test_expire_due(cstore: Store) -> None:
    due_pending = await _insert(cstore, expires_at=at(10))
    due_sent = await _insert(cstore, expires_at=at(5))
    await cstore.commands.transition(due_sent.id, S.SENT, now=at(1))
    delivered = await _insert(cstore, expires_at=at(5))
    await cstore.commands.transition(delivered.id, S.DELIVERED, now=at(1))
    later = await _insert(cstore, expires_at=at(11))
    never = await _insert(cstore)
    expired = await cstore.commands.expire_due(at(10))
    assert [x.id for x in expired] == [due_pending.id, due_sent.id]
    assert all(x.state is S.EXPIRED and x.completed_at == at(10) for x in expired)
    assert all(x.updated_at == at(10) for x in expired)
    assert await cstore.commands.expire_due(at(10)) == []
    for untouched in (delivered, later, never):
        stored = await cstore.commands.get(untouched.id)
        assert stored is not None
        assert stored.state not in TERMINAL


async def test_list_filters_and_paging(cstore: Store) -> None:
    a = await _insert(cstore, "d1", name="a", now=at(1))
    b = await _insert(cstore, "d1", name="b", now=at(2))
    c = await _insert(cstore, "d2", name="a", now=at(3))
    await cstore.commands.transition(b.id, S.SENT, now=at(10))
    repo = cstore.commands

    async def ids(**kw: Any) -> list[int]:
        return [x.id for x in await repo.list(**kw)]

    assert await ids() == [a.id, b.id, c.id]
    assert await ids(device_id="d1") == [a.id, b.id]
    assert await ids(device_ids=["d2", "zz"]) == [c.id]
    assert await ids(device_ids=[]) == []
    assert await ids(name="a") == [a.id, c.id]
    assert await ids(names={"b"}) == [b.id]
    assert await ids(states=[S.SENT]) == [b.id]
    assert await ids(states=[S.PENDING, S.SENT], device_id="d2") == [c.id]
    assert await ids(created_after=at(1)) == [b.id, c.id]
    assert await ids(created_before=at(3)) == [a.id, b.id]
    assert await ids(updated_after=at(5)) == [b.id]
    assert await ids(desc=True) == [c.id, b.id, a.id]
    assert await ids(sort="updated_at") == [a.id, c.id, b.id]
    assert await ids(sort="name", desc=True) == [b.id, c.id, a.id]
    assert await ids(sort="created_at", skip=1, take=1) == [b.id]
    with pytest.raises(BadRequest):
        await repo.list(sort="parameters")


async def test_list_applies_visibility(cstore: Store) -> None:
    network = await cstore.networks.create(name="n")
    await cstore.devices.update("d2", now=NOW, network_id=network.id)
    a = await _insert(cstore, "d1")
    b = await _insert(cstore, "d2")
    client = Principal(
        kind=PrincipalKind.USER,
        actions=ALL_ACTIONS,
        user_id=999,
        role=Role.CLIENT,
        network_ids=frozenset({network.id}),
    )
    assert [x.id for x in await cstore.commands.list(principal=client)] == [b.id]
    d1 = await cstore.devices.get("d1")
    assert d1 is not None
    mine = device_principal(d1)
    assert [x.id for x in await cstore.commands.list(principal=mine)] == [a.id]
    admin = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, role=Role.ADMIN)
    assert [x.id for x in await cstore.commands.list(principal=admin)] == [a.id, b.id]


async def test_deleting_a_device_deletes_its_commands(cstore: Store) -> None:
    command = await _insert(cstore, "d1")
    kept = await _insert(cstore, "d2")
    assert await cstore.devices.delete("d1")
    assert await cstore.commands.get(command.id) is None
    assert await cstore.commands.get(kept.id) == kept


async def test_deleting_the_creator_keeps_the_command(cstore: Store) -> None:
    user = await cstore.users.create(login="u", role=Role.CLIENT, password_hash=None, now=NOW)
    command = await _insert(cstore, created_by=user.id)
    assert await cstore.users.delete(user.id)
    stored = await cstore.commands.get(command.id)
    assert stored is not None
    assert stored.created_by is None


async def test_transition_many_is_one_conditional_statement(cstore: Store) -> None:
    c = [await _insert(cstore, "d1") for _ in range(4)]
    other = await _insert(cstore, "d2")
    await cstore.commands.transition(c[1].id, S.SUCCEEDED, now=at(1))
    ids = [c[3].id, c[0].id, c[1].id, c[2].id, other.id]
    moved = await cstore.commands.transition_many("d1", ids, S.SENT, now=at(2))
    # The finished one and the other device's one are left alone; the rest move, by id.
    assert [x.id for x in moved] == [c[0].id, c[2].id, c[3].id]
    assert all(x.state is S.SENT and x.sent_at == at(2) for x in moved)
    untouched = await cstore.commands.get(other.id)
    assert untouched is not None
    assert untouched.state is S.PENDING
    # Re-sending is allowed (sent -> sent); delivering moves them on.
    again = await cstore.commands.transition_many("d1", [c[0].id], S.SENT, now=at(3))
    assert [x.sent_at for x in again] == [at(3)]
    handed = await cstore.commands.transition_many("d1", [c[0].id, c[2].id], S.DELIVERED, now=at(4))
    assert [x.delivered_at for x in handed] == [at(4), at(4)]
    assert await cstore.commands.transition_many("d1", [], S.SENT, now=at(5)) == []
