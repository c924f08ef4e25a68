"""The whole-chain fault harness (issue #13): BLE meters -> gateway -> broker -> ingest
-> TimescaleDB, with faults injected, judged only by what reaches the database.

Black box.  Every HomeVitals component runs as the operator runs it, as a process:
``homevitals gateway pair|run|status``, ``homevitals ingest run``, the simulated meters
(``python -m simulators.ble``) on the BlueZoo bed, the project's own PostgreSQL and
Mosquitto (``LocalPostgres`` / ``LocalMosquitto``, stopped and started for the faults).
Nothing of the gateway or ingest is imported: the oracle is the harness's own ledger of
what each simulated meter holds (its sequence number, the true UTC instant of the
measurement, the value), written before any of it reaches the gateway.

The verdict of a run (``Counts``): for every record a meter held,

* stored     -- at least one ``glucose`` row for (device, sequence);
* lost       -- no row (sent - stored);
* duplicates -- rows beyond the first for the same (device, sequence): one source
  record shown twice on the chart;
* mismatched -- a stored record with a row whose value, UTC time or patient is not the
  ledger's (time: within ``TIME_TOLERANCE_S``, the device clock's resolution);
* unexpected -- rows of our devices that match no record at all.

A run passes when stored == sent and duplicates == mismatched == unexpected == 0 (and,
for ``mixed``, so did the verdict taken after each of its faults).

Waits are on events, each bounded: a device's cursor and the outbox in
``homevitals gateway status --json``, a log line of a process, rows in the database,
what the gateway published (``Observer``, a plain subscription on its readings topic:
with commit receipts the outbox stays full while ingest or the database is down), and
-- to know ingest has processed everything the broker accepted -- a *probe*: a
message the harness publishes after the gateway's outbox drained, through the same
broker and the same shared subscription, which ingest turns into a dead letter of the
probe's own gateway id.  The broker queues a subscriber's messages in order and ingest
commits its batches in order, so once the probe's dead letter is in the database every
message accepted before it has been committed -- or was never delivered, and never will
be.  Faults are injected at random points drawn from a seeded RNG (the seed is printed).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.postgres import LocalPostgres
from simulators.testbed import TestbedInfo, env_for

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
# Device clocks tick in whole seconds and the gateway measures the skew over a BLE read:
# a reading's UTC time is known to +-1 s, no better.
TIME_TOLERANCE_S = 1.0
INGEST_RUN = [PY, "-m", "homevitals", "--json-logs", "--log-level", "INFO", "ingest", "run"]
METER_SKEW_S = -7200
SYNCING = re.compile(
    r"([0-9A-Fa-f:]{17}): syncing \([^,]+, cursor (\d+|None)\)"
)  # the meters' clocks run two hours behind (an unset zone, say)


class HarnessError(AssertionError):
    """A bounded wait ran out, or a process did not behave as documented."""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


# -- ground truth ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One measurement a simulated meter holds: what the chart must show, once."""

    device: str
    seq: int
    time: datetime  # the true UTC instant of the measurement
    mgdl: float
    device_time: str  # what the meter's own clock said (naive ISO)


@dataclass(slots=True)
class Counts:
    scenario: str
    sent: int
    stored: int
    duplicates: int
    lost: int
    mismatched: int
    unexpected: int
    dead_letters: int  # open dead letters of the scenario's gateway
    examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    # Proof that the faults happened as intended (kills mid-download, links lost...):
    # a harness that injects nothing must not pass.
    evidence: dict[str, int] = field(default_factory=dict)
    dead_letters_total: int = 0  # also those re-processed since (e.g. parked, then stored)
    # Verdicts taken part-way (mixed: after each fault) that failed: a later full
    # re-download must not hide a loss that was on the chart for a while.
    checkpoints_failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.stored == self.sent
            and self.duplicates == 0
            and self.mismatched == 0
            and self.unexpected == 0
            and not self.checkpoints_failed
        )

    def line(self) -> str:
        return (
            f"{self.scenario}: sent {self.sent} stored {self.stored} duplicates"
            f" {self.duplicates} lost {self.lost} mismatched {self.mismatched}"
            f" unexpected {self.unexpected} (dead letters {self.dead_letters} open"
            f" / {self.dead_letters_total},"
            f" {self.elapsed_s:.0f} s) {'OK' if self.ok else 'FAIL'}"
            + (
                f" [{', '.join(f'{k} {v}' for k, v in self.evidence.items())}]"
                if self.evidence
                else ""
            )
            + "".join(f"\n    checkpoint FAIL {c}" for c in self.checkpoints_failed)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "mismatched": self.mismatched,
            "unexpected": self.unexpected,
            "dead_letters": self.dead_letters,
            "dead_letters_total": self.dead_letters_total,
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 1),
            "evidence": self.evidence,
            "checkpoints_failed": self.checkpoints_failed,
            "examples": self.examples,
        }


def judge(
    scenario: str, records: list[Record], rows: list[tuple[Any, ...]], patient_id: int
) -> Counts:
    """Compare the database rows ``(device, sequence, time, mgdl, patient_id)`` with the
    ledger.  Written without any of the system's code: the identity of a source record
    is (device, sequence number), as the meter numbers it."""
    truth = {(r.device, r.seq): r for r in records}
    by_key: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    unexpected = 0
    examples: list[str] = []
    for row in rows:
        key = (str(row[0]), -1 if row[1] is None else int(row[1]))
        if key not in truth:
            unexpected += 1
            if len(examples) < 5:
                examples.append(f"unexpected row {row}")
            continue
        by_key.setdefault(key, []).append(row)
    mismatched = 0
    for key, found in by_key.items():
        want = truth[key]
        bad = [
            row
            for row in found
            if row[3] is None
            or abs(float(row[3]) - want.mgdl) > 1e-6
            or abs((row[2] - want.time).total_seconds()) > TIME_TOLERANCE_S
            or row[4] != patient_id
        ]
        if bad:
            mismatched += 1
            if len(examples) < 10:
                examples.append(
                    f"{key}: want {want.time.isoformat()} {want.mgdl} patient {patient_id},"
                    f" got {[(r[2].isoformat(), r[3], r[4]) for r in bad]}"
                )
    duplicates = sum(len(found) - 1 for found in by_key.values())
    if duplicates and len(examples) < 12:
        key, found = next((k, f) for k, f in by_key.items() if len(f) > 1)
        examples.append(f"{key} stored {len(found)}x: {[r[2].isoformat() for r in found]}")
    lost_keys = [k for k in truth if k not in by_key]
    if lost_keys and len(examples) < 12:
        seqs = sorted(s for _, s in lost_keys)
        examples.append(f"lost sequence numbers {_ranges(seqs)}")
    return Counts(
        scenario,
        sent=len(truth),
        stored=len(by_key),
        duplicates=duplicates,
        lost=len(lost_keys),
        mismatched=mismatched,
        unexpected=unexpected,
        dead_letters=0,
        examples=examples,
    )


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out[:20]) + (" ..." if len(out) > 20 else "")


# -- processes ---------------------------------------------------------------------------


@dataclass
class Service:
    """A long-running ``homevitals`` process with its stderr (JSON log lines) in a file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        if self.running:
            raise HarnessError(f"{self.name} already running")
        self.starts += 1
        with self.log.open("ab") as err:
            err.write(f'{{"harness": "start {self.starts}"}}\n'.encode())
            err.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait (the documented graceful stop)."""
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"{self.name} ignored SIGTERM for {timeout} s") from None

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines())

    def wait_log(self, needle: str, at_least: int, timeout: float) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            return self.count(needle) >= at_least

        wait_until(seen, timeout, f"{self.name} to log {needle!r} x{at_least}", step=0.05)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines()[-n:])


@dataclass
class Meter:
    """A simulated Glucose-Service meter (its own process, on its own adapter)."""

    adapter: str
    address: str
    control: Path
    proc: subprocess.Popen[str]
    skew_s: float
    records: list[Record] = field(default_factory=list)

    def command(self, command: dict[str, Any]) -> dict[str, Any]:
        from simulators.ble.control import send_command

        return send_command(self.control, command)

    @property
    def top(self) -> int:
        return max((r.seq for r in self.records), default=0)

    def set_skew(self, skew_s: float) -> None:
        """Move the meter's clock; records measured from now on carry the new clock."""
        self.command({"cmd": "set_skew", "seconds": skew_s})
        self.skew_s = skew_s

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Clock:
    """True measurement instants: one a minute per meter, far enough in the past."""

    def __init__(self, total: int) -> None:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.next = now - timedelta(minutes=total + 120)

    def take(self) -> datetime:
        t = self.next
        self.next += timedelta(minutes=1, seconds=7)  # seconds vary too
        return t


def process_env(bed: TestbedInfo) -> dict[str, str]:
    env = {**os.environ, **env_for(bed)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["TZ"] = "UTC"  # the meters' host clock and the gateway's zone
    for name in ("HOMEVITALS_DATABASE_URL", "HOMEVITALS_MQTT_URL", "HOMEVITALS_CONFIG"):
        env.pop(name, None)
    return env


@dataclass(frozen=True, slots=True)
class Services:
    postgres: LocalPostgres
    mosquitto: LocalMosquitto


class Observer:
    """A plain (not shared) subscriber on the gateway's readings topic, admin account:
    what the gateway has *published*, whatever became of it.

    Waiting for "the outbox is empty" would assume the gateway deletes rows on PUBACK;
    with commit receipts it keeps them until ingest has stored them, so while ingest or
    the database is down the harness waits for this instead."""

    def __init__(self, mqtt_url: str, topic: str) -> None:
        from readings import parse_mqtt_url

        self.topic = topic
        self.seen: set[tuple[str, int]] = set()
        self.subscribed = 0  # SUBACKs received (one per (re)connection)
        self._target = parse_mqtt_url(mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hvf-observer-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(self._target.username, self._target.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self.subscribed += 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            batch = json.loads(msg.payload)
            for reading in batch.get("readings", []):
                if reading.get("seq") is not None:
                    self.seen.add((str(reading["device"]).upper(), int(reading["seq"])))
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # not ours to judge: ingest dead-letters it, the verdict counts it

    def start(self) -> None:
        self.client.connect_async(self._target.host, self._target.port)
        self.client.loop_start()
        self.wait_subscribed(1)

    def wait_subscribed(self, at_least: int, timeout: float = 30) -> None:
        wait_until(lambda: self.subscribed >= at_least, timeout, "the observer's SUBACK", 0.02)

    def has(self, device: str, upto: int) -> bool:
        return all((device.upper(), seq) in self.seen for seq in range(1, upto + 1))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the chain ---------------------------------------------------------------------------


class Chain:
    """One scenario's chain: its own database, gateway id, ingest group and session,
    meters on fresh adapters, and a patient the gateway is bound to."""

    def __init__(
        self,
        name: str,
        bed: TestbedInfo,
        services: Services,
        workdir: Path,
        adapters: list[str],
        *,
        total_readings: int,
        seed: int,
        record_interval_s: float = 0.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.name = name
        self.bed = bed
        self.services = services
        self.workdir = workdir
        self.adapters = adapters
        self.rng = random.Random(seed)
        self.seed = seed
        self.record_interval_s = record_interval_s
        self.say = log
        self.clock = Clock(total_readings)
        # Bounds of the waits grow with the run (a soak downloads thousands of records).
        self.patience = max(1.0, total_readings / 400)
        self.meters: list[Meter] = []
        tag = uuid.uuid4().hex[:6]
        self.gateway_id = f"hvf-{name}-{tag}"
        self.group = f"hvf-{name}-{tag}"
        self.client_id = f"hvf-ingest-{name}-{tag}"
        self.probe_gateway = f"hvf-probe-{name}-{tag}"
        self.probes = 0
        self.observer: Observer | None = None
        self.extra_workers: list[Service] = []
        self.evidence: dict[str, int] = {}
        self.database_url = ""
        self.patient_id = 0
        self.gateway_state = workdir / "gateway"
        workdir.mkdir(parents=True, exist_ok=True)
        env = process_env(bed)
        self.gateway = Service(
            "gateway",
            [
                PY,
                "-m",
                "homevitals",
                "--json-logs",
                "gateway",
                "run",
                "--resync-interval",
                "1",
                # A lost batch comes back in seconds, not after the 30 s default.
                "--receipt-timeout",
                "3",
            ],
            {},
            workdir / "gateway.log",
        )
        self.ingest = Service(
            "ingest",
            [*INGEST_RUN, "--group", self.group, "--client-id", self.client_id],
            {},
            workdir / "ingest.log",
        )
        self._base_env = env
        self.started = time.monotonic()

    # set-up ------------------------------------------------------------------------
    def setup(self, meters: int = 1, initial: int = 0) -> None:
        from ingest.migrations import migrate
        from ingest.patients import enroll_patient

        self.say(f"[{self.name}] seed {self.seed}, work dir {self.workdir}")
        self.database_url = self.services.postgres.create_database(
            "hvf_" + self.name.replace("-", "_")
        )
        migrate(self.database_url)
        self.patient_id = enroll_patient(
            self.database_url, f"patient-{self.gateway_id}", [self.gateway_id], timezone="UTC"
        )
        gateway_url = self.services.mosquitto.provision_gateway(self.gateway_id)
        self.gateway.env = {
            **self._base_env,
            "HOMEVITALS_GATEWAY_ID": self.gateway_id,
            "HOMEVITALS_GATEWAY_STATE_DIR": str(self.gateway_state),
            "HOMEVITALS_GATEWAY_ADAPTER": self.bed.gateway_adapter,
            "HOMEVITALS_GATEWAY_TIMEZONE": "UTC",
            "HOMEVITALS_MQTT_URL": gateway_url,
        }
        self.ingest.env = {
            **self._base_env,
            "HOMEVITALS_DATABASE_URL": self.database_url,
            "HOMEVITALS_MQTT_URL": self.services.mosquitto.url,
            "HOMEVITALS_STATE_DIR": str(self.workdir / "ingest-state"),
        }
        for adapter in self.adapters[:meters]:
            meter = self.start_meter(adapter)
            if initial:
                self.feed(meter, initial)
        for meter in self.meters:
            self.pair(meter)
        self.observer = Observer(
            self.services.mosquitto.admin_url, f"homevitals/v1/gw/{self.gateway_id}/readings"
        )
        self.observer.start()

    def start_meter(self, adapter: str) -> Meter:
        n = len(self.meters)
        control = Path(f"/tmp/hvf-{uuid.uuid4().hex[:10]}.ctl")  # unix socket paths are short
        spec = {
            "profile": "glucose-meter",
            "adapter": adapter,
            "readings": [],
            "control_socket": str(control),
            "clock_skew_s": METER_SKEW_S,
            "record_interval_s": self.record_interval_s,
        }
        spec_path = self.workdir / f"meter{n}.json"
        spec_path.write_text(json.dumps(spec))
        log = (self.workdir / f"meter{n}.log").open("w")
        proc = subprocess.Popen(
            [PY, "-m", "simulators.ble", "--spec", str(spec_path)],
            cwd=REPO,
            env=self._base_env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "READY":
            proc.kill()
            raise HarnessError(f"meter on {adapter} did not start: {line!r}")
        meter = Meter(adapter, self.bed.address_of(adapter), control, proc, METER_SKEW_S)
        self.meters.append(meter)
        return meter

    def feed(self, meter: Meter, count: int) -> list[Record]:
        """The meter measures ``count`` more readings (stamped with its own clock)."""
        made: list[tuple[datetime, float, str]] = []
        for _ in range(count):
            true = self.clock.take()
            device_time = (true + timedelta(seconds=meter.skew_s)).replace(tzinfo=None)
            made.append((true, float(self.rng.randint(40, 400)), device_time.isoformat()))
        reply = meter.command(
            {"cmd": "add", "readings": [{"device_time": d, "mg_dl": v} for _, v, d in made]}
        )
        ids = [int(i) for i in reply["ids"]]
        if len(ids) != count:
            raise HarnessError(f"meter answered {len(ids)} ids for {count} readings")
        records = [
            Record(meter.address, seq, true, value, d)
            for seq, (true, value, d) in zip(ids, made, strict=True)
        ]
        meter.records.extend(records)
        return records

    def gateway_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "homevitals", "--json-logs", "gateway", *args],
            cwd=REPO,
            env=self.gateway.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def pair(self, meter: Meter) -> None:
        done = self.gateway_cli("pair", "--address", meter.address, "--scan-seconds", "15")
        if done.returncode != 0:
            raise HarnessError(f"gateway pair {meter.address} failed:\n{done.stderr[-3000:]}")

    # observation ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        done = self.gateway_cli("status", "--json", timeout=60)
        if done.returncode != 0:
            raise HarnessError(f"gateway status failed:\n{done.stderr[-2000:]}")
        return dict(json.loads(done.stdout))

    def cursors(self, status: dict[str, Any] | None = None) -> dict[str, int]:
        status = status if status is not None else self.status()
        return {d["address"].upper(): int(d["cursor"] or 0) for d in status["devices"]}

    def downloaded(self, status: dict[str, Any] | None = None) -> bool:
        cursors = self.cursors(status)
        return all(cursors.get(m.address.upper(), 0) >= m.top for m in self.meters)

    def wait_downloaded(self, timeout: float = 90) -> None:
        wait_until(
            self.downloaded,
            timeout * self.patience,
            "the gateway to download every record",
            step=0.3,
        )

    def wait_drained(self, timeout: float = 120) -> None:
        """Every record downloaded and the outbox empty (every batch PUBACKed)."""

        def drained() -> bool:
            status = self.status()
            return self.downloaded(status) and status["outbox"]["rows"] == 0

        wait_until(
            drained,
            timeout * self.patience,
            "the gateway to download and drain its outbox",
            step=0.3,
        )

    def wait_published(self, timeout: float = 90) -> None:
        """Every record downloaded and seen on the broker (published by the gateway;
        not necessarily stored nor deleted from the outbox)."""
        observer = self.observer
        assert observer is not None

        def published() -> bool:
            return all(observer.has(m.address, m.top) for m in self.meters)

        self.wait_downloaded(timeout)
        wait_until(
            published, timeout * self.patience, "the gateway to publish every record", step=0.1
        )

    @contextmanager
    def frozen(self, *services: Service) -> Iterator[None]:
        """SIGSTOP these processes for the block (a stalled process: its timers and
        reconnect back-off simply run late), SIGCONT after."""
        for service in services:
            service.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            for service in services:
                service.signal(signal.SIGCONT)

    def restart_broker_frozen(self, *also_frozen: Service) -> None:
        """Start the (stopped) broker with the gateway frozen until the observer has
        re-subscribed, so that it sees everything the gateway publishes next."""
        observer = self.observer
        assert observer is not None
        subscribed = observer.subscribed
        with self.frozen(self.gateway, *also_frozen):
            self.services.mosquitto.start()
            observer.wait_subscribed(subscribed + 1)

    def outbox_rows(self) -> int:
        return int(self.status()["outbox"]["rows"])

    def rows(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return conn.execute(
                "SELECT device_id, sequence, time, mgdl, patient_id FROM glucose"
                " WHERE device_id = ANY(%s) ORDER BY device_id, sequence, time",
                ([m.address for m in self.meters],),
            ).fetchall()

    def stored_count(self) -> int:
        try:
            with psycopg.connect(self.database_url, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM glucose WHERE device_id = ANY(%s)",
                    ([m.address for m in self.meters],),
                ).fetchone()
        except psycopg.OperationalError:
            return -1
        return int(row[0]) if row else 0

    def wait_rows_beyond(self, stored: int, timeout: float = 60) -> None:
        """Wait until more than ``stored`` rows of these meters are in the database."""
        wait_until(
            lambda: self.stored_count() > stored,
            timeout * self.patience,
            f"more than {stored} rows",
            step=0.02,
        )

    def dead_letters(self) -> tuple[int, int]:
        """(open, total) dead letters of this gateway."""
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE reprocessed_at IS NULL), count(*)"
                " FROM dead_letters WHERE gateway_id = %s",
                (self.gateway_id,),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _probes_seen(self) -> int:
        try:
            with psycopg.connect(self.database_url, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM dead_letters WHERE gateway_id = %s",
                    (self.probe_gateway,),
                ).fetchone()
        except psycopg.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def barrier(self, timeout: float = 60) -> None:
        """Return once ingest has processed every message the broker accepted so far.

        Publishes a probe (an invalid payload on the probe gateway's topic) and waits for
        its dead letter; republishes every few seconds in case the first probe raced a
        subscription being re-made."""
        seen = self._probes_seen()
        deadline = time.monotonic() + timeout * self.patience
        while True:
            self.probes += 1
            self._publish_probe(self.probes)
            republish = time.monotonic() + 5
            while time.monotonic() < min(republish, deadline):
                if self._probes_seen() > seen:
                    return
                time.sleep(0.1)
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"ingest processed no probe in {timeout:.0f} s:\n{self.ingest.tail()}"
                )

    def _publish_probe(self, n: int) -> None:
        from readings import parse_mqtt_url

        target = parse_mqtt_url(self.services.mosquitto.admin_url)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hvf-probe-{uuid.uuid4().hex[:8]}"
        )
        client.username_pw_set(target.username, target.password)
        client.connect(target.host, target.port)
        client.loop_start()
        try:
            info = client.publish(
                f"homevitals/v1/gw/{self.probe_gateway}/readings",
                json.dumps({"probe": n}).encode(),
                qos=1,
            )
            info.wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    def counts(self) -> Counts:
        records = [r for m in self.meters for r in m.records]
        counts = judge(self.name, records, self.rows(), self.patient_id)
        counts.dead_letters, counts.dead_letters_total = self.dead_letters()
        counts.elapsed_s = time.monotonic() - self.started
        counts.evidence = dict(self.evidence)
        return counts

    def note(self, what: str, n: int = 1) -> None:
        self.evidence[what] = self.evidence.get(what, 0) + n

    def device_errors(self, kind: str) -> int:
        return sum(int(d["errors"].get(kind, 0)) for d in self.status()["devices"])

    def settle(self, timeout: float = 420) -> Counts:
        """Drain the gateway, pass a probe through ingest, wait for attribution, count.

        The bound is generous: a gateway that re-sends unconfirmed batches on a
        doubling timer (30 s, 60 s, ...) is slow, not wrong; the verdict is the counts."""
        self.wait_drained(timeout)
        self.barrier()
        # Rows written before a binding existed are attributed by ingest's housekeeping
        # (every 2 s): wait for it, bounded, when rows lack their patient.
        with suppress_timeout():
            wait_until(self._attributed, 15, "rows to be attributed", step=0.3)
        return self.counts()

    def _attributed(self) -> bool:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM glucose WHERE device_id = ANY(%s) AND patient_id IS NULL",
                ([m.address for m in self.meters],),
            ).fetchone()
        return row is not None and int(row[0]) == 0

    # faults --------------------------------------------------------------------------
    def start_ingest(self, worker: Service | None = None) -> None:
        worker = worker if worker is not None else self.ingest
        before = worker.count('"connected to ')
        worker.start()
        worker.wait_log('"connected to ', before + 1, 60)

    def add_ingest_worker(self) -> Service:
        """Another ``homevitals ingest run`` in the same group (its own client id)."""
        n = len(self.extra_workers) + 1
        worker = Service(
            f"ingest{n}",
            [*INGEST_RUN, "--group", self.group, "--client-id", f"{self.client_id}-{n}"],
            self.ingest.env,
            self.workdir / f"ingest{n}.log",
        )
        self.extra_workers.append(worker)
        return worker

    def start_gateway(self) -> None:
        self.gateway.start()

    def wait_session(self, meter: Meter | None = None, timeout: float = 60) -> None:
        """Wait for the gateway's next device session (of ``meter``) to begin."""
        needle = ": syncing (" if meter is None else f"{meter.address}: syncing ("
        before = self.gateway.count(needle)
        # After failed sessions the gateway backs off 2 s, doubling (docs/gateway.md).
        self.gateway.wait_log(needle, before + 1, timeout * self.patience)

    def session_cursor(self, meter: Meter) -> int:
        """The cursor the gateway's latest session of ``meter`` started from (its log
        line ``<address>: syncing (<profile>, cursor N)``)."""
        for line in reversed(self.gateway.lines()):
            found = SYNCING.search(line)
            if found and found.group(1).upper() == meter.address.upper():
                return 0 if found.group(2) == "None" else int(found.group(2))
        raise HarnessError(f"no session of {meter.address} in the gateway log")

    def wait_download_start(self, meter: Meter) -> int:
        """Wait for the next session of ``meter``; returns how many records it has to
        download (0 when an earlier session already took them)."""
        self.wait_session(meter)
        return max(0, meter.top - self.session_cursor(meter))

    def cut_link(self, meter: Meter, from_device: bool) -> None:
        """Drop the BLE link: the meter hangs up, or the gateway side's BlueZ does."""
        if from_device:
            meter.command({"cmd": "disconnect"})
        else:
            asyncio.run(_disconnect(self.bed.bus_address, self.bed.gateway_adapter, meter.address))

    def wipe_gateway_state(self) -> None:
        shutil.rmtree(self.gateway_state, ignore_errors=True)

    def close(self) -> None:
        for service in (self.gateway, self.ingest, *self.extra_workers):
            if service.proc is not None and service.proc.poll() is None:
                with suppress_timeout():
                    service.stop(15)
            if service.proc is not None and service.proc.poll() is None:
                service.kill()
        for meter in self.meters:
            meter.stop()
            meter.control.unlink(missing_ok=True)
        if self.observer is not None:
            self.observer.stop()
        for client_id in [self.client_id] + [
            f"{self.client_id}-{n}" for n in range(1, len(self.extra_workers) + 1)
        ]:
            with suppress_timeout():
                self._end_ingest_session(client_id)

    def _end_ingest_session(self, client_id: str) -> None:
        """Remove the ingest worker's persistent session, or it would keep queueing
        every later scenario's messages on the broker."""
        from readings import parse_mqtt_url

        if not self.services.mosquitto.pid():
            return
        target = parse_mqtt_url(self.services.mosquitto.url)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(target.username, target.password)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        client.connect(target.host, target.port, clean_start=True, properties=props)
        client.loop_start()
        try:
            wait_until(client.is_connected, 10, "the session clean-up connection")
        finally:
            client.disconnect()
            client.loop_stop()


def suppress_timeout() -> AbstractContextManager[None]:
    """For clean-up and best-effort waits: a timeout there is not the verdict."""
    return suppress(HarnessError, subprocess.TimeoutExpired, OSError)


async def _disconnect(bus_address: str, adapter: str, address: str) -> None:
    bus = await MessageBus(bus_address=bus_address).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}",
                interface="org.bluez.Device1",
                member="Disconnect",
            )
        )
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            raise HarnessError(f"Device1.Disconnect failed: {reply}")
    finally:
        bus.disconnect()
