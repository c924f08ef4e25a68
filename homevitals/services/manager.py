"""``homevitals services up|down|status``: the local services as one unit.

When ``HOMEVITALS_DATABASE_URL`` / ``HOMEVITALS_MQTT_URL`` point elsewhere the
corresponding local service is neither started nor stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homevitals.config import Settings
from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.postgres import LocalPostgres, timescaledb_edition


@dataclass(frozen=True, slots=True)
class Endpoints:
    database_url: str
    mqtt_url: str  # ingest service account
    mqtt_admin_url: str | None  # local broker only
    timescaledb_edition: str | None
    timescaledb_version: str | None


def local_postgres(settings: Settings) -> LocalPostgres:
    return LocalPostgres(settings.state_dir, settings.pg_port)


def local_mosquitto(settings: Settings) -> LocalMosquitto:
    return LocalMosquitto(settings.state_dir, settings.mqtt_port, settings.mqtt_tls_port)


def mqtt_ca_file(settings: Settings) -> Path | None:
    """The CA that verifies the broker: as configured, else the local broker's own."""
    if settings.mqtt_ca_file is not None:
        return settings.mqtt_ca_file
    return local_mosquitto(settings).ca_file if settings.uses_local_broker else None


def endpoints(settings: Settings) -> Endpoints:
    """URLs of the services in use, without starting anything."""
    db = settings.database_url or local_postgres(settings).url
    broker = local_mosquitto(settings)
    mqtt = settings.mqtt_url or broker.url
    return Endpoints(db, mqtt, broker.admin_url if settings.uses_local_broker else None, None, None)


def up(settings: Settings) -> Endpoints:
    from ingest.migrations import migrate

    if settings.uses_local_database:
        local_postgres(settings).start()
    if settings.uses_local_broker:
        local_mosquitto(settings).start()
    found = endpoints(settings)
    migrate(found.database_url)
    edition, version = timescaledb_edition(found.database_url)
    return Endpoints(found.database_url, found.mqtt_url, found.mqtt_admin_url, edition, version)


def down(settings: Settings) -> list[str]:
    stopped = []
    if settings.uses_local_broker:
        broker = local_mosquitto(settings)
        if broker.pid() is not None:
            broker.stop()
            stopped.append("mosquitto")
    if settings.uses_local_database:
        cluster = local_postgres(settings)
        if cluster.pid() is not None:
            cluster.stop()
            stopped.append("postgresql")
    return stopped


def status(settings: Settings) -> dict[str, object]:
    report: dict[str, object] = {}
    if settings.uses_local_database:
        pg = local_postgres(settings).status()
        report["postgresql"] = {
            "local": True,
            "running": pg.running,
            "pid": pg.pid,
            "port": settings.pg_port,
            "timescaledb_edition": pg.edition,
            "timescaledb_version": pg.timescaledb_version,
        }
    else:
        report["postgresql"] = {"local": False, "url": "from HOMEVITALS_DATABASE_URL"}
    if settings.uses_local_broker:
        mq = local_mosquitto(settings).status()
        report["mosquitto"] = {
            "local": True,
            "running": mq.running,
            "pid": mq.pid,
            "port": settings.mqtt_port,
        }
    else:
        report["mosquitto"] = {"local": False, "url": "from HOMEVITALS_MQTT_URL"}
    return report
