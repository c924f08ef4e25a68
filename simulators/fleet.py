"""Fleet simulator: N gateways x M devices publishing readings with the wire contract.

Two parts:

- a pure generator, ``fleet_readings(config)``, yielding ``(gateway_id, readings)`` batches
  deterministically from ``config.seed`` (patients from ``random_profile``; values are
  vectorised per patient, ``Reading`` objects built lazily batch by batch);
- a publisher, ``publish_fleet(config, mqtt_url)``: one paho-mqtt 2.x client (MQTT v5)
  per gateway, client id ``<prefix><gateway>``, QoS 1, at most ``max_inflight`` messages
  unacknowledged per client, the paired events first, then the readings, optionally paced
  to a target rate; it returns only once every message has its PUBACK, or, with
  ``receipts=True``, like a real gateway: version-2 messages with batch ids, each
  re-sent until ingest's receipt confirms it (docs/wire-format.md, "Receipts").

Both return a ``FleetReport``: distinct reading ids per kind, messages, bytes, elapsed time
and rate, PUBACK failures, and the gateway -> patient -> devices mapping to enroll.
``generate_fleet`` runs the generator and the encoding without a broker (backfill files,
speed measurements).

Gateway ids are ``gw-0001``...; device ids ``sim-<gateway>-<n>``; patient ids
``<gateway>-p<k>``.  Readings carry UTC ``time`` and the device's local ``device_time``;
ids come from ``readings.RecordKey`` (``simulators.patients.series``).
"""

from __future__ import annotations

import json
import threading
import time as _time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from tqdm import tqdm

from device_profiles.model import Kind
from readings import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    SCHEMA_EVENT,
    SCHEMA_EVENT_V2,
    SCHEMA_READINGS,
    SCHEMA_READINGS_V2,
    DevicePaired,
    EventsMessage,
    MqttTarget,
    Reading,
    ReadingsBatch,
    WireError,
    decode_receipt,
    encode,
    events_topic,
    parse_mqtt_url,
    readings_topic,
    receipts_topic,
)
from simulators.patients import PatientData, PatientProfile, random_profile, simulate
from simulators.patients.series import DeviceSeries

DEFAULT_KIT = (Kind.GLUCOSE, Kind.BLOOD_PRESSURE, Kind.CGM)
# device_profiles.profiles ids of the simulated devices (DevicePaired.profile).
PROFILE_IDS: dict[Kind, str] = {
    Kind.GLUCOSE: "glucose-meter",
    Kind.BLOOD_PRESSURE: "bp-cuff",
    Kind.CGM: "cgm",
}
_MODELS: dict[Kind, str] = {
    Kind.GLUCOSE: "SimMeter 1",
    Kind.BLOOD_PRESSURE: "SimCuff 1",
    Kind.CGM: "SimCGM 1",
}


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to simulate.  With an explicit ``start`` the output depends on nothing else."""

    gateways: int = 100
    patients_per_gateway: int = 1
    kit: tuple[Kind, ...] = DEFAULT_KIT  # one device of each kind per patient
    days: int = 30
    seed: int = 0
    start: date | None = None  # first local day; None: ``days`` days before today (UTC)
    batch_size: int = 100
    interleave: bool = True  # fleet_readings: round-robin over gateways, batch by batch

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_READINGS_PER_MESSAGE:
            raise ValueError(f"batch_size must be 1-{MAX_READINGS_PER_MESSAGE}")
        if self.gateways < 1 or self.patients_per_gateway < 1 or self.days < 1:
            raise ValueError("gateways, patients_per_gateway and days must be >= 1")
        if not self.kit or len(set(self.kit)) != len(self.kit):
            raise ValueError("kit must list distinct device kinds")
        bad = [k for k in self.kit if k not in PROFILE_IDS]
        if bad:
            raise ValueError(f"no simulated device for {bad}")

    @property
    def first_day(self) -> date:
        if self.start is not None:
            return self.start
        return datetime.now(UTC).date() - timedelta(days=self.days)

    @property
    def devices_per_gateway(self) -> int:
        return self.patients_per_gateway * len(self.kit)

    def resolved(self) -> FleetConfig:
        """The same config with ``start`` fixed (so generation and report agree)."""
        if self.start is not None:
            return self
        return FleetConfig(
            self.gateways,
            self.patients_per_gateway,
            self.kit,
            self.days,
            self.seed,
            self.first_day,
            self.batch_size,
            self.interleave,
        )


def gateway_id(index: int) -> str:
    return f"gw-{index + 1:04d}"


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    kind: Kind
    patient_id: str


@dataclass(frozen=True, slots=True)
class SimGateway:
    gateway_id: str
    patients: tuple[PatientProfile, ...]
    devices: tuple[SimDevice, ...]


def fleet_layout(config: FleetConfig) -> list[SimGateway]:
    """Every gateway with its patients (profiles) and devices, deterministically."""
    seeds = np.random.SeedSequence(config.seed).generate_state(
        config.gateways * config.patients_per_gateway, dtype=np.uint64
    )
    out: list[SimGateway] = []
    for g in range(config.gateways):
        gw = gateway_id(g)
        patients: list[PatientProfile] = []
        devices: list[SimDevice] = []
        for p in range(config.patients_per_gateway):
            pid = f"{gw}-p{p + 1}"
            patients.append(random_profile(pid, int(seeds[g * config.patients_per_gateway + p])))
            for k, kind in enumerate(config.kit):
                n = p * len(config.kit) + k + 1
                devices.append(SimDevice(f"sim-{gw}-{n}", kind, pid))
        out.append(SimGateway(gw, tuple(patients), tuple(devices)))
    return out


def _gateway_batches(
    config: FleetConfig, gateway: SimGateway, start: date
) -> Iterator[list[Reading]]:
    """One gateway's readings in time order, in batches built lazily from the arrays."""
    series: list[tuple[DeviceSeries, str]] = []
    for profile in gateway.patients:
        data: PatientData = simulate(profile, config.days, start)
        for device in gateway.devices:
            if device.patient_id == profile.patient_id:
                series.append((data.series(device.kind), device.device_id))
    if not series:
        return
    times = np.concatenate([s.time for s, _ in series])
    which = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, (s, _) in enumerate(series)])
    row = np.concatenate([np.arange(len(s), dtype=np.int64) for s, _ in series])
    order = np.lexsort((which, times))
    which, row = which[order], row[order]
    for lo in range(0, order.size, config.batch_size):
        w, r = which[lo : lo + config.batch_size], row[lo : lo + config.batch_size]
        batch: list[Reading] = []
        for i in np.unique(w).tolist():
            s, device_id = series[i]
            batch.extend(take(s, r[w == i]).readings(device_id))
        batch.sort(key=lambda reading: reading.time)
        yield batch


def take(series: DeviceSeries, rows: np.ndarray[Any, np.dtype[np.int64]]) -> DeviceSeries:
    """The rows ``rows`` of a device series (array fields indexed, scalars kept)."""
    fields: dict[str, Any] = {}
    for f in dataclass_fields(series):
        value = getattr(series, f.name)
        fields[f.name] = value[rows] if isinstance(value, np.ndarray) else value
    return type(series)(**fields)


def fleet_readings(config: FleetConfig) -> Iterator[tuple[str, list[Reading]]]:
    """Every gateway's readings as ``(gateway_id, batch)``; deterministic for a fixed start.

    ``config.interleave``: gateways take turns batch by batch (like a live fleet);
    otherwise each gateway's whole history comes before the next gateway's.
    """
    start = config.first_day
    layout = fleet_layout(config)
    if not config.interleave:
        for gw in layout:
            for batch in _gateway_batches(config, gw, start):
                yield gw.gateway_id, batch
        return
    live = [(gw.gateway_id, _gateway_batches(config, gw, start)) for gw in layout]
    while live:
        still: list[tuple[str, Iterator[list[Reading]]]] = []
        for gid, it in live:
            for batch in it:
                yield gid, batch
                still.append((gid, it))
                break
        live = still


def paired_events(config: FleetConfig, gateway: SimGateway) -> EventsMessage:
    """The gateway's DevicePaired events, a day before its first reading."""
    first = config.first_day
    at = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(days=1)
    events: list[DevicePaired] = [
        DevicePaired(
            device=d.device_id,
            at=at,
            profile=PROFILE_IDS[d.kind],
            name=f"{PROFILE_IDS[d.kind]} {d.device_id}",
            manufacturer="HomeVitals Simulator",
            model=_MODELS[d.kind],
            serial=d.device_id,
        )
        for d in gateway.devices
    ]
    return EventsMessage(schema=SCHEMA_EVENT, gateway=gateway.gateway_id, events=list(events))


# --- report ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    ids: dict[str, set[int]] = field(default_factory=dict)
    readings: int = 0
    messages: int = 0
    event_messages: int = 0
    bytes: int = 0
    rejected: int = 0
    first: datetime | None = None
    last: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_batch(self, batch: list[Reading], size: int) -> None:
        with self.lock:
            for r in batch:
                # hash() of the id: 64-bit, collisions negligible at fleet scale, and far
                # smaller than keeping the strings.
                self.ids.setdefault(str(r.kind), set()).add(hash(r.id))
            self.readings += len(batch)
            self.messages += 1
            self.bytes += size
            lo, hi = batch[0].time, batch[-1].time
            self.first = lo if self.first is None or lo < self.first else self.first
            self.last = hi if self.last is None or hi > self.last else self.last


@dataclass(frozen=True, slots=True)
class FleetReport:
    """What was generated or sent, to compare with what got stored."""

    mode: str  # "generate" or "publish"
    gateways: int
    devices: int
    days: int
    start: date
    readings_by_kind: dict[str, int]  # distinct reading ids per kind
    readings_total: int
    messages: int  # readings messages
    event_messages: int
    bytes: int  # payload bytes (readings and events)
    elapsed_s: float
    rejected: int  # PUBACKs with a failure reason code
    first_time: datetime | None
    last_time: datetime | None
    patients: dict[str, dict[str, list[dict[str, str]]]]  # gateway -> patient -> devices

    @property
    def readings_distinct(self) -> int:
        return sum(self.readings_by_kind.values())

    @property
    def rate(self) -> float:
        return self.readings_total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "gateways": self.gateways,
            "devices": self.devices,
            "days": self.days,
            "start": self.start.isoformat(),
            "readings_by_kind": dict(self.readings_by_kind),
            "readings_distinct": self.readings_distinct,
            "readings_total": self.readings_total,
            "messages": self.messages,
            "event_messages": self.event_messages,
            "bytes": self.bytes,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_readings_per_s": round(self.rate, 1),
            "rejected": self.rejected,
            "first_time": None if self.first_time is None else self.first_time.isoformat(),
            "last_time": None if self.last_time is None else self.last_time.isoformat(),
            "patients": self.patients,
        }

    def write_json(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.readings_by_kind.items()))
        return (
            f"{self.mode}: {self.gateways} gateways, {self.devices} devices, {self.days} days: "
            f"{self.readings_distinct} readings ({kinds}) in {self.messages} messages "
            f"(+{self.event_messages} event messages), {self.bytes / 1e6:.1f} MB, "
            f"{self.elapsed_s:.2f} s, {self.rate:,.0f} readings/s"
            + (f", {self.rejected} REJECTED" if self.rejected else "")
        )


def _patients_map(layout: list[SimGateway]) -> dict[str, dict[str, list[dict[str, str]]]]:
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for gw in layout:
        per: dict[str, list[dict[str, str]]] = {p.patient_id: [] for p in gw.patients}
        for d in gw.devices:
            per[d.patient_id].append(
                {"device": d.device_id, "kind": str(d.kind), "profile": PROFILE_IDS[d.kind]}
            )
        out[gw.gateway_id] = per
    return out


def _report(
    mode: str, config: FleetConfig, layout: list[SimGateway], tally: _Tally, elapsed: float
) -> FleetReport:
    return FleetReport(
        mode=mode,
        gateways=config.gateways,
        devices=config.gateways * config.devices_per_gateway,
        days=config.days,
        start=config.first_day,
        readings_by_kind={k: len(v) for k, v in sorted(tally.ids.items())},
        readings_total=tally.readings,
        messages=tally.messages,
        event_messages=tally.event_messages,
        bytes=tally.bytes,
        elapsed_s=elapsed,
        rejected=tally.rejected,
        first_time=tally.first,
        last_time=tally.last,
        patients=_patients_map(layout),
    )


def _batch_payload(gateway: str, batch: list[Reading], batch_id: str | None = None) -> bytes:
    payload = encode(
        ReadingsBatch(
            schema=SCHEMA_READINGS if batch_id is None else SCHEMA_READINGS_V2,
            gateway=gateway,
            sent_at=datetime.now(UTC),
            readings=batch,
            batch=batch_id,
        )
    )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{len(payload)}-byte batch exceeds {MAX_PAYLOAD_BYTES}; lower batch_size")
    return payload


def _expected_readings(config: FleetConfig) -> int:
    per_day = {Kind.GLUCOSE: 4, Kind.BLOOD_PRESSURE: 4, Kind.CGM: 270}
    return (
        config.gateways
        * config.patients_per_gateway
        * config.days
        * sum(per_day[k] for k in config.kit)
    )


def generate_fleet(
    config: FleetConfig, out: Path | None = None, *, progress: bool = False
) -> FleetReport:
    """Generate and encode the whole fleet without a broker; optionally write the
    readings messages as JSON lines (``{"topic": ..., "payload": <batch>}``)."""
    config = config.resolved()
    layout = fleet_layout(config)
    tally = _Tally()
    began = _time.perf_counter()
    sink = out.open("wb") if out is not None else None
    try:
        with tqdm(
            total=_expected_readings(config), unit="rd", disable=not progress, smoothing=0.1
        ) as bar:
            for gw in layout:
                payload = encode(paired_events(config, gw))
                tally.event_messages += 1
                tally.bytes += len(payload)
                if sink is not None:
                    _write_line(sink, events_topic(gw.gateway_id), payload)
            for gid, batch in fleet_readings(config):
                payload = _batch_payload(gid, batch)
                tally.add_batch(batch, len(payload))
                if sink is not None:
                    _write_line(sink, readings_topic(gid), payload)
                bar.update(len(batch))
    finally:
        if sink is not None:
            sink.close()
    return _report("generate", config, layout, tally, _time.perf_counter() - began)


def _write_line(sink: Any, topic: str, payload: bytes) -> None:
    sink.write(b'{"topic":"' + topic.encode() + b'","payload":' + payload + b"}\n")


# --- publisher ------------------------------------------------------------------------


class FleetPublishError(RuntimeError):
    """The broker refused the connection, or PUBACKs did not arrive in time."""


class _RateLimiter:
    """Token bucket shared by the publishing threads (readings per second)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_at = _time.monotonic()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = _time.monotonic()
            self.next_at = max(self.next_at, now) + n / self.rate
            wait = self.next_at - n / self.rate - now
        if wait > 0:
            _time.sleep(wait)


class _GatewayClient:
    """One gateway's MQTT v5 connection with bounded in-flight QoS 1 publishes."""

    def __init__(
        self, client_id: str, address: MqttTarget, max_inflight: int, timeout: float
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.timeout = timeout
        self.connected = threading.Event()
        self.connect_error: str | None = None
        self.slots = threading.BoundedSemaphore(max_inflight)
        self.pending: set[int] = set()
        self.acked: set[int] = set()  # PUBACK before publish() returned the mid
        self.failures = 0
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        if address.username is not None:
            client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self.client = client
        client.connect(address.host, address.port, keepalive=60)
        client.loop_start()
        if not self.connected.wait(timeout):
            self.close()
            raise FleetPublishError(f"{client_id}: no CONNACK within {timeout} s")
        if self.connect_error is not None:
            self.close()
            raise FleetPublishError(f"{client_id}: connection refused: {self.connect_error}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.connect_error = str(reason)
        self.connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            if reason.is_failure:
                self.failures += 1
            if mid in self.pending:
                self.pending.discard(mid)
            else:
                self.acked.add(mid)
            self.idle.notify_all()
        self.slots.release()

    def publish(self, topic: str, payload: bytes) -> None:
        if not self.slots.acquire(timeout=self.timeout):
            raise FleetPublishError(f"no PUBACK slot freed within {self.timeout} s")
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != 0:
            self.slots.release()
            raise FleetPublishError(f"publish to {topic} failed: rc={info.rc}")
        with self.lock:
            if info.mid in self.acked:
                self.acked.discard(info.mid)
            else:
                self.pending.add(info.mid)

    def drain(self) -> int:
        """Wait until every publish has its PUBACK; returns the failure count."""
        deadline = _time.monotonic() + self.timeout
        with self.lock:
            while self.pending:
                left = deadline - _time.monotonic()
                if left <= 0:
                    raise FleetPublishError(f"{len(self.pending)} PUBACKs missing")
                self.idle.wait(left)
            return self.failures

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _ReceiptClient(_GatewayClient):
    """A gateway that trusts receipts, not PUBACKs: a slot is freed by ingest's receipt
    for the batch id; a batch without one is published again after ``resend_s``."""

    def __init__(
        self,
        gateway: str,
        client_id: str,
        address: MqttTarget,
        max_inflight: int,
        timeout: float,
        resend_s: float = 5.0,
    ) -> None:
        self.gateway = gateway
        self.resend_s = resend_s
        self.unconfirmed: dict[str, tuple[str, bytes, float]] = {}  # id -> topic, payload, due
        self.subscribed = threading.Event()
        self.progress_at = _time.monotonic()
        super().__init__(client_id, address, max_inflight, timeout)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.subscribe(receipts_topic(gateway), qos=1)
        if not self.subscribed.wait(timeout):
            self.close()
            raise FleetPublishError(f"{client_id}: no SUBACK for its receipts")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self.lock:
            if reason.is_failure:
                self.failures += 1

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            receipt = decode_receipt(bytes(msg.payload))
        except WireError:
            return
        with self.lock:
            for entry in receipt.batches:
                if self.unconfirmed.pop(entry.batch, None) is not None:
                    self.slots.release()
                    self.progress_at = _time.monotonic()
            self.idle.notify_all()

    def _resend_due(self) -> None:
        now = _time.monotonic()
        with self.lock:
            due = [(k, t, p) for k, (t, p, at) in self.unconfirmed.items() if at <= now]
            for k, t, p in due:
                self.unconfirmed[k] = (t, p, now + self.resend_s)
        for _, topic, payload in due:
            self.client.publish(topic, payload, qos=1)
        if _time.monotonic() - self.progress_at > self.timeout:
            raise FleetPublishError(f"no receipt for {self.timeout} s: is ingest running?")

    def publish_batch(self, topic: str, make: Callable[[str], bytes]) -> bytes:
        while not self.slots.acquire(timeout=0.5):
            self._resend_due()
        batch_id = uuid.uuid4().hex
        payload = make(batch_id)
        with self.lock:
            self.unconfirmed[batch_id] = (topic, payload, _time.monotonic() + self.resend_s)
        self.client.publish(topic, payload, qos=1)
        return payload

    def drain(self) -> int:
        with self.lock:
            self.progress_at = _time.monotonic()
        while True:
            with self.lock:
                if not self.unconfirmed:
                    return self.failures
                self.idle.wait(0.5)
            self._resend_due()


def publish_fleet(
    config: FleetConfig,
    mqtt_url: str,
    *,
    gateway_url: Callable[[str], str] | None = None,
    username: str | None = None,
    password: str | None = None,
    rate: float | None = None,
    max_inflight: int = 64,
    connections: int = 8,
    send_events: bool = True,
    client_id_prefix: str = "sim-",
    progress: bool = True,
    timeout: float = 60.0,
    receipts: bool = False,
    resend_s: float = 5.0,
) -> FleetReport:
    """Publish the fleet: each gateway on its own connection (client id
    ``<prefix><gateway>``), ``connections`` gateways at a time; paired events first, then
    its readings in time order.  ``rate`` caps the total readings/s (None: backfill as fast
    as possible).  ``gateway_url(gateway_id)`` gives per-gateway credentials (the
    broker's ACL lets a gateway publish only under its own topics); otherwise every gateway
    uses ``mqtt_url`` (with ``username``/``password`` overriding the URL's).  Returns once
    every message is acknowledged (``receipts``: confirmed by ingest's receipts, each
    batch re-sent after ``resend_s`` until then, like the real gateway)."""
    config = config.resolved()
    layout = fleet_layout(config)
    tally = _Tally()
    limiter = _RateLimiter(rate)
    queue = list(reversed(layout))
    queue_lock = threading.Lock()
    errors: list[BaseException] = []
    bar = tqdm(total=_expected_readings(config), unit="rd", disable=not progress, smoothing=0.1)

    def address_for(gid: str) -> MqttTarget:
        address = parse_mqtt_url(gateway_url(gid) if gateway_url else mqtt_url)
        if username is not None:
            address = replace(address, username=username, password=password)
        return address

    # Resolved up front, in this thread: provisioning credentials may not be thread-safe.
    addresses = {gw.gateway_id: address_for(gw.gateway_id) for gw in layout}

    def run_gateway(gw: SimGateway) -> None:
        gid = gw.gateway_id
        client: _GatewayClient
        if receipts:
            client = _ReceiptClient(
                gid, client_id_prefix + gid, addresses[gid], max_inflight, timeout, resend_s
            )
        else:
            client = _GatewayClient(client_id_prefix + gid, addresses[gid], max_inflight, timeout)

        def send(topic: str, make: Callable[[str | None], bytes]) -> bytes:
            if isinstance(client, _ReceiptClient):
                return client.publish_batch(topic, make)
            payload = make(None)
            client.publish(topic, payload)
            return payload

        try:
            if send_events:
                events = paired_events(config, gw)
                payload = send(
                    events_topic(gid),
                    lambda b: encode(
                        events
                        if b is None
                        else msgspec.structs.replace(events, schema=SCHEMA_EVENT_V2, batch=b)
                    ),
                )
                with tally.lock:
                    tally.event_messages += 1
                    tally.bytes += len(payload)
                client.drain()  # bindings first: the server must know the devices
            for batch in _gateway_batches(config, gw, config.first_day):
                limiter.take(len(batch))
                payload = send(readings_topic(gid), partial(_batch_payload, gid, batch))
                tally.add_batch(batch, len(payload))
                bar.update(len(batch))
            failures = client.drain()
            with tally.lock:
                tally.rejected += failures
        finally:
            client.close()

    def worker() -> None:
        while not errors:
            with queue_lock:
                if not queue:
                    return
                gw = queue.pop()
            try:
                run_gateway(gw)
            except BaseException as exc:  # reported to the caller below
                errors.append(exc)
                return

    began = _time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, connections))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    if errors:
        raise FleetPublishError(f"fleet publishing failed: {errors[0]}") from errors[0]
    return _report("publish", config, layout, tally, _time.perf_counter() - began)


__all__ = [
    "DEFAULT_KIT",
    "PROFILE_IDS",
    "FleetConfig",
    "FleetPublishError",
    "FleetReport",
    "SimDevice",
    "SimGateway",
    "fleet_layout",
    "fleet_readings",
    "gateway_id",
    "generate_fleet",
    "paired_events",
    "publish_fleet",
    "take",
]
