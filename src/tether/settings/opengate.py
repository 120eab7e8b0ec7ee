"""Settings of the OpenGate south dialect: the ``[opengate]`` table, ``TETHER_OPENGATE__*``.

Documented, field by field, in ``docs/dialects/opengate.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OpenGateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve the OpenGate south API and outbound operation delivery."
    )
