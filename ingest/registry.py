"""Devices, gateways and device->patient bindings: the ingest side of pairing.

Readings are attributed to the patient whose binding covers the measurement time.  A
device's first binding starts at -infinity (its stored history is the new owner's);
re-assigning a device ends the old binding at that moment.  Readings that arrived
before any binding existed keep ``patient_id`` NULL until :func:`attribute_pending`.
A device its hub released (unpair) and paired again on that same hub for the same
patient gets its binding back, gap included (:func:`_resume_binding`).

Which hub may pair, unpair or send readings for a device is decided in one place,
:mod:`ingest.custody`; :func:`apply_event` hands it the pairing events.

A device record the gateway could not parse (``DeviceRecordMalformed``) is not a device
fact but a record to keep: :func:`malformed_record_reason` names it for the dead
letters (the pipeline parks it there).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from device_profiles.uuids import InvalidUuidError, short_uuid
from ingest import custody
from readings import (
    DeviceInventory,
    DevicePaired,
    DeviceRecordMalformed,
    DeviceSynced,
    DeviceUnpaired,
    Event,
    GatewayStatus,
    Reading,
)

READING_TABLES = ("glucose", "blood_pressure", "body_readings")
# Dead letters of device records the gateway could not parse start with this: re-running
# them through ingest cannot help (``ingest.deadletters.reprocess`` leaves them open);
# a parser fix can decode the raw bytes the payload keeps.
MALFORMED_RECORD_PREFIX = "device record malformed"


@dataclass(frozen=True, slots=True)
class Binding:
    lower: float  # epoch seconds, -inf for open
    upper: float
    patient_id: int


class BindingCache:
    """Known devices and their bindings, refreshed from the database when stale."""

    def __init__(self, max_age_s: float = 5.0) -> None:
        self.max_age_s = max_age_s
        self._loaded_at = -1.0
        self.devices: set[str] = set()
        # device -> the hub holding it (None: no hub); ``ingest.custody`` checks readings.
        self.custodians: dict[str, str | None] = {}
        # hub -> its patient (None: not attached); ``ingest.custody`` keeps each hub's
        # readings in its own patient's chart.
        self.hub_patients: dict[str, int | None] = {}
        self._bindings: dict[str, list[Binding]] = {}
        # Devices with one open-ended binding (nearly all): no interval search per reading.
        self._always: dict[str, int] = {}

    def add_known(self, conn: psycopg.Connection[tuple[object, ...]], devices: set[str]) -> None:
        """Look up just these devices (and their bindings) instead of a full reload."""
        found = conn.execute(
            "SELECT id, gateway_id FROM devices WHERE id = ANY(%s)", (list(devices),)
        ).fetchall()
        if found:
            self.devices.update(str(row[0]) for row in found)
            self.custodians.update({str(d): None if g is None else str(g) for d, g in found})
            self.invalidate()  # their bindings may be new too: reload on the next batch

    def age_s(self) -> float:
        return time.monotonic() - self._loaded_at

    def invalidate(self) -> None:
        self._loaded_at = -1.0

    def refresh(self, conn: psycopg.Connection[tuple[object, ...]], force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < self.max_age_s:
            return
        self.custodians = {
            str(d): None if g is None else str(g)
            for d, g in conn.execute("SELECT id, gateway_id FROM devices")
        }
        self.devices = set(self.custodians)
        self.hub_patients = _hub_patients(conn, None)
        bindings = _bindings(conn, None)
        self._bindings = bindings
        self._always = {
            device: spans[0].patient_id
            for device, spans in bindings.items()
            if len(spans) == 1 and spans[0].lower == -math.inf and spans[0].upper == math.inf
        }
        self._loaded_at = time.monotonic()

    def bindings_of(self, device: str) -> list[Binding]:
        return self._bindings.get(device, [])

    def stale_for(
        self, conn: psycopg.Connection[tuple[object, ...]], devices: list[str], hubs: list[str]
    ) -> bool:
        """Whether the database (in this transaction) differs from the cache on these
        devices' bindings or these hubs' patients: a suspected refusal is confirmed
        before it is made."""
        current = _bindings(conn, devices)
        if any(current.get(d, []) != self._bindings.get(d, []) for d in devices):
            return True
        patients = _hub_patients(conn, hubs)
        return any(patients.get(h) != self.hub_patients.get(h) for h in hubs)

    def patient_at(self, device: str, when: datetime) -> int | None:
        spans = self._bindings.get(device)
        if not spans:
            return None
        t = when.timestamp()
        i = bisect.bisect_right(spans, t, key=lambda b: b.lower) - 1
        if i >= 0 and spans[i].lower <= t < spans[i].upper:
            return spans[i].patient_id
        return None

    def patients_for(self, readings: Sequence[Reading]) -> list[int | None]:
        """The patient of each reading (the interval search only for re-bound devices)."""
        always = self._always
        out: list[int | None] = []
        for r in readings:
            patient = always.get(r.device, -1)
            out.append(self.patient_at(r.device, r.time) if patient == -1 else patient)
        return out


def _bindings(
    conn: psycopg.Connection[tuple[object, ...]], devices: list[str] | None
) -> dict[str, list[Binding]]:
    """Bindings per device, in time order (all devices', or these devices')."""
    where = "" if devices is None else " WHERE device_id = ANY(%s)"
    rows = conn.execute(
        "SELECT device_id, patient_id,"
        " coalesce(extract(epoch FROM lower(valid)), '-Infinity')::float8,"
        " coalesce(extract(epoch FROM upper(valid)), 'Infinity')::float8"
        f" FROM device_bindings{where} ORDER BY device_id, lower(valid) NULLS FIRST".encode(),
        () if devices is None else (devices,),
    )
    bindings: dict[str, list[Binding]] = {}
    for device, patient, lower, upper in rows:
        bindings.setdefault(str(device), []).append(
            Binding(float(str(lower)), float(str(upper)), int(str(patient)))
        )
    return bindings


def _hub_patients(
    conn: psycopg.Connection[tuple[object, ...]], hubs: list[str] | None
) -> dict[str, int | None]:
    """Each hub's patient (None: not attached to one); hubs unknown are left out."""
    where = "" if hubs is None else " WHERE id = ANY(%s)"
    rows = conn.execute(
        f"SELECT id, patient_id FROM gateways{where}".encode(), () if hubs is None else (hubs,)
    )
    return {str(g): None if p is None else int(str(p)) for g, p in rows}


def apply_event(
    conn: psycopg.Connection[tuple[object, ...]], gateway: str, event: Event
) -> list[str]:
    """Record a gateway's device event; returns device ids whose binding changed."""
    if isinstance(event, DevicePaired | DeviceInventory):
        return custody.apply_pairing(conn, gateway, event)
    if isinstance(event, DeviceUnpaired):
        return custody.apply_unpair(conn, gateway, event)
    if isinstance(event, DeviceSynced):
        conn.execute(
            "UPDATE devices SET last_sync = greatest(last_sync, %s),"
            " battery_percent = coalesce(%s, battery_percent),"
            " clock_skew_s = coalesce(%s, clock_skew_s), last_error = %s"
            " WHERE id = %s AND gateway_id = %s",  # only its custodian reports on it
            (event.at, event.battery_percent, event.skew_s, event.error, event.device, gateway),
        )
    return []


def malformed_record_reason(event: DeviceRecordMalformed) -> str:
    """``device record malformed (2A18, seq 42): <the parser's reason>``."""
    try:
        short = short_uuid(event.characteristic)
    except InvalidUuidError:  # the wire pattern admits only UUIDs; be safe anyway
        short = None
    where = [event.characteristic if short is None else f"{short:04X}"]
    if event.seq is not None:
        where.append(f"seq {event.seq}")
    if event.time_offset_min is not None:
        where.append(f"time offset {event.time_offset_min} min")
    # PostgreSQL text cannot hold NUL; the reason is the gateway's (untrusted) text.
    reason = event.reason.replace("\x00", "\\x00")
    return f"{MALFORMED_RECORD_PREFIX} ({', '.join(where)}): {reason}"


def already_dead_lettered(
    conn: psycopg.Connection[tuple[object, ...]], device: str, reason: str, payload: bytes
) -> bool:
    """An open dead letter with this very payload exists (a QoS 1 redelivery, or the
    gateway re-publishing after a restart): keep one."""
    return (
        conn.execute(
            "SELECT 1 FROM dead_letters WHERE device_id = %s AND reprocessed_at IS NULL"
            " AND reason = %s AND payload = %s LIMIT 1",
            (device, reason, payload),
        ).fetchone()
        is not None
    )


def bind_device(
    conn: psycopg.Connection[tuple[object, ...]], device: str, patient_id: int, at: datetime
) -> None:
    """Bind ``device`` to ``patient_id`` from ``at`` (from -infinity for a first binding),
    ending another patient's open binding."""
    current = conn.execute(
        "SELECT id, patient_id FROM device_bindings WHERE device_id = %s AND upper_inf(valid)"
        " FOR UPDATE",
        (device,),
    ).fetchone()
    if current is not None and current[1] == patient_id:
        return
    if current is None and _resume_binding(conn, device, patient_id, at):
        return
    if current is not None:
        conn.execute(
            "UPDATE device_bindings SET valid = tstzrange(lower(valid), %s) WHERE id = %s",
            (at, current[0]),
        )
    had_any = conn.execute(
        "SELECT 1 FROM device_bindings WHERE device_id = %s LIMIT 1", (device,)
    ).fetchone()
    conn.execute(
        "INSERT INTO device_bindings (device_id, patient_id, valid)"
        " VALUES (%s, %s, tstzrange(%s, NULL))",
        (device, patient_id, at if had_any else None),
    )


def _resume_binding(
    conn: psycopg.Connection[tuple[object, ...]], device: str, patient_id: int, at: datetime
) -> bool:
    """Re-open the device's last binding when the device comes back to the same patient
    through the same hub that released it (unpair, measure, re-pair on that hub: red team
    A5).  The readings measured in between belong to that patient; a new binding from
    ``at`` left them unattributed.  Not when anything else held the device in between
    (the last binding is another patient's, or another hub took and released it) or
    when the hub holding it now is not the one that released it.  True if re-opened."""
    last = conn.execute(
        "SELECT b.id, b.patient_id, upper(b.valid), d.gateway_id, d.former_gateway_id"
        " FROM device_bindings b JOIN devices d ON d.id = b.device_id"
        " WHERE b.device_id = %s ORDER BY upper(b.valid) DESC LIMIT 1 FOR UPDATE OF b",
        (device,),
    ).fetchone()
    if last is None:
        return False
    binding, patient, ended, hub, released_by = last
    if patient != patient_id or hub is None or hub != released_by:
        return False
    if not isinstance(ended, datetime) or ended > at:
        return False
    conn.execute(
        "UPDATE device_bindings SET valid = tstzrange(lower(valid), NULL) WHERE id = %s",
        (binding,),
    )
    custody.record(
        conn,
        device,
        "binding.resumed",
        at,
        gateway=str(hub),
        detail={"patient": patient_id, "released_at": ended},
    )
    return True


def attribute_pending(
    conn: psycopg.Connection[tuple[object, ...]], devices: list[str] | None = None
) -> int:
    """Give unattributed readings the patient whose binding covers them."""
    total = 0
    for table in READING_TABLES:
        query = (
            f"UPDATE {table} r SET patient_id = b.patient_id FROM device_bindings b"
            " WHERE r.patient_id IS NULL AND b.device_id = r.device_id AND b.valid @> r.time"
        )
        params: tuple[object, ...] = ()
        if devices is not None:
            query += " AND r.device_id = ANY(%s)"
            params = (devices,)
        cur = conn.execute(query.encode(), params)
        total += cur.rowcount
    return total


def apply_status(
    conn: psycopg.Connection[tuple[object, ...]], gateway: str, status: GatewayStatus
) -> None:
    conn.execute(
        "INSERT INTO gateways (id, last_seen, state, outbox_depth, version)"
        " VALUES (%s, coalesce(%s, now()), %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen, state = EXCLUDED.state,"
        " outbox_depth = coalesce(EXCLUDED.outbox_depth, gateways.outbox_depth),"
        " version = coalesce(EXCLUDED.version, gateways.version)",
        (gateway, status.at, status.state, status.outbox_depth, status.version),
    )
