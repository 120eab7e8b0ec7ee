"""What the native API accepts: request bodies and WebSocket frames (answers: views.py).

Pure data: the routes, the device agent and the CLI all use these structs, and tests can
exercise them without a socket. Field names are camelCase on the wire. Request structs
reject unknown fields, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from tether.api.views import CommandView, ErrorBody, Wire
from tether.core.limits import Id, Seconds, Size

#: A display name (device, network, device type): what the directory accepts.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Request(Wire, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are errors."""


# --- requests ----------------------------------------------------------------------------------


class LoginRequest(Request, kw_only=True):
    login: str
    password: str


class RefreshRequest(Request, kw_only=True):
    refresh_token: str


class UserCreate(Request, kw_only=True):
    login: str
    password: str
    role: Literal["admin", "client"] = "client"
    data: Any = None
    all_device_types: bool = True


# PATCH bodies: a field left out is left alone (UNSET); only the fields that may be
# cleared accept null, so the published schema says exactly what the server takes.


class UserUpdate(Request, kw_only=True):
    login: str | msgspec.UnsetType = msgspec.UNSET
    password: str | msgspec.UnsetType = msgspec.UNSET
    role: Literal["admin", "client"] | msgspec.UnsetType = msgspec.UNSET
    status: Literal["active", "locked", "disabled"] | msgspec.UnsetType = msgspec.UNSET
    data: Any = None
    all_device_types: bool | msgspec.UnsetType = msgspec.UNSET


class NamedCreate(Request, kw_only=True):
    name: Name
    description: str | None = None


class NamedUpdate(Request, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: str | None = None


class DeviceCreate(Request, kw_only=True):
    id: str | None = None
    name: Name
    network_id: Id | None = None
    type_id: Id | None = None
    owner_id: Id | None = None
    data: Any = None
    blocked: bool = False
    dialect: str = "native"
    attributes: dict[str, Any] = {}


class DeviceUpdate(Request, kw_only=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    network_id: Id | None = None
    type_id: Id | None = None
    owner_id: Id | None = None
    data: Any = None
    blocked: bool | msgspec.UnsetType = msgspec.UNSET
    attributes: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class ApiKeyCreate(Request, kw_only=True):
    name: str
    user_id: Id | None = None
    expires_in: Seconds | None = None


class CommandCreate(Request, kw_only=True):
    name: str
    parameters: Any = None
    #: Execution limit after delivery, seconds (null = never; omitted = server default).
    timeout: Seconds | msgspec.UnsetType | None = msgspec.UNSET
    #: Delivery deadline from now, seconds (null = never; omitted = server default).
    lifetime: Seconds | msgspec.UnsetType | None = msgspec.UNSET
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
    device_type_id: Id | None = None


class FirmwareCreate(Request, kw_only=True):
    version: str
    url: str
    size: Size | None = None
    sha256: str | None = None
    device_id: str | None = None
    device_type_id: Id | None = None


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
    id: Id


class ProgressFrame(DeviceFrame, tag="progress", kw_only=True):
    id: Id
    status: str | None = None
    step: StepInput | None = None
    result: Any = None


class ResultFrame(DeviceFrame, tag="result", kw_only=True):
    id: Id
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
    timeout: Seconds | msgspec.UnsetType | None = msgspec.UNSET
    lifetime: Seconds | msgspec.UnsetType | None = msgspec.UNSET
    idempotency_key: str | None = None


class CommandGetFrame(ClientFrame, tag="command.get", kw_only=True):
    id: Id


class CommandCancelFrame(ClientFrame, tag="command.cancel", kw_only=True):
    id: Id


class SubscribeFrame(ClientFrame, tag="subscribe", kw_only=True):
    topic: Literal["notification", "command", "command_update", "presence"]
    device_ids: list[str] | None = None
    network_ids: list[Id] | None = None
    device_type_ids: list[Id] | None = None
    names: list[str] | None = None


class UnsubscribeFrame(ClientFrame, tag="unsubscribe", kw_only=True):
    subscription_id: Id


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
    subscription_id: Id
    topic: str
    data: Any
