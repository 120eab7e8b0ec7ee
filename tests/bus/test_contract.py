"""The Bus contract, run against every backend (see ``tether/bus/base.py``).

Negative checks ("nothing else arrived") use a trailing marker message instead of
sleeping: messages on one channel arrive in publish order, so once the marker is in,
anything sent before it has been delivered too.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from tether.bus import Bus, MemoryBus, RedisBus, create_bus
from tether.core.errors import Unavailable

END = b"<end>"


async def test_handler_gets_channel_and_exact_bytes(bus, channel, collector):
    ch, got = channel("bytes"), collector()
    await bus.subscribe(ch, got)
    payloads = [bytes(range(256)), b"", b"\r\n*3\r\n$7\r\nmessage\r\n", "é✓".encode()]
    for payload in payloads:
        await bus.publish(ch, payload)
    assert await got.wait_for(len(payloads)) == [(ch, p) for p in payloads]


async def test_each_local_handler_gets_every_message_once(bus, channel, collector):
    ch, handlers = channel("fan"), [collector() for _ in range(3)]
    for handler in handlers:
        await bus.subscribe(ch, handler)
    await bus.publish(ch, b"one")
    await bus.publish(ch, END)
    for handler in handlers:
        await handler.wait_for(2)
        assert handler.payloads == [b"one", END]


async def test_subscribing_the_same_handler_twice_is_a_no_op(bus, backend, channel, collector):
    ch, got = channel("dup"), collector()
    await bus.subscribe(ch, got)
    await bus.subscribe(ch, got)
    await bus.publish(ch, b"once")
    await bus.publish(ch, END)
    await got.wait_for(2)
    assert got.payloads == [b"once", END]
    await bus.unsubscribe(ch, got)  # a single unsubscribe removes it entirely
    assert not await backend.upstream(bus, ch)


async def test_bound_methods_are_the_same_handler(bus, backend, channel, collector):
    class Sink:
        def __init__(self) -> None:
            self.got = collector()

        def on_message(self, ch: str, payload: bytes) -> None:
            self.got(ch, payload)

    ch, sink = channel("bound"), Sink()
    await bus.subscribe(ch, sink.on_message)
    await bus.subscribe(ch, sink.on_message)  # a new bound-method object, same handler
    await bus.publish(ch, END)
    await sink.got.wait_for(1)
    await bus.unsubscribe(ch, sink.on_message)
    assert not await backend.upstream(bus, ch)


async def test_unsubscribing_an_unknown_handler_is_a_no_op(bus, channel, collector):
    ch, got = channel("unknown"), collector()
    await bus.unsubscribe(ch, got)  # channel never seen
    await bus.subscribe(ch, got)
    await bus.unsubscribe(ch, collector())  # channel known, handler not
    await bus.publish(ch, END)
    await got.wait_for(1)


async def test_backend_subscription_follows_first_and_last_handler(
    bus, backend, channel, collector
):
    ch, first, second = channel("refcount"), collector(), collector()
    assert not await backend.upstream(bus, ch)
    await bus.subscribe(ch, first)
    assert await backend.upstream(bus, ch)
    await bus.subscribe(ch, second)
    await bus.unsubscribe(ch, first)
    assert await backend.upstream(bus, ch)  # one local handler left
    await bus.unsubscribe(ch, second)
    assert not await backend.upstream(bus, ch)


async def test_unsubscribed_handler_gets_nothing_more(bus, channel, collector):
    ch, leaving, staying = channel("leave"), collector(), collector()
    await bus.subscribe(ch, leaving)
    await bus.subscribe(ch, staying)
    await bus.publish(ch, b"both")
    await leaving.wait_for(1)
    await bus.unsubscribe(ch, leaving)
    await bus.publish(ch, END)
    await staying.wait_for(2)
    assert leaving.payloads == [b"both"]


async def test_thousand_messages_arrive_in_publish_order(bus, channel, collector):
    ch, got = channel("order"), collector()
    await bus.subscribe(ch, got)
    expected = [str(i).encode() for i in range(1000)]
    for payload in expected:
        await bus.publish(ch, payload)
    await got.wait_for(1000)
    assert got.payloads == expected


async def test_concurrent_publishes_keep_call_order(bus, channel, collector):
    ch, got = channel("gather"), collector()
    await bus.subscribe(ch, got)
    expected = [str(i).encode() for i in range(1000)]
    await asyncio.gather(*(bus.publish(ch, payload) for payload in expected))
    await got.wait_for(1000)
    assert got.payloads == expected


async def test_channels_are_independent(bus, channel, collector):
    a, b, got_a, got_b = channel("a"), channel("b"), collector(), collector()
    await bus.subscribe(a, got_a)
    await bus.subscribe(b, got_b)
    await bus.publish(a, b"for a")
    await bus.publish(b, b"for b")
    await bus.publish(a, END)
    await bus.publish(b, END)
    assert await got_a.wait_for(2) == [(a, b"for a"), (a, END)]
    assert await got_b.wait_for(2) == [(b, b"for b"), (b, END)]


async def test_handlers_run_outside_the_publisher(bus, channel):
    ch, ran_in = channel("inline"), asyncio.get_running_loop().create_future()
    await bus.subscribe(ch, lambda _ch, _p: ran_in.set_result(asyncio.current_task()))
    await bus.publish(ch, b"x")
    assert await asyncio.wait_for(ran_in, 3) is not asyncio.current_task()


async def test_publishing_to_a_channel_nobody_subscribes_is_fine(bus, channel):
    await bus.publish(channel("nobody"), b"into the void")


async def test_raising_handler_is_logged_and_isolated(bus, channel, collector, caplog):
    ch, got, calls = channel("boom"), collector(), []

    def broken(_ch: str, payload: bytes) -> None:
        calls.append(payload)
        raise RuntimeError("handler bug")

    await bus.subscribe(ch, broken)
    await bus.subscribe(ch, got)
    with caplog.at_level(logging.ERROR, logger="tether.bus"):
        await bus.publish(ch, b"1")
        await bus.publish(ch, b"2")
        await got.wait_for(2)
    assert got.payloads == [b"1", b"2"]
    assert calls == [b"1", b"2"]  # still subscribed, still called
    errors = [r for r in caplog.records if r.name == "tether.bus" and r.exc_info]
    assert len(errors) == 2
    assert ch in errors[0].getMessage()
    assert "handler bug" in str(errors[0].exc_info[1])


async def test_async_handlers_are_refused(bus, channel):
    async def handler(_ch: str, _payload: bytes) -> None:
        pass

    with pytest.raises(TypeError, match="plain functions"):
        await bus.subscribe(channel("async"), handler)


async def test_subscriptions_made_before_start_go_live_on_start(backend, channel, collector):
    bus, ch, got = backend.new(), channel("early"), collector()
    await bus.subscribe(ch, got)
    await bus.start()
    await bus.start()  # idempotent
    assert await backend.upstream(bus, ch)
    await bus.publish(ch, END)
    await got.wait_for(1)


async def test_ping_succeeds_while_open(bus):
    await bus.ping()


async def test_close_stops_delivery_and_publish(bus, channel, collector):
    ch, got = channel("close"), collector()
    await bus.subscribe(ch, got)
    for i in range(50):
        await bus.publish(ch, str(i).encode())
    await bus.close()  # some of those may still be on their way: none may arrive now
    seen_at_close = len(got.messages)
    if isinstance(bus, MemoryBus):
        assert seen_at_close == 0  # all 50 were still scheduled: close() dropped them
    with pytest.raises(Unavailable):
        await bus.publish(ch, b"late")
    with pytest.raises(Unavailable):
        await bus.ping()
    await bus.close()  # idempotent
    await bus.unsubscribe(ch, got)  # harmless after close
    await asyncio.sleep(0.05)  # proving a negative needs a little time to pass
    assert len(got.messages) == seen_at_close


async def test_node_id_is_given_or_random(backend):
    assert backend.new(node_id="node-7").node_id == "node-7"
    generated = {backend.new().node_id for _ in range(3)}
    assert len(generated) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", node_id) for node_id in generated)


async def test_create_bus_builds_each_backend():
    memory = create_bus("memory", redis_url="redis://unused", node_id="m")
    assert isinstance(memory, MemoryBus)
    assert memory.node_id == "m"
    redis_bus = create_bus("redis", redis_url="redis://127.0.0.1:6379/15", node_id=None)
    assert isinstance(redis_bus, RedisBus)
    assert isinstance(redis_bus, Bus)
    with pytest.raises(ValueError, match="unknown bus kind"):
        create_bus("nats", redis_url="", node_id=None)  # type: ignore[arg-type]


async def test_publish_nowait_keeps_call_order(bus, channel, collector):
    ch, got = channel("nowait"), collector()
    await bus.subscribe(ch, got)
    for i in range(500):
        bus.publish_nowait(ch, str(i).encode())
    received = await got.wait_for(500)
    assert [payload for _, payload in received] == [str(i).encode() for i in range(500)]


async def test_the_epoch_moves_on_a_reported_gap_only(backend):
    """Both backends: a beat reports the epoch, and a lost publish moves it."""
    bus = backend.new()
    await bus.start()
    epoch = await bus.beat(30)
    assert await bus.beat(30) == epoch
    moved = await bus.beat(30, gap=True)
    assert moved != epoch
    assert await bus.beat(30) == moved
