"""DeviceHive 3.x wire forms, with no I/O: envelopes, entity views, timestamps, errors.

Everything a DeviceHive client reads is shaped here, so the compatibility rules live in
one place: every key of a view is present (``null`` included), timestamps are
``yyyy-MM-dd'T'HH:mm:ss.SSS`` in UTC without a zone, enums are integers, and a WebSocket
answer echoes ``action`` and ``requestId`` and carries ``status`` (plus ``code`` and
``error`` on failure). Server-originated frames carry ``subscriptionId`` and never a
``requestId``, because the official client routes frames by that key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tether.core import jsonc, limits
from tether.core.errors import BadRequest, InvalidJson, TetherError
from tether.core.lifecycle import TERMINAL, CommandState
from tether.core.model import (
    Command,
    Device,
    DeviceType,
    Network,
    Notification,
    Role,
    User,
    UserStatus,
)

API_VERSION = "3.5.0"
#: Special notification names DeviceHive reserves for device registration events.
RESERVED_NOTIFICATIONS = frozenset({"$device-add", "$device-update"})

ROLES = {Role.ADMIN: 0, Role.CLIENT: 1}
ROLE_OF = {v: k for k, v in ROLES.items()}
STATUSES = {UserStatus.ACTIVE: 0, UserStatus.LOCKED: 1, UserStatus.DISABLED: 2}
STATUS_OF = {v: k for k, v in STATUSES.items()}

#: ``status`` words a device may send without a ``result`` that still finish a command.
SUCCESS_WORDS = frozenset({"success", "succeeded", "completed", "complete", "done", "ok"})
FAILURE_WORDS = frozenset({"failed", "failure", "fail", "error", "errored", "rejected"})


class DhError(Exception):
    """An error in DeviceHive's own terms: an HTTP-like code and a message."""

    def __init__(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: HTTP headers for a REST answer (``Retry-After`` on 429).
        self.headers = headers or {}


def error_of(error: BaseException) -> DhError:
    """Map any failure onto DeviceHive's code and message (never a traceback)."""
    if isinstance(error, DhError):
        return error
    if isinstance(error, TetherError):
        status = error.status
        if status == 409 and error.code != "invalid_transition":
            status = 403  # duplicates are 403 in DeviceHive
        elif status in (413, 422):
            status = 400
        message = error.message
        if status == 403 and error.code == "forbidden" and message.startswith("not allowed"):
            message = "Access is denied"
        elif status == 429:
            message = f"{message} (retry after {error.headers().get('Retry-After', '1')} s)"
        return DhError(status, message, error.headers())
    return DhError(500, "Internal server error")


# --- timestamps ---------------------------------------------------------------------------


def fmt_ts(value: datetime | None) -> str | None:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS`` in UTC (milliseconds truncated, no zone)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def parse_ts(raw: Any, what: str = "timestamp") -> datetime:
    """A client timestamp: ISO-8601 with or without a zone (no zone means UTC)."""
    if not isinstance(raw, str) or not raw.strip():
        raise DhError(400, f"Unparseable timestamp: {raw!r}")
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise DhError(400, f"Unparseable timestamp: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def cursor(raw: Any) -> datetime:
    """A "newer than" cursor. A millisecond value means the whole millisecond was seen.

    Served timestamps are truncated to milliseconds, so the cursor a client echoes back
    stands for everything up to the end of that millisecond; entity timestamps are kept
    unique per millisecond (see ``clock.py``), so nothing newer shares it.
    """
    value = parse_ts(raw)
    if value.microsecond % 1000 == 0:
        value += timedelta(microseconds=999)
    return value


def end_bound(raw: Any) -> datetime:
    """An exclusive upper bound (``< end``) as given."""
    return parse_ts(raw)


# --- frames -------------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    return jsonc.encode_text(frame)


def decode_json(raw: str | bytes) -> Any:
    try:
        return jsonc.decode(raw)
    except InvalidJson as error:
        raise DhError(400, error.message) from None


def parse_request(raw: str | bytes) -> tuple[str, Any, dict[str, Any]]:
    """``(action, requestId, message)``; raises :class:`DhError` for a bad frame.

    On error the caller still needs what could be read for the echo, so a frame that
    is a JSON object but lacks a valid action raises after the object is known: use
    :func:`echo_of` to recover ``action`` and ``requestId``.
    """
    message = decode_json(raw)
    if not isinstance(message, dict):
        raise DhError(400, "A request must be a JSON object")
    action = message.get("action")
    if not isinstance(action, str) or not action:
        raise DhError(400, "Illegal argument: action is required")
    return action, message.get("requestId"), message


def echo_of(raw: str | bytes) -> tuple[Any, Any]:
    """Best effort ``(action, requestId)`` of a frame that failed to parse."""
    try:
        message = jsonc.decode(raw)
    except InvalidJson:
        return None, None
    if isinstance(message, dict):
        action = message.get("action")
        return (action if isinstance(action, str) else None), message.get("requestId")
    return None, None


def success(action: Any, request_id: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"action": action, "requestId": request_id, "status": "success"}
    if payload:
        frame.update(payload)
    return frame


def failure(action: Any, request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {
        "action": action,
        "requestId": request_id,
        "status": "error",
        "code": code,
        "error": message,
    }


def event(action: str, subscription_id: int, key: str, view: dict[str, Any]) -> dict[str, Any]:
    return {"action": action, "subscriptionId": subscription_id, key: view}


def rest_error(code: int, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


# --- parameters ---------------------------------------------------------------------------


def opt_str(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DhError(400, f"{what} must be a string")
    return value


def opt_int(
    value: Any, what: str, low: int = limits.INT64_MIN, high: int = limits.INT64_MAX
) -> int | None:
    """An integer from JSON or a query string, within ``[low, high]`` (64-bit by default)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str):
            return limits.parse_int(what, value, low, high)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2.0**63:
            value = int(value)
        return limits.check_int(what, value, low, high)
    except BadRequest as error:
        raise DhError(400, error.message) from None


def opt_bool(value: Any, what: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int):
        return bool(value)
    raise DhError(400, f"{what} must be true or false")


def int_list(value: Any, what: str) -> list[int] | None:
    """A list of ids from JSON (``[1, 2]``) or a query string (``"1,2"``)."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise DhError(400, f"{what} must be a list of ids")
    out = []
    for item in items:
        parsed = opt_int(item, what)
        if parsed is not None:
            out.append(parsed)
    return out or None


def str_list(value: Any, what: str) -> list[str] | None:
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise DhError(400, f"{what} must be a list of strings")
    return [i for i in items if i] or None


def paging(message: dict[str, Any], default_take: int | None) -> tuple[int, int]:
    take = opt_int(message.get("take"), "take", 0, limits.LIST_MAX)
    skip = opt_int(message.get("skip"), "skip", 0, limits.LIST_MAX)
    if take is None:
        take = default_take if default_take is not None else limits.LIST_MAX
    return take, skip or 0


def sort_order(raw: Any, *, default_desc: bool) -> bool:
    """True for descending; DeviceHive accepts ``ASC``/``DESC`` in any case."""
    if raw is None or raw == "":
        return default_desc
    if not isinstance(raw, str) or raw.upper() not in ("ASC", "DESC"):
        raise DhError(400, f"Invalid request parameters: sortOrder {raw!r}")
    return raw.upper() == "DESC"


# --- entity views -------------------------------------------------------------------------


def device_view(device: Device) -> dict[str, Any]:
    return {
        "id": device.id,
        "name": device.name,
        "data": device.data,
        "networkId": device.network_id,
        "deviceTypeId": device.type_id,
        "isBlocked": device.blocked,
    }


def device_in_scope_view(device: Device) -> dict[str, Any]:
    return {"id": device.id, "name": device.name, "data": device.data, "isBlocked": device.blocked}


def scope_view(scope: Network | DeviceType) -> dict[str, Any]:
    return {"id": scope.id, "name": scope.name, "description": scope.description}


def scope_published(scope: Network | DeviceType, devices: list[Device]) -> dict[str, Any]:
    view = scope_view(scope)
    view["devices"] = [device_in_scope_view(d) for d in devices]
    return view


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "login": user.login,
        "role": ROLES[user.role],
        "status": STATUSES[user.status],
        "lastLogin": fmt_ts(user.last_login),
        "data": user.data,
        "introReviewed": user.intro_reviewed,
        "allDeviceTypesAvailable": user.all_device_types,
    }


def user_published(user: User, networks: list[Network]) -> dict[str, Any]:
    view = user_view(user)
    view["networks"] = [scope_view(n) for n in networks]
    return view


def user_submitted(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "lastLogin": fmt_ts(user.last_login),
        "data": user.data,
        "introReviewed": user.intro_reviewed,
        "allDeviceTypesAvailable": user.all_device_types,
    }


# --- commands -----------------------------------------------------------------------------

_UNTOUCHED = frozenset({CommandState.PENDING, CommandState.SENT, CommandState.DELIVERED})


def is_updated(command: Command) -> bool:
    """Whether anyone has updated the command since it was created (DeviceHive ``isUpdated``).

    Delivery alone (``sent``/``delivered``) is not an update; a status, a result, progress
    or any final state is.
    """
    return (
        command.status is not None or command.result is not None or command.state not in _UNTOUCHED
    )


def last_updated(command: Command) -> datetime:
    return command.updated_at if is_updated(command) else command.created_at


def command_status(command: Command) -> str | None:
    """The device's own status text; else the core state once it is past delivery."""
    if command.status is not None:
        return command.status
    if command.state in _UNTOUCHED:
        return None
    return command.state.value


def command_result(command: Command) -> Any:
    if command.result is None and command.error is not None:
        return {"error": command.error}
    return command.result


def lifetime_of(command: Command) -> int | None:
    if command.expires_at is None:
        return None
    return max(0, round((command.expires_at - command.created_at).total_seconds()))


def command_view(command: Command, network_id: int | None, type_id: int | None) -> dict[str, Any]:
    return {
        "id": command.id,
        "command": command.name,
        "timestamp": fmt_ts(command.created_at),
        "lastUpdated": fmt_ts(last_updated(command)),
        "userId": command.created_by,
        "deviceId": command.device_id,
        "networkId": network_id,
        "deviceTypeId": type_id,
        "parameters": command.parameters,
        "lifetime": lifetime_of(command),
        "status": command_status(command),
        "result": command_result(command),
    }


def command_inserted(command: Command) -> dict[str, Any]:
    return {
        "id": command.id,
        "timestamp": fmt_ts(command.created_at),
        "lastUpdated": fmt_ts(command.created_at),
        "userId": command.created_by,
    }


def update_outcome(status: str | None, result: Any) -> str:
    """What a device's ``command/update`` means for the core lifecycle.

    ``"failed"``: the status names a failure; ``"succeeded"``: a result arrived, or the
    status names success; ``"progress"``: only a status (the command is running).
    """
    word = status.strip().lower() if isinstance(status, str) else None
    if word in FAILURE_WORDS:
        return "failed"
    if result is not None or word in SUCCESS_WORDS:
        return "succeeded"
    return "progress"


def is_final(command: Command) -> bool:
    return command.state in TERMINAL


# --- notifications ------------------------------------------------------------------------


def notification_view(
    notification: Notification, network_id: int | None, type_id: int | None
) -> dict[str, Any]:
    return {
        "id": notification.id,
        "notification": notification.name,
        "deviceId": notification.device_id,
        "networkId": network_id,
        "deviceTypeId": type_id,
        "timestamp": fmt_ts(notification.timestamp),
        "parameters": notification.parameters,
    }


def notification_inserted(notification: Notification) -> dict[str, Any]:
    return {"id": notification.id, "timestamp": fmt_ts(notification.timestamp)}


# --- info ---------------------------------------------------------------------------------


def ws_info(server_timestamp: datetime, rest_url: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "serverTimestamp": fmt_ts(server_timestamp),
        "restServerUrl": rest_url,
    }


def rest_info(server_timestamp: datetime, ws_url: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "serverTimestamp": fmt_ts(server_timestamp),
        "webSocketServerUrl": ws_url,
    }


CLUSTER_INFO = {"bootstrap.servers": "", "zookeeper.connect": ""}
