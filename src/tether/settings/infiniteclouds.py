"""InfiniteClouds keepalive dialect settings: ``[infiniteclouds]``, ``TETHER_INFINITECLOUDS__*``.

Documented, field by field, in ``docs/dialects/infiniteclouds.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InfiniteCloudsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve ``/v1/device/*``.")
