"""The command pipe packs RESP with hiredis: byte for byte what redis-py would send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.connection import Connection

from tether.bus._device_keys import MARK, ROUTE
from tether.bus._pipe import _Item, _pack

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("PUBLISH", "ns.commands", b'{"type":"command"}'),
    ("PUBLISH", "ns.node.a", "text é"),  # non-ASCII text as UTF-8
    ("EVAL", ROUTE, 1, "ns:route:d", 1733400000000, "ns.node.", "a", b"\x00\xffpayload", "", "x"),
    ("EVAL", MARK, 1, "ns:route:d", "h:a", 1733400000000, 15000),
    ("HDEL", "ns:route:d", "l:a"),
    ("SET", "k", 1.5),
    ("PUBLISH", "big", b"x" * 100_000),  # beyond redis-py's buffer cutoff
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: str(args[0]))
async def test_a_command_packs_as_redis_py_packs_it(args: tuple[Any, ...]) -> None:
    future = asyncio.get_running_loop().create_future()
    expected = b"".join(bytes(chunk) for chunk in Connection().pack_commands([args]))
    assert _pack([_Item(args, future)]) == expected


async def test_a_batch_is_its_commands_in_order() -> None:
    loop = asyncio.get_running_loop()
    items = [_Item(args, loop.create_future()) for args in COMMANDS]
    packed = b"".join(bytes(chunk) for chunk in Connection().pack_commands(COMMANDS))
    assert _pack(items) == packed
