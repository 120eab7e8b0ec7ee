"""Directed routing of command events between hubs on PostgreSQL and a real Redis.

Each test runs its hubs in a cluster of its own (a fresh name), so the members, and with
them the deadline owners, are exactly the hubs the test started.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import CLUSTER_NAME
from tests.hub.conftest import admin_of, started_hub
from tests.hub.test_service import Collecting, Session, make_device

from tether.bus import RedisBus
from tether.core.clock import Clock
from tether.core.filters import EventFilter
from tether.core.lifecycle import CommandState
from tether.core.model import Command
from tether.hub import events
from tether.hub.service import Hub
from tether.hub.subscriptions import Topic


@asynccontextmanager
async def cluster(
    postgres_url: str, redis_url: str, tmp_path: Path, *names: str, **settings: Any
) -> AsyncIterator[list[Hub]]:
    """Hubs named ``names`` in a cluster of their own, each aware of all the others."""
    namespace = f"{CLUSTER_NAME}-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(
                started_hub(
                    postgres_url,
                    RedisBus(redis_url, node_id=name, namespace=namespace),
                    tmp_path,
                    **settings,
                )
            )
            for name in names
        ]
        for hub in hubs:  # each learns of the joins after its own
            await hub.reconciler.beat()
        yield hubs


def device_owned_by(hubs: list[Hub], owner: Hub, prefix: str) -> str:
    """A device id whose deadline owner, by every hub's view, is ``owner``."""
    for i in range(1000):
        device_id = f"{prefix}-{i}"
        if all(hub.routing.owner(device_id) == owner.node_id for hub in hubs):
            return device_id
    raise AssertionError("no device id hashes to that owner")


class Overheard:
    """Every command event one hub's bus hands it, on any channel it listens on."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, int]] = []

    async def attach(self, hub: Hub) -> None:
        assert isinstance(hub.bus, RedisBus)
        for channel in hub.bus.channels:
            await hub.bus.subscribe(channel, self)

    def __call__(self, channel: str, payload: bytes) -> None:
        event = events.decode(payload.partition(b"|")[2])
        if isinstance(event, events.CommandChanged):
            self.commands.append((channel, event.command.id))


async def test_a_command_reaches_its_holder_and_subscriber_and_no_bystander(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(
        postgres_url, redis_url, tmp_path, "creator", "holder", "watcher", "bystander"
    ) as hubs:
        creator, holder, watcher, bystander = hubs
        # Even as the device's owner, the bystander hears nothing while a process holds it.
        device_id = device_owned_by(hubs, bystander, "routed")
        device = await make_device(creator, device_id)
        admin = await admin_of(creator)
        session = Session(device_id)
        holder.delivery.attach(session)
        # A subscriber naming the device, on a third process.
        updates = Collecting()
        await watcher.subscribe(
            admin, Topic.COMMAND_UPDATE, EventFilter(device_ids=frozenset({device_id})), updates
        )
        heard = Overheard()
        await heard.attach(bystander)
        await asyncio.sleep(0.3)  # the holder has recorded its hold and read the queue

        made = await creator.commands.create(admin, device_id, "open")
        pushed = await asyncio.wait_for(session.received.get(), 5)
        assert pushed.id == made.id
        done = await holder.commands.complete(device, made.id, success=True)
        assert done.state is CommandState.SUCCEEDED
        states = []
        while CommandState.SUCCEEDED not in states:
            item = await asyncio.wait_for(updates.items.get(), 5)
            assert isinstance(item, Command)
            assert item.id == made.id
            states.append(item.state)

        await asyncio.sleep(0.3)
        # The bystander neither holds the device nor has a subscriber for it: it did not
        # even receive the events, on any channel it listens on.
        assert heard.commands == []
        assert bystander.index.get(made.id) is None
        assert not bystander.sweeper  # the holder kept the deadlines, not the owner
        assert events.COMMANDS not in bystander.bus.channels  # type: ignore[attr-defined]
        # The watcher delivers nothing, so it keeps nothing in its index either.
        assert watcher.index.get(made.id) is None


async def test_subscribers_without_a_device_list_hear_the_topic_channels(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(postgres_url, redis_url, tmp_path, "creator", "wide", "native") as hubs:
        creator, wide_node, dialect_node = hubs
        await make_device(creator, "anywhere")
        admin = await admin_of(creator)
        everything, natives, others = Collecting(), Collecting(), Collecting()
        wide = await wide_node.subscribe(admin, Topic.COMMAND, EventFilter(), everything)
        # Only native devices, besides a subscription naming the same device: one copy.
        await dialect_node.subscribe(
            admin, Topic.COMMAND, EventFilter(dialects=frozenset({"native"})), natives
        )
        await dialect_node.subscribe(
            admin, Topic.COMMAND, EventFilter(device_ids=frozenset({"anywhere"})), others
        )
        made = await creator.commands.create(admin, "anywhere", "x")
        for sink in (everything, natives, others):
            assert (await asyncio.wait_for(sink.items.get(), 5)).id == made.id
        await asyncio.sleep(0.3)
        assert all(sink.items.empty() for sink in (everything, natives, others))
        # Unsubscribed: the wide channel is dropped.
        await wide_node.unsubscribe(wide.id)
        assert events.COMMANDS not in wide_node.bus.channels  # type: ignore[attr-defined]


async def test_a_device_moving_between_nodes_gets_its_pending_commands(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(postgres_url, redis_url, tmp_path, "a", "b", "app") as hubs:
        a, b, app = hubs
        # Neither a nor b owns it: what they know of it comes from holding it.
        device_id = device_owned_by(hubs, app, "mover")
        device = await make_device(app, device_id)
        admin = await admin_of(app)
        on_a = Session(device_id, max_in_flight=1)
        a.delivery.attach(on_a)
        await asyncio.sleep(0.3)
        first = await app.commands.create(admin, device_id, "first")
        assert (await asyncio.wait_for(on_a.received.get(), 5)).id == first.id
        # Queued behind the unacknowledged first one (in-flight limit 1).
        second = await app.commands.create(admin, device_id, "second")
        await asyncio.sleep(0.2)
        assert on_a.received.empty()
        a.delivery.detach(on_a)  # the device goes away ...
        await asyncio.sleep(0.3)
        assert a.index.get(second.id) is None  # ... and a forgets its queue
        third = await app.commands.create(admin, device_id, "third")  # while offline

        on_b = Session(device_id, max_in_flight=8)
        b.delivery.attach(on_b)  # ... and comes back on b
        got = [await asyncio.wait_for(on_b.received.get(), 5) for _ in range(3)]
        assert [c.id for c in got] == [first.id, second.id, third.id]  # the first re-sent
        for command in got:
            await b.commands.complete(device, command.id, success=True)
        fourth = await app.commands.create(admin, device_id, "fourth")
        assert (await asyncio.wait_for(on_b.received.get(), 5)).id == fourth.id

        # A polling device's first poll on another node reads its queue too.
        b.delivery.detach(on_b)
        fifth = await app.commands.create(admin, device_id, "fifth")
        handed = await a.delivery.poll(device_id, limit=5, max_in_flight=8, wait=0)
        assert [c.id for c in handed] == [fourth.id, fifth.id]


class Ahead:
    """A node's clock running ``lead`` ahead of the others' (a DeviceHive burst, NTP)."""

    def __init__(self, inner: Clock, lead: timedelta) -> None:
        self._inner, self._lead = inner, lead

    def now(self) -> datetime:
        return self._inner.now() + self._lead

    def monotonic(self) -> float:
        return self._inner.monotonic()


async def test_a_creator_whose_clock_runs_ahead_does_not_stall_the_holder(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    # The holder stamps "sent" and the device's results with its own clock, behind the
    # creation stamp: every command must still flow, well past the in-flight limit.
    async with cluster(postgres_url, redis_url, tmp_path, "holder", "app") as hubs:
        holder, app = hubs
        app.clock = Ahead(app.clock, timedelta(seconds=2))
        device_id = device_owned_by(hubs, app, "skewed")
        device = await make_device(app, device_id)
        admin = await admin_of(app)
        session = Session(device_id, max_in_flight=4)
        holder.delivery.attach(session)
        await asyncio.sleep(0.3)
        for i in range(12):
            made = await app.commands.create(admin, device_id, f"c{i}")
            pushed = await asyncio.wait_for(session.received.get(), 5)
            assert pushed.id == made.id
            await holder.commands.complete(device, made.id, success=True)
        assert holder.index.in_flight(device_id) == 0
        assert not holder.index.has_deliverable(device_id)


async def test_deadlines_fire_once_on_the_owner_and_move_when_it_leaves(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(
        postgres_url, redis_url, tmp_path, "stays", "goes", node_heartbeat=0.1
    ) as hubs:
        stays, goes = hubs
        device_id = device_owned_by(hubs, goes, "timed")
        await make_device(stays, device_id)
        admin = await admin_of(stays)
        made = await stays.commands.create(admin, device_id, "x", lifetime=1.5)
        await asyncio.sleep(0.2)
        assert len(goes.sweeper) == 1
        assert len(stays.sweeper) == 0
        # It stops firing deadlines and leaves: its devices' deadlines move to `stays`.
        await goes.sweeper.stop()
        await goes.reconciler.leave()
        final = await stays.commands.wait(made.id, 5)
        assert final is not None
        assert final.state is CommandState.EXPIRED


async def test_the_holder_keeps_deadlines_and_hands_them_to_the_owner_when_it_goes(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(postgres_url, redis_url, tmp_path, "holder", "owner", "app") as hubs:
        holder, owner, app = hubs
        device_id = device_owned_by(hubs, owner, "handed")
        await make_device(app, device_id)
        admin = await admin_of(app)
        session = Session(device_id, max_in_flight=1)
        holder.delivery.attach(session)
        await asyncio.sleep(0.3)
        first = await app.commands.create(admin, device_id, "first", lifetime=60)
        assert (await asyncio.wait_for(session.received.get(), 5)).id == first.id
        # Queued behind the first (in-flight limit 1); its delivery deadline is short.
        queued = await app.commands.create(admin, device_id, "queued", lifetime=2)
        await asyncio.sleep(0.3)
        # The holder keeps both deadlines; the owner was told nothing, the creator let go.
        assert len(holder.sweeper) == 2
        assert len(owner.sweeper) == 0
        assert owner.index.get(queued.id) is None
        assert len(app.sweeper) == 0
        holder.delivery.detach(session)  # the device goes away: the owner takes over
        await asyncio.sleep(0.5)
        assert holder.index.get(queued.id) is None
        assert len(holder.sweeper) == 0
        assert owner.index.get(queued.id) is not None
        final = await app.commands.wait(queued.id, 5)
        assert final is not None
        assert final.state is CommandState.EXPIRED


async def test_an_owner_that_creates_for_a_device_held_elsewhere_lets_it_go(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    async with cluster(postgres_url, redis_url, tmp_path, "holder", "creator") as hubs:
        holder, creator = hubs
        device_id = device_owned_by(hubs, creator, "let-go")
        await make_device(creator, device_id)
        admin = await admin_of(creator)
        made = await creator.commands.create(admin, device_id, "offline")
        assert creator.index.get(made.id) is not None  # nobody holds it: the owner keeps it
        session = Session(device_id)
        holder.delivery.attach(session)
        assert (await asyncio.wait_for(session.received.get(), 5)).id == made.id
        later = await creator.commands.create(admin, device_id, "online")
        assert (await asyncio.wait_for(session.received.get(), 5)).id == later.id
        await asyncio.sleep(0.2)
        # Told by its own publish that the device is held: the holder keeps it all now.
        assert creator.index.get(later.id) is None
        assert creator.index.get(made.id) is None
        assert len(creator.sweeper) == 0
        assert len(holder.sweeper) == 2
