"""Settings of the Control iD Push dialect: the ``[controlid]`` table, ``TETHER_CONTROLID__*``.

Documented, field by field, in ``docs/dialects/controlid.md``. Per-device options live in
the device's ``attributes`` (see the docs); the ``default_*`` fields here fill them in.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: Endpoints whose effect is the same however often they run: a lost result may re-queue them.
IDEMPOTENT_ENDPOINTS = [
    "load_objects",
    "count_objects",
    "set_configuration",
    "get_configuration",
    "create_or_modify_objects",
    "modify_objects",
    "message_to_screen",
    "system_information",
    "user_get_image",
    "user_set_image",
    "set_system_time",
]


class ControlIdSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve ``/push``, ``/result`` and the Monitor endpoints."
    )
    path_prefix: str = Field(
        "",
        description="Path under which terminals are served; the terminal's base URL may add "
        "further segments, ``/push`` and ``/result`` are matched as suffixes.",
    )
    path_secret: SecretStr | None = Field(
        None,
        description="If set, a push/result path must contain this value as one segment "
        "(e.g. base ``https://host/d/<secret>``); others get an empty 404.",
    )
    monitor_path: str = Field(
        "/api/notifications",
        description="Monitor path: events arrive as ``POST <monitor_path>/<topic>``.",
    )
    allowed_networks: list[str] = Field(
        default_factory=list,
        description="Source CIDRs allowed to call the dialect's endpoints; empty allows all.",
    )
    auto_register: bool = Field(
        False,
        description="Create a device for an unknown, well-formed ``deviceId`` on its first "
        "poll instead of ignoring it.",
    )
    auto_register_network_id: int | None = Field(
        None, description="Network given to auto-registered terminals."
    )
    default_push_request_timeout: int = Field(
        15000,
        ge=1000,
        description="The terminal's ``push_request_timeout`` (ms) when its device has no "
        "``push_request_timeout`` attribute; bounds the long-poll hold.",
    )
    default_long_poll: float = Field(
        0.0,
        ge=0,
        description="Seconds to hold an empty ``/push`` open waiting for a command (0: answer "
        "at once); per device: attribute ``long_poll``.",
    )
    long_poll_margin: float = Field(
        2.0,
        ge=0,
        description="A hold ends this many seconds before the terminal's request timeout.",
    )
    default_body_as_string: bool = Field(
        False,
        description="Send JSON ``body`` as a string instead of an object; per device: "
        "attribute ``body_as_string``.",
    )
    default_transactions: bool = Field(
        False,
        description="Allow ``transactions`` batches; per device: attribute ``transactions``.",
    )
    result_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds after hand-over without a ``/result`` before the command is "
        "``timed_out``; per device: attribute ``result_timeout``.",
    )
    requeue_idempotent: bool = Field(
        True,
        description="Re-queue a timed-out command (as a new command) when its endpoint is "
        "idempotent.",
    )
    idempotent_endpoints: list[str] = Field(
        default_factory=lambda: list(IDEMPOTENT_ENDPOINTS),
        description="Endpoints safe to re-run after a lost result.",
    )
    max_requeues: int = Field(3, ge=0, description="Most re-queues of one original command.")
    strict_uuid: bool = Field(
        True,
        description="A ``/result`` whose uuid matches no command is ignored; false falls back "
        "to the device's single outstanding command.",
    )
    max_body_bytes: int = Field(
        8 << 20, ge=1024, description="Largest ``/result`` or Monitor body read, bytes."
    )
    max_binary_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="Largest binary (``application/octet-stream``) command body, decoded bytes.",
    )
    alive_notifications: bool = Field(
        False,
        description="Store Monitor ``device_is_alive`` as notifications too (always updates "
        "presence).",
    )
