"""Settings of the OpenGate south dialect: the ``[opengate]`` table, ``TETHER_OPENGATE__*``.

Documented, field by field, in ``docs/dialects/opengate.md``. Per-device choices (the
device's endpoint, parameter encoding, TLS to it) live in the device's ``attributes``;
these are the defaults and the server-wide knobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenGateSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve the OpenGate south API and outbound operation delivery."
    )
    request_path: str = Field(
        "/v80/devices/{device_id}/operation/request",
        description="Path template of the device's operation service, appended to the "
        "device's endpoint; {device_id} is replaced (devices may override it).",
    )
    parameter_encoding: Literal["object", "typed_array"] = Field(
        "object",
        description="Default parameter encoding of operation requests: a plain object, or "
        "the legacy typed [{name, value:{string|number|...}}] array.",
    )
    outbound_api_key: str | None = Field(
        None,
        description="X-ApiKey sent to devices when the device's attributes name none.",
    )
    request_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for a device to answer an operation request."
    )
    retry_initial: float = Field(
        1.0, gt=0, description="First delay (seconds) before retrying an unreachable device."
    )
    retry_max: float = Field(
        60.0, gt=0, description="Longest delay (seconds) between retries; doubles up to it."
    )
    max_concurrency: int = Field(
        64, ge=1, description="Most operation requests in flight to devices at once."
    )
    rescan_interval: float = Field(
        60.0,
        ge=0,
        description="Seconds between re-scans for pending operations no event announced "
        "(an endpoint added later, a bus outage); 0 turns it off.",
    )
    tls_verify: bool = Field(
        True, description="Verify device certificates on https endpoints (devices may override)."
    )
    tls_ca: Path | None = Field(
        None, description="PEM CA bundle for verifying device certificates (default: system)."
    )
    client_cert: Path | None = Field(
        None, description="PEM client certificate presented to devices on https endpoints."
    )
    client_key: Path | None = Field(None, description="PEM private key of client_cert.")
    pending_limit: int = Field(
        1,
        ge=1,
        le=100,
        description="Operations returned per operation/pending call (1 = single operation "
        'in request format; more = {"operations": [...]}).',
    )
    mtls_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Open a mutual-TLS listener on this port (0 = any free port); off if unset.",
    )
    mtls_host: str = Field("0.0.0.0", description="Address of the mutual-TLS listener.")
    mtls_cert: Path | None = Field(None, description="PEM server certificate of the mTLS listener.")
    mtls_key: Path | None = Field(None, description="PEM private key of mtls_cert.")
    mtls_ca: Path | None = Field(
        None, description="PEM CA that signs device client certificates on the mTLS listener."
    )
