"""Settings of the eWeLink / CoolKit dialect: the ``[ewelink]`` table, ``TETHER_EWELINK__*``.

Documented, field by field, in ``docs/dialects/ewelink.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EWeLinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the eWeLink app and device endpoints.")
