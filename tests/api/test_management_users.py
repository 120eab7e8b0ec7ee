"""Users: CRUD, the current user, network grants, filters, sorting and paging."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Api


async def test_user_crud(api: Api) -> None:
    made = await api.call(
        "POST",
        "/api/v1/users",
        json={"login": "carol", "password": "secret-1", "data": {"team": "ops"}},
        expect=201,
    )
    uid = made["id"]
    assert made["login"] == "carol"
    assert made["role"] == "client"
    assert made["status"] == "active"
    assert made["data"] == {"team": "ops"}
    assert made["networkIds"] == []
    assert "password" not in made
    assert "passwordHash" not in made

    got = await api.call("GET", f"/api/v1/users/{uid}")
    assert got == made

    # PATCH changes only what is sent.
    patched = await api.call("PATCH", f"/api/v1/users/{uid}", json={"role": "admin"})
    assert patched["role"] == "admin"
    assert patched["data"] == {"team": "ops"}
    # null clears data; an empty body changes nothing.
    patched = await api.call("PATCH", f"/api/v1/users/{uid}", json={"data": None})
    assert patched["data"] is None
    assert patched["role"] == "admin"
    assert await api.call("PATCH", f"/api/v1/users/{uid}", json={}) == patched
    # Status and password.
    patched = await api.call(
        "PATCH", f"/api/v1/users/{uid}", json={"status": "disabled", "password": "secret-2"}
    )
    assert patched["status"] == "disabled"
    await api.call(
        "POST",
        "/api/v1/auth/token",
        anonymous=True,
        json={"login": "carol", "password": "secret-2"},
        expect=401,
    )
    await api.call("PATCH", f"/api/v1/users/{uid}", json={"status": "active"})
    await api.login("carol", "secret-2")

    await api.call("DELETE", f"/api/v1/users/{uid}", expect=204)
    await api.call("GET", f"/api/v1/users/{uid}", expect=404)
    await api.call("DELETE", f"/api/v1/users/{uid}", expect=404)
    await api.call("PATCH", f"/api/v1/users/{uid}", json={"data": 1}, expect=404)
    await api.call("GET", "/api/v1/users/abc", expect=400)


async def test_duplicate_login_is_409_and_invalid_input_400(api: Api) -> None:
    await api.user("dave")
    body = await api.call(
        "POST", "/api/v1/users", json={"login": "dave", "password": "secret-1"}, expect=409
    )
    assert body["error"]["code"] == "conflict"
    await api.call(
        "POST", "/api/v1/users", json={"login": "bad login!", "password": "secret-1"}, expect=400
    )
    await api.call("POST", "/api/v1/users", json={"login": "eve", "password": "123"}, expect=400)


async def test_current_user(api: Api) -> None:
    uid, alice = await api.user("alice", data={"a": 1})
    me = await api.call("GET", "/api/v1/users/me", headers=alice)
    assert me["id"] == uid
    assert me["lastLogin"] is not None
    me = await api.call(
        "PATCH", "/api/v1/users/me", headers=alice, json={"data": {"b": 2}, "password": "secret-9"}
    )
    assert me["data"] == {"b": 2}
    await api.login("alice", "secret-9")
    # A client may read itself by id, but not change its own role or status.
    assert (await api.call("GET", f"/api/v1/users/{uid}", headers=alice))["id"] == uid
    await api.call("PATCH", "/api/v1/users/me", headers=alice, json={"role": "admin"}, expect=403)
    await api.call(
        "PATCH", f"/api/v1/users/{uid}", headers=alice, json={"status": "locked"}, expect=403
    )


async def test_client_cannot_manage_users(api: Api) -> None:
    _, alice = await api.user("alice")
    await api.call("GET", "/api/v1/users", headers=alice, expect=403)
    await api.call(
        "POST",
        "/api/v1/users",
        headers=alice,
        json={"login": "mallory", "password": "secret-1"},
        expect=403,
    )
    await api.call("GET", "/api/v1/users/1", headers=alice, expect=403)
    await api.call("DELETE", "/api/v1/users/1", headers=alice, expect=403)
    await api.call("PUT", "/api/v1/users/1/networks/1", headers=alice, expect=403)


async def test_network_grants(api: Api) -> None:
    uid, alice = await api.user("alice")
    net = await api.network("plant")
    await api.call("PUT", f"/api/v1/users/{uid}/networks/{net}", expect=204)
    await api.call("PUT", f"/api/v1/users/{uid}/networks/{net}", expect=204)  # idempotent
    assert (await api.call("GET", f"/api/v1/users/{uid}"))["networkIds"] == [net]
    listed = await api.call("GET", "/api/v1/networks", headers=alice)
    assert [n["id"] for n in listed] == [net]

    await api.call("DELETE", f"/api/v1/users/{uid}/networks/{net}", expect=204)
    assert (await api.call("GET", f"/api/v1/users/{uid}"))["networkIds"] == []
    assert await api.call("GET", "/api/v1/networks", headers=alice) == []

    await api.call("PUT", f"/api/v1/users/{uid}/networks/999", expect=404)
    await api.call("PUT", f"/api/v1/users/999/networks/{net}", expect=404)


async def test_list_filters_sorting_and_paging(api: Api) -> None:
    for name in ("zed", "amy", "bob", "amos"):
        await api.user(name)
    await api.call("PATCH", "/api/v1/users/2", json={"status": "locked"})

    logins = [u["login"] for u in await api.call("GET", "/api/v1/users")]
    assert logins == ["admin", "zed", "amy", "bob", "amos"]  # by id
    by_login = await api.call("GET", "/api/v1/users?sort=login")
    assert [u["login"] for u in by_login] == ["admin", "amos", "amy", "bob", "zed"]
    desc = await api.call("GET", "/api/v1/users?sort=login&desc=true")
    assert [u["login"] for u in desc] == ["zed", "bob", "amy", "amos", "admin"]
    page = await api.call("GET", "/api/v1/users?sort=login&skip=1&take=2")
    assert [u["login"] for u in page] == ["amos", "amy"]
    both = await api.call("GET", "/api/v1/users?sort=createdAt&desc=1")
    assert len(both) == 5
    assert len(await api.call("GET", "/api/v1/users?sort=created_at")) == 5

    assert [u["login"] for u in await api.call("GET", "/api/v1/users?login=bob")] == ["bob"]
    pattern = await api.call("GET", "/api/v1/users?loginPattern=am%25&sort=login")
    assert [u["login"] for u in pattern] == ["amos", "amy"]
    assert [u["login"] for u in await api.call("GET", "/api/v1/users?role=admin")] == ["admin"]
    assert [u["login"] for u in await api.call("GET", "/api/v1/users?status=locked")] == ["zed"]

    for bad in (
        "sort=password_hash",
        "sort=nope",
        "take=0",
        "take=1001",
        "skip=-1",
        "take=x",
        "desc=maybe",
        "role=root",
        "status=gone",
    ):
        body = await api.call("GET", f"/api/v1/users?{bad}", expect=400)
        assert body["error"]["code"] == "bad_request", bad
    assert len(await api.call("GET", "/api/v1/users?take=1000")) == 5
