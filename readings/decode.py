"""Characteristic bytes -> ``readings.wire.Reading``.

Parsing is ``device_profiles``' job (spec-exact, one typed error on bad bytes, decoding
quirks applied by the profile); this module turns a ``Measurement`` into the wire reading: UTC time
(``readings.clock``), the device-reported time kept as text, canonical values, the
device's original values, named conditions and the deterministic reading id.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from struct import Struct
from zoneinfo import ZoneInfo

from device_profiles import uuids
from device_profiles.cgm import (
    CgmSessionStartTime,
    encode_cgm_session_start_time,
    parse_cgm_session_start_time,
)
from device_profiles.current_time import DST_MINUTES
from device_profiles.model import Condition, Kind, Measurement
from device_profiles.profiles import DeviceProfile
from readings.clock import device_time_text, device_time_to_utc, session_start_to_utc
from readings.identity import USUAL_RECORD_TYPE, RecordKey, RecordType, wire_record_type
from readings.wire import Original, Reading

Parser = Callable[[bytes], tuple[Measurement, ...]]

# A record dated this far after the device's own "now" is not a real measurement
# (e.g. the fake far-future HI record some meters add when their memory is full); the
# gateway drops it, and ``homevitals deadletters redecode`` does the same.
FUTURE_TOLERANCE = timedelta(days=1)

# Why a CGM record without E2E-CRC from a sensor that supports it is refused; also the
# reason ``homevitals deadletters redecode`` recognises such a record by.
E2E_CRC_MISSING = "E2E-CRC missing (the sensor supports it)"


def without_sequence(m: Measurement) -> Measurement:
    """A reversed-sequence meter's record: its number shifts as the meter stores more, so
    it is no identity; it is kept in the details as ``device_seq``."""
    return dataclasses.replace(m, sequence=None, details={**m.details, "device_seq": m.sequence})


_U16_AT = Struct("<H").unpack_from
# Glucose Measurement (GSS §3.104): flags u8, then the sequence number u16.
_GLUCOSE_SEQ_AT = 1
# CGM Measurement (CGMS §3.2.1): size u8, flags u8, glucose SFLOAT, then the time offset u16.
_CGM_OFFSET_AT = 4
_CGM_MIN_RECORD = 6


def parser_for(profile: DeviceProfile) -> Parser:
    """The profile's parser (quirks applied by ``DeviceProfile.parse_measurement``),
    always returning a tuple (one CGM notification can hold several records)."""

    def parse(data: bytes) -> tuple[Measurement, ...]:
        result = profile.parse_measurement(data)
        return result if isinstance(result, tuple) else (result,)

    return parse


@dataclass(frozen=True, slots=True)
class RecordNumber:
    """What identifies a record to the RACP, read from bytes the parser rejected."""

    seq: int | None = None  # Glucose Measurement sequence number
    time_offset: int | None = None  # CGM Measurement time offset (minutes)

    def __str__(self) -> str:
        if self.seq is not None:
            return f"seq {self.seq}"
        if self.time_offset is not None:
            return f"time offset {self.time_offset} min"
        return "number unreadable"


def readable_record_number(measurement_uuid: str, raw: bytes) -> RecordNumber:
    """The RACP number of a rejected record, when its fixed position holds one.

    A Glucose Measurement carries its sequence number at bytes 1-2 whatever its flags
    say; a CGM Measurement its time offset at bytes 4-5, trusted only when the
    notification is one size-framed record (several records in one notification, or a
    size byte that does not frame it, give no number).  Whether the number can move the
    cursor is the caller's decision (``gateway.sync.RecordBuffer``).
    """
    if measurement_uuid == uuids.GLUCOSE_MEASUREMENT and len(raw) >= _GLUCOSE_SEQ_AT + 2:
        return RecordNumber(seq=_U16_AT(raw, _GLUCOSE_SEQ_AT)[0])
    if (
        measurement_uuid == uuids.CGM_MEASUREMENT
        and len(raw) >= _CGM_MIN_RECORD
        and raw[0] == len(raw)
    ):
        return RecordNumber(time_offset=_U16_AT(raw, _CGM_OFFSET_AT)[0])
    return RecordNumber()


@dataclass(frozen=True, slots=True)
class TimeContext:
    """What converting device time needs: zone, measured skew, receive time."""

    zone: ZoneInfo
    skew_s: float | None
    received_at: datetime  # UTC; the reading time when the device gives none


@dataclass(frozen=True, slots=True)
class CgmSession:
    """One CGM sensor session: what a record's Time Offset counts from.

    ``start`` is the CGM Session Start Time (0x2AAA) as the sensor reports it: the
    local wall time of the collector that set it; ``start_utc`` applies its Time Zone
    and DST Offset (``readings.clock.session_start_to_utc``).  ``key`` (hex of the three
    fields, without CRC) is what the device cursor belongs to.
    """

    start: datetime
    start_utc: datetime
    key: str
    e2e_crc: bool = False

    @classmethod
    def from_start_time(
        cls, value: CgmSessionStartTime, zone: ZoneInfo, *, e2e_crc: bool = False
    ) -> CgmSession | None:
        """None when the sensor does not know its session start (date 0)."""
        if value.start is None:
            return None
        start_utc = session_start_to_utc(
            value.start,
            time_zone_minutes=value.time_zone_minutes,
            dst_minutes=DST_MINUTES.get(value.dst_offset),
            zone=zone,
        )
        key = encode_cgm_session_start_time(replace(value, e2e_crc=False)).hex()
        return cls(value.start, start_utc, key, e2e_crc)

    @classmethod
    def from_key(cls, key: str, zone: ZoneInfo, *, e2e_crc: bool = False) -> CgmSession | None:
        """The session a stored cursor belongs to (None if the key is unreadable)."""
        try:
            value = parse_cgm_session_start_time(bytes.fromhex(key))
        except ValueError:  # not hex, or MalformedPayloadError (a ValueError too)
            return None
        return cls.from_start_time(value, zone, e2e_crc=e2e_crc)

    def local_time(self, offset_minutes: int) -> datetime:
        return self.start + timedelta(minutes=offset_minutes)

    def utc_time(self, offset_minutes: int) -> datetime:
        # The offset is elapsed sensor time: added in UTC, so a DST change during the
        # session does not move records.
        return self.start_utc + timedelta(minutes=offset_minutes)


def _detail(value: object) -> int | float | str | bool | None:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def to_reading(
    device_id: str,
    m: Measurement,
    clock: TimeContext,
    session: CgmSession | None = None,
    *,
    position: int | None = None,
    received_at: datetime | None = None,
) -> Reading:
    """The wire reading of ``m``; CGM records need their ``session`` to be dated.

    ``position`` (1, 2, ... in the session's indication order) and ``received_at`` (when
    this record arrived, UTC) matter only for a record with neither device time nor
    record number: its identity is the session's receive time (``clock.received_at``)
    and its position, its time the moment it arrived (``RecordKey.received``)."""
    details = {key: _detail(value) for key, value in m.details.items()}
    if m.time_offset_minutes is not None:
        details["time_offset_min"] = m.time_offset_minutes
    values = {}
    original = {}
    for component, q in m.values.items():
        if q.value is not None:
            values[component] = q.value
        # Special values (NaN, NRes, ±INF) are never numbers: named in the details.
        if q.special is not None:
            details[f"special_{component.value}"] = q.special.value
        original[component] = Original(q.original_value, q.original_unit)
    record_type = _record_type(m)
    user = _user(m)
    if m.kind is Kind.CGM and session is not None and m.time_offset_minutes is not None:
        # Time = session start + offset, added in UTC; identity = the session and offset.
        details["cgm_session_start"] = device_time_text(session.start)
        key = RecordKey.cgm(device_id, session.start, m.time_offset_minutes)
        return Reading(
            id=key.reading_id,
            device=device_id,
            kind=m.kind,
            time=session.utc_time(m.time_offset_minutes),
            values=values,
            device_time=key.device_time,
            skew_s=clock.skew_s,
            conditions=sorted(m.conditions),
            original=original,
            details=details,
        )
    if m.device_time is not None:
        device_time: str | None = device_time_text(m.device_time)
        time = device_time_to_utc(
            m.device_time,
            zone=clock.zone,
            offset_minutes=m.time_offset_minutes,
            skew_s=clock.skew_s,
        )
        key = RecordKey(device_id, m.kind, record_type, device_time or "", m.sequence, user)
    else:
        device_time = None
        time = clock.received_at if received_at is None else received_at
        # No device time: with a sequence number the identity is still stable; without
        # one, the session's receive time and the record's place in it are all there is.
        if m.sequence is not None:
            key = RecordKey(device_id, m.kind, record_type, "", m.sequence, user)
        else:
            key = RecordKey.received(
                device_id, m.kind, clock.received_at, record_type, user, position
            )
            # What the id was made of, so it can be checked (and audited) downstream.
            details["gw_key"] = key.device_time
    return Reading(
        id=key.reading_id,
        device=device_id,
        kind=m.kind,
        time=time,
        values=values,
        device_time=device_time,
        seq=m.sequence,
        skew_s=clock.skew_s,
        conditions=sorted(m.conditions),
        original=original,
        details=details,
        record_type=wire_record_type(m.kind, record_type),
    )


def _record_type(m: Measurement) -> RecordType:
    """A control-solution test (GLS type 10 / location 4) is its own record type; every
    other device record is its kind's usual one."""
    if m.kind is Kind.GLUCOSE and Condition.CONTROL_SOLUTION in m.conditions:
        return RecordType.CONTROL
    return USUAL_RECORD_TYPE[m.kind]


def _user(m: Measurement) -> int | None:
    """The User ID of a multi-user device (BP, weight), None when absent or 0xFF."""
    user = m.details.get("user_id")
    return user if isinstance(user, int) and not isinstance(user, bool) else None
