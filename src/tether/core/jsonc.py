"""The one JSON codec: every body, frame, bus event and stored document goes through it.

``msgspec.json`` does the work; this module adds the bounds a server facing the open
network needs, so no API has to remember them:

* **Depth**: nesting deeper than :data:`MAX_DEPTH` is refused. Without a bound, a 2 KB
  body of 1,000 brackets exhausts the interpreter's recursion limit in the decoder, or
  later in whatever walks or encodes the value.
* **Strings no store can hold**: ``\\u0000`` (PostgreSQL refuses NUL in text and JSONB)
  and lone UTF-16 surrogates (``\\ud800``: not encodable as UTF-8, so SQLite's driver and
  every encoder fail on them). Valid surrogate *pairs* are ordinary characters.
* **Integers outside 64 bits**: the store's columns and most peers are 64-bit; a
  100-digit id must be a clear 400, not an overflow deep in a driver.

Every refusal is :class:`~tether.core.errors.InvalidJson` (a ``BadRequest``), which each
API renders as its protocol's "bad request"; nothing else escapes :func:`decode`.

The checks run on the raw text after ``msgspec`` has accepted it: the text is then known
to be valid JSON, so the scans below tokenise it in linear time, and the common body
(no deep nesting, no ``\\u`` escape, no 19-digit number) costs three C-level searches.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Generic, TypeVar, cast, overload

import msgspec

from tether.core.errors import InvalidJson
from tether.core.limits import INT64_MAX, INT64_MIN

T = TypeVar("T")
#: What the decoders take: the bytes of a body, or the text of a WebSocket frame.
Text = bytes | bytearray | memoryview | str

#: Deepest nesting of arrays and objects accepted anywhere. Real payloads (DeviceHive
#: parameters, eWeLink params, Control iD transactions) stay under ten levels.
MAX_DEPTH = 64

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
#: Any escape that might be bad: NUL, or a UTF-16 surrogate of either half.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
#: One escape at a time, so an escaped backslash is never read as the start of another;
#: a high surrogate followed by a low one is a valid pair and has no group.
_ESCAPE = re.compile(
    rb"\\(?:u(?:[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|(0000|[dD][89a-fA-F][0-9a-fA-F]{2}))|.)",
    re.DOTALL,
)
#: Every ASCII digit as ``0`` and every other byte as a space: a run of 19 digits becomes
#: 19 zeros, which ``bytes.__contains__`` finds in C. (A regex for ``\d{19}`` starts a match
#: at every offset in turn: 20-30 us on a 600-byte frame, most of the cost of decoding it.)
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
#: Strings (skipped whole, so digits inside them never count) or an integer literal of 19
#: or more digits: not part of a fraction or exponent, and with no fraction or exponent.
_STRING_OR_LONG_INT = re.compile(_STRING + rb"|(?<![\d.eE+\-])(-?\d{19,})(?![\d.eE])")

_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def _as_bytes(raw: Text) -> bytes:
    if type(raw) is bytes:
        return raw
    if isinstance(raw, str):
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson("malformed JSON: the text is not valid UTF-8") from None
    return bytes(raw)


def _check_depth(raw: bytes, limit: int) -> None:
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKET)
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit:
        raise _too_deep(limit)


def _too_deep(limit: int) -> InvalidJson:
    return InvalidJson(
        f"malformed JSON: nested deeper than {limit} levels", kind="depth", max_depth=limit
    )


def _check_escapes(raw: bytes) -> None:
    if b"\\u" not in raw or _SUSPECT_ESCAPE.search(raw) is None:
        return
    for match in _ESCAPE.finditer(raw):
        bad = match.group(1)
        if bad is None:
            continue
        if bad == b"0000":
            raise InvalidJson(
                "invalid string: NUL (\\u0000) is not accepted in text", kind="string"
            )
        raise InvalidJson(
            f"invalid string: a lone UTF-16 surrogate (\\u{bad.decode().lower()}) "
            "is not a character",
            kind="string",
        )


def _check_integers(raw: bytes) -> None:
    if _NINETEEN_DIGITS not in raw.translate(_DIGITS_AS_ZEROS):
        return
    for match in _STRING_OR_LONG_INT.finditer(raw):
        digits = match.group(1)
        if digits is not None and not INT64_MIN <= int(digits) <= INT64_MAX:
            shown = digits[:24].decode() + ("..." if len(digits) > 24 else "")
            raise InvalidJson(
                f"invalid number: {shown} is outside the 64-bit integer range "
                f"[{INT64_MIN}, {INT64_MAX}]",
                kind="integer",
                minimum=INT64_MIN,
                maximum=INT64_MAX,
            )


def check(raw: bytes, *, max_depth: int = MAX_DEPTH) -> None:
    """The bounds, on text ``msgspec`` has already accepted as JSON."""
    _check_depth(raw, max_depth)
    _check_escapes(raw)
    _check_integers(raw)


class Decoder(Generic[T]):
    """A reusable typed decoder (``msgspec.json.Decoder`` plus the bounds).

    ``what`` names the input in messages ("body", "frame", ...). ``bounded=False`` skips
    the bounds, for text only this server's own processes write (bus events): every value
    in it was decoded within the bounds when it entered, or made by the server, and its
    encoder cannot produce anything the bounds refuse. The bounds cost several times what
    ``msgspec`` itself spends on such an event, on every process that hears it.
    """

    def __init__(
        self,
        kind: Any = Any,
        *,
        what: str = "body",
        max_depth: int = MAX_DEPTH,
        bounded: bool = True,
    ):
        self._decoder: msgspec.json.Decoder[Any] = (
            _any_decoder if kind is Any else msgspec.json.Decoder(kind)
        )
        self._what = what
        self._max_depth = max_depth
        self._bounded = bounded

    def decode(self, raw: Text) -> T:
        data = _as_bytes(raw)
        try:
            value = self._decoder.decode(data)
        except msgspec.ValidationError as error:
            # A schema error can be found before a bound is: report the bound first, as
            # it is the reason no shape of this text would have been accepted.
            _check_after_failure(data, self._max_depth)
            raise InvalidJson(f"invalid {self._what}: {error}", kind="shape") from None
        except msgspec.DecodeError as error:
            # msgspec reads a lone surrogate escape as truncated input: name the real fault.
            _check_escapes(data)
            raise InvalidJson(f"malformed JSON: {error}") from None
        except UnicodeDecodeError:
            raise InvalidJson("malformed JSON: the text is not valid UTF-8") from None
        except RecursionError:
            raise _too_deep(self._max_depth) from None
        if self._bounded:
            check(data, max_depth=self._max_depth)
        return cast(T, value)


def _check_after_failure(data: bytes, max_depth: int) -> None:
    """Apply the bounds to text that is valid JSON but the wrong shape."""
    try:
        _any_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return
    except RecursionError:
        raise _too_deep(max_depth) from None
    check(data, max_depth=max_depth)


_any = Decoder[Any]()


@overload
def decode(raw: Text) -> Any: ...
@overload
def decode(raw: Text, kind: type[T], *, what: str = ...) -> T: ...
def decode(raw: Text, kind: Any = Any, *, what: str = "body") -> Any:
    """Decode JSON text (as ``kind`` if given) within the bounds, or raise ``InvalidJson``."""
    if kind is Any:
        return _any.decode(raw)
    return Decoder[Any](kind, what=what).decode(raw)


def encode(value: Any) -> bytes:
    """Compact JSON bytes."""
    return _encoder.encode(value)


def encode_text(value: Any) -> str:
    """Compact JSON as ``str`` (WebSocket text frames, JSON columns)."""
    return _encoder.encode(value).decode()


def check_text(field: str, value: str) -> str:
    """Refuse text no store can hold (NUL, lone surrogates) that arrived outside JSON.

    Query strings, form fields and path segments are decoded by other parsers; the same
    rule applies to them as to JSON strings.
    """
    if "\x00" in value:
        raise InvalidJson(f"{field}: NUL is not accepted in text", kind="string", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson(
            f"{field}: the text is not valid Unicode", kind="string", field=field
        ) from None
    return value
