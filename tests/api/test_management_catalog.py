"""Networks, device types, config revisions and firmware targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Api


@pytest.mark.parametrize("base", ["/api/v1/networks", "/api/v1/device-types"])
async def test_scope_crud(api: Api, base: str) -> None:
    made = await api.call("POST", base, json={"name": "alpha", "description": "first"}, expect=201)
    sid = made["id"]
    assert made == {"id": sid, "name": "alpha", "description": "first"}
    assert await api.call("GET", f"{base}/{sid}") == made

    patched = await api.call("PATCH", f"{base}/{sid}", json={"name": "alpha-2"})
    assert patched == {"id": sid, "name": "alpha-2", "description": "first"}
    patched = await api.call("PATCH", f"{base}/{sid}", json={"description": None})
    assert patched["description"] is None
    await api.call("PATCH", f"{base}/{sid}", json={"name": None}, expect=400)

    await api.call("POST", base, json={"name": "beta"}, expect=201)
    await api.call("POST", base, json={"name": "gamma"}, expect=201)
    names = [n["name"] for n in await api.call("GET", f"{base}?sort=name&desc=true")]
    assert names == ["gamma", "beta", "alpha-2"]
    assert [n["name"] for n in await api.call("GET", f"{base}?name=beta")] == ["beta"]
    assert [n["name"] for n in await api.call("GET", f"{base}?namePattern=%25a")] == [
        "beta",
        "gamma",
    ]
    assert [n["name"] for n in await api.call("GET", f"{base}?take=1&skip=1")] == ["beta"]
    await api.call("GET", f"{base}?sort=description", expect=400)

    await api.call("DELETE", f"{base}/{sid}", expect=204)
    await api.call("GET", f"{base}/{sid}", expect=404)
    await api.call("DELETE", f"{base}/{sid}", expect=404)
    await api.call("PATCH", f"{base}/{sid}", json={"name": "x"}, expect=404)


@pytest.mark.parametrize("base", ["/api/v1/networks", "/api/v1/device-types"])
async def test_duplicate_name_is_409(api: Api, base: str) -> None:
    await api.call("POST", base, json={"name": "dup"}, expect=201)
    body = await api.call("POST", base, json={"name": "dup"}, expect=409)
    assert body["error"]["code"] == "conflict"
    other = await api.call("POST", base, json={"name": "other"}, expect=201)
    await api.call("PATCH", f"{base}/{other['id']}", json={"name": "dup"}, expect=409)


SCOPES_WITH_FIELD = pytest.mark.parametrize(
    ("base", "field"), [("/api/v1/networks", "networkId"), ("/api/v1/device-types", "typeId")]
)


@SCOPES_WITH_FIELD
async def test_delete_scope_with_devices_is_400_without_force(
    api: Api, base: str, field: str
) -> None:
    sid = (await api.call("POST", base, json={"name": "busy"}, expect=201))["id"]
    await api.device("d-1", **{field: sid})
    body = await api.call("DELETE", f"{base}/{sid}", expect=400)
    assert body["error"]["code"] == "bad_request"
    await api.call("DELETE", f"{base}/{sid}?force=false", expect=400)
    await api.call("DELETE", f"{base}/{sid}?force=maybe", expect=400)
    await api.call("GET", f"{base}/{sid}")
    await api.call("GET", "/api/v1/devices/d-1")


@SCOPES_WITH_FIELD
async def test_delete_scope_with_force_deletes_its_devices(api: Api, base: str, field: str) -> None:
    sid = (await api.call("POST", base, json={"name": "busy"}, expect=201))["id"]
    await api.device("d-1", **{field: sid})
    await api.call("DELETE", f"{base}/{sid}?force=true", expect=204)
    await api.call("GET", f"{base}/{sid}", expect=404)
    await api.call("GET", "/api/v1/devices/d-1", expect=404)


async def test_client_sees_only_granted_scopes_and_cannot_manage(api: Api) -> None:
    uid, alice = await api.user("alice")
    mine = await api.network("mine")
    other = await api.network("other")
    await api.call("PUT", f"/api/v1/users/{uid}/networks/{mine}", expect=204)
    assert [n["id"] for n in await api.call("GET", "/api/v1/networks", headers=alice)] == [mine]
    await api.call("GET", f"/api/v1/networks/{mine}", headers=alice)
    await api.call("GET", f"/api/v1/networks/{other}", headers=alice, expect=403)
    await api.call("GET", "/api/v1/networks/999", headers=alice, expect=403)
    await api.call("GET", "/api/v1/networks/999", expect=404)
    await api.call("POST", "/api/v1/networks", headers=alice, json={"name": "x"}, expect=403)
    await api.call(
        "PATCH", f"/api/v1/networks/{mine}", headers=alice, json={"name": "y"}, expect=403
    )
    await api.call("DELETE", f"/api/v1/networks/{mine}", headers=alice, expect=403)
    await api.call("POST", "/api/v1/device-types", headers=alice, json={"name": "t"}, expect=403)
    # Clients see every device type unless restricted.
    await api.call("POST", "/api/v1/device-types", json={"name": "sensor"}, expect=201)
    assert len(await api.call("GET", "/api/v1/device-types", headers=alice)) == 1


async def test_config_revisions(api: Api) -> None:
    tid = (await api.call("POST", "/api/v1/device-types", json={"name": "t"}, expect=201))["id"]
    await api.device("cfg-1", typeId=tid)
    await api.device("cfg-2")

    # Nothing applies yet.
    await api.call("GET", "/api/v1/devices/cfg-1/config", expect=404)

    everyone = await api.call(
        "POST", "/api/v1/config-revisions", json={"document": {"level": 0}}, expect=201
    )
    assert everyone["deviceId"] is None
    assert everyone["deviceTypeId"] is None
    assert everyone["createdBy"] == 1
    by_type = await api.call(
        "POST",
        "/api/v1/config-revisions",
        json={"document": {"level": 1}, "deviceTypeId": tid},
        expect=201,
    )
    by_device = await api.call(
        "POST",
        "/api/v1/config-revisions",
        json={"document": {"level": 2}, "deviceId": "cfg-1"},
        expect=201,
    )
    assert (await api.call("GET", "/api/v1/devices/cfg-1/config"))["id"] == by_device["id"]
    assert (await api.call("GET", "/api/v1/devices/cfg-2/config"))["id"] == everyone["id"]

    listed = await api.call("GET", "/api/v1/config-revisions")
    assert {c["id"] for c in listed} == {everyone["id"], by_type["id"], by_device["id"]}
    only = await api.call("GET", "/api/v1/config-revisions?deviceId=cfg-1")
    assert [c["id"] for c in only] == [by_device["id"]]
    only = await api.call("GET", f"/api/v1/config-revisions?deviceTypeId={tid}")
    assert [c["id"] for c in only] == [by_type["id"]]

    await api.call(
        "POST",
        "/api/v1/config-revisions",
        json={"document": {}, "deviceId": "cfg-1", "deviceTypeId": tid},
        expect=400,
    )
    await api.call(
        "POST", "/api/v1/config-revisions", json={"document": {}, "deviceTypeId": 999}, expect=404
    )
    await api.call("POST", "/api/v1/config-revisions", json={}, expect=400)
    _, alice = await api.user("alice")
    await api.call("GET", "/api/v1/config-revisions", headers=alice, expect=403)


async def test_firmware_targets(api: Api) -> None:
    await api.device("fw-1")
    sha = "AB" * 32
    made = await api.call(
        "POST",
        "/api/v1/firmware-targets",
        json={
            "version": "1.2.3",
            "url": "https://fw.example/1.2.3.bin",
            "size": 1024,
            "sha256": sha,
            "deviceId": "fw-1",
        },
        expect=201,
    )
    assert made["sha256"] == sha.lower()
    assert made["deviceId"] == "fw-1"
    assert [f["id"] for f in await api.call("GET", "/api/v1/firmware-targets")] == [made["id"]]
    await api.call(
        "POST",
        "/api/v1/firmware-targets",
        json={"version": "1", "url": "https://x", "sha256": "zz"},
        expect=400,
    )
    await api.call("POST", "/api/v1/firmware-targets", json={"version": "1"}, expect=400)
    await api.call("DELETE", f"/api/v1/firmware-targets/{made['id']}", expect=204)
    await api.call("DELETE", f"/api/v1/firmware-targets/{made['id']}", expect=404)
    assert await api.call("GET", "/api/v1/firmware-targets") == []
    _, alice = await api.user("alice")
    await api.call("GET", "/api/v1/firmware-targets", headers=alice, expect=403)
