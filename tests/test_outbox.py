"""The outbox of an idle WebSocket holds nothing: no queue, no writer task (P1).

20,000 idle devices per process is a design goal; a queue and a parked writer task per
socket were about 4.5 KiB of each connection's memory. The writer now runs only while
frames wait, and frames still leave in order, with the close frame last.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiohttp import WSMsgType, web

from tether.outbox import Outbox


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: tuple[int, bytes] | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        assert opcode is WSMsgType.TEXT
        await self.gate.wait()
        self.sent.append(data)

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed = (code, message)


class FakeRequest:
    transport = None


def outbox(size: int = 4) -> tuple[Outbox, FakeSocket]:
    ws = FakeSocket()
    box = Outbox(cast(web.WebSocketResponse, ws), cast(Any, FakeRequest()), size, close_timeout=5)
    return box, ws


def holds_nothing(box: Outbox) -> bool:
    return box._queue is None and box._writer is None


async def test_an_idle_outbox_holds_no_queue_and_no_running_task() -> None:
    box, ws = outbox()
    assert holds_nothing(box)
    assert box.send("a")
    assert box.send(b"b")
    assert not holds_nothing(box)
    await asyncio.sleep(0.01)
    assert ws.sent == [b"a", b"b"]
    assert holds_nothing(box)
    assert box.send("c")  # a later frame starts a writer again
    await asyncio.sleep(0.01)
    assert ws.sent == [b"a", b"b", b"c"]
    await box.finish()


async def test_frames_keep_their_order_and_the_close_frame_comes_last() -> None:
    box, ws = outbox(size=8)
    ws.gate.clear()  # the peer is slow: frames pile up behind the first
    for i in range(5):
        assert box.send(str(i))
    box.close(4000, "bye")
    assert not box.send("late")
    ws.gate.set()
    await asyncio.sleep(0.01)
    assert ws.sent == [b"0", b"1", b"2", b"3", b"4"]
    assert ws.closed == (4000, b"bye")
    await box.finish()


async def test_a_full_queue_cuts_the_peer_and_a_paced_sender_waits_for_room() -> None:
    box, ws = outbox(size=2)
    ws.gate.clear()
    assert box.send("0")
    assert box.send("1")
    await asyncio.sleep(0)  # the writer took "0" and waits on the peer
    assert box.send("2")
    paced = asyncio.create_task(box.put("3"))
    await asyncio.sleep(0.01)
    assert not paced.done()  # no room: it waits rather than being cut
    ws.gate.set()
    assert await asyncio.wait_for(paced, 1)
    await asyncio.sleep(0.01)
    assert ws.sent == [b"0", b"1", b"2", b"3"]

    ws.gate.clear()
    assert box.send("4")
    assert box.send("5")
    await asyncio.sleep(0)  # the writer took "4"
    assert box.send("x")
    assert not box.send("overflow")  # full: a slow consumer is cut
    assert box.closing
    ws.gate.set()
    await asyncio.sleep(0.01)
    assert ws.closed is not None
    assert ws.closed[0] == 1008
    await box.finish()
