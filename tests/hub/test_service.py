"""The hub facade without HTTP: restart re-arming, waits, and two hubs over Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.conftest import CLUSTER_NAME
from tests.hub.conftest import admin_of, started_hub

from tether.bus import MemoryBus, RedisBus
from tether.core.filters import EventFilter
from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.hub.service import Hub
from tether.hub.subscriptions import Topic


class Session:
    """A fake live device session recording what delivery pushed."""

    def __init__(self, device_id: str, max_in_flight: int = 8) -> None:
        self.device_id = device_id
        self.max_in_flight = max_in_flight
        self.pushed: set[int] = set()
        self.received: asyncio.Queue[Command] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    def push(self, command: Command) -> bool:
        self.received.put_nowait(command)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def on_redis(url: str, **options: Any) -> RedisBus:
    """A Redis bus in this test run's cluster."""
    return RedisBus(url, namespace=CLUSTER_NAME, **options)


async def make_device(hub: Hub, device_id: str) -> Any:
    admin = await admin_of(hub)
    return await hub.directory.create_device(admin, id=device_id, name=device_id)


async def test_restart_rearms_deadlines(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        admin = await admin_of(hub)
        doomed = await hub.commands.create(admin, "d", "x", lifetime=0.5, timeout=None)
        running = await hub.commands.create(admin, "d", "y", timeout=0.5)
        handed = await hub.delivery.poll("d", limit=1, max_in_flight=8, wait=0)
        assert [c.id for c in handed] == [doomed.id]
        handed = await hub.delivery.poll("d", limit=1, max_in_flight=8, wait=0)
        assert [c.id for c in handed] == [running.id]
    # The first process is gone before either deadline; a new one must fire them.
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        assert len(hub.sweeper) >= 1
        final = await hub.commands.wait(running.id, 3)
        assert final is not None
        assert final.state is CommandState.TIMED_OUT
        # `doomed` was delivered before its lifetime ran out, and delivery stops the delivery
        # clock: it must not expire, and with no execution timeout it stays delivered.
        other = await hub.store.commands.get(doomed.id)
        assert other is not None
        assert other.state is CommandState.DELIVERED


async def test_expired_while_down_is_expired_at_start(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        made = await hub.commands.create(await admin_of(hub), "d", "x", lifetime=0.2)
    await asyncio.sleep(0.3)
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        stored = await hub.store.commands.get(made.id)
        assert stored is not None
        assert stored.state is CommandState.EXPIRED
        assert await hub.delivery.poll("d", limit=5, max_in_flight=8, wait=0) == []


async def test_in_flight_limit_and_fifo(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        device = await make_device(hub, "d")
        admin = await admin_of(hub)
        made = [await hub.commands.create(admin, "d", f"c{i}") for i in range(5)]
        session = Session("d", max_in_flight=2)
        hub.delivery.attach(session)
        first = [await asyncio.wait_for(session.received.get(), 2) for _ in range(2)]
        assert [c.id for c in first] == [made[0].id, made[1].id]
        await asyncio.sleep(0.05)
        assert session.received.empty()  # the limit holds
        await hub.commands.complete(device, made[0].id, success=True)
        nxt = await asyncio.wait_for(session.received.get(), 2)
        assert nxt.id == made[2].id


async def test_new_session_replaces_old_and_resends_unacknowledged(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        made = await hub.commands.create(await admin_of(hub), "d", "x")
        old = Session("d")
        hub.delivery.attach(old)
        assert (await asyncio.wait_for(old.received.get(), 2)).id == made.id
        new = Session("d")
        hub.delivery.attach(new)
        assert old.closed is not None
        assert old.closed[0] == 4001
        again = await asyncio.wait_for(new.received.get(), 2)
        assert again.id == made.id  # at least once: never acknowledged, so sent again


async def test_parked_poll_wakes_for_a_new_command(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        poll = asyncio.create_task(hub.delivery.poll("d", limit=5, max_in_flight=8, wait=5))
        await asyncio.sleep(0.05)
        made = await hub.commands.create(await admin_of(hub), "d", "x")
        handed = await asyncio.wait_for(poll, 2)
        assert [c.id for c in handed] == [made.id]


async def test_two_hubs_on_postgres_and_redis(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with (
        started_hub(postgres_url, on_redis(redis_url), tmp_path) as a,
        started_hub(postgres_url, on_redis(redis_url), tmp_path) as b,
    ):
        device = await make_device(a, "shared")
        session = Session("shared")
        a.delivery.attach(session)
        made = await b.commands.create(await admin_of(b), "shared", "hello", {"n": 1})
        pushed = await asyncio.wait_for(session.received.get(), 5)
        assert pushed.id == made.id
        waiting = asyncio.create_task(b.commands.wait(made.id, 5))
        await asyncio.sleep(0.05)
        await a.commands.complete(device, made.id, success=True, result={"ok": True})
        final = await asyncio.wait_for(waiting, 5)
        assert final is not None
        assert final.state is CommandState.SUCCEEDED
        # A long poll parked on A wakes for a command created on B.
        parked = asyncio.create_task(a.delivery.poll("shared", limit=5, max_in_flight=8, wait=5))
        a.delivery.detach(session)
        await asyncio.sleep(0.05)
        second = await b.commands.create(await admin_of(b), "shared", "again")
        handed = await asyncio.wait_for(parked, 5)
        assert [c.id for c in handed] == [second.id]


async def test_back_to_back_wake_ups_push_a_command_once(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "d")
        made = await hub.commands.create(await admin_of(hub), "d", "x")
        session = Session("d")
        hub.delivery.sessions["d"] = session
        for _ in range(3):
            hub.delivery.notify("d")  # before any pump task has had a chance to run
        first = await asyncio.wait_for(session.received.get(), 2)
        assert first.id == made.id
        await asyncio.sleep(0.1)
        assert session.received.empty()


async def test_two_hubs_doing_the_same_work_finish_each_command_once(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with (
        started_hub(postgres_url, on_redis(redis_url), tmp_path) as a,
        started_hub(postgres_url, on_redis(redis_url), tmp_path) as b,
    ):
        await a.reconciler.beat()  # a learns that b joined: both agree on the owners
        device = await make_device(a, "busy")
        applied: list[tuple[str, int, CommandState]] = []
        attempted: list[tuple[str, int, CommandState]] = []

        def counting(hub: Hub, name: str) -> None:
            original = hub.commands._transition

            async def transition(
                command_id: int, target: CommandState, **kwargs: Any
            ) -> Command | None:
                moved = await original(command_id, target, **kwargs)
                attempted.append((name, command_id, target))
                if moved is not None:
                    applied.append((name, command_id, target))
                return moved

            hub.commands._transition = transition  # type: ignore[method-assign]

        counting(a, "a")
        counting(b, "b")
        admin = await admin_of(a)
        doomed = [await a.commands.create(admin, "busy", f"x{i}", lifetime=0.3) for i in range(20)]
        await asyncio.sleep(0.2)  # the device's deadline owner has armed every deadline
        done = [await b.commands.create(admin, "busy", f"y{i}") for i in range(10)]
        # Both nodes post every result at the same time (a device that reconnected).
        await asyncio.gather(
            *(
                hub.commands.complete(device, command.id, success=True, result=hub.node_id)
                for command in done
                for hub in (a, b)
            )
        )
        await asyncio.sleep(1.0)  # the owner's sweeper fires every expiry

        # Results were posted on both nodes, so both tried that move ...
        assert {n for n, _, t in attempted if t is CommandState.SUCCEEDED} == {"a", "b"}
        # ... while only the device's deadline owner fires its deadlines (hub.routing) ...
        assert a.routing.owner("busy") == b.routing.owner("busy")
        owner = "a" if a.routing.owns("busy") else "b"
        assert {n for n, _, t in attempted if t is CommandState.EXPIRED} == {owner}
        # ... and every command moved exactly once.
        expired = [x for x in applied if x[2] is CommandState.EXPIRED]
        succeeded = [x for x in applied if x[2] is CommandState.SUCCEEDED]
        assert sorted(i for _, i, _ in expired) == sorted(c.id for c in doomed)
        assert sorted(i for _, i, _ in succeeded) == sorted(c.id for c in done)
        for command in doomed:
            stored = await a.store.commands.get(command.id)
            assert stored is not None
            assert stored.state is CommandState.EXPIRED


async def test_resync_learns_commands_whose_events_were_missed(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await make_device(hub, "gap")
        # Stored without telling the hub: as if its creation event was lost in a bus outage.
        missed, _ = await hub.store.commands.insert(
            device_id="gap", name="x", parameters=None, created_by=None, now=hub.clock.now()
        )
        assert await hub.delivery.poll("gap", limit=5, max_in_flight=8, wait=0) == []
        await hub.resync()
        handed = await hub.delivery.poll("gap", limit=5, max_in_flight=8, wait=0)
        assert [c.id for c in handed] == [missed.id]


async def test_a_peer_that_dies_between_commit_and_announcement_strands_nothing(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    bus = on_redis(redis_url, node_id="survivor")
    async with started_hub(postgres_url, bus, tmp_path, node_heartbeat=0.1) as survivor:
        await make_device(survivor, "orphan")
        doomed = on_redis(redis_url, node_id="doomed")
        await doomed.start()
        await doomed.beat(0.3)  # a member of the cluster ...
        # ... that committed a command and was killed before announcing it.
        stored, _ = await survivor.store.commands.insert(
            device_id="orphan", name="x", parameters=None, created_by=None, now=survivor.clock.now()
        )
        await doomed.close()
        parked = survivor.delivery.poll("orphan", limit=5, max_in_flight=8, wait=5)
        handed = await asyncio.wait_for(parked, 6)
        assert [c.id for c in handed] == [stored.id]


async def test_a_lost_publish_is_reported_and_every_peer_catches_up(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with (
        started_hub(postgres_url, on_redis(redis_url), tmp_path, node_heartbeat=0.1) as a,
        started_hub(postgres_url, on_redis(redis_url), tmp_path, node_heartbeat=0.1) as b,
    ):
        await make_device(a, "unheard")
        # A's publishes fail (its link to Redis broke for a moment) while A stays up.
        a.bus.publish_nowait = lambda channel, payload: a.bus._publish_lost()  # type: ignore[method-assign]
        parked = asyncio.create_task(b.delivery.poll("unheard", limit=5, max_in_flight=8, wait=5))
        await asyncio.sleep(0.05)
        made = await a.commands.create(await admin_of(a), "unheard", "x")
        handed = await asyncio.wait_for(parked, 6)
        assert [c.id for c in handed] == [made.id]


async def test_a_command_finished_while_resync_reads_does_not_come_back(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The snapshot is older than what arrived during the read: the newer state wins."""
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        device = await make_device(hub, "racing")
        made = await hub.commands.create(await admin_of(hub), "racing", "x")
        read, release = asyncio.Event(), asyncio.Event()
        real_active = hub.store.commands.active

        async def slow_active() -> list[Command]:
            snapshot = await real_active()  # taken while the command is still pending
            read.set()
            await release.wait()
            return snapshot

        hub.store.commands.active = slow_active  # type: ignore[method-assign]
        resyncing = asyncio.create_task(hub.resync())
        await read.wait()
        await hub.commands.complete(device, made.id, success=True)  # lands mid-read
        release.set()
        await resyncing
        assert hub.index.get(made.id) is None
        assert await hub.delivery.poll("racing", limit=5, max_in_flight=8, wait=0) == []


class Collecting:
    """A subscription sink that keeps what it is offered."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()

    def offer(self, subscription: Any, item: Any) -> bool:
        self.items.put_nowait(item)
        return True


async def test_a_notification_reaches_only_processes_with_a_matching_subscriber(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    def node(name: str) -> RedisBus:
        return on_redis(redis_url, node_id=name)

    async with (
        started_hub(postgres_url, node("poster"), tmp_path) as poster,
        started_hub(postgres_url, node("x-watcher"), tmp_path) as x_node,
        started_hub(postgres_url, node("y-watcher"), tmp_path) as y_node,
    ):
        for device_id in ("x", "y"):
            await make_device(poster, device_id)
        on_x, on_y, wide = Collecting(), Collecting(), Collecting()
        admin = await admin_of(poster)
        await x_node.subscribe(
            admin, Topic.NOTIFICATION, EventFilter(device_ids=frozenset({"x"})), on_x
        )
        await y_node.subscribe(
            admin, Topic.NOTIFICATION, EventFilter(device_ids=frozenset({"y"})), on_y
        )
        # The process watching y does not even listen where x's notifications go.
        assert isinstance(y_node.bus, RedisBus)
        assert "notifications" not in y_node.bus.channels
        assert "notifications.x" not in y_node.bus.channels
        posted = await poster.notifications.post(admin, "x", "door")
        assert (await asyncio.wait_for(on_x.items.get(), 5)).id == posted.id

        # A wide subscriber beside a device one: each gets the notification once.
        wide_sub = await x_node.subscribe(admin, Topic.NOTIFICATION, EventFilter(), wide)
        second = await poster.notifications.post(admin, "x", "window")
        assert (await asyncio.wait_for(on_x.items.get(), 5)).id == second.id
        assert (await asyncio.wait_for(wide.items.get(), 5)).id == second.id
        await x_node.unsubscribe(wide_sub.id)
        third = await poster.notifications.post(admin, "x", "gate")
        assert (await asyncio.wait_for(on_x.items.get(), 5)).id == third.id
        await asyncio.sleep(0.2)
        assert on_x.items.empty()
        assert wide.items.empty()
        assert on_y.items.empty()


async def hand_back_scenario(hub: Hub) -> None:
    """A poller that leaves while its claim is in flight: the claim is undone (back to
    ``sent``, its execution clock stopped), and the next poll gets the command again.
    A command the device has moved on is never taken back."""
    await make_device(hub, "gone")
    admin = await admin_of(hub)
    made = await hub.commands.create(admin, "gone", "x", timeout=60)
    answers = iter([True, False])  # there before the claim, gone once it is made
    handed = await hub.delivery.poll(
        "gone", limit=5, max_in_flight=8, wait=0, present=lambda: next(answers)
    )
    assert handed == []
    stored = await hub.store.commands.get(made.id)
    assert stored is not None
    assert (stored.state, stored.delivered_at) == (CommandState.SENT, None)
    again = await hub.delivery.poll("gone", limit=5, max_in_flight=8, wait=0)
    assert [c.id for c in again] == [made.id]
    device = await hub.directory.device("gone")
    assert device is not None
    running = await hub.commands.progress(device, made.id)
    assert await hub.commands.hand_back("gone", again) == []
    current = await hub.store.commands.get(made.id)
    assert current is not None
    assert current.state is running.state


async def test_hand_back_when_the_poller_left_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as hub:
        await hand_back_scenario(hub)


async def test_hand_back_when_the_poller_left_postgres(tmp_path: Path, postgres_url: str) -> None:
    async with started_hub(postgres_url, MemoryBus(), tmp_path) as hub:
        await hand_back_scenario(hub)
