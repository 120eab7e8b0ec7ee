"""Wire messages of the native API: request bodies, views, and WebSocket frames.

Pure data and pure functions: the routes, the device agent and the CLI all use these
structs, and tests can exercise them without a socket. Field names are camelCase on the
wire. Request structs reject unknown fields, so a typo is an error rather than a silently
ignored setting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from tether.core.model import (
    ApiKey,
    Command,
    CommandStep,
    ConfigRevision,
    Device,
    DeviceState,
    DeviceType,
    FirmwareTarget,
    Network,
    Notification,
    User,
)


class Wire(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=False):
    """Base of every native API message."""


class Request(Wire, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are errors."""


# --- views ------------------------------------------------------------------------------------


class StepView(Wire, kw_only=True):
    name: str
    state: str
    description: str | None = None
    time: datetime
    data: Any = None


class CommandView(Wire, kw_only=True):
    id: int
    device_id: str
    name: str
    parameters: Any = None
    state: str
    status: str | None = None
    result: Any = None
    error: str | None = None
    steps: list[StepView] = []
    ref: str | None = None
    created_by: int | None = None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    timeout: float | None = None


def step_view(step: CommandStep) -> StepView:
    return StepView(
        name=step.name,
        state=step.state,
        description=step.description,
        time=step.time,
        data=step.data,
    )


def command_view(c: Command) -> CommandView:
    return CommandView(
        id=c.id,
        device_id=c.device_id,
        name=c.name,
        parameters=c.parameters,
        state=c.state.value,
        status=c.status,
        result=c.result,
        error=c.error,
        steps=[step_view(s) for s in c.steps],
        ref=c.ref,
        created_by=c.created_by,
        created_at=c.created_at,
        updated_at=c.updated_at,
        sent_at=c.sent_at,
        delivered_at=c.delivered_at,
        completed_at=c.completed_at,
        expires_at=c.expires_at,
        timeout=c.timeout,
    )


class NotificationView(Wire, kw_only=True):
    id: int
    device_id: str
    name: str
    parameters: Any = None
    timestamp: datetime


def notification_view(n: Notification) -> NotificationView:
    return NotificationView(
        id=n.id, device_id=n.device_id, name=n.name, parameters=n.parameters, timestamp=n.timestamp
    )


class DeviceView(Wire, kw_only=True):
    id: str
    name: str
    dialect: str
    network_id: int | None = None
    type_id: int | None = None
    owner_id: int | None = None
    data: Any = None
    blocked: bool = False
    attributes: dict[str, Any] = {}
    has_credential: bool = False
    created_at: datetime
    updated_at: datetime
    last_seen: datetime | None = None
    online: bool | None = None


def device_view(d: Device, online: bool | None = None) -> DeviceView:
    return DeviceView(
        id=d.id,
        name=d.name,
        dialect=d.dialect,
        network_id=d.network_id,
        type_id=d.type_id,
        owner_id=d.owner_id,
        data=d.data,
        blocked=d.blocked,
        attributes=d.attributes,
        has_credential=d.credential_hash is not None,
        created_at=d.created_at,
        updated_at=d.updated_at,
        last_seen=d.last_seen,
        online=online,
    )


class UserView(Wire, kw_only=True):
    id: int
    login: str
    role: str
    status: str
    data: Any = None
    network_ids: list[int] = []
    device_type_ids: list[int] = []
    all_device_types: bool = True
    created_at: datetime
    last_login: datetime | None = None


def user_view(u: User) -> UserView:
    return UserView(
        id=u.id,
        login=u.login,
        role=u.role.value,
        status=u.status.value,
        data=u.data,
        network_ids=list(u.network_ids),
        device_type_ids=list(u.device_type_ids),
        all_device_types=u.all_device_types,
        created_at=u.created_at,
        last_login=u.last_login,
    )


class NetworkView(Wire, kw_only=True):
    id: int
    name: str
    description: str | None = None


def network_view(n: Network | DeviceType) -> NetworkView:
    return NetworkView(id=n.id, name=n.name, description=n.description)


class ApiKeyView(Wire, kw_only=True):
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked: bool = False
    #: Only in the response that created it: the full key, shown once.
    key: str | None = None


def api_key_view(k: ApiKey, key: str | None = None) -> ApiKeyView:
    return ApiKeyView(
        id=k.id,
        user_id=k.user_id,
        name=k.name,
        prefix=k.prefix,
        created_at=k.created_at,
        expires_at=k.expires_at,
        last_used_at=k.last_used_at,
        revoked=k.revoked,
        key=key,
    )


class StateView(Wire, kw_only=True):
    device_id: str
    reported: dict[str, Any] = {}
    desired: dict[str, Any] = {}
    version: int = 0
    updated_at: datetime | None = None


def state_view(s: DeviceState) -> StateView:
    return StateView(
        device_id=s.device_id,
        reported=s.reported,
        desired=s.desired,
        version=s.version,
        updated_at=s.updated_at,
    )


class ConfigView(Wire, kw_only=True):
    id: int
    document: Any
    device_id: str | None = None
    device_type_id: int | None = None
    created_by: int | None = None
    created_at: datetime


def config_view(c: ConfigRevision) -> ConfigView:
    return ConfigView(
        id=c.id,
        document=c.document,
        device_id=c.device_id,
        device_type_id=c.device_type_id,
        created_by=c.created_by,
        created_at=c.created_at,
    )


class FirmwareView(Wire, kw_only=True):
    id: int
    version: str
    url: str
    size: int | None = None
    sha256: str | None = None
    device_id: str | None = None
    device_type_id: int | None = None
    created_at: datetime


def firmware_view(f: FirmwareTarget) -> FirmwareView:
    return FirmwareView(
        id=f.id,
        version=f.version,
        url=f.url,
        size=f.size,
        sha256=f.sha256,
        device_id=f.device_id,
        device_type_id=f.device_type_id,
        created_at=f.created_at,
    )


class ErrorBody(Wire, kw_only=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorView(Wire, kw_only=True):
    error: ErrorBody


# --- requests ----------------------------------------------------------------------------------


class LoginRequest(Request, kw_only=True):
    login: str
    password: str


class RefreshRequest(Request, kw_only=True):
    refresh_token: str


class TokenView(Wire, kw_only=True):
    access_token: str
    refresh_token: str | None = None


class UserCreate(Request, kw_only=True):
    login: str
    password: str
    role: Literal["admin", "client"] = "client"
    data: Any = None
    all_device_types: bool = True


class UserUpdate(Request, kw_only=True):
    login: str | None = None
    password: str | None = None
    role: Literal["admin", "client"] | None = None
    status: Literal["active", "locked", "disabled"] | None = None
    data: Any = None
    all_device_types: bool | None = None


class NamedCreate(Request, kw_only=True):
    name: str
    description: str | None = None


class NamedUpdate(Request, kw_only=True):
    name: str | None = None
    description: str | None = None


class DeviceCreate(Request, kw_only=True):
    id: str | None = None
    name: str
    network_id: int | None = None
    type_id: int | None = None
    owner_id: int | None = None
    data: Any = None
    blocked: bool = False
    dialect: str = "native"
    attributes: dict[str, Any] = {}


class DeviceUpdate(Request, kw_only=True):
    name: str | None = None
    network_id: int | None = None
    type_id: int | None = None
    owner_id: int | None = None
    data: Any = None
    blocked: bool | None = None
    attributes: dict[str, Any] | None = None


class CredentialView(Wire, kw_only=True):
    device_id: str
    credential: str


class ApiKeyCreate(Request, kw_only=True):
    name: str
    user_id: int | None = None
    expires_in: float | None = None


class CommandCreate(Request, kw_only=True):
    name: str
    parameters: Any = None
    #: Execution limit after delivery, seconds (null = never; omitted = server default).
    timeout: float | msgspec.UnsetType | None = msgspec.UNSET
    #: Delivery deadline from now, seconds (null = never; omitted = server default).
    lifetime: float | msgspec.UnsetType | None = msgspec.UNSET
    idempotency_key: str | None = None


class StepInput(Request, kw_only=True):
    name: str
    state: str = "in_progress"
    description: str | None = None
    data: Any = None


class CommandProgress(Request, kw_only=True):
    status: str | None = None
    step: StepInput | None = None
    result: Any = None


class CommandResult(Request, kw_only=True):
    success: bool = True
    result: Any = None
    error: str | None = None
    status: str | None = None
    step: StepInput | None = None


class NotificationCreate(Request, kw_only=True):
    name: str
    parameters: Any = None
    timestamp: datetime | None = None


class StatePatch(Request, kw_only=True):
    reported: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None


class ConfigCreate(Request, kw_only=True):
    document: Any
    device_id: str | None = None
    device_type_id: int | None = None


class FirmwareCreate(Request, kw_only=True):
    version: str
    url: str
    size: int | None = None
    sha256: str | None = None
    device_id: str | None = None
    device_type_id: int | None = None


# --- the device WebSocket (/api/v1/device/ws) ----------------------------------------------------
# Device -> server frames carry "type"; any of them may carry "requestId", and then the server
# answers with a "response" (or "error") frame echoing it.


class DeviceFrame(Request, tag_field="type", kw_only=True):
    request_id: str | int | None = None


class HelloFrame(DeviceFrame, tag="hello", kw_only=True):
    """First frame when the credential was not given on the upgrade request."""

    device_id: str
    credential: str


class AckFrame(DeviceFrame, tag="ack", kw_only=True):
    id: int


class ProgressFrame(DeviceFrame, tag="progress", kw_only=True):
    id: int
    status: str | None = None
    step: StepInput | None = None
    result: Any = None


class ResultFrame(DeviceFrame, tag="result", kw_only=True):
    id: int
    success: bool = True
    result: Any = None
    error: str | None = None
    status: str | None = None
    step: StepInput | None = None


class NotifyFrame(DeviceFrame, tag="notification", kw_only=True):
    name: str
    parameters: Any = None
    timestamp: datetime | None = None


class StateFrame(DeviceFrame, tag="state", kw_only=True):
    reported: dict[str, Any]


class PingFrame(DeviceFrame, tag="ping", kw_only=True):
    pass


DeviceInbound = (
    HelloFrame | AckFrame | ProgressFrame | ResultFrame | NotifyFrame | StateFrame | PingFrame
)


# --- the client WebSocket (/api/v1/ws) ------------------------------------------------------------


class ClientFrame(Request, tag_field="type", kw_only=True):
    request_id: str | int | None = None


class AuthenticateFrame(ClientFrame, tag="authenticate", kw_only=True):
    token: str


class CommandCreateFrame(ClientFrame, tag="command.create", kw_only=True):
    device_id: str
    name: str
    parameters: Any = None
    timeout: float | msgspec.UnsetType | None = msgspec.UNSET
    lifetime: float | msgspec.UnsetType | None = msgspec.UNSET
    idempotency_key: str | None = None


class CommandGetFrame(ClientFrame, tag="command.get", kw_only=True):
    id: int


class CommandCancelFrame(ClientFrame, tag="command.cancel", kw_only=True):
    id: int


class SubscribeFrame(ClientFrame, tag="subscribe", kw_only=True):
    topic: Literal["notification", "command", "command_update", "presence"]
    device_ids: list[str] | None = None
    network_ids: list[int] | None = None
    device_type_ids: list[int] | None = None
    names: list[str] | None = None


class UnsubscribeFrame(ClientFrame, tag="unsubscribe", kw_only=True):
    subscription_id: int


class ClientPingFrame(ClientFrame, tag="ping", kw_only=True):
    pass


ClientInbound = (
    AuthenticateFrame
    | CommandCreateFrame
    | CommandGetFrame
    | CommandCancelFrame
    | SubscribeFrame
    | UnsubscribeFrame
    | ClientPingFrame
)


# --- server -> peer frames ---------------------------------------------------------------


class Outbound(Wire, tag_field="type", kw_only=True):
    pass


class CommandPush(Outbound, tag="command", kw_only=True):
    command: CommandView


class ResponseFrame(Outbound, tag="response", kw_only=True):
    request_id: str | int | None = None
    data: Any = None


class ErrorFrame(Outbound, tag="error", kw_only=True):
    request_id: str | int | None = None
    error: ErrorBody


class EventFrame(Outbound, tag="event", kw_only=True):
    subscription_id: int
    topic: str
    data: Any


class PresenceView(Wire, kw_only=True):
    device_id: str
    online: bool
    at: datetime


encoder = msgspec.json.Encoder()
