"""``homevitals demo``: the whole pipeline on simulated devices, end to end.

Services -> BLE test bed -> simulated meters, cuffs and a CGM sensor holding three
patients' last weeks -> one gateway per home pairs and syncs them -> MQTT -> ingest ->
TimescaleDB -> analytics -> API and dashboard.  Then each patient "measures" live: a
severe low and a hypertensive crisis arrive through the same path and raise urgent flags
in seconds.

A CGM stores only its current sensor session, so the CGM sensor carries the patient's
last one: the 14 days of her CGM history ending with her last CGM reading (a 14-day
sensor that has expired; :func:`_cgm_session`).  Her earlier sensors' readings are on no
device the gateway could reach and stay out: the dashboard's 14-day AGP and time in
range are then wholly data that crossed BLE, not a mix with imported data.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
import psycopg
from rich.console import Console
from rich.table import Table

from homevitals.config import Settings, load_settings

if TYPE_CHECKING:
    from simulators.ble.readings import Reading
    from simulators.scenarios import ScenarioResult

CLINIC_TZ = "America/New_York"
CLINICIAN = "dr.demo"
CGM_SESSION = timedelta(days=14)  # a 14-day sensor (the simulated sensor's run time: 336 h)
CGM_WARM_UP = timedelta(hours=1)  # no readings in a new sensor's first hour
CGM_INTERVAL = timedelta(minutes=5)
console = Console(highlight=False)


@dataclass(frozen=True, slots=True)
class DemoPatient:
    external_id: str
    name: str
    scenario: str
    days: int
    live_glucose: float | None = None  # a fingerstick taken during the demo
    live_bp: tuple[float, float, float] | None = None  # systolic, diastolic, pulse


PATIENTS = (
    DemoPatient("demo-001", "Ana Alvarez", "severe_hypo", 30, live_glucose=48.0),
    DemoPatient("demo-002", "Ben Brooks", "hypertensive_crisis", 30, live_bp=(192.0, 124.0, 96.0)),
    DemoPatient("demo-003", "Cleo Chen", "rising_fasting", 35),
)


@dataclass(frozen=True, slots=True)
class DeviceHistory:
    """What one simulated device holds when the demo starts."""

    profile: str
    readings: tuple[Reading, ...]
    spec: dict[str, Any] = field(default_factory=dict)  # more DeviceSpec fields (a CGM session)
    note: str = ""  # said after the record count


@dataclass(frozen=True, slots=True)
class HomeDevice:
    adapter: str
    address: str  # the device's Bluetooth address: its device id in the database
    profile: str
    records: int
    note: str = ""


@dataclass(slots=True)
class Home:
    """One patient's home: a gateway and the devices paired to it."""

    patient: DemoPatient
    gateway_id: str
    adapter: str
    devices: list[HomeDevice] = field(default_factory=list)


class Processes:
    """Child processes of the demo, each logging to its own file; stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        self.running[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )

    def run(self, name: str, argv: list[str], env: dict[str, str], timeout: float) -> int:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.run(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
            ).returncode

    def check(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise click.ClickException(
                    f"{name} exited with {proc.returncode}; see {self.log_dir / name}.log"
                )

    def stop_all(self) -> None:
        for proc in self.running.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.running.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.running.clear()
        for log in self._logs:
            log.close()


def _homevitals(*args: str) -> list[str]:
    return [sys.executable, "-m", "homevitals", *args]


def _wait(what: str, predicate: Callable[[], bool], timeout: float, processes: Processes) -> None:
    deadline = time.monotonic() + timeout
    with console.status(what):
        while not predicate():
            processes.check()
            if time.monotonic() > deadline:
                raise click.ClickException(f"timed out: {what}")
            time.sleep(0.5)


def _count(url: str, sql: str, params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode(), params).fetchone()
    return int(row[0]) if row else 0


def _device_histories(patient: DemoPatient) -> dict[str, DeviceHistory]:
    """The patient's simulated history, ending yesterday, per device profile."""
    from device_profiles.model import Kind
    from simulators.ble.readings import reading_from_measurement
    from simulators.scenarios import run_scenario

    start = datetime.now(ZoneInfo(CLINIC_TZ)).date() - timedelta(days=patient.days)
    result = run_scenario(patient.scenario, days=patient.days, seed=7, start=start)
    out: dict[str, DeviceHistory] = {}
    for kind, profile in ((Kind.GLUCOSE, "glucose-meter"), (Kind.BLOOD_PRESSURE, "bp-cuff")):
        if kind in result.devices:
            readings = tuple(reading_from_measurement(m) for m in result.measurements(kind))
            out[profile] = DeviceHistory(profile, readings)
    if Kind.CGM in result.devices:
        cgm = _cgm_session(result)
        if cgm is not None:
            out["cgm"] = cgm
    return out


def _cgm_session(result: ScenarioResult) -> DeviceHistory | None:
    """The patient's last CGM sensor session, as the sensor stores it.

    A sensor holds its current session only, numbered by minutes since the session
    start.  The session is the 14 days up to the patient's last CGM reading (the sensor
    expired right after it; the scenario may have her not wear it on the last days), its
    first hour is warm-up.  Values, trends and UTC times are the scenario's; the offsets
    are counted from the session start, which the sensor reports in the patient's local
    time with the zone and DST offset in force then (CGMS §3.4), as her phone set it.
    """
    from device_profiles.current_time import DST_CODES
    from device_profiles.model import Component, Kind
    from simulators.ble.readings import Reading
    from simulators.patients.series import utc_datetimes

    series = result.data.cgm
    if len(series) == 0:
        return None
    times = utc_datetimes(series.time)
    end = times[-1] + CGM_INTERVAL
    begin = max(end - CGM_SESSION, times[0] - CGM_WARM_UP)
    zone = ZoneInfo(result.data.profile.timezone)
    local = begin.astimezone(zone)
    utc_offset, dst = local.utcoffset(), local.dst()
    assert utc_offset is not None and dst is not None  # a ZoneInfo-aware datetime
    readings: list[Reading] = []
    for t, m in zip(times, result.measurements(Kind.CGM), strict=True):
        if t < begin + CGM_WARM_UP:
            continue
        glucose = m.values[Component.GLUCOSE].value
        trend = m.values.get(Component.CGM_TREND)
        readings.append(
            Reading(
                Kind.CGM,
                None,
                mg_dl=glucose,
                time_offset_minutes=(t - begin) // timedelta(minutes=1),
                trend_mg_dl_min=None if trend is None else trend.value,
                conditions=m.conditions,
            )
        )
    expired = end.astimezone(zone)
    return DeviceHistory(
        "cgm",
        tuple(readings),
        spec={
            "session_start": local.replace(tzinfo=None),
            "time_zone_minutes": (utc_offset - dst) // timedelta(minutes=1),
            "dst_offset": DST_CODES[dst // timedelta(minutes=15)],
            "session_run_time_h": CGM_SESSION // timedelta(hours=1),
        },
        note=f"her last sensor: {local:%b %d %H:%M} to {expired:%b %d %H:%M}, expired",
    )


def _reset_demo_data(url: str) -> None:
    """Each run simulates its homes afresh, so the previous run's simulated readings,
    flags, devices and bindings go (only the demo patients'; the audit log stays)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        ids = [
            r[0] for r in conn.execute("SELECT id FROM patients WHERE external_id LIKE 'demo-%'")
        ]
        devices = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM devices WHERE gateway_id LIKE 'demo-gw-%%'"
                " UNION SELECT device_id FROM device_bindings WHERE patient_id = ANY(%s)",
                (ids,),
            )
        ]
        for table in ("glucose", "blood_pressure", "body_readings"):
            conn.execute(
                f"DELETE FROM {table} WHERE patient_id = ANY(%s) OR device_id = ANY(%s)".encode(),
                (ids, devices),
            )
        conn.execute(
            "DELETE FROM flag_events WHERE flag_id IN (SELECT id FROM flags WHERE patient_id = ANY(%s))",
            (ids,),
        )
        conn.execute("DELETE FROM flags WHERE patient_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM patient_activity WHERE patient_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM device_bindings WHERE device_id = ANY(%s)", (devices,))
        conn.execute(
            "DELETE FROM dead_letters WHERE device_id = ANY(%s) OR gateway_id LIKE 'demo-gw-%%'",
            (devices,),
        )
        conn.execute("DELETE FROM devices WHERE id = ANY(%s)", (devices,))


def _set_up_people(url: str, homes: list[Home], password: str) -> None:
    from api.bootstrap import add_to_panel, create_user
    from ingest.patients import attach_gateway, upsert_patient

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        create_user(conn, CLINICIAN, password, "clinician", display_name="Dr. Demo")
        for home in homes:
            p = home.patient
            pid = upsert_patient(
                conn,
                p.external_id,
                CLINIC_TZ,
                p.name,
                mrn=f"MRN-{p.external_id}",
                birth_date=date(1970, 1, 1),
            )
            attach_gateway(conn, home.gateway_id, pid)
            add_to_panel(conn, CLINICIAN, pid)


def _devices(homes: list[Home], profile: str) -> list[HomeDevice]:
    return [d for home in homes for d in home.devices if d.profile == profile]


def _summary(
    url: str,
    homes: list[Home],
    device_ids: list[str],
    api_url: str,
    password: str,
    elapsed: float,
) -> None:
    """What the demo's devices delivered (not the whole database: other runs may share
    it), each CGM patient's 14-day CGM metrics as the dashboard shows them, and flags."""
    with psycopg.connect(url) as conn:
        glucose: dict[str, int] = dict(
            conn.execute(
                "SELECT source, count(*) FROM glucose WHERE device_id = ANY(%s) GROUP BY source",
                (device_ids,),
            ).fetchall()
        )
        bp = conn.execute(
            "SELECT count(*) FROM blood_pressure WHERE device_id = ANY(%s)", (device_ids,)
        ).fetchone()
        dead = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE reprocessed_at IS NULL"
            " AND (gateway_id LIKE 'demo-gw-%%' OR device_id = ANY(%s))",
            (device_ids,),
        ).fetchone()
    table = Table(title="Readings from the demo's BLE devices", show_edge=False)
    table.add_column("kind")
    table.add_column("devices", justify="right")
    table.add_column("readings", justify="right")
    for kind, profile, n in (
        ("glucose (meter)", "glucose-meter", glucose.get("smbg", 0)),
        ("cgm (sensor)", "cgm", glucose.get("cgm", 0)),
        ("blood_pressure (cuff)", "bp-cuff", bp[0] if bp else 0),
    ):
        table.add_row(kind, str(len(_devices(homes, profile))), f"{n:,}")
    table.add_row("dead letters (open)", "", str(dead[0] if dead else 0))
    console.print(table)
    _cgm_lines(url, homes)
    flags = Table(title="Flags for review", show_edge=False)
    # "condition": a flag whose condition has since cleared stays for review (the
    # clinician signs it off), e.g. "no data" raised before the history was synced.
    for column in ("patient", "rule", "severity", "status", "condition", "opened"):
        flags.add_column(column)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT p.external_id || ' ' || coalesce(p.given_name, ''), f.rule_id, f.severity, f.status,"
            " CASE WHEN f.condition_active THEN 'active' ELSE 'cleared ' ||"
            " to_char(f.cleared_at AT TIME ZONE 'UTC', 'HH24:MI:SS') END,"
            " to_char(f.opened_at AT TIME ZONE 'UTC', 'HH24:MI:SS')"
            " FROM flags f JOIN patients p ON p.id = f.patient_id WHERE p.external_id LIKE 'demo-%'"
            " ORDER BY array_position(ARRAY['urgent','high','medium','low'], f.severity), f.opened_at"
        ).fetchall()
    for row in rows:
        flags.add_row(*(str(v) for v in row))
    console.print(flags)
    console.print(
        f"\n[bold]Dashboard:[/bold] {api_url}/dashboard/   (sign in as {CLINICIAN} / {password})"
    )
    console.print(
        f"[bold]API docs:[/bold]  {api_url}/api/v1/docs    [bold]FHIR:[/bold] {api_url}/fhir/metadata"
    )
    console.print(f"({elapsed:.0f} s from start)")


def _pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f} %"


def _cgm_lines(url: str, homes: list[Home]) -> None:
    """Per CGM patient: the CGM metrics of the dashboard's default window (14 days), and
    how many of those readings came from her sensor over BLE."""
    from analytics.summary import agp, glucose_summary

    end = datetime.now(UTC)
    start = end - timedelta(days=14)
    with psycopg.connect(url) as conn:
        for home in homes:
            sensors = [d.address for d in home.devices if d.profile == "cgm"]
            if not sensors:
                continue
            row = conn.execute(
                "SELECT id FROM patients WHERE external_id = %s", (home.patient.external_id,)
            ).fetchone()
            assert row is not None
            pid = int(row[0])
            g = glucose_summary(conn, pid, start, end).cgm
            profile = agp(conn, pid, start, end)
            counted = conn.execute(
                "SELECT count(*) FROM glucose WHERE patient_id = %s AND source = 'cgm'"
                " AND time >= %s AND time < %s AND device_id = ANY(%s) AND gateway_id = %s",
                (pid, start, end, sensors, home.gateway_id),
            ).fetchone()
            over_ble = int(counted[0]) if counted else 0
            console.print(
                f"[bold]CGM of {home.patient.name}, last 14 days[/bold] (the dashboard's AGP and"
                f" time in range): {g.n_readings:,} readings, {over_ble:,} of them from her"
                f" sensor over BLE; wear {_pct(g.percent_expected)}, TIR 70-180"
                f" {_pct(g.pct_70_180)}, TBR <70 {_pct(g.pct_below_70, 1)}, <54"
                f" {_pct(g.pct_below_54, 1)}, GMI {_pct(g.gmi, 1)}; AGP from"
                f" {profile.n_readings:,} {profile.source.value.upper()} readings"
            )


def _measure(fleet: Any, homes: list[Home], rng: random.Random) -> None:
    """Each device stores a new, ordinary reading (the gateways fetch it on their next pass)."""
    from device_profiles.model import Kind
    from simulators.ble.readings import Reading

    now_local = datetime.now(ZoneInfo(CLINIC_TZ)).replace(tzinfo=None, microsecond=0)
    for home in homes:
        for d in home.devices:
            if d.profile == "glucose-meter":
                reading = Reading(Kind.GLUCOSE, now_local, mg_dl=float(rng.randint(85, 190)))
            elif d.profile == "bp-cuff":
                reading = Reading(
                    Kind.BLOOD_PRESSURE, now_local, systolic=float(rng.randint(118, 146)),
                    diastolic=float(rng.randint(72, 92)), pulse=float(rng.randint(60, 84)),
                )  # fmt: skip
            else:
                continue  # the CGM sensor's session has ended: it records nothing new
            fleet.add_readings(d.adapter, [reading])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option(
    "--once", is_flag=True, help="Run the pipeline, print the summary and exit (scripts, CI)."
)
def demo(once: bool) -> None:
    """Run the whole pipeline on simulated BLE devices and keep serving until Ctrl-C."""
    from device_profiles.model import Kind
    from homevitals.services.manager import local_mosquitto, local_postgres
    from homevitals.services.manager import up as services_up
    from homevitals.services.system import read_or_create_secret
    from simulators import testbed as tb
    from simulators.ble.fleet import DeviceFleet
    from simulators.ble.readings import Reading
    from simulators.ble.spec import DeviceSpec

    started = time.monotonic()
    settings: Settings = load_settings()
    state = settings.state_dir.resolve()
    were_running = (
        settings.uses_local_database and local_postgres(settings).pid() is not None,
        settings.uses_local_broker and local_mosquitto(settings).pid() is not None,
    )
    console.rule("[bold]HomeVitals demo")
    with console.status("starting PostgreSQL+TimescaleDB and Mosquitto"):
        found = services_up(settings)
    console.print(
        f"services: TimescaleDB {found.timescaledb_version} ({found.timescaledb_edition}), MQTT {settings.mqtt_port}"
    )

    demo_dir = state / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)  # fresh gateways for freshly simulated devices
    (demo_dir / "logs").mkdir(parents=True)
    os.environ["TZ"] = CLINIC_TZ  # device clocks run on the patients' local time
    time.tzset()

    homes: list[Home] = []
    specs: list[DeviceSpec] = []
    histories = {p.external_id: _device_histories(p) for p in PATIENTS}
    n_devices = sum(len(h) for h in histories.values())
    info = tb.testbed_up(state / "ble", n_devices + len(PATIENTS) - 1)
    adapters = [a.name for a in info.device_adapters]
    gateway_adapters = [info.gateway_adapter, *adapters[n_devices:]]
    for i, patient in enumerate(PATIENTS):
        home = Home(patient, f"demo-gw-{i + 1:03d}", gateway_adapters[i])
        for history in histories[patient.external_id].values():
            adapter = adapters.pop(0)
            specs.append(
                DeviceSpec(
                    history.profile,
                    adapter,
                    readings=history.readings,
                    enforce_bonding=True,
                    **history.spec,
                )
            )
            home.devices.append(
                HomeDevice(
                    adapter,
                    info.address_of(adapter),
                    history.profile,
                    len(history.readings),
                    history.note,
                )
            )
        homes.append(home)

    password = read_or_create_secret(state / "secrets" / "demo_clinician_password", nbytes=9)
    _reset_demo_data(found.database_url)
    _set_up_people(found.database_url, homes, password)
    env = {**os.environ, **tb.env_for(info), "PYTHONUNBUFFERED": "1"}
    processes = Processes(demo_dir / "logs")
    fleet = DeviceFleet(info, demo_dir / "devices")
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    try:
        processes.start("ingest", _homevitals("ingest", "run"), env)
        processes.start("analytics", _homevitals("analytics", "run", "--interval", "5"), env)
        processes.start("api", _homevitals("api", "run"), env)
        with console.status(f"starting {len(specs)} simulated BLE devices"):
            fleet.start_many(specs)
            for d in _devices(homes, "cgm"):
                fleet.control(d.adapter, {"cmd": "stop_session"})  # CGM Status: expired
        for home in homes:
            console.print(
                f"home of {home.patient.name} ({home.patient.external_id}): gateway {home.gateway_id} on {home.adapter}; "
                + ", ".join(
                    f"{d.profile} {d.address} ({d.records} records"
                    + (f"; {d.note})" if d.note else ")")
                    for d in home.devices
                )
            )

        def gateway_args(home: Home, *args: str) -> list[str]:
            broker_url = (
                local_mosquitto(settings).provision_gateway(home.gateway_id)
                if settings.uses_local_broker
                else found.mqtt_url
            )
            return _homevitals(
                "gateway", *args, "--gateway-id", home.gateway_id, "--adapter", home.adapter,
                "--state-dir", str(demo_dir / home.gateway_id), "--mqtt-url", broker_url,
                "--timezone", CLINIC_TZ, "--patient", home.patient.external_id,
            )  # fmt: skip

        for home in homes:
            for d in home.devices:
                with console.status(f"{home.gateway_id}: pairing {d.profile} {d.address}"):
                    code = processes.run(
                        f"pair-{d.adapter}",
                        gateway_args(home, "pair", "--address", d.address),
                        env,
                        120,
                    )
                if code != 0:
                    raise click.ClickException(
                        f"pairing {d.address} failed; see {demo_dir / 'logs'}/pair-{d.adapter}.log"
                    )
        console.print("paired every device (bonded where the profile requires it)")

        expected = sum(d.records for home in homes for d in home.devices)
        device_ids = [d.address for home in homes for d in home.devices]
        stored = (
            "SELECT (SELECT count(*) FROM glucose WHERE device_id = ANY(%s))"
            " + (SELECT count(*) FROM blood_pressure WHERE device_id = ANY(%s))"
        )

        def sync_all(label: str) -> None:
            with console.status(label):
                for home in homes:
                    code = processes.run(
                        f"sync-{home.gateway_id}",
                        gateway_args(home, "run", "--once", "--duration", "120"),
                        env,
                        180,
                    )
                    if code != 0:
                        console.print(
                            f"[yellow]{home.gateway_id}: sync exited {code}; see logs/sync-{home.gateway_id}.log"
                        )

        sync_all("gateways downloading every stored record over BLE")
        _wait(
            f"ingesting {expected} readings",
            lambda: _count(found.database_url, stored, (device_ids, device_ids)) >= expected,
            120,
            processes,
        )
        console.print(
            f"history in the database: {_count(found.database_url, stored, (device_ids, device_ids))} readings from {len(device_ids)} devices"
        )

        now_local = datetime.now(ZoneInfo(CLINIC_TZ)).replace(tzinfo=None, microsecond=0)
        live = 0
        for home in homes:
            p = home.patient
            for d in home.devices:
                if d.profile == "glucose-meter" and p.live_glucose is not None:
                    fleet.add_readings(
                        d.adapter, [Reading(Kind.GLUCOSE, now_local, mg_dl=p.live_glucose)]
                    )
                    console.print(f"{p.name} measures glucose now: {p.live_glucose:.0f} mg/dL")
                    live += 1
                if d.profile == "bp-cuff" and p.live_bp is not None:
                    sys_, dia, pulse = p.live_bp
                    fleet.add_readings(
                        d.adapter,
                        [
                            Reading(
                                Kind.BLOOD_PRESSURE,
                                now_local,
                                systolic=sys_,
                                diastolic=dia,
                                pulse=pulse,
                            )
                        ],
                    )
                    console.print(
                        f"{p.name} measures blood pressure now: {sys_:.0f}/{dia:.0f} mmHg"
                    )
                    live += 1
        sync_started = time.monotonic()
        sync_all(
            "gateways fetching only the new records (RACP >= last sequence + 1; cuff indications)"
        )
        _wait(
            f"{live} live readings stored",
            lambda: _count(found.database_url, stored, (device_ids, device_ids)) >= expected + live,
            60,
            processes,
        )
        urgent = "SELECT count(*) FROM flags f JOIN patients p ON p.id = f.patient_id WHERE p.external_id LIKE 'demo-%%' AND f.severity = 'urgent' AND f.status <> 'resolved' AND f.updated_at >= now() - interval '5 minutes'"
        _wait(
            "urgent flags raised", lambda: _count(found.database_url, urgent) >= live, 60, processes
        )
        console.print(
            f"urgent flags raised {time.monotonic() - sync_started:.1f} s after the gateways started syncing the live readings"
        )
        _wait(
            "analytics full pass (window, trend and adherence rules)",
            lambda: (
                _count(
                    found.database_url,
                    "SELECT count(*) FROM analytics_state WHERE value > now() - interval '4 seconds'",
                )
                > 0
            ),
            30,
            processes,
        )
        _summary(
            found.database_url, homes, device_ids, api_url, password, time.monotonic() - started
        )
        if not once:
            for home in homes:
                processes.start(
                    f"gateway-{home.gateway_id}",
                    gateway_args(home, "run", "--resync-interval", "15"),
                    env,
                )
            console.print(
                "\nPatients keep measuring (a reading per device every minute) and the gateways"
                " keep syncing; Ctrl-C stops the demo."
            )
            signal.signal(signal.SIGTERM, _interrupt)
            rng = random.Random(7)
            next_reading = time.monotonic() + 60
            while True:
                processes.check()
                if time.monotonic() >= next_reading:
                    _measure(fleet, homes, rng)
                    next_reading = time.monotonic() + 60
                time.sleep(1)
    except KeyboardInterrupt:
        console.print("\nstopping")
    finally:
        processes.stop_all()
        fleet.stop_all()
        tb.testbed_down(state / "ble")
        if not any(were_running):  # leave services as we found them
            from homevitals.services.manager import down as services_down

            services_down(settings)
