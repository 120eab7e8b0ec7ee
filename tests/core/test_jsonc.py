"""The codec's bounds: the 64-bit integer scan, and decoders without bounds (bus events)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tether.core import jsonc
from tether.core.errors import InvalidJson


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 9223372036854775807}',  # the largest int64, 19 digits
        b'{"n": -9223372036854775808}',
        b'{"s": "12345678901234567890123"}',  # digits in a string are text
        b'{"f": 1.2345678901234567890123}',  # a fraction is not an integer literal
        b'{"e": 12345678901234567890e2}',  # neither is a number with an exponent
        b'{"a": [1234567890, 123456789]}',  # long, but no run of 19 digits
    ],
)
def test_values_within_64_bits_or_not_integers_pass(text: bytes) -> None:
    assert jsonc.decode(text) == msgspec.json.decode(text)


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 9223372036854775808}',
        b'{"n": -9223372036854775809}',
        b"[1, 2, 100000000000000000000000000000]",
        b'{"s": "\\"", "n": 99999999999999999999}',  # after a string with an escaped quote
    ],
)
def test_integers_beyond_64_bits_are_refused(text: bytes) -> None:
    with pytest.raises(InvalidJson, match="64-bit"):
        jsonc.decode(text)


class _Event(msgspec.Struct):
    value: Any


def test_an_unbounded_decoder_skips_the_bounds_and_a_bounded_one_keeps_them() -> None:
    # Text only the server writes: what it holds was bounded when it entered.
    text = b'{"value": [99999999999999999999, "\\u0000"]}'
    bounded = jsonc.Decoder[_Event](_Event, what="event")
    unbounded = jsonc.Decoder[_Event](_Event, what="event", bounded=False)
    with pytest.raises(InvalidJson):
        bounded.decode(text)
    assert unbounded.decode(text) == _Event([99999999999999999999, "\x00"])


def test_an_unbounded_decoder_still_refuses_what_is_not_json_or_not_the_shape() -> None:
    unbounded = jsonc.Decoder[_Event](_Event, what="event", bounded=False)
    with pytest.raises(InvalidJson, match="malformed"):
        unbounded.decode(b'{"value": ')
    with pytest.raises(InvalidJson, match="invalid event"):
        unbounded.decode(b'{"other": 1}')
