"""What the native API answers with: view structs, and the one JSON encoder.

Each view is built from a core entity by a small pure function (``command_view`` ...), so
an entity's secrets (hashes) can never leak into an answer by accident. Field names are
camelCase on the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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


class TokenView(Wire, kw_only=True):
    access_token: str
    refresh_token: str | None = None


class CredentialView(Wire, kw_only=True):
    device_id: str
    credential: str


class PresenceView(Wire, kw_only=True):
    device_id: str
    online: bool
    at: datetime


encoder = msgspec.json.Encoder()
