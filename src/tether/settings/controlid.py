"""Settings of the Control iD Push dialect: the ``[controlid]`` table, ``TETHER_CONTROLID__*``.

Documented, field by field, in ``docs/dialects/controlid.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ControlIdSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve ``/push``, ``/result`` and the Monitor endpoints."
    )
