"""The simulator's client of the native management API: login, JSON calls, errors.

It is the app side of a run: it provisions the fleet, sends the command load and asks
the server what it sees. A 401 on a call logs in again once (a long run outlives an
access token); any other error status raises :class:`ApiError` with the server's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from tether.core.errors import TetherError


class Credentials(msgspec.Struct, kw_only=True, frozen=True):
    """Who the simulator acts as: an access token or API key, or a login and password.

    Kept out of :class:`~tether.sim.plan.Plan` so a summary never shows a secret.
    """

    token: str | None = None
    login: str | None = None
    password: str | None = None


class ApiError(TetherError):
    """The server answered an error status; ``status`` and ``code`` are the server's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}", status=status)
        self.http_status = status
        self.server_code = code


class ApiClient:
    """JSON calls to ``base``/api/v1 over ``session``, authenticated on first use."""

    def __init__(self, base: str, credentials: Credentials, session: aiohttp.ClientSession):
        self.base = base.rstrip("/")
        self.credentials = credentials
        self.session = session
        self._token = credentials.token

    async def token(self) -> str:
        if self._token is None:
            c = self.credentials
            if c.login is None or c.password is None:
                raise ApiError(
                    401,
                    "no_credentials",
                    "give a token (TETHER_TOKEN) or a login and password "
                    "(TETHER_LOGIN, TETHER_PASSWORD)",
                )
            body = {"login": c.login, "password": c.password}
            tokens = await self.call("POST", "/api/v1/auth/token", body=body, auth=False)
            self._token = str(tokens["accessToken"])
        return self._token

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        timeout: float = 60.0,
    ) -> Any:
        """The decoded answer (None when empty); :class:`ApiError` on an error status."""
        return (
            await self.call_status(
                method, path, body=body, params=params, auth=auth, timeout=timeout
            )
        )[1]

    async def call_status(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        auth: bool = True,
        timeout: float = 60.0,
    ) -> tuple[int, Any]:
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if auth:
                headers["Authorization"] = f"Bearer {await self.token()}"
            data = None
            if body is not None:
                data = msgspec.json.encode(body)
                headers["Content-Type"] = "application/json"
            async with self.session.request(
                method,
                self.base + path,
                data=data,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                status = response.status
            if status == 401 and auth and attempt == 1 and self.credentials.password:
                self._token = None  # expired: log in again, once
                continue
            if status >= 400:
                raise _error(status, raw)
            return status, (msgspec.json.decode(raw) if raw.strip() else None)
        raise AssertionError("unreachable")  # pragma: no cover


def _error(status: int, raw: bytes) -> ApiError:
    try:
        error = msgspec.json.decode(raw)["error"]
        return ApiError(status, str(error["code"]), str(error["message"]))
    except (msgspec.DecodeError, KeyError, TypeError):
        text = raw.decode(errors="replace").strip()[:200]
        return ApiError(status, f"http_{status}", text or "error")
