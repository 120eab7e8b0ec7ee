"""JWT access and refresh tokens (HS256, PyJWT).

The claims use DeviceHive's private ``payload`` claim (``u`` user, ``a`` action ids, ``n``
networks, ``dt`` device types, ``e`` expiry in epoch ms, ``t`` 1=access / 0=refresh), so a
token minted by the native API is also a valid DeviceHive token and vice versa. A
standard ``exp`` claim is added too, so generic JWT tooling sees the expiry.

Verification is CPU only: no database round trip on the hot path.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

import jwt
import msgspec

from tether.core.access import ALL_ACTIONS, Action, Principal, PrincipalKind
from tether.core.errors import Unauthorized
from tether.core.model import Role

ALL = "*"


class TokenType(IntEnum):
    REFRESH = 0
    ACCESS = 1


class TokenClaims(msgspec.Struct, kw_only=True, frozen=True):
    user_id: int
    actions: frozenset[Action]
    network_ids: frozenset[int] | None
    device_type_ids: frozenset[int] | None
    expires_at: datetime
    token_type: TokenType

    def principal(self, role: Role) -> Principal:
        return Principal(
            kind=PrincipalKind.USER,
            actions=ALL_ACTIONS if Action.ANY in self.actions else self.actions,
            user_id=self.user_id,
            role=role,
            network_ids=self.network_ids,
            device_type_ids=self.device_type_ids,
        )


class TokenPair(msgspec.Struct, kw_only=True, frozen=True):
    access_token: str
    refresh_token: str


def _ids(values: frozenset[int] | None) -> list[str]:
    return [ALL] if values is None else [str(v) for v in sorted(values)]


def _parse_ids(raw: Any) -> frozenset[int] | None:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise Unauthorized("invalid token")
    if ALL in raw:
        return None
    try:
        return frozenset(int(v) for v in raw)
    except (TypeError, ValueError):
        raise Unauthorized("invalid token") from None


#: Verified tokens remembered (a full cache is emptied, then refilled on use).
VERIFIED_CACHE_ENTRIES = 10_000


class TokenService:
    def __init__(self, secret: str, *, access_ttl: float, refresh_ttl: float) -> None:
        self._secret = secret
        self.access_ttl = timedelta(seconds=access_ttl)
        self.refresh_ttl = timedelta(seconds=refresh_ttl)
        # An app sends the same bearer with every request; verifying its signature and
        # rebuilding its claims took about a fifth of the CPU of a command create
        # (profiled in docs/performance.md, P6b). A token string that verified once maps
        # to the same claims until it expires, which is still checked on every use below;
        # the user's status is checked by the caller on every use as before.
        self._verified: dict[str, TokenClaims] = {}

    def derive_key(self, purpose: str) -> bytes:
        """A signing key for ``purpose`` (a dialect's device tokens), derived from the secret.

        HMAC-SHA256 of the purpose under the server secret: rotating the secret rotates
        every derived key, and a token signed for one purpose never verifies as another.
        """
        return hmac.new(self._secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def encode(self, claims: TokenClaims) -> str:
        actions = (
            [Action.ANY.value]
            if claims.actions >= ALL_ACTIONS
            else sorted(a.value for a in claims.actions)
        )
        expires_ms = int(claims.expires_at.timestamp() * 1000)
        payload = {
            "u": claims.user_id,
            "a": actions,
            "n": _ids(claims.network_ids),
            "dt": _ids(claims.device_type_ids),
            "e": expires_ms,
            "t": claims.token_type.value,
        }
        return jwt.encode(
            {"payload": payload, "exp": expires_ms // 1000}, self._secret, algorithm="HS256"
        )

    def issue(
        self,
        principal: Principal,
        now: datetime,
        *,
        access_expires: datetime | None = None,
        refresh_expires: datetime | None = None,
    ) -> TokenPair:
        if principal.user_id is None:
            raise Unauthorized("only users get tokens")

        def claims(token_type: TokenType, expires_at: datetime) -> TokenClaims:
            return TokenClaims(
                user_id=principal.user_id or 0,
                actions=principal.actions,
                network_ids=principal.network_ids,
                device_type_ids=principal.device_type_ids,
                expires_at=expires_at,
                token_type=token_type,
            )

        return TokenPair(
            access_token=self.encode(
                claims(TokenType.ACCESS, access_expires or now + self.access_ttl)
            ),
            refresh_token=self.encode(
                claims(TokenType.REFRESH, refresh_expires or now + self.refresh_ttl)
            ),
        )

    def decode(self, token: str, now: datetime, expected: TokenType) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify(token)
            if len(self._verified) >= VERIFIED_CACHE_ENTRIES:
                self._verified.clear()
            self._verified[token] = claims
        if claims.token_type is not expected:
            raise Unauthorized("invalid token type")
        if claims.expires_at <= now:
            self._verified.pop(token, None)
            raise Unauthorized("token has expired")
        return claims

    def _verify(self, token: str) -> TokenClaims:
        """Check the signature and parse the claims (expiry and type are the caller's)."""
        try:
            # Expiry is checked below against the injected clock, not the wall clock.
            raw = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"verify_exp": False}
            )
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        payload = raw.get("payload")
        if not isinstance(payload, dict) or "u" not in payload:
            raise Unauthorized("invalid token")
        try:
            token_type = TokenType(int(payload["t"]))
            expires_ms = int(payload["e"])
            user_id = int(payload["u"])
            actions = frozenset(Action(int(a)) for a in payload.get("a") or [])
            network_ids = _parse_ids(payload.get("n"))
            device_type_ids = _parse_ids(payload.get("dt"))
        except (KeyError, TypeError, ValueError):
            raise Unauthorized("invalid token") from None
        return TokenClaims(
            user_id=user_id,
            actions=ALL_ACTIONS if Action.ANY in actions else actions,
            network_ids=network_ids,
            device_type_ids=device_type_ids,
            expires_at=datetime.fromtimestamp(expires_ms / 1000, UTC),
            token_type=token_type,
        )
