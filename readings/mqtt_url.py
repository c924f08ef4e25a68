"""``mqtt://user:pass@host:port`` / ``mqtts://`` URLs -> connection parameters."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


# The broker's service accounts (ingest, admin, ...) are ``homevitals-*``; a gateway's
# account is named by its gateway id.  Gateway ids may never start with this prefix, so
# no hub identity can equal or shadow a service account (GitHub issue #14, item 1).
SERVICE_ACCOUNT_PREFIX = "homevitals-"


def is_service_account(username: str) -> bool:
    """True for a name in the service accounts' namespace (case-insensitively: an id
    differing only in case would still read as the service account in logs)."""
    return username.casefold().startswith(SERVICE_ACCOUNT_PREFIX)


class MqttUrlError(ValueError):
    """Not an ``mqtt://`` / ``mqtts://`` URL we can connect to."""


def parse_mqtt_url(url: str) -> MqttTarget:
    """The one parser of broker URLs (gateway, ingest, fleet simulator, tools)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise MqttUrlError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    if not parts.hostname:
        raise MqttUrlError(f"MQTT URL has no host: {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise MqttUrlError(f"bad port in MQTT URL: {exc}") from exc
    return MqttTarget(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )
