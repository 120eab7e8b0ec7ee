"""CommandBatchRepo: group commit keeps every rule of the one-at-a-time path."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from tests.conftest import POSTGRES_URL
from tether.core.errors import NotFound, Unavailable
from tether.core.lifecycle import CommandState
from tether.store import NewCommand, Store, TransitionRequest

from .conftest import NOW, add_device, at

S = CommandState


@pytest.fixture
async def bstore(store: Store) -> Store:
    await add_device(store, "d1")
    await add_device(store, "d2")
    return store


def new(device_id: str, i: int) -> NewCommand:
    return NewCommand(
        device_id=device_id,
        name=f"c{i}",
        parameters={"i": i},
        created_at=NOW + timedelta(microseconds=i),
        timeout=5.0,
    )


async def test_insert_many_keeps_input_order(bstore: Store) -> None:
    rows = [new("d1" if i % 2 else "d2", i) for i in range(50)]
    stored = await bstore.command_batches.insert_many(rows)
    assert [c.parameters for c in stored] == [{"i": i} for i in range(50)]
    assert [c.id for c in stored] == sorted(c.id for c in stored)
    assert all(c.state is S.PENDING and c.timeout == 5.0 for c in stored)
    fetched = await bstore.commands.get(stored[7].id)
    assert fetched == stored[7]


async def test_insert_many_is_all_or_nothing(bstore: Store) -> None:
    with pytest.raises(NotFound):
        await bstore.command_batches.insert_many([new("d1", 1), new("ghost", 2)])
    assert await bstore.commands.list(device_id="d1") == []


async def test_transition_many_applies_each_rule(bstore: Store) -> None:
    made = await bstore.command_batches.insert_many([new("d1", i) for i in range(4)])
    await bstore.commands.transition(made[3].id, S.CANCELLED, now=at(1))
    requests = [
        TransitionRequest(
            command_id=made[0].id,
            target=S.SUCCEEDED,
            now=at(2),
            device_id="d1",
            fields={"result": {"ok": 0}},
        ),
        TransitionRequest(
            command_id=made[1].id,
            target=S.SUCCEEDED,
            now=at(3),
            device_id="d2",
            fields={"result": {"ok": 1}},
        ),  # not its device
        TransitionRequest(
            command_id=made[2].id,
            target=S.FAILED,
            now=at(4),
            device_id="d1",
            fields={"error": "jammed"},
        ),
        TransitionRequest(
            command_id=made[3].id,
            target=S.SUCCEEDED,
            now=at(5),
            device_id="d1",
            fields={"result": 3},
        ),  # already finished
        TransitionRequest(command_id=999_999, target=S.SUCCEEDED, now=at(6)),
    ]
    outcome = await bstore.command_batches.transition_many(requests)
    assert outcome[0] is not None
    assert outcome[0].state is S.SUCCEEDED
    assert outcome[0].result == {"ok": 0}
    assert outcome[0].completed_at == at(2)
    assert outcome[1] is None
    assert outcome[2] is not None
    assert outcome[2].error == "jammed"
    assert outcome[3] is None
    assert outcome[4] is None
    untouched = await bstore.commands.get(made[1].id)
    assert untouched is not None
    assert untouched.state is S.PENDING


async def test_moves_of_one_command_apply_in_order(bstore: Store) -> None:
    (made,) = await bstore.command_batches.insert_many([new("d1", 0)])
    await bstore.commands.transition(made.id, S.SENT, now=at(1))
    requests = [
        TransitionRequest(command_id=made.id, target=S.DELIVERED, now=at(2), device_id="d1"),
        TransitionRequest(
            command_id=made.id,
            target=S.SUCCEEDED,
            now=at(3),
            device_id="d1",
            fields={"result": "done"},
        ),
        TransitionRequest(
            command_id=made.id,
            target=S.FAILED,
            now=at(4),
            device_id="d1",
            fields={"error": "late duplicate"},
        ),
    ]
    delivered, succeeded, late = await bstore.command_batches.transition_many(requests)
    assert delivered is not None
    assert delivered.state is S.DELIVERED
    assert succeeded is not None
    assert succeeded.state is S.SUCCEEDED
    assert succeeded.delivered_at == at(2)
    assert late is None
    final = await bstore.commands.get(made.id)
    assert final is not None
    assert final.result == "done"
    assert final.error is None


@pytest.mark.parametrize(
    "parameters",
    [0, 1.5, "text", "0", None, [], {}, [1, "a", None], {"ü": {"deep": [True, False]}}],
)
async def test_batch_and_single_paths_store_the_same_values(
    bstore: Store, parameters: object
) -> None:
    from tether.core.model import CommandStep

    (batched,) = await bstore.command_batches.insert_many(
        [
            NewCommand(
                device_id="d1",
                name="x",
                parameters=parameters,
                created_at=NOW,
                expires_at=at(60),
                ref="r-1",
            )
        ]
    )
    assert await bstore.commands.get(batched.id) == batched
    assert batched.parameters == parameters
    step = CommandStep(name="download", state="done", time=at(1), data={"pct": 100})
    (moved,) = await bstore.command_batches.transition_many(
        [
            TransitionRequest(
                command_id=batched.id,
                target=S.SUCCEEDED,
                now=at(2),
                device_id="d1",
                fields={"result": parameters, "steps": (step,), "status": "ok"},
            )
        ]
    )
    assert moved is not None
    assert moved.result == parameters
    assert moved.steps == (step,)
    assert await bstore.commands.get(batched.id) == moved


@pytest.mark.postgres
async def test_a_lost_postgres_connection_fails_one_batch_then_recovers(postgres_url: str) -> None:
    """The PostgreSQL path holds one connection: when the server drops it, the batch in
    hand fails with ``Unavailable`` (nothing half-applied is reported as done) and the
    next batch runs on a fresh connection.

    Only this test's held connection is terminated: its pool connects under an
    application name of its own, and the one of them that ran the INSERT is the held one
    (other tests and benchmarks on the same server run the same INSERT)."""
    name = f"tether-test-{uuid.uuid4().hex[:12]}"
    store = await Store.open(f"{postgres_url}%20-capplication_name%3D{name}")
    try:
        await add_device(store, "d1")
        (first,) = await store.command_batches.insert_many([new("d1", 0)])
        admin = await asyncpg.connect(
            POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND query LIKE 'INSERT INTO commands AS c%'",
                name,
            )
        finally:
            await admin.close()
        assert killed == 1
        with pytest.raises(Unavailable):
            await store.command_batches.insert_many([new("d1", 1)])
        (again,) = await store.command_batches.insert_many([new("d1", 2)])
        assert again.id > first.id
        assert [c.parameters for c in await store.commands.list(device_id="d1")] == [
            {"i": 0},
            {"i": 2},
        ]
    finally:
        await store.close()


async def test_a_batch_is_all_or_nothing_across_inserts_and_transitions(bstore: Store) -> None:
    """Inserts and transitions of one batch commit together: a refused insert leaves the
    transitions of the same batch unapplied too."""
    (made,) = await bstore.command_batches.insert_many([new("d1", 0)])
    move = TransitionRequest(command_id=made.id, target=S.SENT, now=at(1), device_id="d1")
    with pytest.raises(NotFound):
        await bstore.command_batches.write([new("d1", 1), new("ghost", 2)], [move])
    still = await bstore.commands.get(made.id)
    assert still is not None
    assert still.state is S.PENDING
    assert [c.id for c in await bstore.commands.list(device_id="d1")] == [made.id]


async def test_a_batch_writes_inserts_and_every_wave(bstore: Store) -> None:
    made = await bstore.command_batches.insert_many([new("d1", 0), new("d2", 1)])
    requests = [
        TransitionRequest(command_id=made[0].id, target=S.SENT, now=at(1), device_id="d1"),
        TransitionRequest(command_id=made[1].id, target=S.SENT, now=at(1)),
        TransitionRequest(
            command_id=made[0].id,
            target=S.SUCCEEDED,
            now=at(2),
            device_id="d1",
            fields={"result": [1]},
        ),
    ]
    stored, moved = await bstore.command_batches.write([new("d2", 2), new("d1", 3)], requests)
    assert [(c.device_id, c.parameters) for c in stored] == [("d2", {"i": 2}), ("d1", {"i": 3})]
    assert [None if m is None else (m.id, m.state) for m in moved] == [
        (made[0].id, S.SENT),
        (made[1].id, S.SENT),
        (made[0].id, S.SUCCEEDED),
    ]
    final = await bstore.commands.get(made[0].id)
    assert final is not None
    assert final.result == [1]
    assert final.sent_at == at(1)


@pytest.mark.postgres
async def test_on_postgres_a_batch_of_one_wave_is_one_statement(postgres_url: str) -> None:
    """The new commands and every group of transitions go as ONE statement (one round
    trip, one commit); a second wave adds one statement, inside the same transaction."""
    from tether.store.engine import SQL_STATEMENTS

    store = await Store.open(postgres_url)
    try:
        await add_device(store, "d1")
        await add_device(store, "d2")
        made = await store.command_batches.insert_many([new("d1", i) for i in range(3)])
        one_wave = [
            TransitionRequest(command_id=made[0].id, target=S.SENT, now=at(1), device_id="d1"),
            TransitionRequest(
                command_id=made[1].id,
                target=S.SUCCEEDED,
                now=at(1),
                device_id="d1",
                fields={"result": 1},
            ),
            TransitionRequest(command_id=made[2].id, target=S.CANCELLED, now=at(1)),
        ]
        before = SQL_STATEMENTS._value.get()
        stored, moved = await store.command_batches.write([new("d2", 9)], one_wave)
        assert SQL_STATEMENTS._value.get() - before == 1
        assert len(stored) == 1
        assert all(m is not None for m in moved)
        two_waves = [
            TransitionRequest(command_id=made[0].id, target=S.DELIVERED, now=at(2)),
            TransitionRequest(command_id=made[0].id, target=S.SUCCEEDED, now=at(3)),
        ]
        before = SQL_STATEMENTS._value.get()
        _, moved = await store.command_batches.write([new("d2", 10)], two_waves)
        assert SQL_STATEMENTS._value.get() - before == 2
        assert [m.state if m else None for m in moved] == [S.DELIVERED, S.SUCCEEDED]
    finally:
        await store.close()


async def test_a_transition_nobody_reads_moves_and_answers_none(bstore: Store) -> None:
    """Write-behind marks skip the read-back; they still move the row, and a request
    for another command in the same batch still gets its command."""
    made = await bstore.command_batches.insert_many([new("d1", 0), new("d1", 1)])
    quiet = TransitionRequest(
        command_id=made[0].id, target=S.SENT, now=at(1), device_id="d1", read_back=False
    )
    loud = TransitionRequest(command_id=made[1].id, target=S.SENT, now=at(1), device_id="d1")
    assert await bstore.command_batches.transition_many([quiet]) == [None]
    moved = await bstore.commands.get(made[0].id)
    assert moved is not None
    assert moved.state is S.SENT
    assert moved.sent_at == at(1)
    again = TransitionRequest(command_id=made[0].id, target=S.SUCCEEDED, now=at(2), read_back=False)
    outcome = await bstore.command_batches.transition_many([again, loud])
    assert outcome[0] is None
    assert outcome[1] is not None
    assert outcome[1].state is S.SENT
    final = await bstore.commands.get(made[0].id)
    assert final is not None
    assert final.state is S.SUCCEEDED
