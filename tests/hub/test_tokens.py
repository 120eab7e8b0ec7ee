"""JWT tokens: DeviceHive-compatible claims, expiry, type confusion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tether.core.access import ALL_ACTIONS, CLIENT_ACTIONS, Principal, PrincipalKind
from tether.core.errors import Unauthorized
from tether.core.model import Role
from tether.hub.tokens import TokenService, TokenType

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "a-signing-key-that-is-long-enough-for-hs256"
SERVICE = TokenService(KEY, access_ttl=60, refresh_ttl=3600)


def client() -> Principal:
    return Principal(
        kind=PrincipalKind.USER,
        actions=CLIENT_ACTIONS,
        user_id=4,
        role=Role.CLIENT,
        network_ids=frozenset({1, 2}),
        device_type_ids=None,
    )


def test_claims_use_devicehive_payload() -> None:
    pair = SERVICE.issue(client(), NOW)
    raw = jwt.decode(pair.access_token, KEY, algorithms=["HS256"], options={"verify_exp": False})
    payload = raw["payload"]
    assert payload["u"] == 4
    assert payload["n"] == ["1", "2"]
    assert payload["dt"] == ["*"]
    assert payload["t"] == 1
    assert payload["e"] == int((NOW + timedelta(seconds=60)).timestamp() * 1000)


def test_round_trip_and_scope() -> None:
    pair = SERVICE.issue(client(), NOW)
    claims = SERVICE.decode(pair.access_token, NOW, TokenType.ACCESS)
    assert claims.network_ids == frozenset({1, 2})
    assert claims.device_type_ids is None
    assert claims.actions == CLIENT_ACTIONS


def test_admin_token_has_any_action() -> None:
    admin = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, user_id=1, role=Role.ADMIN)
    raw = jwt.decode(
        SERVICE.issue(admin, NOW).access_token,
        KEY,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert raw["payload"]["a"] == [0]


def test_expired_refresh_as_access_and_forged_tokens_are_refused() -> None:
    pair = SERVICE.issue(client(), NOW)
    with pytest.raises(Unauthorized, match="expired"):
        SERVICE.decode(pair.access_token, NOW + timedelta(seconds=61), TokenType.ACCESS)
    with pytest.raises(Unauthorized, match="type"):
        SERVICE.decode(pair.refresh_token, NOW, TokenType.ACCESS)
    forged = TokenService(
        "another-signing-key-of-enough-length", access_ttl=60, refresh_ttl=60
    ).issue(client(), NOW)
    with pytest.raises(Unauthorized):
        SERVICE.decode(forged.access_token, NOW, TokenType.ACCESS)
    with pytest.raises(Unauthorized):
        SERVICE.decode("not.a.token", NOW, TokenType.ACCESS)


def test_derived_keys_differ_by_purpose_and_secret() -> None:
    """A dialect's device tokens are signed with a key derived from the secret."""
    one = SERVICE.derive_key("infiniteclouds-device-token")
    assert one == SERVICE.derive_key("infiniteclouds-device-token")
    assert len(one) == 32
    assert one != SERVICE.derive_key("another-purpose")
    assert one != KEY.encode()
    other = TokenService(KEY + "x", access_ttl=60, refresh_ttl=3600)
    assert other.derive_key("infiniteclouds-device-token") != one


def test_a_remembered_token_still_expires_and_keeps_its_type() -> None:
    service = TokenService(KEY, access_ttl=60, refresh_ttl=3600)
    pair = service.issue(client(), NOW)
    first = service.decode(pair.access_token, NOW, TokenType.ACCESS)
    # The second use is answered from the verified-token cache: the same claims.
    assert service.decode(pair.access_token, NOW + timedelta(seconds=30), TokenType.ACCESS) == first
    with pytest.raises(Unauthorized, match="type"):
        service.decode(pair.access_token, NOW, TokenType.REFRESH)
    with pytest.raises(Unauthorized, match="expired"):
        service.decode(pair.access_token, NOW + timedelta(seconds=61), TokenType.ACCESS)


def test_a_forged_token_is_refused_every_time() -> None:
    service = TokenService(KEY, access_ttl=60, refresh_ttl=3600)
    forged = TokenService(
        "another-key-that-is-long-enough-for-hs256", access_ttl=60, refresh_ttl=60
    )
    token = forged.issue(client(), NOW).access_token
    for _ in range(2):
        with pytest.raises(Unauthorized, match="invalid token"):
            service.decode(token, NOW, TokenType.ACCESS)
