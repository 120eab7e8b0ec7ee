"""Bad and hostile input on the terminal side: nothing crashes, nothing changes wrongly,
everything is logged. Also the security gates, lost results and the no-SQL empty poll."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.controlid.test_e2e import finished, register, terminal
from tests.support import Running, running

DEVICE = "1038508"


@pytest.fixture
async def tether(tmp_path: Path) -> AsyncIterator[Running]:
    async with running(
        tmp_path,
        write_behind_interval=3600,
        controlid={"result_timeout": 30, "max_body_bytes": 64 * 1024, "max_binary_bytes": 4096},
    ) as server:
        await register(server, DEVICE)
        yield server


async def raw(server: Running, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
    async with server.session.request(method, server.url + path, **kwargs) as response:
        return response.status, await response.read()


async def create(server: Running, name: str, parameters: Any = None, device: str = DEVICE) -> Any:
    return await server.call(
        "POST",
        f"/api/v1/devices/{device}/commands",
        json={"name": name, "parameters": parameters},
        expect=201,
    )


async def get(server: Running, command_id: int) -> Any:
    return await server.call("GET", f"/api/v1/commands/{command_id}", expect=200)


async def sql_statements(server: Running) -> float:
    status, body = await raw(server, "GET", "/metrics", headers=server.auth)
    assert status == 200
    match = re.search(rb"^tether_sql_statements_total (\S+)$", body, re.MULTILINE)
    assert match, body[:500]
    return float(match.group(1))


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records if r.name == "tether.controlid")


MALFORMED = [
    ("deviceId=abc", "not 1-20 digits"),
    ("deviceId=-5", "not 1-20 digits"),
    ("deviceId=1e9", "not 1-20 digits"),
    ("deviceId=" + "9" * 21, "not 1-20 digits"),
    ("deviceId=18446744073709551616", "64-bit range"),
    ("", "missing"),
    ("deviceId=1038508&uuid=" + "x" * 200, "uuid is malformed"),
    ("deviceId=1038508&uuid=a%20b", "uuid is malformed"),
]


async def test_malformed_ids_are_refused_and_logged(
    tether: Running, caplog: pytest.LogCaptureFixture
) -> None:
    made = await create(tether, "reboot")
    for query, why in MALFORMED:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tether.controlid"):
            status, body = await raw(tether, "GET", "/push?" + query)
            assert (status, body) == (400, b""), query
            # /result answers a malformed id as /push does (issue 18): 400, nothing read.
            status, body = await raw(tether, "POST", "/result?" + query, json={"response": {}})
            assert (status, body) == (400, b""), query
        assert logged(caplog, why), query
    assert (await get(tether, made["id"]))["state"] == "pending"


async def curl_result(server: Running, query: str, body: str) -> tuple[int, bytes]:
    """``curl -d``: JSON sent as ``application/x-www-form-urlencoded``, as curl labels it."""
    process = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type}",
        "-d", body, f"{server.url}/result?{query}",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    code, _, _ = out.decode().partition(" ")
    return int(code), out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_result_sent_by_curl_d_is_read_as_json(tether: Running) -> None:
    made = await create(tether, "reboot")
    uuid = "6f0c2a52-6b0d-4d4e-9b8a-3e1b1c3a0b11"
    status, pushed = await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid={uuid}")
    assert status == 200
    assert pushed
    body = '{"response": {"rebooting": true}}'
    status, _ = await curl_result(tether, f"deviceId={DEVICE}&uuid={uuid}", body)
    assert status == 200
    command = await get(tether, made["id"])
    assert command["state"] == "succeeded", command
    assert command["result"] == {"rebooting": True}
    # Declared a form, shaped like one: still read as the form it is.
    made = await create(tether, "reboot")
    status, pushed = await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid={uuid[:-1]}2")
    assert status == 200
    assert pushed
    status, _ = await curl_result(
        tether, f"deviceId={DEVICE}&uuid={uuid[:-1]}2", "error=Node%20not%20found"
    )
    command = await get(tether, made["id"])
    assert (command["state"], command["error"]) == ("failed", "Node not found")


async def test_unknown_and_foreign_devices_get_nothing(
    tether: Running, caplog: pytest.LogCaptureFixture
) -> None:
    await tether.call("POST", "/api/v1/devices", json={"id": "555", "name": "native"}, expect=201)
    await create(tether, "reboot")
    with caplog.at_level(logging.WARNING, logger="tether.controlid"):
        for device_id in ("123", "555", "0" + DEVICE[:-1]):
            assert await raw(tether, "GET", f"/push?deviceId={device_id}") == (200, b"")
            assert await raw(tether, "POST", f"/result?deviceId={device_id}", data=b"x") == (
                200,
                b"",
            )
    assert logged(caplog, "unknown deviceId 123")
    assert logged(caplog, "device of dialect native 555")
    listed = await tether.call("GET", f"/api/v1/devices/{DEVICE}/commands", expect=200)
    assert [c["state"] for c in listed] == ["pending"]


async def test_results_that_match_nothing_change_nothing(
    tether: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tether.controlid"):
        # No command outstanding at all.
        assert await raw(tether, "POST", f"/result?deviceId={DEVICE}", json={"response": {}}) == (
            200,
            b"",
        )
        assert logged(caplog, "matches no outstanding command")
        made = await create(tether, "load_objects", {"object": "users"})
        status, body = await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=u-1")
        assert status == 200
        assert b"load_objects" in body
        # Only one command is ever outstanding: a second poll gets nothing.
        await create(tether, "reboot")
        assert await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=u-2") == (200, b"")
        # A result under a uuid nobody handed out is ignored.
        await raw(tether, "POST", f"/result?deviceId={DEVICE}&uuid=u-9", json={"response": {}})
        assert logged(caplog, "unknown uuid u-9")
        assert (await get(tether, made["id"]))["state"] == "in_progress"
        # Garbage bodies never complete it.
        for garbage, kind in (
            (b"\xff\xfe\x00", "application/json"),
            (b"not json at all", "application/json"),
            (b"[1, 2, 3]", "application/json"),
            (b'{"foo": 1}', "application/json"),
            (b"", "text/plain"),
            (b'{"response": ' * 5000, "application/json"),
            (b'{"transactions_results": 5}', "application/json"),
        ):
            status, body = await raw(
                tether,
                "POST",
                f"/result?deviceId={DEVICE}&uuid=u-1",
                data=garbage,
                headers={"Content-Type": kind},
            )
            assert (status, body) == (200, b"")
        assert logged(caplog, "unreadable")
        assert (await get(tether, made["id"]))["state"] == "in_progress"
        # The real result, form-encoded, completes it; a duplicate changes nothing.
        await raw(
            tether,
            "POST",
            f"/result?deviceId={DEVICE}&uuid=u-1",
            data={"response": '{"users": []}'},
        )
        done = await get(tether, made["id"])
        assert (done["state"], done["result"]) == ("succeeded", {"users": []})
        await raw(tether, "POST", f"/result?deviceId={DEVICE}&uuid=u-1", json={"error": "late"})
        assert logged(caplog, "duplicate result")
        again = await get(tether, made["id"])
        assert (again["state"], again["result"], again["error"]) == (
            "succeeded",
            {"users": []},
            None,
        )


async def test_result_without_uuid_falls_back_to_the_outstanding_command(tether: Running) -> None:
    made = await create(tether, "system_information", {})
    status, body = await raw(tether, "GET", f"/push?deviceId={DEVICE}")
    assert status == 200
    assert b"system_information" in body
    assert (await get(tether, made["id"]))["ref"] == f"tether-{made['id']}"
    await raw(
        tether,
        "POST",
        f"/result?deviceId={DEVICE}",
        data=b'{"error": "Invalid endpoint"}',
        headers={"Content-Type": "text/plain"},
    )
    done = await get(tether, made["id"])
    assert (done["state"], done["error"]) == ("failed", "Invalid endpoint")


async def test_uuid_in_the_body_correlates(tether: Running) -> None:
    made = await create(tether, "load_objects", {"object": "cards"})
    await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=abc-1")
    await raw(
        tether,
        "POST",
        f"/result?deviceId={DEVICE}",
        json={"uuid": "abc-1", "response": {"cards": []}},
    )
    assert (await get(tether, made["id"]))["state"] == "succeeded"


async def test_oversized_input_is_refused(
    tether: Running, caplog: pytest.LogCaptureFixture
) -> None:
    big = base64.b64encode(b"\xff" * 5000).decode()
    refused = await tether.call(
        "POST",
        f"/api/v1/devices/{DEVICE}/commands",
        json={"name": "user_set_image", "parameters": {"user_id": 1, "image": big}},
        expect=400,
    )
    assert "larger than 4096 bytes" in refused["error"]["message"]
    refused = await tether.call(
        "POST",
        f"/api/v1/devices/{DEVICE}/commands",
        json={"name": "user_set_image", "parameters": {"user_id": 1, "image": "@@not base64@@"}},
        expect=400,
    )
    assert "base64" in refused["error"]["message"]
    made = await create(tether, "load_objects", {"object": "users"})
    await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=big-1")
    with caplog.at_level(logging.WARNING, logger="tether.controlid"):
        payload = b'{"response": "' + b"A" * (100 * 1024) + b'"}'
        assert await raw(tether, "POST", f"/result?deviceId={DEVICE}&uuid=big-1", data=payload) == (
            200,
            b"",
        )
        status, _ = await raw(tether, "POST", "/api/notifications/dao", data=payload)
        assert status == 200
    assert logged(caplog, "over the size limit")
    assert logged(caplog, "too large")
    assert (await get(tether, made["id"]))["state"] == "in_progress"


async def test_hostile_monitor_input(tether: Running, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tether.controlid"):
        cases = [
            ("/api/notifications/door", b"\x00\x01garbage", "application/json"),
            ("/api/notifications/door", b'{"door": {"id": 1}}', "application/json"),
            ("/api/notifications/door", b'{"door": 1, "device_id": 99}', "application/json"),
            ("/api/notifications/DOOR!", b'{"device_id": 1038508}', "application/json"),
            ("/api/notifications/door", b'{"device_id": "x' + b"9" * 50 + b'"}', "text/plain"),
        ]
        for path, body, kind in cases:
            status, answer = await raw(
                tether, "POST", path, data=body, headers={"Content-Type": kind}
            )
            assert (status, answer) == (200, b"")
    assert logged(caplog, "unreadable")
    assert logged(caplog, "names no device")
    assert logged(caplog, "unknown deviceId 99")
    listed = await tether.call("GET", f"/api/v1/devices/{DEVICE}/notifications", expect=200)
    assert listed == []
    # A well-formed event still arrives, a repeated dao insert only once, raw bytes kept.
    dao = {
        "object_changes": [
            {"object": "access_logs", "type": "inserted", "values": {"id": "519", "event": "7"}}
        ],
        "device_id": int(DEVICE),
    }
    for _ in range(2):
        assert await raw(tether, "POST", "/api/notifications/dao", json=dao) == (200, b"")
    await raw(
        tether,
        "POST",
        f"/api/notifications/usb_drive?deviceId={DEVICE}",
        data=b"\x00\x01",
        headers={"Content-Type": "application/octet-stream"},
    )
    alive = {"access_logs": 0, "device_id": int(DEVICE), "time": 1739376235}
    assert await raw(tether, "POST", "/api/notifications/device_is_alive", json=alive) == (
        200,
        b"",
    )
    listed = await tether.call("GET", f"/api/v1/devices/{DEVICE}/notifications", expect=200)
    assert sorted(n["name"] for n in listed) == ["dao", "usb_drive"]
    usb = next(n for n in listed if n["name"] == "usb_drive")
    assert usb["parameters"] == {"raw": "AAE="}
    assert tether.hub.presence.is_online(DEVICE)


async def test_bad_commands_are_refused_before_queueing(tether: Running) -> None:
    cases = [
        ("load_objects", {"object": "Users; drop"}, "name a table"),
        ("destroy_objects", {"object": "users"}, "where"),
        ("modify_objects", {"object": "users", "values": {}}, "values"),
        ("create_objects", {"object": "users", "values": []}, "values"),
        ("set_configuration", {"general": {"online": True}}, "must be a string"),
        ("execute_actions", {"actions": [{"action": "door", "parameters": "door=x"}]}, "door=1"),
        ("execute_actions", {"actions": [{"action": "catra", "parameters": "allow=up"}]}, "allow"),
        ("execute_actions", {"actions": []}, "non-empty"),
        ("message_to_screen", {"message": 5}, "message"),
        ("door/open", {}, "endpoint name"),
        ("x", {"endpoint": "x", "verb": "DELETE"}, "GET or POST"),
        ("transactions", {"transactions": []}, "1-100"),
    ]
    for name, parameters, message in cases:
        refused = await tether.call(
            "POST",
            f"/api/v1/devices/{DEVICE}/commands",
            json={"name": name, "parameters": parameters},
            expect=400,
        )
        assert message in refused["error"]["message"], (name, refused)
    assert await tether.call("GET", f"/api/v1/devices/{DEVICE}/commands", expect=200) == []


async def test_empty_polls_run_no_sql(tether: Running) -> None:
    await register(tether, "9001", long_poll=0.2, push_request_timeout=5000)
    for device in (DEVICE, "9001"):
        await raw(tether, "GET", f"/push?deviceId={device}&uuid=warm")
    await raw(tether, "GET", "/push?deviceId=31337")  # unknown: one lookup, then cached
    before = await sql_statements(tether)
    for n in range(50):
        assert await raw(tether, "GET", f"/push?deviceId={DEVICE}&uuid=p{n}") == (200, b"")
        assert await raw(tether, "GET", "/push?deviceId=31337") == (200, b"")
    assert await raw(tether, "GET", "/push?deviceId=9001&uuid=held") == (200, b"")
    assert await sql_statements(tether) == before


async def test_gates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(
        tmp_path / "a", controlid={"allowed_networks": ["10.0.0.0/8", "::1/128"]}
    ) as server:
        await register(server, DEVICE)
        with caplog.at_level(logging.WARNING, logger="tether.controlid"):
            assert await raw(server, "GET", f"/push?deviceId={DEVICE}") == (403, b"")
            assert await raw(server, "POST", "/api/notifications/door", json={}) == (403, b"")
        assert logged(caplog, "not allowed")
    async with running(tmp_path / "b", controlid={"path_secret": "k" * 32}) as server:
        await register(server, DEVICE)
        made = await create(server, "reboot")
        assert await raw(server, "GET", f"/push?deviceId={DEVICE}") == (404, b"")
        assert await raw(server, "GET", f"/d/{'k' * 31}/push?deviceId={DEVICE}") == (404, b"")
        async with terminal(server, DEVICE, base=f"/d/{'k' * 32}"):
            assert (await finished(server, made["id"]))["state"] == "succeeded"


async def test_auto_registration(tmp_path: Path) -> None:
    async with running(tmp_path, controlid={"auto_register": True}) as server:
        assert await raw(server, "GET", "/push?deviceId=777&uuid=a") == (200, b"")
        device = await server.call("GET", "/api/v1/devices/777", expect=200)
        assert device["dialect"] == "controlid"


async def test_lost_results_requeue_only_idempotent_commands(tmp_path: Path) -> None:
    async with running(tmp_path, controlid={"result_timeout": 0.3}) as server:
        await register(server, DEVICE)
        load = await create(server, "load_objects", {"object": "users"})
        door = await create(
            server, "execute_actions", {"actions": [{"action": "door", "parameters": "door=1"}]}
        )
        # The terminal takes the first command and never answers (its reply was lost).
        _, body = await raw(server, "GET", f"/push?deviceId={DEVICE}&uuid=lost-1")
        assert b"load_objects" in body
        assert (await finished(server, load["id"]))["state"] == "timed_out"
        _, body = await raw(server, "GET", f"/push?deviceId={DEVICE}&uuid=lost-2")
        assert b"execute_actions" in body
        assert (await finished(server, door["id"]))["state"] == "timed_out"
        # A late result for a timed-out command changes nothing.
        await raw(server, "POST", f"/result?deviceId={DEVICE}&uuid=lost-1", json={"response": {}})
        assert (await finished(server, load["id"]))["state"] == "timed_out"
        listed: list[Any] = []
        for _ in range(100):
            listed = await server.call("GET", f"/api/v1/devices/{DEVICE}/commands", expect=200)
            if len(listed) == 3:
                break
            await asyncio.sleep(0.05)
        copies = [c for c in listed if c["id"] not in (load["id"], door["id"])]
        assert len(copies) == 1, listed
        copy = copies[0]
        assert copy["name"] == "load_objects"
        assert copy["parameters"]["requeued_from"] == load["id"]
        assert copy["parameters"]["attempt"] == 2
        # The copy runs normally; the link keys never reach the terminal.
        _status, body = await raw(server, "GET", f"/push?deviceId={DEVICE}&uuid=ok-1")
        assert b"load_objects" in body
        assert b"requeued_from" not in body
        await raw(server, "POST", f"/result?deviceId={DEVICE}&uuid=ok-1", json={"response": {}})
        assert (await finished(server, copy["id"]))["state"] == "succeeded"


async def test_round_trip_and_requeue_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """The stored parts (ref, results, the idempotent re-queue) on PostgreSQL."""
    async with running(
        tmp_path, database_url=postgres_url, controlid={"result_timeout": 0.3}
    ) as server:
        await register(server, DEVICE)
        lost = await create(server, "set_configuration", {"general": {"language": "en_US"}})
        _, body = await raw(server, "GET", f"/push?deviceId={DEVICE}&uuid=pg-lost")
        assert b"set_configuration" in body
        assert (await finished(server, lost["id"]))["state"] == "timed_out"
        copy: Any = None
        for _ in range(100):
            listed = await server.call("GET", f"/api/v1/devices/{DEVICE}/commands", expect=200)
            copy = next((c for c in listed if c["id"] != lost["id"]), None)
            if copy is not None:
                break
            await asyncio.sleep(0.05)
        assert copy is not None
        assert copy["parameters"]["requeued_from"] == lost["id"]
        async with terminal(server, DEVICE) as device:
            done = await finished(server, copy["id"])
        assert done["state"] == "succeeded"
        assert done["ref"]
        assert device.api.configuration["general"]["language"] == "en_US"
        # A repeated result under the same uuid is found by its stored ref and ignored.
        await raw(
            server, "POST", f"/result?deviceId={DEVICE}&uuid={done['ref']}", json={"error": "x"}
        )
        assert (await get(server, copy["id"]))["state"] == "succeeded"
