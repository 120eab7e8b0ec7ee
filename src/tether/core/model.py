"""Entities of the core model.

They are immutable ``msgspec`` structs: cheap to build, cheap to encode onto the bus, and
impossible to mutate by accident in a handler. Change one with ``msgspec.structs.replace``.
Secrets (password, credential and key hashes) live on the entities but are never part of
an API view: each API renders its own view structs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from tether.core.lifecycle import CommandState


class Role(StrEnum):
    ADMIN = "admin"
    CLIENT = "client"


class UserStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"


class User(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    login: str
    role: Role
    status: UserStatus = UserStatus.ACTIVE
    password_hash: str | None = None
    data: Any = None
    #: Network scoping (DeviceHive): a client sees devices in these networks ...
    network_ids: tuple[int, ...] = ()
    #: ... restricted to these device types unless ``all_device_types``.
    device_type_ids: tuple[int, ...] = ()
    all_device_types: bool = True
    intro_reviewed: bool = False
    login_attempts: int = 0
    created_at: datetime
    last_login: datetime | None = None


class Network(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    name: str
    description: str | None = None


class DeviceType(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    name: str
    description: str | None = None


class Device(msgspec.Struct, kw_only=True, frozen=True):
    """A device of any dialect. ``id`` keeps the dialect's own id form as a string."""

    id: str
    name: str
    dialect: str = "native"
    network_id: int | None = None
    type_id: int | None = None
    owner_id: int | None = None
    data: Any = None
    blocked: bool = False
    #: Dialect attributes: OpenGate endpoint URL, eWeLink factory apikey, poll options...
    attributes: dict[str, Any] = {}
    #: Hash of the per-device credential (see ``hub.secrets``), never shown.
    credential_hash: str | None = None
    created_at: datetime
    updated_at: datetime
    last_seen: datetime | None = None


class CommandStep(msgspec.Struct, kw_only=True, frozen=True):
    """One step of multi-step progress (OpenGate ``steps``, native partial results)."""

    name: str
    state: str
    description: str | None = None
    time: datetime
    data: Any = None


class Command(msgspec.Struct, kw_only=True, frozen=True):
    """A command (also called an operation) with its durable lifecycle state."""

    id: int
    device_id: str
    name: str
    parameters: Any = None
    state: CommandState = CommandState.PENDING
    #: Free text the device may set, as in DeviceHive.
    status: str | None = None
    result: Any = None
    error: str | None = None
    steps: tuple[CommandStep, ...] = ()
    #: The dialect's correlation key: OpenGate UUID, eWeLink sequence, Control iD uuid.
    ref: str | None = None
    created_by: int | None = None
    idempotency_key: str | None = None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    completed_at: datetime | None = None
    #: Delivery deadline: if the device has not received it by then, it expires.
    expires_at: datetime | None = None
    #: Execution limit in seconds, counted from delivery.
    timeout: float | None = None


class Notification(msgspec.Struct, kw_only=True, frozen=True):
    """A device-to-cloud event or telemetry sample."""

    id: int
    device_id: str
    name: str
    parameters: Any = None
    timestamp: datetime


class DeviceState(msgspec.Struct, kw_only=True, frozen=True):
    """The shadow: what the device last reported and what the cloud wants."""

    device_id: str
    reported: dict[str, Any] = {}
    desired: dict[str, Any] = {}
    version: int = 0
    updated_at: datetime | None = None


class ConfigRevision(msgspec.Struct, kw_only=True, frozen=True):
    """One revision of a config document, scoped to a device, a device type, or everyone."""

    id: int
    document: Any
    device_id: str | None = None
    device_type_id: int | None = None
    created_by: int | None = None
    created_at: datetime


class FirmwareTarget(msgspec.Struct, kw_only=True, frozen=True):
    """The firmware a device (or every device of a type) should run."""

    id: int
    version: str
    url: str
    size: int | None = None
    sha256: str | None = None
    device_id: str | None = None
    device_type_id: int | None = None
    created_at: datetime


class ApiKey(msgspec.Struct, kw_only=True, frozen=True):
    """A long-lived credential acting as its user. Only a hash of the secret is kept."""

    id: int
    user_id: int
    name: str
    prefix: str
    secret_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked: bool = False
