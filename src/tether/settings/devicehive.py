"""Settings of the DeviceHive 3.x dialect: the ``[devicehive]`` table, ``TETHER_DEVICEHIVE__*``.

Documented, field by field, in ``docs/dialects/devicehive.md``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeviceHiveSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve ``/api/websocket`` and ``/api/rest``.")
    seed: bool = Field(
        True,
        description="On an empty database, create a default network and a default device "
        "type so a fresh server works with DeviceHive clients out of the box.",
    )
    default_network: str = Field(
        "Default Network", description="Name of the network created by ``seed``."
    )
    default_device_type: str = Field(
        "Default Device Type", description="Name of the device type created by ``seed``."
    )
    millisecond_timestamps: bool = Field(
        True,
        description="Keep entity timestamps unique per millisecond (DeviceHive shows "
        "milliseconds and uses them as poll cursors).",
    )
    max_clock_lead: float = Field(
        1.0,
        gt=0,
        description="Seconds the millisecond clock may run ahead of wall time under a "
        "burst before it falls back to microsecond steps.",
    )
