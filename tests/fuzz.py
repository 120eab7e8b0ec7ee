"""Shared pieces of the fuzz stage: hostile JSON text, and a ``tether serve`` to aim it at.

The families are the ones that broke a server before (issue 13): numbers past 64 bits and
past float range, nesting far past the codec's bound, strings no store can hold (lone
surrogates, NUL), the wrong JSON type, raw bytes that are not UTF-8, truncation, and
oversized bodies. Strategies produce *bytes*, so a bad escape can sit anywhere a value can.

Corpora are drawn once per test through :func:`draw` with a fixed seed (``derandomize``),
so a CI run is repeatable and costs the same every time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core import jsonc

T = TypeVar("T")

ADMIN_PASSWORD = "fuzz-admin-pass"

_huge_ints = st.one_of(
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-(2**63) - 1, min_value=-(2**200)),
).map(lambda n: str(n).encode())
_numbers = _huge_ints | st.sampled_from(
    [b"1e308", b"-1e308", b"1e400", b"1e20", b"-1", b"0", b"-0.0", b"1e-400", b"9" * 400]
)
_depth = st.integers(min_value=jsonc.MAX_DEPTH + 1, max_value=3000)
_nested = st.one_of(
    _depth.map(lambda n: b"[" * n + b"]" * n),
    _depth.map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    _depth.map(lambda n: b"[" * n),  # deep and truncated
)
_bad_strings = st.sampled_from(
    [
        b'"\\ud800"',
        b'"x\\udfff"',
        b'"\\ud800\\ud800"',
        b'"a\\u0000b"',
        b'"\\u0000"',
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8: not UTF-8
        b'"\xff\xfe"',
        b'"\\x"',
        b'"unterminated',
    ]
)
_wrong_types = st.sampled_from(
    [b"null", b"true", b"false", b"[]", b"{}", b'""', b'"text"', b"[1,2]", b'{"a":[]}', b"0.5"]
)

#: One JSON value (as text) from a hostile family.
hostile_value = st.one_of(_numbers, _nested, _bad_strings, _wrong_types)


def hostile_body(template: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """``template`` as JSON with one field (or a new one) replaced by a hostile value,
    sometimes truncated; or a body that is hostile as a whole."""

    @st.composite
    def one_field(draw: st.DrawFn) -> bytes:
        keys = [*template, "extra"]
        key = draw(st.sampled_from(keys))
        parts = [jsonc.encode(k) + b":" + jsonc.encode(v) for k, v in template.items() if k != key]
        parts.append(jsonc.encode(key) + b":" + draw(hostile_value))
        body = b"{" + b",".join(parts) + b"}"
        if draw(st.integers(0, 9)) == 0:
            body = body[: draw(st.integers(0, len(body)))]
        return body

    whole = st.one_of(
        hostile_value,
        st.binary(max_size=64),
        st.just(b"{" * 100_000),
        st.just(b'{"a":"' + b"x" * (2 << 20) + b'"}'),  # past every body limit
    )
    return st.one_of(one_field(), one_field(), one_field(), whole)


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """``count`` examples of ``strategy``, the same ones on every run."""
    out: list[T] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        out.append(value)

    collect()
    return out


def server_errors(records: list[logging.LogRecord]) -> list[str]:
    """What a server logged at ERROR or with a traceback: the fuzz stage allows none."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A ``tether serve`` subprocess: its URL, an admin token, and its log."""

    def __init__(self, url: str, log: Path, token: str) -> None:
        self.url = url
        self.log = log
        self.token = token

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve(tmp: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run ``tether serve`` on a free port until the block ends."""
    port = free_port()
    log = tmp / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tether.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp / "data"),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "TETHER_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(log.read_text(errors="replace"))
            time.sleep(0.1)
        answer = requests.post(
            url + "/api/v1/auth/token",
            json={"login": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        yield Served(url, log, answer.json()["accessToken"])
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def send_frame(ws: Any, frame: bytes) -> None:
    """A text frame when the bytes are UTF-8, else a binary frame (both are fair game)."""
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        await ws.send_bytes(frame)
    else:
        await ws.send_str(text)


#: Bodies past every size limit: their answer is the size error (413, or closing a
#: WebSocket with 1009), tested on their own.
def small(frames: list[bytes], limit: int = 1 << 20) -> list[bytes]:
    return [f for f in frames if len(f) <= limit]
