"""Devices: CRUD, visibility, blocking, credentials, state and notifications."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from tether.hub import secrets

if TYPE_CHECKING:
    from conftest import Api


async def test_device_crud(api: Api) -> None:
    net = await api.network("n1")
    made = await api.device(
        "dev-1", networkId=net, data={"floor": 2}, attributes={"model": "x"}, dialect="native"
    )
    assert made["id"] == "dev-1"
    assert made["networkId"] == net
    assert made["data"] == {"floor": 2}
    assert made["attributes"] == {"model": "x"}
    assert made["hasCredential"] is False
    assert made["blocked"] is False
    assert made["online"] is False
    assert made["ownerId"] is None  # an admin's device has no owner unless named

    got = await api.call("GET", "/api/v1/devices/dev-1")
    assert got["name"] == "dev-1"
    assert got["createdAt"] == made["createdAt"]

    patched = await api.call("PATCH", "/api/v1/devices/dev-1", json={"name": "Lamp"})
    assert patched["name"] == "Lamp"
    assert patched["networkId"] == net
    assert patched["data"] == {"floor": 2}
    patched = await api.call(
        "PATCH", "/api/v1/devices/dev-1", json={"networkId": None, "data": None}
    )
    assert patched["networkId"] is None
    assert patched["data"] is None
    assert patched["name"] == "Lamp"
    await api.call("PATCH", "/api/v1/devices/dev-1", json={"name": None}, expect=400)
    await api.call("PATCH", "/api/v1/devices/dev-1", json={"blocked": None}, expect=400)
    await api.call("PATCH", "/api/v1/devices/dev-1", json={"networkId": 999}, expect=404)
    await api.call("PATCH", "/api/v1/devices/dev-1", json={"credentialHash": "x"}, expect=400)

    # Generated ids, duplicates, invalid ids.
    generated = await api.call("POST", "/api/v1/devices", json={"name": "anon"}, expect=201)
    assert len(generated["id"]) == 32
    await api.call("POST", "/api/v1/devices", json={"id": "dev-1", "name": "x"}, expect=409)
    await api.call("POST", "/api/v1/devices", json={"id": "bad id", "name": "x"}, expect=400)
    await api.call("POST", "/api/v1/devices", json={"name": "x", "networkId": 999}, expect=404)

    # Presence fills "online".
    api.hub.presence.activity("dev-1")
    assert (await api.call("GET", "/api/v1/devices/dev-1"))["online"] is True
    listed = {d["id"]: d["online"] for d in await api.call("GET", "/api/v1/devices")}
    assert listed == {"dev-1": True, generated["id"]: False}

    await api.call("DELETE", "/api/v1/devices/dev-1", expect=204)
    await api.call("GET", "/api/v1/devices/dev-1", expect=404)
    await api.call("DELETE", "/api/v1/devices/dev-1", expect=404)
    await api.call("PATCH", "/api/v1/devices/dev-1", json={"name": "y"}, expect=404)


async def test_device_id_forms_in_paths(api: Api) -> None:
    for device_id in ("1000abcdef", "a.b:c@d-e_f", "123456789012345678"):
        await api.device(device_id)
        got = await api.call("GET", f"/api/v1/devices/{quote(device_id, safe='')}")
        assert got["id"] == device_id


async def test_list_filters_sort_and_paging(api: Api) -> None:
    net = await api.network("n1")
    tid = (await api.call("POST", "/api/v1/device-types", json={"name": "t"}, expect=201))["id"]
    await api.device("c", name="charlie", networkId=net)
    await api.device("a", name="alpha", typeId=tid)
    await api.device("b", name="bravo", networkId=net, typeId=tid, dialect="ewelink")

    names = [d["name"] for d in await api.call("GET", "/api/v1/devices")]
    assert names == ["alpha", "bravo", "charlie"]  # by name
    ids = [d["id"] for d in await api.call("GET", "/api/v1/devices?sort=id&desc=true")]
    assert ids == ["c", "b", "a"]
    query = f"networkId={net}&sort=networkId"
    assert [d["id"] for d in await api.call("GET", f"/api/v1/devices?{query}")] == ["b", "c"]
    assert [d["id"] for d in await api.call("GET", f"/api/v1/devices?typeId={tid}")] == [
        "a",
        "b",
    ]
    assert [d["id"] for d in await api.call("GET", "/api/v1/devices?dialect=ewelink")] == ["b"]
    assert [d["id"] for d in await api.call("GET", "/api/v1/devices?name=alpha")] == ["a"]
    found = await api.call("GET", "/api/v1/devices?namePattern=%25ar%25")
    assert [d["id"] for d in found] == ["c"]
    assert [d["id"] for d in await api.call("GET", "/api/v1/devices?skip=1&take=1")] == ["b"]
    assert await api.call("GET", "/api/v1/devices?ownerId=1") == []
    for bad in ("sort=credential_hash", "networkId=x", "take=5000", "skip=x"):
        await api.call("GET", f"/api/v1/devices?{bad}", expect=400)


async def test_client_sees_its_networks_and_own_devices_only(api: Api) -> None:
    uid, alice = await api.user("alice")
    _, bob = await api.user("bob")
    granted = await api.network("granted")
    hidden = await api.network("hidden")
    await api.call("PUT", f"/api/v1/users/{uid}/networks/{granted}", expect=204)
    await api.device("in-granted", networkId=granted)
    await api.device("in-hidden", networkId=hidden)
    await api.device("loose")
    own = await api.device("alice-own", headers=alice)
    assert own["ownerId"] == uid  # a client's device is its own
    await api.device("bob-own", headers=bob)

    listed = [d["id"] for d in await api.call("GET", "/api/v1/devices?sort=id", headers=alice)]
    assert listed == ["alice-own", "in-granted"]
    admin_listed = await api.call("GET", "/api/v1/devices")
    assert len(admin_listed) == 5

    await api.call("GET", "/api/v1/devices/in-granted", headers=alice)
    await api.call("GET", "/api/v1/devices/alice-own", headers=alice)
    for other in ("in-hidden", "loose", "bob-own", "does-not-exist"):
        body = await api.call("GET", f"/api/v1/devices/{other}", headers=alice, expect=403)
        assert body["error"]["code"] == "forbidden"
        await api.call(
            "PATCH", f"/api/v1/devices/{other}", headers=alice, json={"name": "x"}, expect=403
        )
        await api.call("DELETE", f"/api/v1/devices/{other}", headers=alice, expect=403)
        await api.call("GET", f"/api/v1/devices/{other}/state", headers=alice, expect=403)
        await api.call("GET", f"/api/v1/devices/{other}/notifications", headers=alice, expect=403)
        await api.call("POST", f"/api/v1/devices/{other}/credential", headers=alice, expect=403)
        await api.call("POST", f"/api/v1/devices/{other}/block", headers=alice, expect=403)
    body = await api.call("GET", "/api/v1/devices/does-not-exist", expect=404)
    assert body["error"]["code"] == "not_found"

    # A client may not place a device in a network it cannot see.
    await api.call(
        "POST",
        "/api/v1/devices",
        headers=alice,
        json={"name": "sneaky", "networkId": hidden},
        expect=403,
    )
    await api.call(
        "PATCH",
        "/api/v1/devices/in-granted",
        headers=alice,
        json={"networkId": hidden},
        expect=403,
    )
    # Revoking the grant hides the network's devices at once.
    await api.call("DELETE", f"/api/v1/users/{uid}/networks/{granted}", expect=204)
    await api.call("GET", "/api/v1/devices/in-granted", headers=alice, expect=403)
    listed = [d["id"] for d in await api.call("GET", "/api/v1/devices", headers=alice)]
    assert listed == ["alice-own"]


async def test_block_unblock_and_credential(api: Api) -> None:
    await api.device("dev-b")
    issued = await api.call("POST", "/api/v1/devices/dev-b/credential", expect=201)
    assert issued["deviceId"] == "dev-b"
    secret = issued["credential"]
    assert secret
    device = await api.hub.store.devices.get("dev-b")
    assert device is not None
    assert device.credential_hash is not None
    assert secret not in device.credential_hash  # only a hash is stored
    assert secrets.verify_secret(device.credential_hash, secret)
    assert (await api.call("GET", "/api/v1/devices/dev-b"))["hasCredential"] is True
    _, principal = await api.hub.auth.device("dev-b", secret)
    assert principal.device_id == "dev-b"

    again = await api.call("POST", "/api/v1/devices/dev-b/credential", expect=201)
    assert again["credential"] != secret
    device = await api.hub.store.devices.get("dev-b")
    assert device is not None
    assert not secrets.verify_secret(device.credential_hash, secret)

    blocked = await api.call("POST", "/api/v1/devices/dev-b/block")
    assert blocked["blocked"] is True
    assert (await api.call("GET", "/api/v1/devices/dev-b"))["blocked"] is True
    unblocked = await api.call("POST", "/api/v1/devices/dev-b/unblock")
    assert unblocked["blocked"] is False
    await api.call("POST", "/api/v1/devices/nope/block", expect=404)
    await api.call("POST", "/api/v1/devices/nope/credential", expect=404)


async def test_state(api: Api) -> None:
    await api.device("dev-s")
    state = await api.call("GET", "/api/v1/devices/dev-s/state")
    assert state["deviceId"] == "dev-s"
    assert state["reported"] == {}
    assert state["desired"] == {}

    device = await api.hub.directory.device("dev-s")
    assert device is not None
    await api.hub.twins.report(device, {"power": "off"})

    state = await api.call(
        "PATCH", "/api/v1/devices/dev-s/state", json={"desired": {"power": "on"}}
    )
    assert state["desired"] == {"power": "on"}
    assert state["reported"] == {"power": "off"}
    state = await api.call(
        "PATCH", "/api/v1/devices/dev-s/state", json={"desired": {"brightness": 5}}
    )
    assert state["desired"] == {"power": "on", "brightness": 5}
    assert await api.call("GET", "/api/v1/devices/dev-s/state") == state
    assert await api.call("PATCH", "/api/v1/devices/dev-s/state", json={}) == state

    body = await api.call(
        "PATCH", "/api/v1/devices/dev-s/state", json={"reported": {"power": "on"}}, expect=400
    )
    assert body["error"]["code"] == "bad_request"
    await api.call("PATCH", "/api/v1/devices/dev-s/state", json={"desired": [1]}, expect=400)
    await api.call("GET", "/api/v1/devices/nope/state", expect=404)


async def test_notifications(api: Api) -> None:
    uid, alice = await api.user("alice")
    net = await api.network("n")
    await api.call("PUT", f"/api/v1/users/{uid}/networks/{net}", expect=204)
    await api.device("n-1", networkId=net)
    await api.device("n-2")
    hub = api.hub
    base = datetime(2030, 1, 1, tzinfo=UTC)
    posted = []
    for i, (device_id, name) in enumerate(
        [("n-1", "temp"), ("n-1", "humidity"), ("n-1", "temp"), ("n-2", "temp")]
    ):
        device = await hub.directory.device(device_id)
        assert device is not None
        posted.append(
            await hub.notifications.post_as_device(
                device, name, {"i": i}, timestamp=base + timedelta(minutes=i)
            )
        )

    every = await api.call("GET", "/api/v1/notifications")
    assert [n["id"] for n in every] == [n.id for n in posted]
    assert every[0]["deviceId"] == "n-1"
    assert every[0]["parameters"] == {"i": 0}
    assert every[0]["timestamp"].startswith("2030-01-01T00:00:00")

    # The client sees only notifications of devices it can see.
    mine = await api.call("GET", "/api/v1/notifications", headers=alice)
    assert [n["deviceId"] for n in mine] == ["n-1", "n-1", "n-1"]
    await api.call("GET", f"/api/v1/notifications/{posted[3].id}", headers=alice, expect=403)
    one = await api.call("GET", f"/api/v1/notifications/{posted[0].id}", headers=alice)
    assert one == every[0]
    await api.call("GET", "/api/v1/notifications/99999", expect=404)
    await api.call("GET", "/api/v1/notifications/abc", expect=400)

    # Filters: device, names (repeated or comma list), time range, paging.
    one_device = await api.call("GET", "/api/v1/notifications?deviceId=n-2")
    assert [n["id"] for n in one_device] == [posted[3].id]
    await api.call("GET", "/api/v1/notifications?deviceId=n-2", headers=alice, expect=403)
    several = await api.call("GET", "/api/v1/notifications?deviceId=n-1,n-2&name=humidity")
    assert [n["id"] for n in several] == [posted[1].id]
    by_device = await api.call("GET", "/api/v1/devices/n-1/notifications?name=temp")
    assert [n["id"] for n in by_device] == [posted[0].id, posted[2].id]
    by_names = await api.call("GET", "/api/v1/devices/n-1/notifications?name=temp&name=humidity")
    assert len(by_names) == 3
    start = quote((base + timedelta(minutes=0)).isoformat())
    end = quote((base + timedelta(minutes=2)).isoformat())
    ranged = await api.call("GET", f"/api/v1/devices/n-1/notifications?start={start}&end={end}")
    assert [n["id"] for n in ranged] == [posted[1].id, posted[2].id]
    naive = await api.call("GET", "/api/v1/notifications?start=2030-01-01T00:02:00&desc=true")
    assert [n["id"] for n in naive] == [posted[3].id]
    spaced = await api.call("GET", "/api/v1/notifications?start=2030-01-01 00:02:00+00:00")
    assert [n["id"] for n in spaced] == [posted[3].id]
    zulu = await api.call("GET", "/api/v1/notifications?end=2030-01-01T00:00:00Z")
    assert [n["id"] for n in zulu] == [posted[0].id]
    paged = await api.call("GET", "/api/v1/notifications?sort=id&desc=true&take=2&skip=1")
    assert [n["id"] for n in paged] == [posted[2].id, posted[1].id]
    for bad in ("start=yesterday", "sort=parameters", "take=0", f"start={end}&end={start}"):
        await api.call("GET", f"/api/v1/notifications?{bad}", expect=400)
    await api.call("GET", "/api/v1/devices/nope/notifications", expect=404)
