"""Per-operation costs on the path of a command event that crosses processes (C1).

Timed in this process, in the same run, each beside the way it was done before (the
baseline): what the publisher pays to pack a routed publish, and what the receiver pays
to parse the pub/sub frame and decode the event. A crossing command has three events
(``pending`` one way; ``sent`` and ``succeeded`` back), so three of each per command.
"""

from __future__ import annotations

import asyncio
import re
import timeit
from dataclasses import dataclass
from datetime import UTC, datetime

import hiredis
from redis.asyncio.connection import Connection

from bench.common import table
from tether.bus._device_keys import ROUTE
from tether.bus._pipe import _Item, _pack
from tether.core import jsonc
from tether.core.model import Command, CommandState
from tether.hub import events

#: Calls per timing; the best of ``REPEAT`` timings is kept (the machine is shared).
NUMBER, REPEAT = 2000, 7


@dataclass(frozen=True)
class Op:
    name: str
    baseline_label: str
    baseline: float  # seconds per call
    tether: float


def _event() -> bytes:
    now = datetime.now(UTC)
    command = Command(
        id=123456,
        device_id="scale-1",
        name="echo",
        parameters={"i": 1234},
        state=CommandState.SUCCEEDED,
        result={"i": 1234},
        created_by=1,
        created_at=now,
        updated_at=now,
        sent_at=now,
        delivered_at=now,
        completed_at=now,
        expires_at=now,
        timeout=30.0,
    )
    ref = events.DeviceRef("scale-1", 1, 1, 1, "native")
    return events.encode(events.CommandChanged(command, ref))


def _best(call: object) -> float:
    return min(timeit.repeat(call, number=NUMBER, repeat=REPEAT)) / NUMBER  # type: ignore[arg-type]


def measure() -> list[Op]:
    payload = _event()
    args = (
        "EVAL",
        ROUTE,
        1,
        "bench:route:scale-1",
        1733400000000,
        "bench.node.",
        "node-a",
        b"0123456789abcdef|" + payload,
        "",
        "bench.commands",
        "bench.commands.dialect.native",
    )
    loop = asyncio.new_event_loop()
    try:
        item = _Item(args, loop.create_future())
        redis_py = Connection()
        pack = Op(
            "pack one routed publish (EVAL, 11 arguments)",
            "redis-py's packer",
            _best(lambda: redis_py.pack_commands([args])),
            _best(lambda: _pack([item])),
        )
    finally:
        loop.close()
    frame = hiredis.pack_command(("message", "bench.node.node-a", payload))  # type: ignore[arg-type]
    unbounded = jsonc.Decoder[events.Event](events.Event, what="event", bounded=False)

    def bounded_as_before(raw: bytes) -> None:
        unbounded.decode(raw)
        jsonc._check_depth(raw, jsonc.MAX_DEPTH)
        jsonc._check_escapes(raw)
        _old_integer_scan(raw)

    def parse_and_decode(decode: object) -> None:
        reader = hiredis.Reader()
        reader.feed(frame)
        decode(reader.gets()[2])  # type: ignore[operator,index]

    receive = Op(
        "parse a pub/sub frame and decode the command event",
        "the same decode with the input bounds, as before",
        _best(lambda: parse_and_decode(bounded_as_before)),
        _best(lambda: parse_and_decode(events.decode)),
    )
    scan = Op(
        f"64-bit integer bound on {len(payload)} bytes of JSON (every API body and frame)",
        "a regex for 19 digits",
        _best(lambda: _old_integer_scan(payload)),
        _best(lambda: jsonc._check_integers(payload)),
    )
    return [pack, receive, scan]


_OLD_LONG_DIGITS = re.compile(rb"\d{19}")


def _old_integer_scan(raw: bytes) -> bool:
    """The pre-filter ``jsonc`` used before (kept here as the baseline)."""
    return _OLD_LONG_DIGITS.search(raw) is not None


def render(ops: list[Op]) -> str:
    rows = [
        [
            op.name,
            f"{op.baseline * 1e6:,.1f} ({op.baseline_label})",
            f"{op.tether * 1e6:,.1f}",
            f"{op.tether / op.baseline:.2f}x",
        ]
        for op in ops
    ]
    return table(["operation", "before (us)", "now (us)", "ratio"], rows)
