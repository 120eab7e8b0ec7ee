"""Redis-only behaviour: two processes ("nodes") on one Redis, and surviving a drop.

Each test builds two ``RedisBus`` instances, which is exactly what two worker processes
are to Redis: separate connections with separate node ids.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import CLUSTER_NAME
from tether.bus import RedisBus
from tether.core.errors import Unavailable

pytestmark = pytest.mark.redis

END = b"<end>"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client for looking at (and breaking) the bus's connections."""
    async with aioredis.from_url(redis_url) as client:
        yield client


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[RedisBus]]]:
    made: list[RedisBus] = []

    async def node(**kwargs: object) -> RedisBus:
        bus = RedisBus(redis_url, **{"namespace": CLUSTER_NAME, **kwargs})  # type: ignore[arg-type]
        made.append(bus)
        await bus.start()
        return bus

    yield node
    for bus in made:
        await bus.close()


async def numsub(client: aioredis.Redis, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(f"{CLUSTER_NAME}.{channel}")
    return int(count)


async def subscriber_id(client: aioredis.Redis, bus: RedisBus) -> int | None:
    """The server-side client id of ``bus``'s subscriber connection (None if it has none).

    The bus names its connections after its node, which is how we find the right one.
    (Not ``CLIENT LIST TYPE pubsub``: with no channel subscribed it is a normal client.)
    """
    name = f"tether-bus-sub:{bus.node_id}"
    ids = [int(c["id"]) for c in await client.client_list() if c["name"] == name]
    assert len(ids) <= 1, ids
    return ids[0] if ids else None


async def kill_subscriber(client: aioredis.Redis, bus: RedisBus) -> int:
    """Close ``bus``'s subscriber connection from the server side; return its old id.

    ``CLIENT KILL ID`` rather than ``CLIENT KILL TYPE pubsub``: the latter would also cut
    the subscribers of any other test run sharing this Redis.
    """
    old_id = await subscriber_id(client, bus)
    assert old_id is not None
    assert await client.execute_command("CLIENT KILL", "ID", old_id) == 1
    return old_id


async def resubscribed(client: aioredis.Redis, bus: RedisBus, old_id: int, channel: str) -> bool:
    """Has ``bus`` come back on a new connection that is subscribed to ``channel``?"""
    new_id = await subscriber_id(client, bus)
    return new_id not in (None, old_id) and await numsub(client, channel) == 1


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 3.0) -> None:
    """Poll a server-side condition (there is no event to wait on for those)."""
    async with asyncio.timeout(timeout):
        while not await check():  # the condition lives in Redis: poll it
            await asyncio.sleep(0.005)


async def test_message_from_one_node_reaches_the_other(nodes, channel, collector):
    a, b = await nodes(node_id="a"), await nodes(node_id="b")
    ch, got_a, got_b = channel("x"), collector(), collector()
    await a.subscribe(ch, got_a)
    await b.subscribe(ch, got_b)
    await b.publish(ch, b"\x00from b\xff")
    assert await got_a.wait_for(1) == [(ch, b"\x00from b\xff")]
    assert await got_b.wait_for(1) == [(ch, b"\x00from b\xff")]  # the publisher's own too


async def test_cross_node_order_under_concurrent_publishing(nodes, channel, collector):
    a, b = await nodes(), await nodes()
    ch, got = channel("order"), collector()
    await a.subscribe(ch, got)
    expected = [i.to_bytes(4, "big") for i in range(1000)]
    await asyncio.gather(*(b.publish(ch, payload) for payload in expected))
    await got.wait_for(1000)
    assert got.payloads == expected


async def test_last_unsubscribe_removes_the_redis_subscription(nodes, client, channel, collector):
    a, b = await nodes(), await nodes()
    ch, first, second, other_node = channel("numsub"), collector(), collector(), collector()
    await a.subscribe(ch, first)
    await a.subscribe(ch, second)
    await b.subscribe(ch, other_node)
    assert await numsub(client, ch) == 2  # one per node, however many local handlers
    await a.unsubscribe(ch, first)
    assert await numsub(client, ch) == 2
    await a.unsubscribe(ch, second)
    assert await numsub(client, ch) == 1  # only b's is left
    await b.publish(ch, END)
    await other_node.wait_for(1)
    assert first.messages == second.messages == []


async def test_reconnects_and_resubscribes_after_the_connection_is_killed(
    nodes, client, channel, collector, caplog
):
    a, b = await nodes(), await nodes()
    kept, dropped, got, gone = channel("kept"), channel("dropped"), collector(), collector()
    await a.subscribe(kept, got)
    await a.subscribe(dropped, gone)
    await a.unsubscribe(dropped, gone)
    await b.publish(kept, b"before")
    await got.wait_for(1)

    with caplog.at_level(logging.DEBUG, logger="tether.bus"):
        old_id = await kill_subscriber(client, a)
        await until(lambda: resubscribed(client, a, old_id, kept))
        await b.publish(kept, b"after")
        await got.wait_for(2)

    assert got.payloads == [b"before", b"after"]
    assert await numsub(client, dropped) == 0  # not re-subscribed: no local handler
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "lost the Redis subscriber connection" in warnings[0].getMessage()
    await a.ping()


async def test_subscription_changes_during_an_outage_are_applied_on_reconnect(
    nodes, client, channel, collector
):
    a, b = await nodes(), await nodes()
    old, new, got_old, got_new = channel("old"), channel("new"), collector(), collector()
    await a.subscribe(old, got_old)
    await kill_subscriber(client, a)
    # Whether or not the reader has noticed yet, the end state must be right.
    await a.unsubscribe(old, got_old)
    await a.subscribe(new, got_new)
    await until(lambda: numsub_is(client, new, 1))
    assert await numsub(client, old) == 0
    await b.publish(new, END)
    await got_new.wait_for(1)


async def test_subscription_churn_across_kills_ends_in_the_right_state(
    nodes, client, channel, collector
):
    """Random concurrent subscribe/unsubscribe while the link dies: Redis ends up
    subscribed to exactly the channels that have local handlers."""
    a = await nodes()
    rng = random.Random(7)
    channels = [channel(f"churn{i}") for i in range(6)]
    handlers = [collector() for _ in range(3)]

    async def churn() -> None:
        for _ in range(40):
            ch, handler = rng.choice(channels), rng.choice(handlers)
            if rng.random() < 0.55:
                await a.subscribe(ch, handler)
            else:
                await a.unsubscribe(ch, handler)
            await asyncio.sleep(0.001)  # spread the churn over the kills

    async def has_subscriber() -> bool:
        return await subscriber_id(client, a) is not None

    async def killer() -> None:
        for _ in range(2):
            await asyncio.sleep(0.01)
            await until(has_subscriber)
            await kill_subscriber(client, a)

    await asyncio.gather(churn(), churn(), churn(), killer())

    async def server_matches() -> bool:
        counts = dict(await client.pubsub_numsub(*(f"{CLUSTER_NAME}.{ch}" for ch in channels)))
        return all(
            bool(counts[f"{CLUSTER_NAME}.{ch}".encode()]) == (ch in a.channels) for ch in channels
        )

    await until(server_matches)


async def test_a_failing_reconnect_is_retried_with_backoff_and_logged_once(
    nodes, client, channel, collector, caplog, monkeypatch
):
    a, b = await nodes(backoff_initial=0.01, backoff_max=0.04), await nodes()
    ch, got = channel("retry"), collector()
    await a.subscribe(ch, got)

    real_open_link, redis_is_back, failures = a._open_link, asyncio.Event(), []

    async def open_link_while_redis_is_down() -> list[asyncio.Future[None]]:
        if not redis_is_back.is_set():
            failures.append(1)
            raise RedisConnectionError("simulated: Redis is down")
        return await real_open_link()

    monkeypatch.setattr(a, "_open_link", open_link_while_redis_is_down)
    with caplog.at_level(logging.DEBUG, logger="tether.bus"):
        old_id = await kill_subscriber(client, a)
        with pytest.raises(Unavailable, match="subscriber connection is down"):
            await until(lambda: ping_ok(a))  # ping tells the truth during the outage
        await until(lambda: has_failed(failures, 3))  # 3 attempts, spaced by the backoff
        redis_is_back.set()
        await until(lambda: resubscribed(client, a, old_id, ch))
        await b.publish(ch, END)
        await got.wait_for(1)

    messages = [r.getMessage() for r in caplog.records]
    assert sum("reconnect attempt" in m for m in messages) == len(failures)  # DEBUG
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # one per outage, not one per attempt
    assert sum("restored" in m for m in messages) == 1
    await a.ping()


async def test_a_flapping_link_backs_off_and_is_logged_once(
    nodes, client, channel, collector, caplog, monkeypatch
):
    a, b = await nodes(backoff_initial=0.02, backoff_max=0.5), await nodes()
    ch, got = channel("flap"), collector()
    await a.subscribe(ch, got)

    real_pump, drops = a._pump, []

    async def pump_that_drops_at_once() -> None:  # e.g. Redis refusing our SUBSCRIBE
        if len(drops) < 3:
            drops.append(asyncio.get_running_loop().time())
            raise RedisConnectionError("simulated: dropped right after connecting")
        await real_pump()

    monkeypatch.setattr(a, "_pump", pump_that_drops_at_once)
    with caplog.at_level(logging.INFO, logger="tether.bus"):
        old_id = await kill_subscriber(client, a)  # the running pump fails; next ones flap
        await until(lambda: has_failed(drops, 3))
        await until(lambda: resubscribed(client, a, old_id, ch))
        await b.publish(ch, END)
        await got.wait_for(1)

    # Relapses wait 0.02 s, then 0.04 s (each jittered down to no less than half).
    gaps = [later - earlier for earlier, later in itertools.pairwise(drops)]
    assert gaps[0] >= 0.01 * 0.95
    assert gaps[1] >= 0.02 * 0.95
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # one outage, however often it relapsed
    assert sum("restored" in r.getMessage() for r in caplog.records) == 1


async def test_a_silent_link_is_detected_by_the_health_check(
    nodes, client, channel, collector, caplog
):
    a, b = await nodes(health_check_interval=0.02), await nodes()
    ch, got = channel("silent"), collector()
    await a.subscribe(ch, got)
    old_id = await subscriber_id(client, a)
    assert old_id is not None
    assert a._conn is not None

    # A half-open socket: our PINGs vanish and nothing ever comes back.
    async def black_hole(*args: object, **kwargs: object) -> None:
        pass

    a._conn.send_command = black_hole  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="tether.bus"):
        await until(lambda: resubscribed(client, a, old_id, ch))
    assert "no answer to PING" in caplog.records[0].getMessage()
    await b.publish(ch, END)
    await got.wait_for(1)


async def test_health_check_ping_keeps_an_idle_link_up(nodes, client, channel, collector, caplog):
    a, b = await nodes(health_check_interval=0.03), await nodes()
    ch, got = channel("idle"), collector()
    await a.subscribe(ch, got)
    with caplog.at_level(logging.WARNING, logger="tether.bus"):
        await asyncio.sleep(0.2)  # several silent intervals, each answered by a PONG
        await b.publish(ch, END)
        await got.wait_for(1)
    assert caplog.records == []  # no reconnect
    name = f"tether-bus-sub:{a.node_id}"
    (sub,) = [c for c in await client.client_list(_type="pubsub") if c["name"] == name]
    assert sub["cmd"] == "ping"  # the health check did run


async def test_unreachable_redis_is_unavailable(channel, collector):
    bus = RedisBus("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(Unavailable):
            await bus.start()
        with pytest.raises(Unavailable):
            await bus.publish(channel("x"), b"x")
        with pytest.raises(Unavailable):
            await bus.ping()
        await bus.subscribe(channel("x"), collector())  # recorded for a later start()
    finally:
        await bus.close()


async def test_connections_are_named_after_the_node(nodes, client):
    bus = await nodes(node_id="node 7/\u03b1")
    await bus.ping()
    names = {c["name"] for c in await client.client_list()}
    assert {"tether-bus-sub:node_7__", "tether-bus-pub:node_7__"} <= names


async def numsub_is(client: aioredis.Redis, channel: str, count: int) -> bool:
    return await numsub(client, channel) == count


async def has_failed(failures: list[int], times: int) -> bool:
    return len(failures) >= times


async def ping_ok(bus: RedisBus) -> bool:
    await bus.ping()
    return False  # keep polling until ping raises


async def test_resume_callbacks_run_after_an_outage(nodes, client, channel, collector):
    bus = await nodes(node_id="resuming")
    await bus.subscribe(channel("x"), collector())
    resumed = asyncio.Event()
    bus.on_resume(resumed.set)
    await asyncio.sleep(0.05)
    assert not resumed.is_set()  # nothing to resume from yet
    await kill_subscriber(client, bus)
    await asyncio.wait_for(resumed.wait(), 5)


async def test_a_killed_publisher_connection_costs_nothing_queued(
    nodes, client, channel, collector
):
    """The publisher's socket dies while idle (Redis restarted, an idle timeout): what is
    published next goes out on a fresh connection, in order, with nothing lost."""
    a, b = await nodes(), await nodes()
    ch, got = channel("pub"), collector()
    await b.subscribe(ch, got)
    await a.publish(ch, b"before")
    await got.wait_for(1)
    name = f"tether-bus-pub:{a.node_id}"
    (old,) = [int(c["id"]) for c in await client.client_list() if c["name"] == name]
    assert await client.execute_command("CLIENT KILL", "ID", old) == 1

    await asyncio.gather(*(a.publish(ch, b"after-%d" % i) for i in range(50)))
    await got.wait_for(51)
    assert got.payloads == [b"before", *(b"after-%d" % i for i in range(50))]
    (new,) = [int(c["id"]) for c in await client.client_list() if c["name"] == name]
    assert new != old


async def test_replies_match_their_commands_with_many_in_flight(nodes, client):
    """Pipelined without waiting between batches: each caller still gets its own reply."""
    a = await nodes()
    devices = [f"pipe-{random.randrange(10**9)}-{i}" for i in range(300)]
    try:
        for i, device in enumerate(devices):
            if i % 2:
                await a.hold([device], 30)
        held = await asyncio.gather(*(a.holders([device]) for device in devices))
        assert [bool(h) for h in held] == [bool(i % 2) for i in range(300)]
        assert all(h[d] == {a.node_id} for d, h in zip(devices, held, strict=True) if h)
    finally:
        await client.delete(*(f"{CLUSTER_NAME}:route:{d}" for d in devices))


# --- cluster names ----------------------------------------------------------------------


async def test_clusters_with_different_names_on_one_redis_never_hear_each_other(
    nodes, client, collector
):
    """Pub/sub ignores the database index: only the name keeps two clusters apart."""
    ours, theirs = (
        await nodes(node_id="n1"),
        await nodes(node_id="n1", namespace=f"{CLUSTER_NAME}-b"),
    )
    got_ours, got_theirs = collector(), collector()
    for bus, got in ((ours, got_ours), (theirs, got_theirs)):
        await bus.subscribe("commands", got)
        await bus.subscribe("node.n1", got)
    await theirs.publish("commands", b"theirs")
    await theirs.publish("node.n1", b"theirs, directed")
    await ours.publish("commands", b"ours")
    assert await got_ours.wait_for(1) == [("commands", b"ours")]
    assert await got_theirs.wait_for(2) == [
        ("commands", b"theirs"),
        ("node.n1", b"theirs, directed"),
    ]
    # The keys too: holders and membership.
    await theirs.hold(["shared-device"], 30)
    assert await ours.holders(["shared-device"]) == {}
    assert await theirs.holders(["shared-device"]) == {"shared-device": {"n1"}}
    epoch = await ours.beat(30)
    await theirs.beat(30, gap=True)
    assert await ours.beat(30) == epoch
    assert all(
        key.decode().startswith((f"{CLUSTER_NAME}:", f"{CLUSTER_NAME}-b:"))
        for key in await client.keys("*")
    )


# --- membership -------------------------------------------------------------------------


async def test_the_epoch_moves_when_a_node_joins(nodes):
    a, b = await nodes(node_id="first"), await nodes(node_id="second")
    epoch = await a.beat(30)
    assert await a.beat(30) == epoch
    joined = await b.beat(30)
    assert joined != epoch  # who owns which device's deadlines may have changed
    assert await a.beat(30) == joined
    assert await a.members() == {"first", "second"}


async def test_the_epoch_moves_when_a_member_stops_beating(nodes):
    a, b = await nodes(node_id="alive"), await nodes(node_id="doomed")
    await a.beat(30)
    epoch = await b.beat(0.2)
    assert await a.beat(30) == epoch  # b is a member in good standing
    await asyncio.sleep(0.3)  # b "died": it beats no more
    moved = await a.beat(30)
    assert moved != epoch
    assert await a.beat(30) == moved  # noticed once: b is no longer a member
    assert await a.members() == {"alive"}


async def test_the_epoch_moves_when_a_node_restarts_under_the_same_id(nodes):
    a, first = await nodes(node_id="steady"), await nodes(node_id="worker-0")
    await a.beat(30)
    epoch = await first.beat(30)
    assert await a.beat(30) == epoch
    second = await nodes(node_id="worker-0")  # a new process, before the old one expired
    assert await second.beat(30) != epoch


async def test_the_epoch_moves_on_a_reported_gap_and_on_leaving(nodes):
    a, b = await nodes(node_id="a"), await nodes(node_id="b")
    await a.beat(30)
    epoch = await b.beat(30)
    await b.beat(30, gap=True)
    after_gap = await a.beat(30)
    assert after_gap != epoch
    await b.leave()
    assert await a.beat(30) != after_gap


async def test_a_failed_publish_is_reported(nodes):
    """publish_nowait answers nobody, so its failure is reported to the lost-callbacks."""
    bus = await nodes()
    lost = asyncio.Event()
    bus.on_publish_lost(lost.set)
    bus._publisher.submit("NOT-A-COMMAND").add_done_callback(bus._publish_done)
    await asyncio.wait_for(lost.wait(), 5)
