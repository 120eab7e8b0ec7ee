"""Turning credentials into a :class:`Principal`: passwords, tokens, API keys, devices.

Hot paths stay off the database: a JWT is verified on the CPU, the user's role and
status come from a short-lived cache (dropped on ``UserChanged``), and a device's
credential hash comes from the device cache.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tether.core.access import Principal, PrincipalKind, device_principal, user_principal
from tether.core.errors import DeviceBlocked, Unauthorized
from tether.core.model import Device, Role, User, UserStatus
from tether.hub import secrets
from tether.hub.logins import LoginThrottle, PasswordGate
from tether.hub.tokens import TokenPair, TokenService, TokenType

if TYPE_CHECKING:
    from tether.hub.service import Hub

#: How long a user's role and status are trusted without a database read. Every node
#: drops a user at once on ``UserChanged``; this bounds only a missed bus event.
USER_CACHE_SECONDS = 5.0
#: How long an API key's row (hash, owner, expiry) is trusted without a database read.
#: The owner's status is checked through the user cache on every use, and a revocation
#: reaches every node as ``ApiKeyRevoked``.
API_KEY_CACHE_SECONDS = 30.0
#: Bound on cached API keys (and users): a full cache is emptied, then refilled on use.
API_KEY_CACHE_ENTRIES = 100_000

BAD_LOGIN = "invalid login or password"


class Auth:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._tokens: TokenService | None = None
        self._users: dict[int, tuple[float, User]] = {}
        self._api_keys: dict[str, tuple[float, str, int, datetime | None]] = {}
        settings = hub.settings
        self.throttle = LoginThrottle(
            hub.clock,
            free_attempts=settings.login_free_attempts,
            first_delay=settings.login_delay,
            max_delay=settings.login_delay_max,
        )
        self._gate = PasswordGate(settings.password_checks, settings.password_check_queue)
        self._dummy_hash: str | None = None

    @property
    def tokens(self) -> TokenService:
        if self._tokens is None:
            raise RuntimeError("the hub has not started")
        return self._tokens

    async def start(self) -> None:
        hub = self._hub
        settings = hub.settings
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value()
        else:
            # Stored in the database, so every node of a cluster signs with the same key.
            secret = await hub.store.meta.put_if_absent("jwt_secret", secrets.generate_secret())
        self._tokens = TokenService(
            secret, access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl
        )

    async def bootstrap_admin(self, login: str, password: str | None) -> str | None:
        """Create the first admin if there are no users; returns a generated password."""
        store = self._hub.store
        if await store.users.count() > 0:
            return None
        generated = None
        if password is None:
            password = generated = secrets.generate_password()
        await self._hub.directory.create_user(None, login=login, password=password, role=Role.ADMIN)
        return generated

    # --- users ------------------------------------------------------------------------------

    # --- passwords --------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        """An argon2 hash, computed within the process-wide bound on password work."""
        return await self._gate.run(lambda: secrets.hash_password(password))

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is not None:
            return await self._gate.run(lambda: secrets.verify_password(password_hash, password))
        # Spend the same time as a real check so logins cannot be probed by timing; the
        # dummy is made by the same hasher, so it has the same cost.
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash_password(secrets.generate_password())
        dummy = self._dummy_hash
        await self._gate.run(lambda: secrets.verify_password(dummy, password))
        return False

    async def check_password(self, login: str, password: str, *, source: str) -> User:
        """The active user with this login and password, or an error that says nothing more.

        ``source`` is the caller's address. Wrong passwords, unknown logins and users who
        are not active all get the same :class:`Unauthorized` after the same work, and all
        count towards the (login, source) throttle, which answers
        :class:`~tether.core.errors.TooManyRequests` while its delay runs.
        """
        self.throttle.check(login, source)
        user = await self._hub.store.users.get_by_login(login)
        ok = await self._verify(None if user is None else user.password_hash, password)
        if user is None or not ok or user.status is not UserStatus.ACTIVE:
            self.throttle.failed(login, source)
            raise Unauthorized(BAD_LOGIN)
        self.throttle.succeeded(login, source)
        updated = await self._hub.store.users.update(
            user.id, login_attempts=0, last_login=self._hub.clock.now()
        )
        return updated or user

    async def login(self, login: str, password: str, *, source: str) -> tuple[User, TokenPair]:
        user = await self.check_password(login, password, source=source)
        return user, self.tokens.issue(user_principal(user), self._hub.clock.now())

    async def refresh(self, refresh_token: str) -> str:
        now = self._hub.clock.now()
        claims = self.tokens.decode(refresh_token, now, TokenType.REFRESH)
        await self._user(claims.user_id)  # the user must still exist and be active
        return self.tokens.encode(
            type(claims)(
                user_id=claims.user_id,
                actions=claims.actions,
                network_ids=claims.network_ids,
                device_type_ids=claims.device_type_ids,
                expires_at=now + self.tokens.access_ttl,
                token_type=TokenType.ACCESS,
            )
        )

    async def principal(self, credential: str) -> Principal:
        """The principal behind a bearer credential: an access JWT or an API key."""
        if secrets.looks_like_api_key(credential):
            return await self._api_key_principal(credential)
        claims = self.tokens.decode(credential, self._hub.clock.now(), TokenType.ACCESS)
        user = await self._user(claims.user_id)
        if user.role is not Role.ADMIN:
            # A client's scope follows its current grants, not those frozen into the token.
            live = user_principal(user)
            return Principal(
                kind=live.kind,
                actions=claims.actions & live.actions,
                user_id=user.id,
                role=user.role,
                network_ids=live.network_ids,
                device_type_ids=live.device_type_ids,
            )
        return claims.principal(user.role)

    async def _user(self, user_id: int) -> User:
        mono = self._hub.clock.monotonic()
        cached = self._users.get(user_id)
        if cached is not None and mono - cached[0] < USER_CACHE_SECONDS:
            user = cached[1]
        else:
            found = await self._hub.store.users.get(user_id)
            if found is None:
                self._users.pop(user_id, None)
                raise Unauthorized("user no longer exists")
            user = found
            if len(self._users) >= API_KEY_CACHE_ENTRIES:
                self._users.clear()
            self._users[user_id] = (mono, user)
        if user.status is not UserStatus.ACTIVE:
            raise Unauthorized(f"user is {user.status.value}")
        return user

    async def recheck(self, principal: Principal) -> None:
        """Raise :class:`Unauthorized` if the user behind a connection's principal, resolved
        when it connected, has since been locked, disabled or deleted (a cached read)."""
        if principal.kind is PrincipalKind.USER and principal.user_id is not None:
            await self._user(principal.user_id)

    async def user_principal(self, user_id: int) -> Principal:
        """The principal of an active user by id, for dialects whose own tokens name a user
        (eWeLink's ``at``): the same checks and cache as a bearer JWT."""
        return user_principal(await self._user(user_id))

    def forget_user(self, user_id: int) -> None:
        self._users.pop(user_id, None)

    def forget_all(self) -> None:
        """Drop every cached user and API key (after events may have been missed)."""
        self._users.clear()
        self._api_keys.clear()

    async def _api_key_principal(self, key: str) -> Principal:
        prefix, secret = secrets.split_api_key(key)
        hub = self._hub
        mono = hub.clock.monotonic()
        cached = self._api_keys.get(prefix)
        if cached is not None and mono - cached[0] < API_KEY_CACHE_SECONDS:
            _, secret_hash, user_id, expires_at = cached
        else:
            record = await hub.store.api_keys.get_by_prefix(prefix)
            if record is None or record.revoked:
                raise Unauthorized("unknown or revoked API key")
            secret_hash, user_id, expires_at = record.secret_hash, record.user_id, record.expires_at
            if len(self._api_keys) >= API_KEY_CACHE_ENTRIES:
                self._api_keys.clear()
            self._api_keys[prefix] = (mono, secret_hash, user_id, expires_at)
            await hub.store.api_keys.touch(record.id, hub.clock.now())
        if not secrets.verify_secret(secret_hash, secret):
            raise Unauthorized("unknown or revoked API key")
        if expires_at is not None and expires_at <= hub.clock.now():
            raise Unauthorized("API key has expired")
        # The owner is read through the user cache on every use, not frozen with the key:
        # locking, disabling or deleting a user stops their keys at once on every node.
        return user_principal(await self._user(user_id))

    def forget_api_key(self, prefix: str) -> None:
        self._api_keys.pop(prefix, None)

    # --- devices --------------------------------------------------------------------------

    async def device(self, device_id: str, secret: str) -> tuple[Device, Principal]:
        """Authenticate a device by its own credential; it may then act only as itself."""
        device = await self._hub.directory.device(device_id)
        if device is None or not secrets.verify_secret(device.credential_hash, secret):
            raise Unauthorized("unknown device or wrong credential")
        if device.blocked:
            raise DeviceBlocked(f"device {device_id!r} is blocked", device_id=device_id)
        return device, device_principal(device)
