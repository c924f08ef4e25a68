"""Ingest's check that a hub's reading id is the identity of the source record its own
fields name (red-team finding B2), against every producer of wire readings: the
gateway's ``to_reading`` (meter with and without device time or number, cuff and scale
users, control tests, CGM sessions), the fleet simulator's series, older gateways' ids;
and forgeries.  No database: ``refuse_forged_ids`` on a validated split."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
from test_reading_identity import bp_bytes, glucose_bytes, weight_lb_bytes

from device_profiles.blood_pressure import parse_blood_pressure_measurement
from device_profiles.cgm import CgmSessionStartTime, cgm_measurement
from device_profiles.current_time import DstOffset
from device_profiles.glucose import parse_glucose_measurement
from device_profiles.model import Component, Condition, Kind
from device_profiles.weight import parse_weight_measurement
from ingest.columns import FORGED_ID_REASON, Flat, Origin, refuse_forged_ids, validate
from readings import CgmSession, Reading, RecordKey, TimeContext, to_reading
from simulators.patients.series import CgmSeries

ZONE = ZoneInfo("Europe/Berlin")
RECEIVED = datetime(2026, 11, 20, 12, 0, 30, 123456, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
CLOCK = TimeContext(ZONE, -3.5, RECEIVED)


def refused(readings: list[Reading], gateway: str | None = "gw-check") -> list[int]:
    """Positions of the readings the id check refuses (after a round trip on the wire)."""
    wire = msgspec.json.decode(msgspec.json.encode(readings), type=list[Reading])
    flat = Flat()
    flat.add(Origin("t", gateway), wire)
    split = validate(flat, {r.device for r in wire}, NOW)
    assert not split.rejected, [r.reason for r in split.rejected]
    n = refuse_forged_ids(split)
    out = [r.index for r in split.rejected if r.reason == FORGED_ID_REASON]
    assert n == len(out)
    return [i for i in out if i is not None]


def gateway_readings() -> list[Reading]:
    local = datetime(2026, 11, 20, 9, 0)
    meter = parse_glucose_measurement(glucose_bytes(42, local, 105))
    no_time = dataclasses.replace(meter, device_time=None)
    nothing = dataclasses.replace(meter, device_time=None, sequence=None)
    control = dataclasses.replace(meter, conditions=meter.conditions | {Condition.CONTROL_SOLUTION})
    cuff = parse_blood_pressure_measurement(bp_bytes(local, 2, 120, 80))
    scale = parse_weight_measurement(weight_lb_bytes(local, 16535, 3))
    session = CgmSession.from_start_time(
        CgmSessionStartTime(datetime(2026, 11, 19, 8, 0), 60, DstOffset.STANDARD_TIME), ZONE
    )
    assert session is not None
    cgm = [cgm_measurement(time_offset_minutes=o, mg_dl=120) for o in (0, 5, 1440)]
    return [
        to_reading("AA:BB:CC:00:00:01", meter, CLOCK),
        to_reading("AA:BB:CC:00:00:01", no_time, CLOCK),
        to_reading("AA:BB:CC:00:00:01", nothing, CLOCK),
        to_reading("AA:BB:CC:00:00:01", control, CLOCK),
        to_reading("AA:BB:CC:00:00:02", cuff, CLOCK),
        to_reading("AA:BB:CC:00:00:03", scale, CLOCK),
        *(to_reading("AA:BB:CC:00:00:04", m, CLOCK, session) for m in cgm),
    ]


def test_every_reading_the_gateway_builds_passes() -> None:
    readings = gateway_readings()
    assert readings[3].record_type is not None  # the control test carries its type
    assert readings[4].details.get("user_id") == 2
    assert refused(readings) == []


def test_the_simulators_cgm_series_passes() -> None:
    start = datetime(2026, 11, 1)
    n = 300
    times = np.array([start + timedelta(minutes=5 * k) for k in range(n)], dtype="datetime64[s]")
    series = CgmSeries(
        time=times,
        device_time=times,
        session_start=np.full(n, times[0]),
        time_offset=np.arange(n, dtype=np.int64) * 5,
        glucose=np.full(n, 110.0),
        trend=np.zeros(n),
        flag=np.zeros(n, dtype=np.int8),
        true_glucose=np.full(n, 110.0),
    )
    assert refused(series.readings("sim-cgm")) == []


def test_ids_of_older_gateways_pass() -> None:
    """Before record type and user were part of the key (hv-id-1 without them)."""
    control, cuff = gateway_readings()[3:5]
    old = [
        msgspec.structs.replace(
            r, id=RecordKey(r.device, r.kind, None, r.device_time or "", r.seq).reading_id
        )
        for r in (control, cuff)
    ]
    assert [r.id for r in old] != [control.id, cuff.id]
    assert refused(old) == []


def test_forged_ids_are_refused_and_only_they() -> None:
    readings = gateway_readings()
    bobs = readings[0]
    # Another device's record id; another record of the same device; a changed field.
    other_device = msgspec.structs.replace(readings[4], id=bobs.id)
    other_record = msgspec.structs.replace(readings[1], id=readings[0].id)
    moved = msgspec.structs.replace(readings[0], device_time="2026-11-20T09:05:00")
    cgm_renumbered = msgspec.structs.replace(
        readings[6], details={**readings[6].details, "time_offset_min": 7}
    )
    batch = [*readings, other_device, other_record, moved, cgm_renumbered]
    n = len(readings)
    assert refused(batch) == [n, n + 1, n + 2, n + 3]


def test_uppercase_ids_are_the_same_ids() -> None:
    readings = gateway_readings()
    assert refused([msgspec.structs.replace(r, id=r.id.upper()) for r in readings]) == []


def test_readings_not_from_a_hub_are_not_checked() -> None:
    """Bulk import builds its readings itself (``#n`` ordinals in the key, not on the wire)."""
    reading = gateway_readings()[0]
    assert refused([msgspec.structs.replace(reading, id=gateway_readings()[4].id)], None) == []


def test_the_check_agrees_with_the_recipe_for_every_component_kind() -> None:
    for kind, values in (
        (Kind.SPO2, {Component.SPO2: 97.0}),
        (Kind.TEMPERATURE, {Component.TEMPERATURE: 36.8}),
    ):
        local = "2026-11-20T09:00:00"
        r = Reading(
            id=RecordKey("dev-x", kind, None, local, None).reading_id,
            device="dev-x",
            kind=kind,
            time=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
            values=values,
            device_time=local,
        )
        assert refused([r]) == []
