"""Initial schema.

Written by hand and checked against ``tether.store.schema.metadata`` by the test suite
(Alembic's ``compare_metadata`` must report no difference on SQLite or PostgreSQL).
Types are spelled out here rather than imported, so this revision stays what it was
when later revisions change the application's types: timestamps are ``TIMESTAMPTZ`` on
PostgreSQL and epoch microseconds (``BIGINT``) on SQLite; integer keys are ``BIGINT``
except SQLite's rowid-aliasing ``INTEGER``.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")
DEVICE_ID = sa.String(128)


def _pk() -> sa.Column[int]:
    return sa.Column("id", ID, primary_key=True, autoincrement=True)


def _fk(
    table: str, column: str, target: str, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=f"fk_{table}_{column}_{target}", ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "users",
        _pk(),
        sa.Column("login", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("data", sa.JSON()),
        sa.Column("all_device_types", sa.Boolean(), nullable=False),
        sa.Column("intro_reviewed", sa.Boolean(), nullable=False),
        sa.Column("login_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login", TS),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_users_login", "users", ["login"], unique=True)

    for table in ("networks", "device_types"):
        op.create_table(
            table,
            _pk(),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("description", sa.Text()),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sqlite_autoincrement=True,
        )
        op.create_index(f"ux_{table}_name", table, ["name"], unique=True)

    op.create_table(
        "user_networks",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("network_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "network_id", name="pk_user_networks"),
        _fk("user_networks", "user_id", "users", "CASCADE"),
        _fk("user_networks", "network_id", "networks", "CASCADE"),
    )
    op.create_index("ix_user_networks_network_id", "user_networks", ["network_id"])

    op.create_table(
        "user_device_types",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("device_type_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_type_id", name="pk_user_device_types"),
        _fk("user_device_types", "user_id", "users", "CASCADE"),
        _fk("user_device_types", "device_type_id", "device_types", "CASCADE"),
    )
    op.create_index("ix_user_device_types_device_type_id", "user_device_types", ["device_type_id"])

    op.create_table(
        "devices",
        sa.Column("id", DEVICE_ID, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("dialect", sa.String(32), nullable=False),
        sa.Column("network_id", ID),
        sa.Column("type_id", ID),
        sa.Column("owner_id", ID),
        sa.Column("data", sa.JSON()),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("credential_hash", sa.String(255)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_seen", TS),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        _fk("devices", "network_id", "networks"),
        _fk("devices", "type_id", "device_types"),
        _fk("devices", "owner_id", "users", "SET NULL"),
    )
    op.create_index("ix_devices_name", "devices", ["name"])
    op.create_index("ix_devices_network_id", "devices", ["network_id"])
    op.create_index("ix_devices_type_id", "devices", ["type_id"])
    op.create_index("ix_devices_owner_id", "devices", ["owner_id"])

    op.create_table(
        "api_keys",
        _pk(),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(64), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("last_used_at", TS),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        _fk("api_keys", "user_id", "users", "CASCADE"),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_api_keys_prefix", "api_keys", ["prefix"], unique=True)
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])

    op.create_table(
        "commands",
        _pk(),
        sa.Column("device_id", DEVICE_ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("parameters", sa.JSON()),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.Text()),
        sa.Column("result", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("steps", sa.JSON()),
        sa.Column("ref", sa.String(255)),
        sa.Column("created_by", ID),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("delivered_at", TS),
        sa.Column("completed_at", TS),
        sa.Column("expires_at", TS),
        sa.Column("timeout", sa.Float()),
        sa.PrimaryKeyConstraint("id", name="pk_commands"),
        _fk("commands", "device_id", "devices", "CASCADE"),
        _fk("commands", "created_by", "users", "SET NULL"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_commands_device_id_state_id", "commands", ["device_id", "state", "id"])
    op.create_index("ix_commands_state", "commands", ["state"])
    op.create_index(
        "ix_commands_device_id_ref",
        "commands",
        ["device_id", "ref"],
        postgresql_where=sa.text("ref IS NOT NULL"),
        sqlite_where=sa.text("ref IS NOT NULL"),
    )
    op.create_index(
        "ux_commands_idempotency",
        "commands",
        ["created_by", "device_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "notifications",
        _pk(),
        sa.Column("device_id", DEVICE_ID, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("parameters", sa.JSON()),
        sa.Column("timestamp", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        _fk("notifications", "device_id", "devices", "CASCADE"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_notifications_device_id_timestamp", "notifications", ["device_id", "timestamp"]
    )
    op.create_index("ix_notifications_timestamp", "notifications", ["timestamp"])

    op.create_table(
        "device_states",
        sa.Column("device_id", DEVICE_ID, nullable=False),
        sa.Column("reported", sa.JSON(), nullable=False),
        sa.Column("desired", sa.JSON(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS),
        sa.PrimaryKeyConstraint("device_id", name="pk_device_states"),
        _fk("device_states", "device_id", "devices", "CASCADE"),
    )

    op.create_table(
        "config_revisions",
        _pk(),
        sa.Column("document", sa.JSON()),
        sa.Column("device_id", DEVICE_ID),
        sa.Column("device_type_id", ID),
        sa.Column("created_by", ID),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_revisions"),
        _fk("config_revisions", "device_id", "devices", "CASCADE"),
        _fk("config_revisions", "device_type_id", "device_types", "CASCADE"),
        _fk("config_revisions", "created_by", "users", "SET NULL"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_config_revisions_device_id", "config_revisions", ["device_id"])
    op.create_index("ix_config_revisions_device_type_id", "config_revisions", ["device_type_id"])

    op.create_table(
        "firmware_targets",
        _pk(),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger()),
        sa.Column("sha256", sa.String(64)),
        sa.Column("device_id", DEVICE_ID),
        sa.Column("device_type_id", ID),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_firmware_targets"),
        _fk("firmware_targets", "device_id", "devices", "CASCADE"),
        _fk("firmware_targets", "device_type_id", "device_types", "CASCADE"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_firmware_targets_device_id", "firmware_targets", ["device_id"])
    op.create_index("ix_firmware_targets_device_type_id", "firmware_targets", ["device_type_id"])

    op.create_table(
        "meta",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    for table in (
        "meta",
        "firmware_targets",
        "config_revisions",
        "device_states",
        "notifications",
        "commands",
        "api_keys",
        "devices",
        "user_device_types",
        "user_networks",
        "device_types",
        "networks",
        "users",
    ):
        op.drop_table(table)
