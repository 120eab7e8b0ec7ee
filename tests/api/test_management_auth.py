"""Tokens, API keys, and how every endpoint answers bad credentials and bad bodies."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from tether.core.access import user_principal

if TYPE_CHECKING:
    from conftest import Api


def assert_error(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == code, body
    assert isinstance(error["message"], str)
    assert error["message"]


async def test_login_and_refresh(api: Api) -> None:
    tokens = await api.call(
        "POST",
        "/api/v1/auth/token",
        anonymous=True,
        json={"login": "admin", "password": "adminpass"},
        expect=201,
    )
    assert set(tokens) == {"accessToken", "refreshToken"}
    me = await api.call(
        "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['accessToken']}"}
    )
    assert me["login"] == "admin"
    assert me["role"] == "admin"
    assert "passwordHash" not in me

    refreshed = await api.call(
        "POST",
        "/api/v1/auth/refresh",
        anonymous=True,
        json={"refreshToken": tokens["refreshToken"]},
        expect=201,
    )
    assert refreshed["refreshToken"] is None
    headers = {"Authorization": f"Bearer {refreshed['accessToken']}"}
    assert (await api.call("GET", "/api/v1/users/me", headers=headers))["login"] == "admin"


async def test_wrong_password_and_refresh_with_access_token(api: Api) -> None:
    body = await api.call(
        "POST",
        "/api/v1/auth/token",
        anonymous=True,
        json={"login": "admin", "password": "nope-nope"},
        expect=401,
    )
    assert_error(body, "unauthorized")
    body = await api.call(
        "POST",
        "/api/v1/auth/token",
        anonymous=True,
        json={"login": "ghost", "password": "nope-nope"},
        expect=401,
    )
    assert_error(body, "unauthorized")
    access = api.admin["Authorization"].removeprefix("Bearer ")
    body = await api.call(
        "POST", "/api/v1/auth/refresh", anonymous=True, json={"refreshToken": access}, expect=401
    )
    assert_error(body, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW5wYXNz"},
        {"X-API-Key": "tk_bogus.bogus"},
    ],
)
async def test_missing_or_invalid_credentials_are_401(api: Api, headers: dict[str, str]) -> None:
    for path in ("/api/v1/users", "/api/v1/devices", "/api/v1/networks", "/api/v1/users/me"):
        body = await api.call("GET", path, headers=headers, anonymous=True, expect=401)
        assert_error(body, "unauthorized")


async def test_expired_token_is_401(api: Api) -> None:
    hub = api.hub
    user = await hub.store.users.get_by_login("admin")
    assert user is not None
    past = hub.clock.now() - timedelta(seconds=hub.settings.access_token_ttl + 60)
    expired = hub.auth.tokens.issue(user_principal(user), past).access_token
    body = await api.call(
        "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {expired}"}, expect=401
    )
    assert_error(body, "unauthorized")


async def test_api_key_lifecycle(api: Api) -> None:
    uid, alice = await api.user("alice")
    made = await api.call("POST", "/api/v1/apikeys", headers=alice, json={"name": "ci"}, expect=201)
    key = made["key"]
    assert key
    assert made["userId"] == uid
    assert made["prefix"]
    assert not made["revoked"]

    # The key authenticates as alice, as a bearer token or in X-API-Key.
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        me = await api.call("GET", "/api/v1/users/me", headers=headers)
        assert me["id"] == uid

    # It is listed without its secret.
    listed = await api.call("GET", "/api/v1/apikeys", headers=alice)
    assert [k["id"] for k in listed] == [made["id"]]
    assert listed[0]["key"] is None
    assert [k["id"] for k in await api.call("GET", f"/api/v1/apikeys?userId={uid}")] == [made["id"]]
    # A client cannot list someone else's keys.
    await api.call("GET", "/api/v1/apikeys?userId=1", headers=alice, expect=403)

    # A tampered key is refused.
    bad = key[:-2] + ("aa" if not key.endswith("aa") else "bb")
    await api.call("GET", "/api/v1/users/me", headers={"X-API-Key": bad}, expect=401)

    await api.call("DELETE", f"/api/v1/apikeys/{made['id']}", headers=alice, expect=204)
    body = await api.call(
        "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {key}"}, expect=401
    )
    assert_error(body, "unauthorized")
    await api.call("DELETE", f"/api/v1/apikeys/{made['id']}", headers=alice, expect=204)
    await api.call("DELETE", "/api/v1/apikeys/999", headers=alice, expect=404)


async def test_admin_creates_key_for_another_user(api: Api) -> None:
    uid, _ = await api.user("bob")
    made = await api.call(
        "POST", "/api/v1/apikeys", json={"name": "bob-key", "userId": uid}, expect=201
    )
    me = await api.call("GET", "/api/v1/users/me", headers={"X-API-Key": made["key"]})
    assert me["login"] == "bob"
    for bad in (-5, 0, 1e12):
        await api.call("POST", "/api/v1/apikeys", json={"name": "x", "expiresIn": bad}, expect=400)


async def test_expired_api_key_is_401(api: Api) -> None:
    made = await api.call(
        "POST", "/api/v1/apikeys", json={"name": "short", "expiresIn": 0.001}, expect=201
    )
    assert made["expiresAt"] is not None
    body = await api.call("GET", "/api/v1/users/me", headers={"X-API-Key": made["key"]}, expect=401)
    assert_error(body, "unauthorized")


# --- bad bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/networks"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/devices"),
        ("PATCH", "/api/v1/users/me"),
        ("POST", "/api/v1/auth/token"),
    ],
)
async def test_malformed_json_is_400(api: Api, method: str, path: str) -> None:
    body = await api.call(
        method,
        path,
        data=b'{"name": ',
        headers={**api.admin, "Content-Type": "application/json"},
        expect=400,
    )
    assert_error(body, "bad_request")


async def test_wrong_types_and_unknown_fields_are_400(api: Api) -> None:
    cases = [
        ("POST", "/api/v1/networks", {"name": 5}),
        ("POST", "/api/v1/networks", {"name": "n", "colour": "red"}),
        ("POST", "/api/v1/networks", {}),
        ("POST", "/api/v1/networks", ["name"]),
        ("POST", "/api/v1/users", {"login": "x1", "password": "secret-1", "role": "root"}),
        ("POST", "/api/v1/devices", {"name": "d", "blocked": "yes"}),
        ("PATCH", "/api/v1/users/me", {"passwd": "secret-2"}),
        ("PATCH", "/api/v1/users/me", {"password": None}),
        ("POST", "/api/v1/auth/token", {"login": "admin"}),
        ("POST", "/api/v1/apikeys", {"name": "k", "expiresIn": "soon"}),
    ]
    for method, path, payload in cases:
        body = await api.call(method, path, json=payload, expect=400)
        assert_error(body, "bad_request")


async def test_oversized_body_is_413(api: Api) -> None:
    limit = api.hub.settings.max_message_bytes
    big = b'{"name": "' + b"x" * (limit + 10) + b'"}'
    body = await api.call(
        "POST",
        "/api/v1/networks",
        data=big,
        headers={**api.admin, "Content-Type": "application/json"},
        expect=413,
    )
    assert_error(body, "payload_too_large")


async def test_unknown_route_and_method(api: Api) -> None:
    body = await api.call("GET", "/api/v1/nothing-here", expect=404)
    assert_error(body, "not_found")
    body = await api.call("PUT", "/api/v1/networks", json={}, expect=405)
    assert_error(body, "method_not_allowed")
