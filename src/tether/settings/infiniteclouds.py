"""InfiniteClouds keepalive dialect settings: ``[infiniteclouds]``, ``TETHER_INFINITECLOUDS__*``.

Documented, field by field, in ``docs/dialects/infiniteclouds.md``. Everything past the
documented messages (section C.2 of the reference) is Tether's completion, so each
inferred behaviour has a switch here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class InfiniteCloudsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve ``/v1/device/*``.")
    token_ttl: int = Field(
        3600, ge=60, le=30 * 86400, description="Lifetime in seconds of a device's authToken."
    )
    token_audience: str = Field(
        "tether-infiniteclouds",
        min_length=1,
        description="``aud`` claim of device tokens; user tokens never carry it.",
    )
    token_issuer: str = Field("tether", min_length=1, description="``iss`` claim of device tokens.")
    keepalive_interval: float = Field(
        60.0, gt=0, description="Seconds between a device's keepalives (as its agent is set)."
    )
    missed_keepalives: int = Field(
        3, ge=1, description="Missed keepalive intervals after which a device is offline."
    )
    max_commands: int = Field(
        10, ge=0, le=1000, description="Most commands carried by one keepalive reply (0: none)."
    )
    commands: bool = Field(True, description="Carry core commands in ``triggerEvent.commands``.")
    firmware: bool = Field(True, description="Raise ``firmwareUpdate`` for firmware targets.")
    revision_cache_ttl: float = Field(
        5.0,
        ge=0,
        description="Seconds a device's current config revision and firmware target are "
        "cached, so an idle keepalive runs no SQL (0: read them on every keepalive).",
    )
    lenient_status_types: bool = Field(
        False,
        description="Answer an unknown ``statusType`` with a success envelope (as the "
        "reference suggests) instead of a 400 envelope error.",
    )
    status_on_assign: bool = Field(
        True,
        description="Ask a newly assigned device for a full status snapshot (``sendStatus``) once.",
    )
    reregister_proof: Literal["token_or_machine_id", "token", "machine_id", "none"] = Field(
        "token_or_machine_id",
        description="What an already assigned device must show to get a token again: its "
        "current (or recently expired) authToken as Bearer, its stored ``machineId``, either "
        "one, or nothing (``none``: anyone who knows the MAC gets a token; the protocol's "
        "own, unauthenticated behaviour). A registration that proves nothing is answered as "
        "unassigned and logged.",
    )
    reregister_token_grace: int = Field(
        7 * 86400,
        ge=0,
        le=365 * 86400,
        description="Seconds after its expiry that an authToken still proves continuity at "
        "re-registration (a device registers again *because* its token expired).",
    )
    max_unassigned: int = Field(
        1000,
        ge=0,
        le=10_000_000,
        description="Most unassigned InfiniteClouds devices kept; a registration that would "
        "create one more is answered 429 in the envelope.",
    )
    registration_rate: int = Field(
        20,
        ge=1,
        le=1_000_000,
        description="Most anonymous registrations per source address and window that create "
        "a device or fail a continuity proof; beyond it, 429 in the envelope.",
    )
    registration_window: float = Field(
        60.0, gt=0, le=86400, description="Seconds of the ``registration_rate`` window."
    )
    max_registration_bytes: int = Field(
        32 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest body of a request without a token (a registration); larger is "
        "413 in the envelope. Authenticated messages get ``TETHER_MAX_MESSAGE_BYTES``.",
    )
