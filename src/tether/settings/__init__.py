"""The one settings object.

Every setting is read, in order of precedence, from ``tether serve`` options, ``TETHER_*``
environment variables (``TETHER_PORT=9000``), a TOML file named by ``TETHER_CONFIG`` or
``--config``, then these defaults. The defaults run a complete server on a laptop:
SQLite in ``./tether-data`` and an in-process bus, no other service needed.

Each dialect has a table of its own (``[devicehive]`` in TOML,
``TETHER_DEVICEHIVE__ENABLED=false`` in the environment), defined beside this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from tether.core import jsonc
from tether.core.limits import DURATION_MAX
from tether.settings.controlid import ControlIdSettings
from tether.settings.devicehive import DeviceHiveSettings
from tether.settings.ewelink import EWeLinkSettings
from tether.settings.infiniteclouds import InfiniteCloudsSettings
from tether.settings.opengate import OpenGateSettings


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (``[v6]:PORT`` for IPv6), or ``ValueError``."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (port 0-65535), got {address!r}")
    return host, int(port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TETHER_", env_nested_delimiter="__", extra="forbid"
    )

    # --- listening -------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0 = any free).")
    tls_cert: Path | None = Field(None, description="PEM certificate file; enables TLS.")
    tls_key: Path | None = Field(None, description="PEM private key file for tls_cert.")

    # --- storage and bus ---------------------------------------------------------------
    data_dir: Path = Field(Path("tether-data"), description="Where the embedded database lives.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite+aiosqlite:///<data_dir>/tether.db. "
        "Use postgresql+asyncpg://user@host/db for PostgreSQL.",
    )
    bus: Literal["memory", "redis"] = Field("memory", description="Event bus backend.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL for bus=redis.")
    node_id: str | None = Field(None, description="This process's id on the bus (default random).")
    cluster_name: str = Field(
        "tether",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Prefix of every Redis channel and key; clusters sharing one Redis "
        "need different names.",
    )
    node_heartbeat: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between a node's liveness beats; a node silent for three "
        "is taken for dead and its peers re-read the active commands.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Processes serving one port (needs bus=redis and PostgreSQL)."
    )

    # --- bootstrap and auth ---------------------------------------------------------------
    admin_login: str = Field("admin", description="Login of the admin created on first start.")
    admin_password: SecretStr | None = Field(
        None,
        description="Password of that admin on first start; if unset, one is generated and "
        "written to <data_dir>/admin-password (0600). Ignored once users exist.",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 signing secret; generated and stored on first start if unset."
    )
    access_token_ttl: int = Field(1800, gt=0, description="Access token lifetime, seconds.")
    refresh_token_ttl: int = Field(15_724_800, gt=0, description="Refresh token lifetime, seconds.")

    # --- logins (see docs/security.md) ----------------------------------------------------
    login_free_attempts: int = Field(
        5, ge=1, le=1000, description="Wrong passwords per login and address before delays."
    )
    login_delay: float = Field(
        1.0, gt=0, le=86_400, description="First delay, seconds; doubles per further failure."
    )
    login_delay_max: float = Field(
        900.0, gt=0, le=86_400, description="Longest delay between failed logins, seconds."
    )
    password_checks: int = Field(
        2, ge=1, le=64, description="Password (argon2) checks run at once, process-wide."
    )
    password_check_queue: int = Field(
        64, ge=0, le=100_000, description="Logins waiting for a check; more are answered 429."
    )

    # --- commands ---------------------------------------------------------------------------
    command_lifetime: float | None = Field(
        86_400.0,
        gt=0,
        le=DURATION_MAX,
        description="Default delivery deadline (expires_at), seconds; none = never.",
    )
    command_timeout: float | None = Field(
        300.0,
        gt=0,
        le=DURATION_MAX,
        description="Default execution limit after delivery, seconds; none = never.",
    )
    max_in_flight: int = Field(32, ge=1, description="Commands in flight per native device.")
    poll_wait_max: float = Field(60.0, ge=0, description="Longest long-poll a device may ask for.")

    # --- connections and presence ------------------------------------------------------------
    http_idle_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds an HTTP connection may take to send a complete request header, "
        "from opening or from its previous answer; then it is closed.",
    )
    max_message_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted message.")
    gc_threshold: int = Field(
        50_000,
        ge=0,
        description="Allocations between young-generation garbage collections in `tether "
        "serve` (Python's default is 700), once the server is ready, when start-up objects "
        "are also frozen out of collections; 0 leaves the collector as Python sets it.",
    )
    listen_backlog: int = Field(
        4096,
        ge=1,
        le=65_535,
        description="Connections the kernel queues for accept on each listener (capped by "
        "net.core.somaxconn); a reconnect storm overflowing a short queue costs each dropped "
        "device a SYN retry of 1 s or more.",
    )
    send_queue_size: int = Field(
        1024, ge=1, description="Per-connection send queue; a consumer that overflows it is cut."
    )
    ws_auth_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a WebSocket may stay open without authenticating (every "
        "WebSocket endpoint); then it is closed.",
    )
    ws_heartbeat: float = Field(
        30.0,
        gt=0,
        description="Ping interval of the native and DeviceHive WebSockets; a peer that "
        "leaves a ping unanswered for half of it is disconnected.",
    )
    ws_close_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds a closing WebSocket has to get its close frame out (1008 for a "
        "slow consumer); a peer that does not read it by then is disconnected at once.",
    )
    presence_timeout: float = Field(
        90.0, gt=0, description="Seconds of silence after which a polling device is offline."
    )
    shutdown_timeout: float = Field(
        3.0,
        gt=0,
        le=600,
        description="Seconds a stop (SIGTERM, SIGINT) gives open connections to close: "
        "WebSockets are closed with 1001, parked polls answered at once; what is still open "
        "then is dropped, and the buffered writes are flushed before the process exits.",
    )
    write_behind_interval: float = Field(
        2.0, gt=0, description="How often last_seen is written behind, seconds."
    )

    # --- notifications ---------------------------------------------------------------------
    notification_batch_size: int = Field(1000, ge=1, description="Rows per batched insert.")
    notification_queue_size: int = Field(
        100_000, ge=1, description="Notifications buffered before posting is refused."
    )
    notification_retention_days: float = Field(
        30.0, gt=0, description="Age limit of stored notifications."
    )
    notification_retention_count: int = Field(
        10_000, ge=1, description="Per-device count limit of stored notifications."
    )

    log_level: str = Field("info", description="Logging level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or as JSON objects (one per line, with request and "
        "device ids where known).",
    )

    access_log: bool = Field(
        False,
        description="One log line per HTTP request (logger tether.access, at INFO): method, "
        "route, status, duration, peer, request and device ids. Off by default: every "
        "device poll and keepalive is a request, so at fleet scale it dominates the log.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins (https://dash.example.com, or * for any) allowed to "
        "call the API from another origin (CORS); empty = none.",
    )

    # --- metrics (see docs/security.md) -------------------------------------------------------
    metrics: Literal["token", "public", "off"] = Field(
        "token",
        description="Who may read /metrics on the API port: token (an admin credential or "
        "metrics_token), public (anyone) or off (404).",
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token a scraper may use for /metrics instead of an admin's."
    )
    metrics_listen: str | None = Field(
        None,
        description="HOST:PORT of a separate listener serving only /metrics, without "
        "credentials; bind it to a private address.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        """``TETHER_CORS_ORIGINS`` may be comma-separated or a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return jsonc.decode(text)
            return [part.strip().rstrip("/") for part in text.split(",") if part.strip()]
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    # --- dialects: one table each, documented on the dialect's page in docs/dialects/ ---
    devicehive: DeviceHiveSettings = Field(
        default_factory=DeviceHiveSettings, description="DeviceHive 3.x dialect."
    )
    ewelink: EWeLinkSettings = Field(
        default_factory=EWeLinkSettings, description="eWeLink / CoolKit dialect."
    )
    controlid: ControlIdSettings = Field(
        default_factory=ControlIdSettings, description="Control iD Push dialect."
    )
    opengate: OpenGateSettings = Field(
        default_factory=OpenGateSettings, description="OpenGate south dialect."
    )
    infiniteclouds: InfiniteCloudsSettings = Field(
        default_factory=InfiniteCloudsSettings, description="InfiniteClouds keepalive dialect."
    )

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def cluster_problem(self) -> str | None:
        """Why these settings cannot run several processes, or None if they can."""
        if self.workers > 1 and self.bus == "memory":
            return (
                f"--workers {self.workers} needs --bus redis: the processes share events "
                "through Redis, and an in-memory bus reaches only its own process"
            )
        if (self.workers > 1 or self.bus == "redis") and self.is_sqlite:
            return (
                "several processes or nodes need PostgreSQL (--database-url "
                "postgresql+asyncpg://...): SQLite has a single writer and lives on one "
                "machine, so it cannot be shared by the processes a Redis bus joins"
            )
        return None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        # Absolute: a relative data_dir is resolved once, against the directory the
        # server starts in, and every message names the real place.
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'tether.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("TETHER_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)
