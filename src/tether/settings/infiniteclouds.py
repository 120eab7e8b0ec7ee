"""InfiniteClouds keepalive dialect settings: ``[infiniteclouds]``, ``TETHER_INFINITECLOUDS__*``.

Documented, field by field, in ``docs/dialects/infiniteclouds.md``. Everything past the
documented messages (section C.2 of the reference) is Tether's completion, so each
inferred behaviour has a switch here.
"""

from __future__ import annotations

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
