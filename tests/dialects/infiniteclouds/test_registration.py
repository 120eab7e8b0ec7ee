"""Registration guards over a real socket: continuity proofs and anonymous-flood caps.

Issue 13, items 5 and 10: knowing an assigned device's MAC must not yield its token,
and strangers must not be able to fill the store with unassigned devices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.dialects.infiniteclouds.test_cloud import (
    DEVICE_ID,
    MAC,
    REGISTER,
    assigned,
    failed,
    keepalive,
    ok,
    post,
)
from tests.support import Running, running

from tether.core.clock import ManualClock
from tether.core.errors import TooManyRequests
from tether.dialects.infiniteclouds import codec
from tether.dialects.infiniteclouds.registration import SourceRate
from tether.dialects.infiniteclouds.routes import CLOUD

ATTACKER = {**REGISTER, "machineId": "de:ad:be:ef:00:01"}


def device_mac(n: int) -> str:
    return "02:00:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


async def register_from(
    app: Running, body: Any, address: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One registration from the source address ``address`` (a 127.x loopback)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            app.url + "/v1/device/registration", json=body, headers=headers or {}
        ) as response,
    ):
        return response.status, await response.json()


async def flood(app: Running, count: int, size: int = 13_000) -> tuple[list[int], float]:
    """``count`` anonymous registrations of distinct MACs, ~``size`` bytes each."""
    padding = [{"name": f"eth{i}", "interfaceName": "x" * 200} for i in range(size // 240)]
    gate = asyncio.Semaphore(20)

    async def one(n: int) -> int:
        body = {**REGISTER, "macAddress": device_mac(n), "interfaces": padding}
        async with gate:
            status, _ = await post(app, body)
            return status

    started = time.monotonic()
    statuses = await asyncio.gather(*(one(n) for n in range(count)))
    return list(statuses), time.monotonic() - started


async def unassigned_count(app: Running) -> int:
    return await app.hub.store.devices.count_unowned("infiniteclouds")


async def test_reregistering_an_assigned_mac_without_proof_gets_no_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as app:
        token = await assigned(app)
        created = await app.call(
            "POST", f"/api/v1/devices/{DEVICE_ID}/commands", json={"name": "reboot"}, expect=201
        )
        with caplog.at_level(logging.WARNING, logger="tether.infiniteclouds"):
            status, answer = await post(app, ATTACKER)
        assert status == 200
        assert ok(answer) == {"assigned": False, "deviceId": DEVICE_ID}
        assert answer["message"] == "Device is not assigned yet"
        warned = [r.getMessage() for r in caplog.records if "proved no continuity" in r.message]
        assert len(warned) == 1
        assert DEVICE_ID in warned[0]
        assert ATTACKER["machineId"] not in warned[0]  # the proof is never logged
        # Nothing the attacker said was recorded.
        device = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}", expect=200)
        assert device["attributes"]["machineId"] == REGISTER["machineId"]
        # Without a token, and with a made-up one, the attacker receives no commands.
        status, answer = await post(app, keepalive(machineId=ATTACKER["machineId"]))
        failed(status, answer, 401)
        status, answer = await post(app, keepalive(), "eyJhbGciOiJIUzI1NiJ9.e30.forged")
        failed(status, answer, 401)
        stored = await app.call("GET", f"/api/v1/commands/{created['id']}", expect=200)
        assert stored["state"] == "pending"
        # The real device keeps working with its token, and gets the command.
        _, answer = await post(app, keepalive(), token)
        commands = ok(answer)["triggerEvent"]["commands"]
        assert [c["commandId"] for c in commands] == [str(created["id"])]
        # ... and re-registers with its own machineId, or with its token.
        _, answer = await post(app, REGISTER)
        assert ok(answer)["assigned"] is True
        _, answer = await post(app, ATTACKER, token)
        assert ok(answer)["assigned"] is True


async def test_token_mode_asks_for_the_token_once_one_was_issued(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"reregister_proof": "token"}) as app:
        token = await assigned(app)  # the first token: the machineId still proved it
        _, answer = await post(app, REGISTER)  # the right machineId, but no token
        assert "authToken" not in ok(answer)
        _, answer = await post(app, REGISTER, token)
        assert ok(answer)["assigned"] is True
        # An expired token still proves continuity within the grace period, not after.
        settings = app.hub.settings.infiniteclouds
        grace = settings.reregister_token_grace
        for age, proves in ((3600 + grace // 2, True), (3600 + grace + 60, False)):
            old = expired_token(app, age)
            status, answer = await post(app, keepalive(), old)
            assert failed(status, answer, 401) == "Token expired"
            _, answer = await post(app, REGISTER, old)
            assert ok(answer)["assigned"] is proves


def expired_token(app: Running, age: int) -> str:
    """A token this server issued to the device ``age`` seconds ago, valid for an hour."""
    cloud = app.server.app[CLOUD].cloud
    assert cloud is not None
    settings = cloud.settings
    return codec.issue_token(
        cloud.token_key,
        codec.DeviceToken(DEVICE_ID, MAC, 1),
        now=int(time.time()) - age,
        ttl=3600,
        audience=settings.token_audience,
        issuer=settings.token_issuer,
    )


async def test_none_mode_is_the_protocols_own_trust_in_the_mac(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"reregister_proof": "none"}) as app:
        await assigned(app)
        _, answer = await post(app, ATTACKER)
        assert ok(answer)["assigned"] is True


async def test_flood_of_registrations_is_capped_by_count(tmp_path: Path) -> None:
    cap = 50
    settings = {"max_unassigned": cap, "registration_rate": 100_000}
    async with running(tmp_path, infiniteclouds=settings) as app:
        await assigned(app)  # a known device, assigned before the flood
        statuses, took = await flood(app, 500)
        assert statuses.count(200) == cap  # the assigned device does not count
        assert statuses.count(429) == 500 - cap
        assert await unassigned_count(app) == cap
        assert took < 30, took
        print(f"500 registrations of 13 KB: {took:.2f} s, {cap} records")
        status, answer = await post(app, {**REGISTER, "macAddress": device_mac(9999)})
        assert failed(status, answer, 429) == "Too many devices waiting for assignment"
        # Known devices are never capped: the assigned one still gets its token.
        _, answer = await post(app, REGISTER)
        assert ok(answer)["assigned"] is True


async def test_flood_of_registrations_is_capped_per_source(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"registration_rate": 10}) as app:
        statuses, took = await flood(app, 500)
        assert statuses.count(200) == 10
        assert await unassigned_count(app) == 10
        print(f"500 registrations from one address: {took:.2f} s, 10 records")
        status, answer = await register_from(
            app, {**REGISTER, "macAddress": device_mac(9999)}, "127.0.0.1"
        )
        failed(status, answer, 429)
        # Another address is not slowed by this one.
        status, answer = await register_from(app, REGISTER, "127.0.0.2")
        assert ok(answer) == {"assigned": False, "deviceId": DEVICE_ID}


async def test_registration_body_is_capped_even_with_a_made_up_token(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        limit = app.hub.settings.infiniteclouds.max_registration_bytes
        body = {**REGISTER, "interfaces": [{"name": "x" * limit}]}
        status, answer = await post(app, body)
        failed(status, answer, 413)
        status, answer = await post(app, body, "made-up")
        failed(status, answer, 413)
        assert await unassigned_count(app) == 0


def test_source_rate_is_per_address_and_per_window() -> None:
    clock = ManualClock()
    rate = SourceRate(clock, limit=2, window=60)
    rate.spend("a")
    rate.spend("a")
    with pytest.raises(TooManyRequests) as refused:
        rate.spend("a")
    assert refused.value.retry_after == 60
    rate.spend("b")  # another address has its own count
    clock.advance(45)
    with pytest.raises(TooManyRequests) as refused:
        rate.spend("a")
    assert refused.value.retry_after == 15
    clock.advance(15)  # a new window
    rate.spend("a")
    rate.spend("a")
