"""The one error hierarchy every layer raises and every API renders.

Each error carries a stable machine-readable ``code`` and the HTTP status that the
native API answers with. Dialects map these onto their own wire errors (DeviceHive
``code``, eWeLink ``error``, InfiniteClouds envelope, ...), so a rule enforced once in
the hub reads correctly in every protocol.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class TetherError(Exception):
    """Base class of every error Tether raises on purpose."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def headers(self) -> dict[str, str]:
        """HTTP headers every API adds to this error's answer (``Retry-After``, ...)."""
        return {}


class BadRequest(TetherError):
    """The input is malformed or fails validation."""

    code = "bad_request"
    status = 400


class InvalidJson(BadRequest):
    """A body or frame the one JSON codec (``core/jsonc.py``) refuses.

    Malformed JSON, the wrong shape, nesting deeper than the bound, a string no store can
    hold (NUL, a lone surrogate), an integer outside 64 bits. Every API maps it like any
    other ``BadRequest``, so each protocol answers its own "bad request" and a WebSocket
    stays open.

    ``kind`` says which rule refused it: ``syntax`` (not JSON), ``shape`` (JSON of the
    wrong shape), ``depth``, ``string`` or ``integer``. Parsers that try another form
    when a body is not JSON (Control iD's form bodies) read it; APIs need not.
    """

    def __init__(self, message: str, *, kind: str = "syntax", **details: Any) -> None:
        super().__init__(message, **details)
        self.kind = kind


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    status = 413


class Unauthorized(TetherError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    code = "unauthorized"
    status = 401


class Forbidden(TetherError):
    """The principal is known but may not do this."""

    code = "forbidden"
    status = 403


class TooManyRequests(TetherError):
    """Slow down: try again after ``retry_after`` seconds (sent as ``Retry-After``).

    Answered, for instance, to logins from a (login, address) pair that keeps failing,
    whether or not the login exists.
    """

    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, *, retry_after: float, **details: Any) -> None:
        #: Whole seconds, at least one: the unit ``Retry-After`` speaks.
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, retry_after=self.retry_after, **details)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(TetherError):
    code = "not_found"
    status = 404


class Conflict(TetherError):
    """The request collides with existing state (a duplicate name, a finished command)."""

    code = "conflict"
    status = 409


class DeviceBlocked(Forbidden):
    code = "device_blocked"


class DeviceOffline(TetherError):
    """Used by dialects that must answer at once when a device has no live session."""

    code = "device_offline"
    status = 503


class InvalidTransition(Conflict):
    """A command cannot move from its current state to the requested one."""

    code = "invalid_transition"


class Unavailable(TetherError):
    """A backing service (database, bus) cannot be reached right now."""

    code = "unavailable"
    status = 503


class Overloaded(TetherError):
    """A bounded queue is full; the caller should retry later."""

    code = "overloaded"
    status = 503
