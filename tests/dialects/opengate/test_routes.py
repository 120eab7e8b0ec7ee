"""The inbound south API: auth, operation responses, pending, collection, bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.opengate.conftest import og_device, south, wait_state
from tests.support import Running, running


@pytest.fixture
async def tether(tmp_path: Path) -> Any:
    async with running(tmp_path) as server:
        yield server


async def post(
    tether: Running, url: str, body: Any, key: str | None, **headers: str
) -> tuple[int, Any]:
    if key is not None:
        headers["X-ApiKey"] = key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with tether.session.post(url, data=data, headers=headers) as r:
        raw = await r.read()
        return r.status, (json.loads(raw) if raw else None)


def response(op_id: str, **fields: Any) -> dict[str, Any]:
    return {"version": "7.0", "operation": {"response": {"id": op_id, **fields}}}


async def command(tether: Running, device_id: str, name: str, **params: Any) -> dict[str, Any]:
    made: dict[str, Any] = await tether.call(
        "POST",
        f"/api/v1/devices/{device_id}/commands",
        json={"name": name, "parameters": params},
        expect=201,
    )
    return made


async def test_partial_and_final_responses_and_result_codes(tether: Running) -> None:
    key = await og_device(tether, "og-1")  # no endpoint: device-driven only
    made = await command(
        tether,
        "og-1",
        "UPDATE",
        bundleName="b",
        bundleVersion="1",
        deploymentElements=[{"name": "fw", "version": "1", "downloadUrl": "http://x/fw"}],
    )
    url = south(tether, "og-1", "operation/response")
    partial = response(
        made["ref"],
        name="UPDATE",
        timestamp=1704472804000,
        steps=[{"name": "BEGINUPDATE", "result": "SUCCESSFUL", "description": ""}],
    )
    assert await post(tether, url, partial, key) == (201, None)
    now = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert now["state"] == "in_progress"
    assert now["steps"][0]["name"] == "BEGINUPDATE"
    assert now["steps"][0]["time"].startswith("2024-01-05T16:40:04")
    # gzip-compressed (ODA does this above a size threshold)
    second = response(made["ref"], steps=[{"name": "DOWNLOADFILE", "result": "SUCCESSFUL"}])
    status, _ = await post(
        tether, url, gzip.compress(json.dumps(second).encode()), key, **{"Content-Encoding": "gzip"}
    )
    assert status == 201
    final = response(
        made["ref"],
        name="UPDATE",
        resultCode="ERROR_PROCESSING",
        resultDescription="flash failed",
        steps=[{"name": "ENDINSTALL", "result": "ERROR", "description": "flash"}],
    )
    assert (await post(tether, url, final, key))[0] == 201
    done = await wait_state(tether, made["id"], {"failed"})
    assert [s["name"] for s in done["steps"]] == ["BEGINUPDATE", "DOWNLOADFILE", "ENDINSTALL"]
    assert done["steps"][-1]["state"] == "ERROR"
    assert done["status"] == "ERROR_PROCESSING"
    assert done["error"] == "ERROR_PROCESSING: flash failed"
    # A repeated final response is accepted and changes nothing.
    assert (await post(tether, url, final, key))[0] == 201
    again = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert again == done


RESULT_CODES = [
    ("SUCCESSFUL", "succeeded"),
    ("OPERATION_PENDING", "in_progress"),
    ("ERROR_IN_PARAM", "failed"),
    ("NOT_SUPPORTED", "failed"),
    ("ALREADY_IN_PROGRESS", "failed"),
    ("ERROR_PROCESSING", "failed"),
    ("CANCELLED", "failed"),
    ("SOMETHING_NEW", "failed"),
]


async def test_result_code_mapping(tether: Running) -> None:
    key = await og_device(tether, "og-2")
    for code, state in RESULT_CODES:
        made = await command(tether, "og-2", "REBOOT_EQUIPMENT")
        body = response(made["ref"], resultCode=code, resultDescription="d", steps=[])
        url = south(tether, "og-2", "operation/response")
        assert (await post(tether, url, body, key))[0] == 201
        now = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
        assert (now["state"], now["status"]) == (state, code)
        if state == "failed":
            assert now["error"] == f"{code}: d"


async def test_auth_negatives_store_nothing(tether: Running) -> None:
    key = await og_device(tether, "og-3")
    other_key = await og_device(tether, "og-4")
    made = await command(tether, "og-3", "REBOOT_EQUIPMENT")
    body = response(made["ref"], resultCode="SUCCESSFUL", steps=[])
    iot = {"version": "1.0.0", "datastreams": [{"id": "t", "datapoints": [{"value": 1}]}]}
    for tail, payload in (("operation/response", body), ("collect/iot", iot)):
        url = south(tether, "og-3", tail)
        for bad in (None, "", "wrong", other_key, "tk_nope.nope"):
            status, error = await post(tether, url, payload, bad)
            assert status == 401, (tail, bad, status, error)
            assert error["error"]["code"] == "unauthorized"
    async with tether.session.get(south(tether, "og-3", "operation/pending")) as r:
        assert r.status == 401
    now = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert now["state"] == "pending"
    stored = await tether.call("GET", "/api/v1/devices/og-3/notifications", expect=200)
    assert stored == [] or stored.get("items", stored) == []
    assert key


async def test_organisation_api_key_works_and_is_scoped(tether: Running) -> None:
    await og_device(tether, "og-5")
    made_key = await tether.call("POST", "/api/v1/apikeys", json={"name": "og"}, expect=201)
    api_key = made_key.get("key") or made_key.get("secret")
    assert isinstance(api_key, str)
    cmd = await command(tether, "og-5", "REFRESH_INFO")
    body = response(cmd["ref"], resultCode="SUCCESSFUL", steps=[])
    status, _ = await post(tether, south(tether, "og-5", "operation/response"), body, api_key)
    assert status == 201
    assert (await tether.call("GET", f"/api/v1/commands/{cmd['id']}"))["state"] == "succeeded"


async def test_bad_input_gets_clear_errors_and_changes_nothing(tether: Running) -> None:
    key = await og_device(tether, "og-6")
    other = await og_device(tether, "og-7")
    mine = await command(tether, "og-6", "REBOOT_EQUIPMENT")
    theirs = await command(tether, "og-7", "REBOOT_EQUIPMENT")
    url = south(tether, "og-6", "operation/response")

    status, error = await post(tether, url, b'{"operation": {"response": ', key)
    assert status == 400
    assert "malformed JSON" in error["error"]["message"]

    status, error = await post(tether, url, {"operation": {}}, key)
    assert status == 400
    assert "operation.response" in error["error"]["message"]

    status, error = await post(tether, url, response(mine["ref"]), key)
    assert status == 400
    assert "steps" in error["error"]["message"]

    unknown = response("6f1f6e0e-0000-4000-8000-000000000000", resultCode="SUCCESSFUL")
    status, error = await post(tether, url, unknown, key)
    assert status == 404
    assert "is not an operation of device 'og-6'" in error["error"]["message"]

    # og-6 answering og-7's operation: refused, og-7's command untouched.
    stolen = response(theirs["ref"], resultCode="SUCCESSFUL", steps=[])
    status, error = await post(tether, url, stolen, key)
    assert status == 404
    assert theirs["ref"] in error["error"]["message"]

    wrong_name = response(mine["ref"], name="UPDATE", resultCode="SUCCESSFUL")
    status, error = await post(tether, url, wrong_name, key)
    assert status == 400
    assert "REBOOT_EQUIPMENT" in error["error"]["message"]

    status, error = await post(
        tether, url, b"\x1f\x8bnot gzip", key, **{"Content-Encoding": "gzip"}
    )
    assert status == 400

    for cmd in (mine, theirs):
        now = await tether.call("GET", f"/api/v1/commands/{cmd['id']}", expect=200)
        assert now["state"] == "pending"
        assert now["steps"] == []
    assert other


async def test_pending_hands_out_oldest_first_in_request_format(tether: Running) -> None:
    key = await og_device(tether, "og-8", parameter_encoding="typed_array")
    first = await command(tether, "og-8", "REBOOT_EQUIPMENT", type="HARDWARE")
    second = await command(
        tether, "og-8", "GET_DEVICE_PARAMETERS", variableList=["device.cpu.usage"]
    )
    url = south(tether, "og-8", "operation/pending")
    headers = {"X-ApiKey": key}
    async with tether.session.get(url, headers=headers) as r:
        assert r.status == 200
        body = await r.json()
    request = body["operation"]["request"]
    assert request["id"] == first["ref"]
    assert request["name"] == "REBOOT_EQUIPMENT"
    assert request["parameters"] == [{"name": "type", "value": {"string": "HARDWARE"}}]
    assert request["deviceId"] == "og-8"
    assert isinstance(request["timestamp"], int)
    now = await tether.call("GET", f"/api/v1/commands/{first['id']}", expect=200)
    assert now["state"] == "delivered"
    async with tether.session.post(url, headers=headers, data=b"{}") as r:
        assert r.status == 200
        request = (await r.json())["operation"]["request"]
    assert request["id"] == second["ref"]
    assert request["parameters"] == [
        {"name": "variableList", "value": {"array": ["device.cpu.usage"]}}
    ]
    async with tether.session.get(url, headers=headers) as r:
        assert r.status == 204


async def test_collect_iot_notifications_and_shadow(tether: Running) -> None:
    key = await og_device(tether, "og-9")
    body = {
        "version": "1.0.0",
        "datastreams": [
            {
                "id": "temperature.value",
                "feed": "default",
                "datapoints": [
                    {"at": 1704472864000, "value": 21.6},
                    {"at": 1704472804000, "value": 21.4},
                ],
            },
            {"id": "device.model", "datapoints": [{"value": {"name": "X"}}]},
            {
                "id": "energy.pulses",
                "datapoints": [{"from": 1704472000, "at": 1704472800, "value": 42, "tags": ["m1"]}],
            },
            {"id": "device.identifier", "datapoints": [{"value": "spoofed"}]},
        ],
    }
    status, _ = await post(tether, south(tether, "og-9", "collect/iot"), body, key)
    assert status == 201
    listed = await tether.call("GET", "/api/v1/devices/og-9/notifications?take=50", expect=200)
    items = listed["items"] if isinstance(listed, dict) else listed
    names = sorted(n["name"] for n in items)
    assert names == ["device.model", "energy.pulses", "temperature.value", "temperature.value"]
    pulses = next(n for n in items if n["name"] == "energy.pulses")
    # epoch seconds (the vendor python example) are read as seconds
    assert pulses["parameters"] == {
        "value": 42,
        "from": 1704472000000,
        "at": 1704472800000,
        "tags": ["m1"],
    }
    assert pulses["timestamp"].startswith("2024-01-05T16:40:00")
    state = await tether.call("GET", "/api/v1/devices/og-9/state", expect=200)
    assert state["reported"]["temperature.value"] == {"value": 21.6, "at": 1704472864000}
    assert state["reported"]["device.model"]["value"] == {"name": "X"}
    assert "device.identifier" not in state["reported"]
    # an older upload does not replace a newer value
    old = {
        "datastreams": [
            {"id": "temperature.value", "datapoints": [{"at": 1704470000000, "value": 1.0}]}
        ]
    }
    assert (await post(tether, south(tether, "og-9", "collect/iot"), old, key))[0] == 201
    state = await tether.call("GET", "/api/v1/devices/og-9/state", expect=200)
    assert state["reported"]["temperature.value"]["value"] == 21.6

    for bad, why in (
        ({"datastreams": []}, "datastreams"),
        ({"datastreams": [{"id": "x", "datapoints": [{}]}]}, "value is required"),
        ({"datastreams": [{"id": "x", "datapoints": [{"value": 1, "at": "now"}]}]}, "at"),
    ):
        status, error = await post(tether, south(tether, "og-9", "collect/iot"), bad, key)
        assert status == 400
        assert why in error["error"]["message"]


async def test_collect_dmm(tether: Running) -> None:
    key = await og_device(tether, "og-10")
    body = {"version": "7.0", "event": {"device": {"hardware": {"model": "m"}}}}
    status, _ = await post(tether, south(tether, "og-10", "collect/dmm"), body, key)
    assert status == 201
    state = await tether.call("GET", "/api/v1/devices/og-10/state", expect=200)
    assert state["reported"]["dmm"] == body["event"]
    device = await tether.call("GET", "/api/v1/devices/og-10", expect=200)
    assert device["online"] is True  # any authenticated south call is a sign of life


async def test_catalogue_validation_through_the_native_api(tether: Running) -> None:
    await og_device(tether, "og-11")
    for name, params, why in (
        ("REBOOT_EQUIPMENT", {"type": "WARM"}, "HARDWARE, SOFTWARE"),
        ("UPDATE", {"bundleName": "b"}, "bundleVersion"),
        ("SET_DEVICE_PARAMETERS", {"variableList": [{"variableName": "a"}]}, "variableValue"),
        ("GET_DEVICE_PARAMETERS", {}, "variableList"),
        ("MY_OP", [1, 2], "name"),
        ("MY OP", {}, "whitespace"),
    ):
        error = await tether.call(
            "POST",
            "/api/v1/devices/og-11/commands",
            json={"name": name, "parameters": params},
            expect=400,
        )
        assert why in error["error"]["message"], (name, error)
    # free names are allowed; typed-array input is normalised to an object
    made = await tether.call(
        "POST",
        "/api/v1/devices/og-11/commands",
        json={
            "name": "ADMINISTRATIVE_STATUS_CHANGE",
            "parameters": [{"name": "admsts", "value": {"string": "ACTIVE"}}],
        },
        expect=201,
    )
    assert made["parameters"] == {"admsts": "ACTIVE"}


async def test_late_final_response_after_timeout_is_kept_for_audit(tether: Running) -> None:
    key = await og_device(tether, "og-12")
    made = await tether.call(
        "POST",
        "/api/v1/devices/og-12/commands",
        json={"name": "REBOOT_EQUIPMENT", "timeout": 0.2},
        expect=201,
    )
    async with tether.session.get(
        south(tether, "og-12", "operation/pending"), headers={"X-ApiKey": key}
    ) as r:
        assert r.status == 200
    timed_out = await wait_state(tether, made["id"], {"timed_out"})
    body = response(made["ref"], resultCode="SUCCESSFUL", resultDescription="rebooted")
    body["operation"]["response"]["steps"] = [{"name": "REBOOT_EQUIPMENT"}]
    assert (await post(tether, south(tether, "og-12", "operation/response"), body, key))[0] == 201
    now = await tether.call("GET", f"/api/v1/commands/{made['id']}", expect=200)
    assert now == timed_out
    listed = await tether.call("GET", "/api/v1/devices/og-12/notifications", expect=200)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert [n["name"] for n in items] == ["opengate.late_response"]
    assert items[0]["parameters"]["resultCode"] == "SUCCESSFUL"
    assert items[0]["parameters"]["state"] == "timed_out"


@pytest.mark.postgres
async def test_steps_and_results_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    async with running(tmp_path, database_url=postgres_url) as tether:
        key = await og_device(tether, "og-pg")
        made = await command(tether, "og-pg", "GET_DEVICE_PARAMETERS", variableList=["a"])
        url = south(tether, "og-pg", "operation/response")
        for name in ("BEGIN", "MIDDLE"):
            partial = response(made["ref"], steps=[{"name": name, "timestamp": 1704472804000}])
            assert (await post(tether, url, partial, key))[0] == 201
        rows = [{"variableName": "a", "variableValue": 1, "resultCode": "SUCCESS"}]
        final = response(
            made["ref"],
            resultCode="SUCCESSFUL",
            resultDescription="ok",
            steps=[{"name": "GET_DEVICE_PARAMETERS", "response": rows}],
        )
        assert (await post(tether, url, final, key))[0] == 201
        done = await wait_state(tether, made["id"], {"succeeded"})
        assert [s["name"] for s in done["steps"]] == ["BEGIN", "MIDDLE", "GET_DEVICE_PARAMETERS"]
        assert done["steps"][-1]["data"] == rows
        assert done["result"] == {
            "resultCode": "SUCCESSFUL",
            "resultDescription": "ok",
            "response": rows,
        }
