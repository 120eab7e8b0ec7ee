"""What travels on the bus, and on which channel.

Command events are routed to the processes that need them (hub.routing): the holders,
listeners and deadline owner of the device, on their ``node.<id>`` channels, plus the
topic channels ``commands`` and ``commands.dialect.<dialect>``, which a process hears only
while it has subscribers naming no device. Notification and presence channels are heard
only while a process has local subscribers (hub.interest). Events carry a
:class:`DeviceRef` so a subscriber's filter and visibility can be checked without a lookup.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from tether.core import jsonc
from tether.core.model import Command, Device, Notification

# Names within the cluster: the bus prefixes each with the cluster's name
# (``TETHER_CLUSTER_NAME``), so ``commands`` is ``tether.commands`` on Redis by default.
COMMANDS = "commands"
NOTIFICATIONS = "notifications"
PRESENCE = "presence"
DIRECTORY = "directory"


class DeviceRef(msgspec.Struct, frozen=True, array_like=True):
    """The few device fields that filters and access rules look at."""

    id: str
    network_id: int | None = None
    type_id: int | None = None
    owner_id: int | None = None
    dialect: str = "native"

    @classmethod
    def of(cls, device: Device) -> DeviceRef:
        return cls(device.id, device.network_id, device.type_id, device.owner_id, device.dialect)


class CommandChanged(msgspec.Struct, frozen=True, tag="command"):
    command: Command
    device: DeviceRef
    created: bool = False


class NotificationPosted(msgspec.Struct, frozen=True, tag="notification"):
    notification: Notification
    device: DeviceRef


class PresenceChanged(msgspec.Struct, frozen=True, tag="presence"):
    device: DeviceRef
    online: bool
    at: datetime


class DeviceChanged(msgspec.Struct, frozen=True, tag="device"):
    """A device was changed or deleted elsewhere: drop it from caches."""

    device_id: str
    deleted: bool = False


class UserChanged(msgspec.Struct, frozen=True, tag="user"):
    """A user was changed or deleted: every node re-reads it before trusting its tokens."""

    user_id: int


class ApiKeyRevoked(msgspec.Struct, frozen=True, tag="apikey"):
    """An API key was revoked: every node drops it from its cache at once."""

    prefix: str


class DeviceReleased(msgspec.Struct, frozen=True, tag="released"):
    """Sent to a device's owner: the last process holding it let it go, so the owner keeps
    its commands' deadlines from now on (hub.routing)."""

    device_id: str


class SessionTakenOver(msgspec.Struct, frozen=True, tag="takeover"):
    """Sent to one node: the device now has a newer session elsewhere; drop yours."""

    device_id: str
    by_node: str


Event = (
    CommandChanged
    | NotificationPosted
    | PresenceChanged
    | DeviceChanged
    | UserChanged
    | ApiKeyRevoked
    | SessionTakenOver
    | DeviceReleased
)


def device_notifications(device_id: str) -> str:
    """The channel of one device's notifications (see hub.interest)."""
    return f"{NOTIFICATIONS}.{device_id}"


def dialect_commands(dialect: str) -> str:
    """The channel of one dialect's command events (for that dialect's own watchers)."""
    return f"{COMMANDS}.dialect.{dialect}"


def node_channel(node_id: str) -> str:
    """The directed channel of one process."""
    return f"node.{node_id}"


#: Unbounded: only this cluster's processes publish events (see ``jsonc.Decoder``), and a
#: command event is decoded by each process it crosses to.
_decoder = jsonc.Decoder[Event](Event, what="event", bounded=False)


def encode(event: Event) -> bytes:
    return jsonc.encode(event)


def decode(payload: bytes) -> Event:
    return _decoder.decode(payload)
