"""The one schema, for SQLite and PostgreSQL alike.

Design notes:

* Integer keys are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite (only an
  ``INTEGER PRIMARY KEY`` is SQLite's auto-incrementing rowid). Both engines hand out
  ids sequentially from 1, so command and notification ids stay far below 2^53 and
  JavaScript clients read them exactly. ``sqlite_autoincrement`` stops SQLite from
  re-using the id of a deleted newest row, so an id is never seen twice.
* A child that cannot outlive its parent is removed with it (``ON DELETE CASCADE``):
  a device's commands, notifications, shadow, config and firmware; a user's keys and
  scope links. A *reference* that is not ownership is cleared instead (``SET NULL``:
  a device's owner, a command's creator). Networks and device types cannot be deleted
  while devices are in them (no action), which the repositories report as a conflict
  unless asked to force.
* Indexes exist for the hot queries only: a device's deliverable commands in id order,
  the non-terminal commands at start-up, the idempotency lookup, notification replay by
  device and time, and pruning by time.
* The naming convention gives every constraint a stable name, which Alembic's batch
  mode needs to rebuild SQLite tables.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from tether.store.types import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Integer surrogate keys: BIGINT, except SQLite's rowid-aliasing INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")
#: Device ids keep each dialect's own form (DeviceHive strings, hex, int64 as text...).
DeviceId = String(128)

CASCADE = "CASCADE"
SET_NULL = "SET NULL"


def _pk() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


users = Table(
    "users",
    metadata,
    _pk(),
    Column("login", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("password_hash", String(255)),
    Column("data", JSON),
    Column("all_device_types", Boolean, nullable=False),
    Column("intro_reviewed", Boolean, nullable=False),
    Column("login_attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login", UTCDateTime),
    Index("ux_users_login", "login", unique=True),
    sqlite_autoincrement=True,
)

networks = Table(
    "networks",
    metadata,
    _pk(),
    Column("name", String(128), nullable=False),
    Column("description", Text),
    Index("ux_networks_name", "name", unique=True),
    sqlite_autoincrement=True,
)

device_types = Table(
    "device_types",
    metadata,
    _pk(),
    Column("name", String(128), nullable=False),
    Column("description", Text),
    Index("ux_device_types_name", "name", unique=True),
    sqlite_autoincrement=True,
)

user_networks = Table(
    "user_networks",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete=CASCADE), primary_key=True),
    Column("network_id", Id, ForeignKey("networks.id", ondelete=CASCADE), primary_key=True),
    Index("ix_user_networks_network_id", "network_id"),
)

user_device_types = Table(
    "user_device_types",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete=CASCADE), primary_key=True),
    Column("device_type_id", Id, ForeignKey("device_types.id", ondelete=CASCADE), primary_key=True),
    Index("ix_user_device_types_device_type_id", "device_type_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", DeviceId, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("dialect", String(32), nullable=False),
    Column("network_id", Id, ForeignKey("networks.id")),
    Column("type_id", Id, ForeignKey("device_types.id")),
    Column("owner_id", Id, ForeignKey("users.id", ondelete=SET_NULL)),
    Column("data", JSON),
    Column("blocked", Boolean, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("credential_hash", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime),
    Index("ix_devices_name", "name"),
    Index("ix_devices_network_id", "network_id"),
    Index("ix_devices_type_id", "type_id"),
    Index("ix_devices_owner_id", "owner_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _pk(),
    Column("user_id", Id, ForeignKey("users.id", ondelete=CASCADE), nullable=False),
    Column("name", String(128), nullable=False),
    Column("prefix", String(64), nullable=False),
    Column("secret_hash", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked", Boolean, nullable=False),
    Index("ux_api_keys_prefix", "prefix", unique=True),
    Index("ix_api_keys_user_id", "user_id"),
    sqlite_autoincrement=True,
)

commands = Table(
    "commands",
    metadata,
    _pk(),
    Column("device_id", DeviceId, ForeignKey("devices.id", ondelete=CASCADE), nullable=False),
    Column("name", String(128), nullable=False),
    Column("parameters", JSON),
    Column("state", String(16), nullable=False),
    Column("status", Text),
    Column("result", JSON),
    Column("error", Text),
    Column("steps", JSON),
    Column("ref", String(255)),
    Column("created_by", Id, ForeignKey("users.id", ondelete=SET_NULL)),
    Column("idempotency_key", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("delivered_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("expires_at", UTCDateTime),
    Column("timeout", Float),
    sqlite_autoincrement=True,
)
# A device's deliverable / in-flight commands in FIFO order.
Index("ix_commands_device_id_state_id", commands.c.device_id, commands.c.state, commands.c.id)
# Every non-terminal command (start-up rebuild, expiry sweep).
Index("ix_commands_state", commands.c.state)
# Dialect correlation keys (OpenGate UUID, eWeLink sequence, Control iD uuid).
# Partial: only commands that carry a dialect correlation key are looked up by it. Being
# partial also keeps PostgreSQL from ever choosing it for hot-path updates by id (a
# generic plan made on a near-empty table did, and then read whole device histories).
Index(
    "ix_commands_device_id_ref",
    commands.c.device_id,
    commands.c.ref,
    postgresql_where=commands.c.ref.is_not(None),
    sqlite_where=commands.c.ref.is_not(None),
)
# Idempotent creation; partial, because most commands carry no key.
Index(
    "ux_commands_idempotency",
    commands.c.created_by,
    commands.c.device_id,
    commands.c.idempotency_key,
    unique=True,
    postgresql_where=commands.c.idempotency_key.is_not(None),
    sqlite_where=commands.c.idempotency_key.is_not(None),
)

notifications = Table(
    "notifications",
    metadata,
    _pk(),
    Column("device_id", DeviceId, ForeignKey("devices.id", ondelete=CASCADE), nullable=False),
    Column("name", String(128), nullable=False),
    Column("parameters", JSON),
    Column("timestamp", UTCDateTime, nullable=False),
    Index("ix_notifications_device_id_timestamp", "device_id", "timestamp"),
    Index("ix_notifications_timestamp", "timestamp"),
    sqlite_autoincrement=True,
)

device_states = Table(
    "device_states",
    metadata,
    Column("device_id", DeviceId, ForeignKey("devices.id", ondelete=CASCADE), primary_key=True),
    Column("reported", JSON, nullable=False),
    Column("desired", JSON, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime),
)

config_revisions = Table(
    "config_revisions",
    metadata,
    _pk(),
    Column("document", JSON),
    Column("device_id", DeviceId, ForeignKey("devices.id", ondelete=CASCADE)),
    Column("device_type_id", Id, ForeignKey("device_types.id", ondelete=CASCADE)),
    Column("created_by", Id, ForeignKey("users.id", ondelete=SET_NULL)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_config_revisions_device_id", "device_id"),
    Index("ix_config_revisions_device_type_id", "device_type_id"),
    sqlite_autoincrement=True,
)

firmware_targets = Table(
    "firmware_targets",
    metadata,
    _pk(),
    Column("version", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("device_id", DeviceId, ForeignKey("devices.id", ondelete=CASCADE)),
    Column("device_type_id", Id, ForeignKey("device_types.id", ondelete=CASCADE)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_firmware_targets_device_id", "device_id"),
    Index("ix_firmware_targets_device_type_id", "device_type_id"),
    sqlite_autoincrement=True,
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
