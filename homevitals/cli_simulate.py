"""``homevitals simulate``: the BLE test bed, simulated devices, patients and fleets."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from homevitals.cli import echo_json
from homevitals.config import load_settings

if TYPE_CHECKING:
    from simulators.fleet import SimGateway


def testbed_dir() -> Path:
    return load_settings().state_dir / "ble"


@click.group()
def simulate() -> None:
    """Simulated BLE devices (on the BlueZoo test bed), patients and gateway fleets."""


@simulate.group()
def testbed() -> None:
    """The BLE test bed: a private dbus-daemon and a patched bluezoo (virtual adapters)."""


@testbed.command("up")
@click.option(
    "--devices", default=4, show_default=True, help="Virtual adapters for devices (hci1..)."
)
def testbed_up_cmd(devices: int) -> None:
    """Start the test bed (idempotent); prints the D-Bus address to export."""
    from simulators import testbed as tb

    info = tb.testbed_up(testbed_dir(), devices)
    click.echo(f"export DBUS_SYSTEM_BUS_ADDRESS={info.bus_address}")
    click.echo(
        f"gateway adapter: {info.gateway_adapter}; device adapters: {', '.join(a.name for a in info.device_adapters)}"
    )


@testbed.command("down")
def testbed_down_cmd() -> None:
    """Stop exactly the test bed processes this project started."""
    from simulators import testbed as tb

    tb.testbed_down(testbed_dir())
    click.echo("test bed stopped")


@testbed.command("status")
def testbed_status_cmd() -> None:
    """Report whether the test bed runs and its adapters."""
    from simulators import testbed as tb

    info = tb.testbed_status(testbed_dir())
    if info is None:
        click.echo("test bed: not running")
        sys.exit(1)
    echo_json(info.to_json())


@simulate.command("devices")
@click.argument("specs", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--profile", "profiles", multiple=True, help="Start one device of this profile (repeatable)."
)
@click.option(
    "--readings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON-lines readings for --profile devices.",
)
@click.option("--skew", default=0.0, show_default=True, help="Device clock skew in seconds.")
def devices(
    specs: tuple[Path, ...], profiles: tuple[str, ...], readings: Path | None, skew: float
) -> None:
    """Run simulated BLE devices on the test bed until Ctrl-C.

    Give device spec JSON files (see docs/ble-testbed.md) or --profile names
    (glucose-meter, bp-cuff, glucose-meter-ignores-filter, ...); each device gets its own
    adapter (hci1, hci2, ...).
    """
    from simulators import testbed as tb
    from simulators.ble.fleet import DeviceFleet
    from simulators.ble.readings import load_readings
    from simulators.ble.spec import DeviceSpec

    count = len(specs) + len(profiles)
    if count == 0:
        click.echo("error: give spec files or --profile", err=True)
        sys.exit(2)
    info = tb.testbed_up(testbed_dir(), count)
    loaded = [DeviceSpec.load(p) for p in specs]
    records = tuple(load_readings(readings)) if readings else ()
    adapters = [a.name for a in info.device_adapters]
    used = {s.adapter for s in loaded}
    free = [a for a in adapters if a not in used]
    for profile, adapter in zip(profiles, free, strict=False):
        loaded.append(DeviceSpec(profile, adapter, readings=records, clock_skew_s=skew))
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with DeviceFleet(info) as fleet:
        for spec in fleet.start_many(loaded):
            click.echo(
                f"{spec.spec.adapter} {info.address_of(spec.spec.adapter)} {spec.spec.name} ({spec.spec.profile})"
            )
        click.echo("devices running; Ctrl-C stops them")
        while not stop:
            time.sleep(0.2)


@simulate.command("patient")
@click.option("--scenario", required=True, help="Scenario name (see simulators/scenarios.py).")
@click.option("--days", type=int, default=None, help="Days of data (default: the scenario's).")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def patient(scenario: str, days: int | None, seed: int, fmt: str, out: Path) -> None:
    """Write one simulated patient's readings (CSV/JSON) and the scenario's ground truth."""
    from simulators.cli_support import simulate_patient, truth_path_for

    try:
        written = simulate_patient(scenario, days, seed, "csv" if fmt == "csv" else "json", out)
    except (KeyError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"readings: {written}\nground truth: {truth_path_for(written)}")


@simulate.command("fleet")
@click.option("--gateways", default=100, show_default=True)
@click.option(
    "--patients", "patients_per_gateway", default=1, show_default=True, help="Patients per gateway."
)
@click.option("--days", default=30, show_default=True, help="Days of history to back-fill.")
@click.option(
    "--rate",
    type=float,
    default=None,
    help="Stream at this many readings/s (default: as fast as possible).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--batch", "batch_size", default=100, show_default=True, help="Readings per MQTT message."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write what was sent as JSON.",
)
@click.option(
    "--enroll/--no-enroll",
    default=True,
    show_default=True,
    help="Create the patients and attach their gateways in the database first.",
)
@click.option("--no-progress", is_flag=True)
def fleet(
    gateways: int, patients_per_gateway: int, days: int, rate: float | None, seed: int,
    batch_size: int, report_path: Path | None, enroll: bool, no_progress: bool,
) -> None:  # fmt: skip
    """N gateways x M patients' devices publishing over MQTT with the wire contract (no BLE)."""
    from homevitals.services.manager import endpoints, local_mosquitto
    from simulators.fleet import FleetConfig, fleet_layout, publish_fleet

    settings = load_settings()
    found = endpoints(settings)
    config = FleetConfig(
        gateways=gateways,
        patients_per_gateway=patients_per_gateway,
        days=days,
        seed=seed,
        batch_size=batch_size,
    ).resolved()
    layout = fleet_layout(config)
    if enroll:
        _enroll_fleet(found.database_url, layout)
    gateway_url = None
    if settings.uses_local_broker:
        broker = local_mosquitto(settings)
        broker.set_users({g.gateway_id: broker.password_for(g.gateway_id) for g in layout})
        gateway_url = broker.url_for
    report = publish_fleet(
        config,
        found.mqtt_admin_url or found.mqtt_url,
        gateway_url=gateway_url,
        rate=rate,
        progress=not no_progress,
    )
    click.echo(report.summary())
    if report_path is not None:
        report.write_json(report_path)


def _enroll_fleet(database_url: str, layout: list[SimGateway]) -> None:
    """Patients, their gateways and device bindings, as enrollment would create them."""
    from datetime import UTC, datetime

    import psycopg

    from ingest.patients import attach_gateway, upsert_patient
    from ingest.registry import bind_device

    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        for gateway in layout:
            ids = {
                p.patient_id: upsert_patient(conn, p.patient_id, p.timezone)
                for p in gateway.patients
            }
            if len(ids) == 1:
                attach_gateway(conn, gateway.gateway_id, next(iter(ids.values())))
                continue
            for device in gateway.devices:  # several patients share one hub
                conn.execute(
                    "INSERT INTO devices (id, gateway_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (device.device_id, gateway.gateway_id),
                )
                bind_device(conn, device.device_id, ids[device.patient_id], now)
