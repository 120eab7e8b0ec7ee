"""eWeLink accounts on core users: user apikeys and the single live ``at`` per account+app.

eWeLink users are core users (login = email or phone number, argon2 passwords). What the
protocol adds is kept in ``hub.dialect_state`` so every node agrees and restarts keep it:

* ``apikey:<user id>`` -> the user's apikey (a UUID), and ``user:<apikey>`` -> user id;
* ``at:<user id>:<appid>`` -> hash of the live access token of that account in that app,
  ``tok:<hash>`` -> ``<user id>|<appid>``. A new login deletes the previous token's entry,
  so the old ``at`` stops working at once (clients expect 406 then). Tokens are stored
  only as SHA-256 hashes.
* ``rt:<hash>`` -> ``<user id>|<appid>`` for ``/v2/user/refresh``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.core.access import Principal
from tether.core.errors import Unauthorized
from tether.core.model import User
from tether.dialects.ewelink.codec import new_token, token_hash

if TYPE_CHECKING:
    from tether.hub.service import Hub

DIALECT = "ewelink"


@dataclass(frozen=True)
class Session:
    """Who an ``at`` belongs to."""

    user_id: int
    appid: str
    principal: Principal
    #: SHA-256 of the ``at`` itself: sessions opened with it close when it is replaced.
    at_hash: str = ""


@dataclass(frozen=True)
class Login:
    user: User
    at: str
    rt: str
    apikey: str


class Accounts:
    def __init__(self, hub: Hub, on_revoked: Callable[[int, str], None] | None = None) -> None:
        self._hub = hub
        #: Told (user id, ``at`` hash) when an ``at`` stops working here: replaced by a
        #: login or a refresh, or logged out.
        self._on_revoked = on_revoked
        self._apikeys: dict[int, str] = {}
        self._users: dict[str, int] = {}
        #: Logins of one account and app take turns on this node (read, revoke, write).
        self._turns: dict[str, asyncio.Lock] = {}

    async def apikey_of(self, user_id: int) -> str:
        """The user's apikey, created on first use (a UUID, as IoTgo validates)."""
        cached = self._apikeys.get(user_id)
        if cached is not None:
            return cached
        state = self._hub.dialect_state
        apikey = await state.put_if_absent(DIALECT, f"apikey:{user_id}", str(uuid.uuid4()))
        await state.put_if_absent(DIALECT, f"user:{apikey}", str(user_id))
        self._apikeys[user_id] = apikey
        self._users[apikey] = user_id
        return apikey

    async def user_of_apikey(self, apikey: str) -> int | None:
        cached = self._users.get(apikey)
        if cached is not None:
            return cached
        value = await self._hub.dialect_state.get(DIALECT, f"user:{apikey}")
        if value is None:
            return None
        self._users[apikey] = int(value)
        self._apikeys[int(value)] = apikey
        return int(value)

    async def login(self, login: str, password: str, appid: str, *, source: str) -> Login:
        """Check the password and issue a fresh ``at``/``rt``, revoking the previous pair.

        Throttled per (login, ``source``) like every other login of the server.
        """
        user = await self._hub.auth.check_password(login, password, source=source)
        at, rt = await self._issue(user.id, appid)
        return Login(user=user, at=at, rt=rt, apikey=await self.apikey_of(user.id))

    async def _issue(self, user_id: int, appid: str) -> tuple[str, str]:
        slot = f"at:{user_id}:{appid}"
        # One small lock per account and app that logged in here: a handful per user.
        async with self._turns.setdefault(slot, asyncio.Lock()):
            return await self._replace(slot, user_id, appid)

    async def _replace(self, slot: str, user_id: int, appid: str) -> tuple[str, str]:
        state = self._hub.dialect_state
        await self._revoke(slot, user_id)
        at, rt = new_token(), new_token()
        owner = f"{user_id}|{appid}"
        await state.put(DIALECT, f"tok:{token_hash(at)}", owner)
        await state.put(DIALECT, f"rt:{token_hash(rt)}", owner)
        await state.put(DIALECT, slot, f"{token_hash(at)}|{token_hash(rt)}")
        return at, rt

    async def refresh(self, rt: str) -> tuple[str, str]:
        """A new ``at``/``rt`` pair for a live refresh token (the old pair stops working)."""
        owner = await self._hub.dialect_state.get(DIALECT, f"rt:{token_hash(rt)}")
        if owner is None:
            raise Unauthorized("refresh token is not valid")
        user_id, _, appid = owner.partition("|")
        await self._hub.auth.user_principal(int(user_id))
        return await self._issue(int(user_id), appid)

    async def session(self, at: str | None) -> Session:
        """The account behind a live ``at``; ``Unauthorized`` if it is unknown or replaced."""
        if not at:
            raise Unauthorized("missing access token")
        owner = await self._hub.dialect_state.get(DIALECT, f"tok:{token_hash(at)}")
        if owner is None:
            raise Unauthorized("access token is not valid (expired or logged in elsewhere)")
        user_id, _, appid = owner.partition("|")
        principal = await self._hub.auth.user_principal(int(user_id))
        return Session(
            user_id=int(user_id), appid=appid, principal=principal, at_hash=token_hash(at)
        )

    async def logout(self, session: Session) -> None:
        slot = f"at:{session.user_id}:{session.appid}"
        if await self._revoke(slot, session.user_id):
            await self._hub.dialect_state.delete(DIALECT, slot)

    async def _revoke(self, slot: str, user_id: int) -> bool:
        """End the ``at``/``rt`` pair held in ``slot``; False if there was none."""
        state = self._hub.dialect_state
        previous = await state.get(DIALECT, slot)
        if previous is None:
            return False
        at_hash, _, rt_hash = previous.partition("|")
        await state.delete(DIALECT, f"tok:{at_hash}")
        if rt_hash:
            await state.delete(DIALECT, f"rt:{rt_hash}")
        if self._on_revoked is not None:
            self._on_revoked(user_id, at_hash)
        return True

    async def live(self, at_hash: str) -> bool:
        """Whether the ``at`` with this hash still works (checked at app heartbeats)."""
        return await self._hub.dialect_state.get(DIALECT, f"tok:{at_hash}") is not None
