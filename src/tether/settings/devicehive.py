"""Settings of the DeviceHive 3.x dialect: the ``[devicehive]`` table, ``TETHER_DEVICEHIVE__*``.

Documented, field by field, in ``docs/dialects/devicehive.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeviceHiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve ``/api/websocket`` and ``/api/rest``.")
