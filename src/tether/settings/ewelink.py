"""Settings of the eWeLink / CoolKit dialect: the ``[ewelink]`` table, ``TETHER_EWELINK__*``.

Documented, field by field, in ``docs/dialects/ewelink.md``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class EWeLinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the eWeLink app and device endpoints.")
    apps: dict[str, str] = Field(
        default_factory=dict,
        description="App ids and their secrets (appid -> appSecret) used to check the "
        "``Authorization: Sign`` of logins. A login from an app id not listed is refused.",
    )
    verify_signature: bool = Field(
        True,
        description="Check login signatures; false accepts any signature (tests only).",
    )
    region: str = Field("us", description="The region named in login answers.")
    hb_interval: int = Field(
        145, ge=1, le=3600, description="Heartbeat interval (s) given to apps and devices."
    )
    ack_timeout: float = Field(
        4.0, gt=0, le=60, description="Seconds to wait for a device's ack before error 504."
    )
    firmware_cache_ttl: float = Field(
        5.0,
        ge=0,
        description="Seconds a device's firmware target is cached, so a report carrying "
        "``fwVersion`` runs no SQL (0: read it on every such report; connects always read).",
    )
    domain: str | None = Field(
        None,
        description="Host name apps are told to dial in ``/dispatch/app`` (default: the "
        "host the request reached).",
    )
    dispatch_ip: str | None = Field(
        None,
        description="IP address devices are told to dial in ``/dispatch/device`` (default: "
        "the local address the request reached). Devices do no DNS on it.",
    )
    dispatch_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port given out by dispatch (default: the TLS listener's when enabled, "
        "else the port the request reached).",
    )
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain for the eWeLink TLS listener; enables it."
    )
    tls_key: Path | None = Field(None, description="PEM private key for ``tls_cert``.")
    tls_host: str = Field("0.0.0.0", description="Address of the eWeLink TLS listener.")
    tls_port: int = Field(
        8081, ge=0, le=65535, description="Port of the eWeLink TLS listener (0 = any free)."
    )
