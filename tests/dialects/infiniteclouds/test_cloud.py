"""The cloud endpoints over a real socket: registration, assignment, tokens, triggers.

Each test runs the whole application (tests/support.py ``running``) and speaks the wire
format as a device would, checking both the envelope and what the core stored.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from tests.support import Running, running

from tether.core.lifecycle import CommandState

MAC = "c4:4b:d1:a0:32:c1"
DEVICE_ID = "ic-c44bd1a032c1"
REGISTER = {
    "deviceType": "CE",
    "machineId": "c4:4b:d1:a0:32:c2",
    "macAddress": MAC,
    "timestamp": 1704397435,
    "deviceMetaInfo": {"deviceType": "CE", "deviceModel": "Infinite_110"},
    "firmware": {"currentVersion": "v1.11.1", "upgrading": ""},
    "interfaces": [
        {
            "name": "br-lan",
            "interfaceName": "br-lan",
            "addresses": [{"address": "192.168.99.1", "netmask": "255.255.255.0"}],
        }
    ],
}


async def post(
    app: Running, body: Any, token: str | None = None, path: str = "/v1/device/registration"
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, (bytes, str)) else {"json": body}
    async with app.session.post(app.url + path, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def get(app: Running, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with app.session.get(app.url + path, headers=headers) as response:
        return response.status, await response.json()


def ok(answer: dict[str, Any]) -> Any:
    assert answer["status"] == 200, answer
    assert answer["errors"] is False
    assert answer["httpCode"] == 200
    assert answer["errorCode"] == 0
    return answer["data"]


def failed(status: int, answer: dict[str, Any], code: int) -> str:
    assert status == code, (status, answer)
    assert answer["status"] == code
    assert answer["httpCode"] == code
    assert answer["errors"] is True
    assert answer["errorCode"] == code
    assert answer["data"] is None
    return str(answer["message"])


async def assigned(app: Running) -> str:
    """Register, assign to the admin (user 1), register again: the token."""
    status, answer = await post(app, REGISTER)
    assert status == 200
    assert ok(answer) == {"assigned": False, "deviceId": DEVICE_ID}
    await app.call("PATCH", f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": 1}, expect=200)
    status, answer = await post(app, REGISTER)
    data = ok(answer)
    assert data["assigned"] is True
    assert data["deviceId"] == DEVICE_ID
    ttl = app.hub.settings.infiniteclouds.token_ttl
    assert data["tokenExpiry"] == str(ttl)
    assert data["type"] == "Bearer"
    return str(data["authToken"])


def keepalive(**extra: Any) -> dict[str, Any]:
    return {
        "statusType": "keepAlive",
        "deviceId": DEVICE_ID,
        "deviceType": "CE",
        "machineId": "c4:4b:d1:a0:32:c2",
        "macAddress": MAC,
        "timestamp": int(time.time()),
        **extra,
    }


async def test_register_unassigned_then_assigned_gets_a_token(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        status, answer = await post(app, REGISTER)
        assert ok(answer) == {"assigned": False, "deviceId": DEVICE_ID}
        assert answer["message"] == "Device registered, waiting for assignment"
        device = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}", expect=200)
        assert device["dialect"] == "infiniteclouds"
        assert device["ownerId"] is None
        attributes = device["attributes"]
        assert attributes["macAddress"] == MAC
        assert attributes["machineId"] == "c4:4b:d1:a0:32:c2"
        assert attributes["deviceModel"] == "Infinite_110"
        assert attributes["firmwareVersion"] == "v1.11.1"
        # Registering again while unassigned: still no token, no duplicate device.
        status, answer = await post(app, {**REGISTER, "macAddress": MAC.upper()})
        assert ok(answer) == {"assigned": False, "deviceId": DEVICE_ID}
        found = await app.call("GET", "/api/v1/devices?dialect=infiniteclouds", expect=200)
        assert [d["id"] for d in found] == [DEVICE_ID]
        # No keepalive is accepted without a token.
        status, answer = await post(app, keepalive())
        assert failed(status, answer, 401) == "Missing token"
        token = await assigned(app)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["deviceData"] == {"macAddress": MAC, "deviceId": DEVICE_ID}
        assert claims["exp"] - claims["iat"] == 3600


async def test_keepalive_idle_and_online(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        token = await assigned(app)
        _status, answer = await post(app, keepalive(config={"revisionId": ""}), token)
        data = ok(answer)
        assert data == {
            "triggerEvent": {
                "configUpdate": False,
                "firmwareUpdate": False,
                "sendStatus": True,
                "commands": [],
            }
        }
        device = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}", expect=200)
        assert device["online"] is True


async def test_lowercase_keys_are_accepted(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        token = await assigned(app)
        body = {
            "statustype": "statistics",
            "deviceid": DEVICE_ID,
            "macaddress": MAC,
            "config": {"revisionid": "x"},
            "system": {"uptime": 5},
            "commands": None,
        }
        _status, answer = await post(app, body, token)
        assert "triggerEvent" in ok(answer)
        found = await app.call("GET", f"/api/v1/notifications?deviceId={DEVICE_ID}", expect=200)
        assert any(n["name"] == "statistics" for n in found)


async def test_config_revision_flag_and_fetch(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"revision_cache_ttl": 0}) as app:
        token = await assigned(app)
        # No config yet: nothing to update, and the config endpoint says so.
        status, answer = await post(app, keepalive(), token)
        assert ok(answer)["triggerEvent"]["configUpdate"] is False
        status, answer = await get(app, "/v1/device/config?deviceType=CE&revisionID=0", token)
        failed(status, answer, 404)
        revision = await app.call(
            "POST",
            "/api/v1/config-revisions",
            json={"deviceId": DEVICE_ID, "document": {"upnp": {"enable": True}}},
            expect=201,
        )
        rev = str(revision["id"])
        status, answer = await post(app, keepalive(config={"revisionId": "old"}), token)
        assert ok(answer)["triggerEvent"]["configUpdate"] is True
        status, answer = await get(app, "/v1/device/config?deviceType=CE&revisionID=0", token)
        data = ok(answer)
        assert data["revisionId"] == rev
        assert data["upnp"] == {"enable": True}
        assert data["_id"] == DEVICE_ID
        assert data["macAddress"] == MAC
        # Asking with the current revision: up to date, no document.
        status, answer = await get(app, f"/v1/device/config?revisionID={rev}", token)
        assert ok(answer) is None
        assert answer["message"] == "config up to date"
        # POST works the same.
        status, answer = await post(app, b"", token, path="/v1/device/config?revisionID=0")
        assert ok(answer)["revisionId"] == rev
        # The flag clears only once the device reports the revision.
        status, answer = await post(app, keepalive(config={"revisionId": rev}), token)
        assert ok(answer)["triggerEvent"]["configUpdate"] is False
        # Without a config in the keepalive, the last reported revision counts.
        status, answer = await post(app, keepalive(), token)
        assert ok(answer)["triggerEvent"]["configUpdate"] is False
        # A reset device reports no revision: it needs the config again.
        _, answer = await post(app, keepalive(config={"revisionId": ""}), token)
        assert ok(answer)["triggerEvent"]["configUpdate"] is True


async def test_firmware_flag_clears_on_the_target_version(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"revision_cache_ttl": 0}) as app:
        token = await assigned(app)
        status, answer = await get(app, "/v1/device/firmware", token)
        failed(status, answer, 404)
        sha = "ab" * 32
        await app.call(
            "POST",
            "/api/v1/firmware-targets",
            json={
                "version": "v1.13.0",
                "url": "http://fw.example/v1.13.0.bin",
                "size": 10,
                "sha256": sha,
                "deviceId": DEVICE_ID,
            },
            expect=201,
        )
        status, answer = await post(app, keepalive(), token)
        assert ok(answer)["triggerEvent"]["firmwareUpdate"] is True
        status, answer = await get(app, "/v1/device/firmware", token)
        data = ok(answer)
        assert data["version"] == "v1.13.0"
        assert data["sha256"] == sha
        assert data["size"] == 10
        assert data["url"] == "http://fw.example/v1.13.0.bin"
        firmware = {"currentVersion": "v1.11.1", "upgrading": "v1.13.0"}
        status, answer = await post(app, keepalive(firmware=firmware), token)
        assert ok(answer)["triggerEvent"]["firmwareUpdate"] is True
        firmware = {"currentVersion": "v1.13.0", "upgrading": ""}
        status, answer = await post(app, keepalive(firmware=firmware), token)
        assert ok(answer)["triggerEvent"]["firmwareUpdate"] is False


async def test_commands_resent_until_a_result_completes_them(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        token = await assigned(app)
        created = await app.call(
            "POST",
            f"/api/v1/devices/{DEVICE_ID}/commands",
            json={"name": "ping", "parameters": {"host": "1.1.1.1"}},
            expect=201,
        )
        command_id = str(created["id"])
        for _ in range(2):  # re-sent while no result arrived
            _, answer = await post(app, keepalive(), token)
            commands = ok(answer)["triggerEvent"]["commands"]
            assert [c["commandId"] for c in commands] == [command_id]
            assert commands[0]["command"] == "ping"
            assert commands[0]["params"] == {"host": "1.1.1.1"}
        stored = await app.call("GET", f"/api/v1/commands/{command_id}", expect=200)
        assert stored["state"] == CommandState.SENT.value
        result = {"commandId": command_id, "status": "SUCCEEDED", "exitCode": 0, "output": "pong"}
        _, answer = await post(app, keepalive(commands=[result]), token)
        assert ok(answer)["triggerEvent"]["commands"] == []
        stored = await app.call("GET", f"/api/v1/commands/{command_id}", expect=200)
        assert stored["state"] == "succeeded"
        assert stored["result"]["output"] == "pong"
        # A second command finished through statusType commandResult, failing.
        created = await app.call(
            "POST",
            f"/api/v1/devices/{DEVICE_ID}/commands",
            json={"name": "reboot"},
            expect=201,
        )
        await post(app, keepalive(), token)
        body = {
            "statusType": "commandResult",
            "deviceId": DEVICE_ID,
            "commandId": str(created["id"]),
            "status": "FAILED",
            "exitCode": 1,
            "output": "busy",
        }
        _status, answer = await post(app, body, token)
        ok(answer)
        stored = await app.call("GET", f"/api/v1/commands/{created['id']}", expect=200)
        assert stored["state"] == "failed"
        assert stored["error"] == "busy"


async def test_status_snapshot_goes_to_the_shadow(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        token = await assigned(app)
        _, answer = await post(app, keepalive(), token)
        assert ok(answer)["triggerEvent"]["sendStatus"] is True
        body = keepalive(statusType="status", system={"uptime": 187220}, interfaces=[])
        _status, answer = await post(app, body, token)
        assert ok(answer)["triggerEvent"]["sendStatus"] is False
        state = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}/state", expect=200)
        assert state["reported"]["status"]["system"] == {"uptime": 187220}


async def test_bad_input_gets_envelope_errors_and_stores_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"token_ttl": 60}) as app:
        status, answer = await post(app, b"{not json")
        assert failed(status, answer, 400).startswith("malformed JSON")
        status, answer = await post(app, b"[1, 2]")
        failed(status, answer, 400)
        status, answer = await post(app, {"deviceType": "CE"})
        assert failed(status, answer, 400) == "macAddress is required"
        status, answer = await post(app, {"macAddress": "not-a-mac"})
        failed(status, answer, 400)
        assert await app.call("GET", "/api/v1/devices?dialect=infiniteclouds", expect=200) == []
        status, answer = await post(app, keepalive(), "garbage")
        assert failed(status, answer, 401) == "Invalid token"
        # A native user token is not a device token.
        status, answer = await post(app, keepalive(), app.token)
        assert failed(status, answer, 401) == "Invalid token"
        token = await assigned(app)
        status, answer = await post(app, keepalive(statusType="nonsense"), token)
        assert "statusType" in failed(status, answer, 400)
        status, answer = await post(app, keepalive(statusType=5), token)
        failed(status, answer, 400)
        status, answer = await post(app, keepalive(deviceId="ic-000000000001"), token)
        failed(status, answer, 403)
        status, answer = await post(app, keepalive(commands=[{"commandId": "x"}]), token)
        failed(status, answer, 400)
        # Expired: the hub's clock moved past the token's expiry.
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 60
        forged = jwt.encode(
            {**claims, "exp": claims["iat"] + 99999},
            "wrong-key-of-sufficient-length-32b",
            algorithm="HS256",
        )
        status, answer = await post(app, keepalive(), forged)
        assert failed(status, answer, 401) == "Invalid token"
        # Unassigned again: the old token stops working, register says unassigned.
        await app.call("PATCH", f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": None}, expect=200)
        status, answer = await post(app, keepalive(), token)
        assert failed(status, answer, 401) == "Device is not assigned"
        status, answer = await post(app, REGISTER)
        assert ok(answer)["assigned"] is False
        # Unknown device with a well-signed token: deleted meanwhile.
        await app.call("PATCH", f"/api/v1/devices/{DEVICE_ID}", json={"ownerId": 1}, expect=200)
        token = ok((await post(app, REGISTER))[1])["authToken"]
        await app.call("DELETE", f"/api/v1/devices/{DEVICE_ID}", expect=204)
        status, answer = await post(app, keepalive(), token)
        assert failed(status, answer, 401) == "Unknown device"
        # Blocked devices are refused at register.
        await post(app, REGISTER)
        await app.call("POST", f"/api/v1/devices/{DEVICE_ID}/block", expect=200)
        status, answer = await post(app, REGISTER)
        failed(status, answer, 403)


async def test_expired_token_is_refused(tmp_path: Path) -> None:
    from datetime import timedelta

    async with running(tmp_path, infiniteclouds={"token_ttl": 60}) as app:
        token = await assigned(app)
        other = {**REGISTER, "macAddress": "c4:4b:d1:a0:32:c9"}
        await post(app, other)
        # This token is verified once while fresh (then remembered); the other never was.
        _, answer = await post(app, keepalive(), token)
        ok(answer)
        await app.call("PATCH", "/api/v1/devices/ic-c44bd1a032c9", json={"ownerId": 1}, expect=200)
        unused = ok((await post(app, other))[1])["authToken"]
        clock = app.hub.clock
        real_now = clock.now
        clock.now = lambda: real_now() + timedelta(seconds=61)  # type: ignore[method-assign]
        try:
            status, answer = await post(app, keepalive(), token)
            assert failed(status, answer, 401) == "Token expired"
            body = keepalive(deviceId="ic-c44bd1a032c9", macAddress="c4:4b:d1:a0:32:c9")
            status, answer = await post(app, body, unused)
            assert failed(status, answer, 401) == "Token expired"
        finally:
            clock.now = real_now  # type: ignore[method-assign]


@pytest.mark.postgres
async def test_register_assign_config_and_commands_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    """The same stored flow on PostgreSQL: device upsert, attributes, revisions, commands."""
    async with running(
        tmp_path, database_url=postgres_url, infiniteclouds={"revision_cache_ttl": 0}
    ) as app:
        token = await assigned(app)
        revision = await app.call(
            "POST",
            "/api/v1/config-revisions",
            json={"deviceId": DEVICE_ID, "document": {"a": 1}},
            expect=201,
        )
        created = await app.call(
            "POST", f"/api/v1/devices/{DEVICE_ID}/commands", json={"name": "ping"}, expect=201
        )
        _, answer = await post(app, keepalive(), token)
        trigger = ok(answer)["triggerEvent"]
        assert trigger["configUpdate"] is True
        assert [c["commandId"] for c in trigger["commands"]] == [str(created["id"])]
        result = {"commandId": str(created["id"]), "status": "SUCCEEDED", "exitCode": 0}
        body = keepalive(config={"revisionId": str(revision["id"])}, commands=[result])
        _, answer = await post(app, body, token)
        trigger = ok(answer)["triggerEvent"]
        assert trigger["configUpdate"] is False
        assert trigger["commands"] == []
        stored = await app.call("GET", f"/api/v1/commands/{created['id']}", expect=200)
        assert stored["state"] == "succeeded"
        device = await app.call("GET", f"/api/v1/devices/{DEVICE_ID}", expect=200)
        assert device["attributes"]["configRevision"] == str(revision["id"])


async def sql_count(app: Running) -> float:
    async with app.session.get(app.url + "/metrics", headers=app.auth) as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tether_sql_statements_total")
    )


async def test_idle_keepalives_run_no_sql(tmp_path: Path) -> None:
    """Design 6: nothing pending, nothing changed, no SQL; and a cache expiry under
    concurrent load costs one query per cached value, not one per request."""
    settings = {"revision_cache_ttl": 0.5}
    async with running(tmp_path, write_behind_interval=600, infiniteclouds=settings) as app:
        token = await assigned(app)
        _, answer = await post(app, keepalive(statusType="status"), token)
        ok(answer)
        _, answer = await post(app, keepalive(), token)  # loads device and revisions
        ok(answer)
        before = await sql_count(app)
        for _ in range(100):
            _, answer = await post(app, keepalive(), token)
            assert ok(answer)["triggerEvent"]["commands"] == []
        assert await sql_count(app) == before
        await asyncio.sleep(0.6)  # let the revision cache expire (a TTL, not a sync)
        before = await sql_count(app)
        answers = await asyncio.gather(*(post(app, keepalive(), token) for _ in range(64)))
        assert all(ok(answer)["triggerEvent"]["configUpdate"] is False for _, answer in answers)
        assert await sql_count(app) - before <= 4


async def test_disabled_dialect_serves_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, infiniteclouds={"enabled": False}) as app:
        async with app.session.post(app.url + "/v1/device/registration", json=REGISTER) as r:
            assert r.status == 404
        assert await app.call("GET", "/api/v1/devices?dialect=infiniteclouds", expect=200) == []


async def test_lenient_status_types(tmp_path: Path) -> None:
    settings = {"lenient_status_types": True}
    async with running(tmp_path, infiniteclouds=settings) as app:
        token = await assigned(app)
        _, answer = await post(app, keepalive(statusType="somethingNew"), token)
        assert "triggerEvent" in ok(answer)
        status, answer = await post(app, keepalive(statusType="somethingNew"))
        failed(status, answer, 401)


async def test_a_devices_new_token_replaces_its_old_one_in_the_cache(tmp_path: Path) -> None:
    """Re-registering (every reconnect of a churning device) must not grow the verified-
    token cache: it keeps one token per device. The old token still works until it
    expires; it is only verified again."""
    from datetime import timedelta

    from tether.dialects.infiniteclouds.routes import CLOUD

    async with running(tmp_path) as app:
        first = await assigned(app)
        ok((await post(app, keepalive(), first))[1])
        cloud = app.server.app[CLOUD].cloud
        assert cloud is not None
        clock = app.hub.clock
        real_now = clock.now
        tokens = [first]
        try:
            # A token's iat is in whole seconds: each registration a second earlier than the
            # last gets a new token (earlier, since PyJWT refuses an iat in the future).
            for step in range(1, 6):
                earlier = timedelta(seconds=step)
                clock.now = lambda earlier=earlier: real_now() - earlier  # type: ignore[method-assign]
                token = ok((await post(app, REGISTER))[1])["authToken"]
                assert token not in tokens
                tokens.append(token)
                ok((await post(app, keepalive(), token))[1])
            assert len(cloud._verified) == 1
            ok((await post(app, keepalive(), first))[1])  # verified again, still valid
            assert len(cloud._verified) == 1
        finally:
            clock.now = real_now  # type: ignore[method-assign]
