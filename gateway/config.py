"""Gateway settings: identity, broker, state directory, adapter and time zone.

Built once by the CLI from options/environment variables and passed down as a frozen
value; nothing below the CLI reads the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from readings import MqttUrlError, parse_mqtt_url

_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(ValueError):
    """A setting that cannot be used (bad URL, bad gateway id...)."""


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    # Reconnect backoff (paho doubles the delay from min to max).
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60
    # A batch without ingest's commit receipt is sent again after this (then doubling).
    receipt_timeout_s: float = 30.0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> MqttSettings:
        """Parse ``mqtt://user:pass@host:port`` or ``mqtts://...`` (TLS)."""
        try:
            target = parse_mqtt_url(url)
        except MqttUrlError as exc:
            raise ConfigError(str(exc)) from exc
        return cls(
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            tls=target.tls or ca_file is not None,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
        )


@dataclass(frozen=True, slots=True)
class OutboxLimits:
    """Disk bound of the outbox; the oldest rows are dropped only beyond it."""

    max_rows: int = 500_000
    max_bytes: int = 256 * 1024 * 1024
    warn_fraction: float = 0.8


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """Timing of device sessions."""

    gatt_timeout_s: float = 10.0  # any single GATT operation
    connect_timeout_s: float = 20.0
    connect_attempts: int = 3
    racp_idle_timeout_s: float = 15.0  # no record nor response for this long: give up
    indication_idle_s: float = 3.0  # BP cuffs: quiet this long after the last record: done
    resync_interval_s: float = 300.0  # a device that synced fine is left alone this long
    retry_min_s: float = 2.0  # first retry after a failed session, then doubled
    retry_max_s: float = 300.0
    max_concurrent: int = 3  # simultaneous device sessions
    commit_every: int = 250  # records per outbox transaction during a download


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    gateway_id: str
    state_dir: Path
    mqtt: MqttSettings | None
    adapter: str = "hci0"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    patient: str | None = None
    outbox: OutboxLimits = field(default_factory=OutboxLimits)
    sync: SyncSettings = field(default_factory=SyncSettings)
    batch_size: int = 200

    def __post_init__(self) -> None:
        if not _GATEWAY_ID.match(self.gateway_id):
            raise ConfigError(f"gateway id must be 1-64 of [A-Za-z0-9_-], got {self.gateway_id!r}")

    @property
    def db_path(self) -> Path:
        return self.state_dir / "gateway.sqlite3"
