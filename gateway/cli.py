"""``homevitals gateway``: run the daemon, pair/unpair devices, list them, show status.

Every option has an environment variable (``HOMEVITALS_GATEWAY_*``, ``HOMEVITALS_MQTT_URL``)
so a systemd unit needs no command-line secrets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import re
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.table import Table

from gateway.config import ConfigError, GatewayConfig, MqttSettings
from readings import setup_logging

F = TypeVar("F", bound=Callable[..., Any])


def _console() -> Console:
    # Piped output (scripts, tests): wide enough that addresses are never cut.
    return Console() if sys.stdout.isatty() else Console(width=200)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "homevitals" / "gateway"


def default_gateway_id() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "gateway"


def system_timezone() -> ZoneInfo:
    """TZ, else /etc/localtime's zone name, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        try:
            target = os.path.realpath("/etc/localtime")
            name = target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""
        except OSError:
            name = ""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def common_options(fn: F) -> F:
    options = [
        click.option(
            "--gateway-id",
            envvar="HOMEVITALS_GATEWAY_ID",
            default=default_gateway_id,
            show_default="host name",
            help="This gateway's id (its MQTT username).",
        ),
        click.option(
            "--mqtt-url",
            envvar="HOMEVITALS_MQTT_URL",
            default=None,
            help="mqtt://user:pass@host:port or mqtts://... (TLS).",
        ),
        click.option(
            "--mqtt-ca-file",
            envvar="HOMEVITALS_MQTT_CA_FILE",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="CA bundle for TLS (implies TLS).",
        ),
        click.option(
            "--mqtt-cert-file",
            envvar="HOMEVITALS_MQTT_CERT_FILE",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Client certificate for TLS.",
        ),
        click.option(
            "--mqtt-key-file",
            envvar="HOMEVITALS_MQTT_KEY_FILE",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Client key for TLS.",
        ),
        click.option(
            "--state-dir",
            envvar="HOMEVITALS_GATEWAY_STATE_DIR",
            type=click.Path(file_okay=False, path_type=Path),
            default=default_state_dir,
            show_default=True,
            help="Where the state database (cursors, outbox) lives.",
        ),
        click.option(
            "--adapter",
            envvar="HOMEVITALS_GATEWAY_ADAPTER",
            default="hci0",
            show_default=True,
            help="Bluetooth adapter.",
        ),
        click.option(
            "--timezone",
            "timezone_name",
            envvar="HOMEVITALS_GATEWAY_TIMEZONE",
            default=None,
            help="IANA zone of the device clocks (default: system).",
        ),
        click.option(
            "--patient",
            envvar="HOMEVITALS_GATEWAY_PATIENT",
            default=None,
            help="Patient this gateway serves (recorded with paired devices).",
        ),
        click.option(
            "--log-level",
            envvar="HOMEVITALS_LOG_LEVEL",
            default=None,
            help="Log level (default: the root command's --log-level, else INFO).",
        ),
        click.option(
            "--json-logs",
            envvar="HOMEVITALS_JSON_LOGS",
            is_flag=True,
            help="Log JSON lines (for journald / log shippers); also `homevitals --json-logs`.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_config(
    *,
    gateway_id: str,
    mqtt_url: str | None,
    mqtt_ca_file: Path | None,
    mqtt_cert_file: Path | None,
    mqtt_key_file: Path | None,
    state_dir: Path,
    adapter: str,
    timezone_name: str | None,
    patient: str | None,
) -> GatewayConfig:
    try:
        zone = ZoneInfo(timezone_name) if timezone_name else system_timezone()
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {timezone_name!r}") from exc
    try:
        mqtt = (
            MqttSettings.from_url(
                mqtt_url, ca_file=mqtt_ca_file, cert_file=mqtt_cert_file, key_file=mqtt_key_file
            )
            if mqtt_url
            else None
        )
        return GatewayConfig(
            gateway_id=gateway_id,
            state_dir=state_dir,
            mqtt=mqtt,
            adapter=adapter,
            timezone=zone,
            patient=patient,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


def with_config(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the common options into one ``config`` argument and set up logging."""

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        # `homevitals --json-logs gateway run` and `homevitals gateway run --json-logs` agree.
        root = click.get_current_context().find_root().params
        setup_logging(
            kwargs.pop("log_level") or root.get("log_level") or "INFO",
            json_lines=kwargs.pop("json_logs") or bool(root.get("json_logs")),
        )
        keys = (
            "gateway_id",
            "mqtt_url",
            "mqtt_ca_file",
            "mqtt_cert_file",
            "mqtt_key_file",
            "state_dir",
            "adapter",
            "timezone_name",
            "patient",
        )
        config = build_config(**{k: kwargs.pop(k) for k in keys})
        return fn(config=config, **kwargs)

    return wrapper


@click.group()
def gateway() -> None:
    """The home gateway: BLE health devices -> MQTT."""


@gateway.command()
@common_options
@click.option("--once", is_flag=True, help="Sync every paired device once, drain, exit.")
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Stop after this many seconds (with --once: give up after it; default 120).",
)
@click.option(
    "--resync-interval",
    envvar="HOMEVITALS_GATEWAY_RESYNC_S",
    type=click.FloatRange(1.0),
    default=None,
    help="Seconds a device that synced fine is left alone (default 300).",
)
@click.option(
    "--receipt-timeout",
    envvar="HOMEVITALS_GATEWAY_RECEIPT_TIMEOUT_S",
    type=click.FloatRange(1.0),
    default=None,
    help="Seconds before a batch without ingest's commit receipt is sent again, doubling"
    " up to 10 min (default 30).",
)
@with_config
def run(
    config: GatewayConfig,
    once: bool,
    duration: float | None,
    resync_interval: float | None,
    receipt_timeout: float | None,
) -> None:
    """Run the gateway daemon (scan, sync, publish)."""
    from gateway.daemon import run_gateway

    if receipt_timeout is not None and config.mqtt is not None:
        config = dataclasses.replace(
            config, mqtt=dataclasses.replace(config.mqtt, receipt_timeout_s=receipt_timeout)
        )
    if resync_interval is not None:
        config = dataclasses.replace(
            config, sync=dataclasses.replace(config.sync, resync_interval_s=resync_interval)
        )

    if config.mqtt is None:
        click.echo("warning: no --mqtt-url: readings stay in the outbox", err=True)
    if once and duration is None:
        duration = 120.0
    code = asyncio.run(run_gateway(config, once=once, duration_s=duration))
    sys.exit(code)


@gateway.command()
@common_options
@click.option("--address", default=None, help="Device to pair (else: list what is nearby).")
@click.option("--scan-seconds", type=float, default=10.0, show_default=True)
@click.option("--bond/--no-bond", default=None, help="Override the profile's bonding need.")
@with_config
def pair(
    config: GatewayConfig, address: str | None, scan_seconds: float, bond: bool | None
) -> None:
    """Pair a supported device with this gateway."""
    from gateway.pairing import PairingError, discover, pair_device

    if address is None:
        candidates = asyncio.run(discover(config.adapter, scan_seconds))
        if not candidates:
            raise click.ClickException("no supported device is advertising nearby")
        table = Table("address", "name", "rssi", "profile")
        for c in candidates:
            table.add_row(c.address, c.name or "", str(c.rssi), c.profile.id)
        _console().print(table)
        if not sys.stdin.isatty():
            raise click.ClickException("choose one with --address")
        address = click.prompt(
            "address to pair", type=click.Choice([c.address for c in candidates])
        )
    try:
        paired = asyncio.run(
            pair_device(config, address, scan_seconds=scan_seconds, bond_device=bond)
        )
    except PairingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"paired {paired.address} ({paired.profile})")


@gateway.command()
@common_options
@click.argument("address")
@click.option("--keep-bond", is_flag=True, help="Leave the BlueZ bond in place.")
@with_config
def unpair(config: GatewayConfig, address: str, keep_bond: bool) -> None:
    """Remove a paired device."""
    from gateway.pairing import unpair_device

    if not asyncio.run(unpair_device(config, address, forget=not keep_bond)):
        raise click.ClickException(f"{address} is not paired")
    click.echo(f"unpaired {address.upper()}")


def _devices_data(config: GatewayConfig) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from gateway.store import DeviceStore, GatewayDB

    db = GatewayDB(config.db_path)
    try:
        store = DeviceStore(db)
        return [{**asdict(d), "errors": store.errors(d.address)} for d in store.all()]
    finally:
        db.close()


@gateway.command()
@common_options
@click.option("--json", "as_json", is_flag=True)
@with_config
def devices(config: GatewayConfig, as_json: bool) -> None:
    """List paired devices."""
    data = _devices_data(config)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(
        "address", "profile", "name", "serial", "cursor", "last sync", "battery", "skew s", "errors"
    )
    for d in data:
        table.add_row(
            d["address"],
            d["profile"],
            d["name"] or "",
            d["serial"] or "",
            "" if d["cursor"] is None else str(d["cursor"]),
            d["last_sync_at"] or "never",
            "" if d["battery_percent"] is None else f"{d['battery_percent']}%",
            "" if d["skew_s"] is None else f"{d['skew_s']:+.0f}",
            ", ".join(f"{k}={v}" for k, v in d["errors"].items()),
        )
    _console().print(table)


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@gateway.command()
@common_options
@click.option("--json", "as_json", is_flag=True)
@with_config
def status(config: GatewayConfig, as_json: bool) -> None:
    """Devices, last syncs, outbox depth and the broker connection as last seen."""
    from gateway.outbox import Outbox
    from gateway.store import GatewayDB, StatusStore

    db = GatewayDB(config.db_path)
    try:
        daemon = StatusStore(db).get("daemon")
        stats = Outbox(db).stats()
    finally:
        db.close()
    info: dict[str, Any] = daemon if isinstance(daemon, dict) else {}
    running = info.get("state") == "running" and _pid_alive(info.get("pid"))
    oldest = (
        None
        if stats.oldest_created_at is None
        else datetime.fromtimestamp(stats.oldest_created_at, UTC).isoformat(timespec="seconds")
    )
    data = {
        "gateway_id": info.get("gateway_id", config.gateway_id),
        "daemon": {"running": running, **info},
        "outbox": {"rows": stats.rows, "bytes": stats.bytes, "oldest": oldest},
        "devices": _devices_data(config),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    broker = info.get("broker") or {}
    click.echo(
        f"gateway   {data['gateway_id']}  ({'running' if running else 'not running'}"
        f", last update {info.get('updated_at', 'never')})"
    )
    if broker.get("configured"):
        state = "connected" if broker.get("connected") else "disconnected"
        click.echo(
            f"broker    {broker.get('host')}: {state} since {broker.get('since')}"
            + (f" ({broker['last_error']})" if broker.get("last_error") else "")
        )
    click.echo(f"outbox    {stats.rows} rows, {stats.bytes} bytes, oldest {oldest or '-'}")
    for d in data["devices"]:
        click.echo(
            f"device    {d['address']} {d['profile']}: last sync {d['last_sync_at'] or 'never'}"
            f" ({d['last_sync_readings'] or 0} readings"
            + (f", error {d['last_error']}" if d["last_error"] else "")
            + ")"
        )


main = gateway

if __name__ == "__main__":
    gateway()
