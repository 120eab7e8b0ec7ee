"""InfiniteClouds wire format, sans I/O: envelopes, lenient key lookup, device tokens.

The device posts everything to one URL and picks the message with ``statusType``; every
answer is the envelope ``{data, message, status, errors, httpCode, errorCode}``. The
documented samples use camelCase keys and, in places, all-lowercase ones
(``triggerevent``), so requests are read case-insensitively while replies are always the
documented camelCase. Nothing here touches a socket, the store or the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from tether.core import jsonc, limits
from tether.core.errors import BadRequest, Unauthorized
from tether.core.model import Command

#: The core dialect name of these devices.
DIALECT = "infiniteclouds"
#: ``statusType`` values; ``None`` (absent) is a register.
KEEPALIVE = "keepalive"
STATISTICS = "statistics"
STATUS = "status"
COMMAND_RESULT = "commandresult"
FIRMWARE_STATUS = "firmwarestatus"
KNOWN_STATUS_TYPES = frozenset({KEEPALIVE, STATISTICS, STATUS, COMMAND_RESULT, FIRMWARE_STATUS})

MAC = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}$")
#: Device id prefix: ``ic-`` and the 12 hex digits of the MAC (see :func:`device_id_for`).
DEVICE_PREFIX = "ic-"
TOKEN_PURPOSE = "infiniteclouds-device-token"
TOKEN_TYPE = "infiniteclouds-device"


# --- envelope -------------------------------------------------------------------------------


def envelope(data: Any, message: str = "success", status: int = 200) -> bytes:
    """The documented reply; ``errors`` is true and ``errorCode`` the status on failure."""
    ok = status < 400
    return jsonc.encode(
        {
            "data": data,
            "message": message,
            "status": status,
            "errors": not ok,
            "httpCode": status,
            "errorCode": 0 if ok else status,
        }
    )


def trigger_event(
    *,
    config_update: bool,
    firmware_update: bool,
    send_status: bool,
    commands: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "triggerEvent": {
            "configUpdate": config_update,
            "firmwareUpdate": firmware_update,
            "sendStatus": send_status,
            "commands": commands,
        }
    }


# --- requests -------------------------------------------------------------------------------


def decode_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    body = jsonc.decode(raw)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def field(body: Any, name: str) -> Any:
    """``body[name]`` matched without regard to case (``revisionId`` = ``revisionid``)."""
    if not isinstance(body, dict):
        return None
    if name in body:
        return body[name]
    wanted = name.lower()
    for key, value in body.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value
    return None


def text(body: Any, name: str, *, limit: int = 256) -> str | None:
    """A string field (numbers are accepted as their text), or None if absent or empty."""
    value = field(body, name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest(f"{name} must be a string")
    value = str(value)
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value


def status_type(body: dict[str, Any]) -> str | None:
    """The lower-cased ``statusType``, None for a register."""
    value = field(body, "statusType")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest("statusType must be a string")
    return value.lower()


def normal_mac(raw: str | None) -> str:
    """``c4:4b:d1:a0:32:c1`` form; accepts ``-`` separators, none, and upper case."""
    if raw is None:
        raise BadRequest("macAddress is required")
    mac = raw.strip().lower()
    if not MAC.match(mac):
        raise BadRequest(f"macAddress {raw!r} is not a MAC address")
    digits = mac.replace(":", "").replace("-", "")
    if digits == "000000000000":
        raise BadRequest("macAddress 00:00:00:00:00:00 is not a device")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def device_id_for(mac: str) -> str:
    """The core device id of the device with this (normalised) MAC: stable across
    re-registrations, reinstalls and machine-id changes, since the MAC is the documented
    identity key."""
    return DEVICE_PREFIX + mac.replace(":", "")


def reported_revision(body: dict[str, Any]) -> str | None:
    """``config.revisionId`` as the device reports it: None when it says nothing, ``""``
    when it says it has no revision (a reset device), so a stale one is not kept."""
    config = field(body, "config")
    if not isinstance(config, dict):
        return None
    revision = field(config, "revisionId")
    if revision is None:
        return None
    if isinstance(revision, (dict, list, bool)):
        raise BadRequest("config.revisionId must be a string")
    return str(revision)[:128]


def reported_firmware(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(firmware.currentVersion, firmware.upgrading)``; either may be None."""
    firmware = field(body, "firmware")
    current = text(firmware, "currentVersion", limit=128)
    upgrading = text(firmware, "upgrading", limit=128)
    return current, upgrading


# --- commands -------------------------------------------------------------------------------


def epoch(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def command_out(command: Command) -> dict[str, Any]:
    """A core command as it goes out in ``triggerEvent.commands``."""
    return {
        "commandId": str(command.id),
        "command": command.name,
        "params": command.parameters if command.parameters is not None else {},
        "createdAt": epoch(command.created_at),
        "expiresAt": epoch(command.expires_at),
    }


@dataclass(frozen=True)
class CommandOutcome:
    """One entry of a device's ``commands`` results array."""

    command_id: int
    #: "succeeded", "failed" or "in_progress".
    state: str
    result: dict[str, Any]
    error: str | None


_SUCCESS = {"succeeded", "success", "ok", "done", "completed"}
_FAILURE = {"failed", "failure", "error", "timed_out", "rejected"}
_RUNNING = {"in_progress", "running", "started", "accepted", "queued", "sent"}


def command_results(body: dict[str, Any]) -> list[CommandOutcome]:
    """The results a keepalive, statistics or commandResult message carries.

    ``commands`` may be ``null``, ``[]`` or a list; a ``commandResult`` may also carry one
    result at the top level. Entries without a usable ``commandId`` are refused, since a
    result that matches nothing would otherwise vanish silently.
    """
    entries = field(body, "commands")
    if entries is None:
        entries = [body] if field(body, "commandId") is not None else []
    if not isinstance(entries, list):
        raise BadRequest("commands must be a list")
    outcomes = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("each commands entry must be an object")
        raw_id = field(entry, "commandId")
        try:
            command_id = limits.parse_id("commandId", str(raw_id).removeprefix("cmd_"))
        except BadRequest:
            raise BadRequest(f"commandId {raw_id!r} is not a command of this cloud") from None
        status = str(field(entry, "status") or "").lower()
        exit_code = field(entry, "exitCode")
        if status in _SUCCESS or (not status and exit_code == 0):
            state = "succeeded"
        elif status in _FAILURE or (not status and isinstance(exit_code, int)):
            state = "failed"
        elif status in _RUNNING:
            state = "in_progress"
        else:
            raise BadRequest(f"command {command_id}: unknown result status {status!r}")
        result = {
            k: v for k, v in entry.items() if k.lower() not in ("commandid", "status", "deviceid")
        }
        error = None
        if state == "failed":
            message = field(entry, "error") or field(entry, "output")
            error = str(message)[:1000] if message else f"failed (exit code {exit_code})"
        outcomes.append(CommandOutcome(command_id, state, result, error))
    return outcomes


# --- device tokens ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceToken:
    device_id: str
    mac: str
    #: The owner the device was assigned to when the token was issued: re-assigning or
    #: un-assigning the device makes its old tokens invalid.
    owner_id: int
    #: ``exp``, epoch seconds (0 when minting: the TTL decides).
    expires_at: int = 0


def issue_token(
    key: bytes, token: DeviceToken, *, now: int, ttl: int, audience: str, issuer: str
) -> str:
    """An HS256 JWT in the documented ``deviceData`` shape, with Tether's own claims."""
    claims = {
        "deviceData": {"macAddress": token.mac, "deviceId": token.device_id},
        "own": token.owner_id,
        "typ": TOKEN_TYPE,
        "iat": now,
        "exp": now + ttl,
        "aud": audience,
        "iss": issuer,
    }
    return jwt.encode(claims, key, algorithm="HS256")


def verify_token(
    key: bytes, raw: str, *, now: int, audience: str, issuer: str, grace: int = 0
) -> DeviceToken:
    """The token's device, or :class:`Unauthorized` (``Token expired`` / ``Invalid token``).

    Expiry is checked against ``now`` (the hub's clock), not the wall clock; ``grace``
    seconds past it are still accepted (a re-registration proving continuity).
    """
    try:
        claims = jwt.decode(
            raw,
            key,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            options={"verify_exp": False, "require": ["exp", "aud", "iss"]},
        )
    except jwt.PyJWTError:
        raise Unauthorized("Invalid token") from None
    data = claims.get("deviceData")
    exp = claims.get("exp")
    if (
        claims.get("typ") != TOKEN_TYPE
        or not isinstance(data, dict)
        or not isinstance(data.get("deviceId"), str)
        or not isinstance(data.get("macAddress"), str)
        or not isinstance(claims.get("own"), int)
        or not isinstance(exp, int)
    ):
        raise Unauthorized("Invalid token")
    if exp + grace <= now:
        raise Unauthorized("Token expired")
    return DeviceToken(data["deviceId"], data["macAddress"], claims["own"], exp)


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("Missing token")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Missing token")
    return value.strip()
