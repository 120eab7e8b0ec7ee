"""Logins are throttled per (login, address), never locked, and the same for every protocol.

A full server on a loopback port: the native login, DeviceHive's REST and WebSocket
``token`` and the eWeLink v1/v2 logins all feed one throttle, each answering in its own
shape. Argon2 is cheap in tests (see ``tests/conftest.py``); delays are a fraction of a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.support import ADMIN_PASSWORD, Running, running

from tether.hub import secrets

DELAY = 0.3
NATIVE = "/api/v1/auth/token"


@contextlib.asynccontextmanager
async def server(tmp_path: Path, **settings: Any) -> AsyncIterator[Running]:
    options: dict[str, Any] = {
        "login_free_attempts": 2,
        "login_delay": DELAY,
        "login_delay_max": DELAY,
        "ewelink": {"verify_signature": False},
    }
    async with running(tmp_path, **{**options, **settings}) as r:
        yield r


async def post(
    r: Running, path: str, body: dict[str, Any], session: aiohttp.ClientSession | None = None
) -> tuple[int, dict[str, str], Any]:
    async with (session or r.session).post(r.url + path, json=body) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def native(r: Running, login: str, password: str) -> tuple[int, dict[str, str], Any]:
    return await post(r, NATIVE, {"login": login, "password": password})


async def test_wrong_and_unknown_logins_get_the_same_answers_then_a_delay_that_ends(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as r:
        for login in ("admin", "nobody-here"):
            answers = [await native(r, login, "wrong-password") for _ in range(3)]
            assert [status for status, _, _ in answers] == [401, 401, 401]
            assert answers[0][2] == {
                "error": {
                    "code": "unauthorized",
                    "message": "invalid login or password",
                    "details": None,
                }
            }
            assert all(body == answers[0][2] for _, _, body in answers)
            # The pair now waits: even the right password is not checked.
            status, headers, body = await native(r, login, ADMIN_PASSWORD)
            assert status == 429, body
            assert body["error"]["code"] == "too_many_requests"
            assert headers["Retry-After"] == "1"
            assert "admin" not in body["error"]["message"]
        await asyncio.sleep(DELAY)
        status, _, body = await native(r, "admin", ADMIN_PASSWORD)
        assert status == 201, body
        # A success clears the pair: the next mistake is an ordinary 401 again.
        assert (await native(r, "admin", "wrong-password"))[0] == 401


async def test_ten_wrong_passwords_lock_nobody_out(tmp_path: Path) -> None:
    async with server(tmp_path, login_free_attempts=10) as r:
        for _ in range(10):
            assert (await native(r, "admin", "wrong-password"))[0] == 401
        status, _, body = await native(r, "admin", ADMIN_PASSWORD)
        assert status == 201, body
        me = await r.call("GET", "/api/v1/users/me", expect=200)
        assert me["status"] == "active"


async def test_a_guesser_elsewhere_does_not_slow_the_owner(tmp_path: Path) -> None:
    async with server(tmp_path) as r:
        elsewhere = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        )
        async with elsewhere:
            for _ in range(3):
                await post(r, NATIVE, {"login": "admin", "password": "guess"}, elsewhere)
            status, _, _ = await post(
                r, NATIVE, {"login": "admin", "password": ADMIN_PASSWORD}, elsewhere
            )
            assert status == 429
        assert (await native(r, "admin", ADMIN_PASSWORD))[0] == 201


async def test_devicehive_and_ewelink_logins_count_and_answer_in_their_shape(
    tmp_path: Path,
) -> None:
    async with server(tmp_path) as r:
        wrong = {"login": "admin", "password": "wrong-password"}
        status, _, body = await post(r, "/api/rest/token", wrong)
        assert (status, body["error"]) == (401, 401)
        status, _, body = await post(
            r, "/api/user/login", {"email": "admin", "password": "x", "appid": "a"}
        )
        assert (status, body["error"]) == (200, 401)
        async with r.session.ws_connect(r.ws_url + "/api/websocket") as ws:
            await ws.send_json({"action": "token", "requestId": 1, **wrong})
            frame = await ws.receive_json(timeout=10)
            assert (frame["status"], frame["code"]) == ("error", 401)
            # Three failures, one per protocol: now every protocol says wait.
            await ws.send_json(
                {"action": "token", "requestId": 2, "login": "admin", "password": ADMIN_PASSWORD}
            )
            frame = await ws.receive_json(timeout=10)
            assert (frame["status"], frame["code"], frame["requestId"]) == ("error", 429, 2)
        status, headers, body = await post(
            r, "/api/rest/token", {"login": "admin", "password": ADMIN_PASSWORD}
        )
        assert (status, body["error"], headers["Retry-After"]) == (429, 429, "1")
        for path, field in (("/api/user/login", "info"), ("/v2/user/login", "msg")):
            status, headers, body = await post(
                r, path, {"email": "admin", "password": ADMIN_PASSWORD, "appid": "a"}
            )
            assert (status, body["error"], headers["Retry-After"]) == (429, 429, "1"), body
            assert "retry" in body[field]
        assert (await native(r, "admin", ADMIN_PASSWORD))[0] == 429
        await asyncio.sleep(DELAY)
        status, _, body = await post(
            r, "/api/rest/token", {"login": "admin", "password": ADMIN_PASSWORD}
        )
        assert status == 201, body


async def test_a_login_flood_is_bounded_and_answered_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running_now = peak = 0
    real_verify = secrets.verify_password

    async def counting(password_hash: str, password: str) -> bool:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        try:
            await asyncio.sleep(0.02)  # a check that takes a while, off the loop
            return await real_verify(password_hash, password)
        finally:
            running_now -= 1

    monkeypatch.setattr(secrets, "verify_password", counting)
    async with server(tmp_path, password_checks=1, password_check_queue=3) as r:
        # Distinct logins: no pair is throttled, only the process-wide bound applies.
        answers = await asyncio.gather(*(native(r, f"user-{i}", "pw-pw-pw") for i in range(30)))
        statuses = sorted(status for status, _, _ in answers)
        assert peak == 1
        assert set(statuses) == {401, 429}, statuses
        assert statuses.count(401) >= 4
        busy = [(h, b) for status, h, b in answers if status == 429]
        assert all(h["Retry-After"] == "1" for h, _ in busy)
        assert all(b["error"]["code"] == "too_many_requests" for _, b in busy)
        async with r.session.get(r.url + "/healthz") as health:
            assert health.status == 200
