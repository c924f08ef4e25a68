"""Current Time Service (0x1805): Current Time (0x2A2B) and Local Time Information
(0x2A0F).

References: Current Time Service v1.1 §3.1-3.2; GSS §3.62 Current Time (Exact Time 256
= Day Date Time + Fractions256, then Adjust Reason), §3.137 Local Time Information
(Time Zone sint8 in 15-minute units, -128 unknown; DST Offset uint8 code).

Layouts are fixed-size: trailing bytes are rejected.  Day of week 0 means unknown and
decodes to None; 8..255 are reserved (error).  Adjust-reason bits 4-7 are RFU and
ignored.  A date with year/month/day 0 decodes to ``time=None`` (see
:mod:`device_profiles.date_time`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from device_profiles._wire import S8, U8, bad, check_end, flags_to_set, need, set_to_flags
from device_profiles.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time
from device_profiles.errors import UnrepresentableValueError

__all__ = [
    "AdjustReason",
    "CurrentTime",
    "DstOffset",
    "LocalTimeInformation",
    "current_time_now",
    "encode_current_time",
    "encode_local_time_information",
    "parse_current_time",
    "parse_local_time_information",
]

CURRENT_TIME = "Current Time (0x2A2B)"
LOCAL_TIME = "Local Time Information (0x2A0F)"
CURRENT_TIME_SIZE = DATE_TIME_SIZE + 3  # 10


class AdjustReason(enum.StrEnum):
    MANUAL_TIME_UPDATE = "manual_time_update"
    EXTERNAL_REFERENCE_TIME_UPDATE = "external_reference_time_update"
    CHANGE_OF_TIME_ZONE = "change_of_time_zone"
    CHANGE_OF_DST = "change_of_dst"


_ADJUST_BITS = tuple((1 << i, r) for i, r in enumerate(AdjustReason))


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """The device clock: naive device-local time, ISO weekday (1 Monday..7 Sunday)."""

    time: datetime | None
    day_of_week: int | None = None  # None = unknown (0 on the wire)
    fractions256: int = 0  # 1/256 s
    adjust_reasons: frozenset[AdjustReason] = frozenset()


def parse_current_time(data: bytes) -> CurrentTime:
    """Decode Current Time (GSS §3.62): Date Time (7), day of week, fractions256, adjust reason."""
    need(CURRENT_TIME, data, 0, CURRENT_TIME_SIZE, "current_time")
    check_end(CURRENT_TIME, data, CURRENT_TIME_SIZE)
    time = parse_date_time(data, 0, characteristic=CURRENT_TIME, field="date_time")
    dow, fractions, reasons = data[7], data[8], data[9]
    if dow > 7:
        raise bad(CURRENT_TIME, data, f"reserved day of week {dow}")
    return CurrentTime(
        time=time,
        day_of_week=dow or None,
        fractions256=fractions,
        adjust_reasons=flags_to_set(reasons, _ADJUST_BITS),
    )


def encode_current_time(value: CurrentTime) -> bytes:
    dow = value.day_of_week or 0
    if not 0 <= dow <= 7 or not 0 <= value.fractions256 <= 255:
        raise UnrepresentableValueError(f"{CURRENT_TIME}: day of week / fractions out of range")
    return (
        encode_date_time(value.time)
        + bytes((dow, value.fractions256))
        + U8.pack(set_to_flags(value.adjust_reasons, _ADJUST_BITS))
    )


def current_time_now(now: datetime) -> CurrentTime:
    """What a collector writes to set a device clock to ``now`` (naive local)."""
    return CurrentTime(
        time=now.replace(microsecond=0),
        day_of_week=now.isoweekday(),
        fractions256=now.microsecond * 256 // 1_000_000,
        adjust_reasons=frozenset({AdjustReason.MANUAL_TIME_UPDATE}),
    )


class DstOffset(enum.StrEnum):
    STANDARD_TIME = "standard_time"  # 0
    HALF_AN_HOUR_DAYLIGHT_TIME = "half_an_hour_daylight_time"  # 2
    DAYLIGHT_TIME = "daylight_time"  # 4
    DOUBLE_DAYLIGHT_TIME = "double_daylight_time"  # 8
    UNKNOWN = "unknown"  # 255


DST_CODES = {
    0: DstOffset.STANDARD_TIME,
    2: DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME,
    4: DstOffset.DAYLIGHT_TIME,
    8: DstOffset.DOUBLE_DAYLIGHT_TIME,
    255: DstOffset.UNKNOWN,
}
DST_MINUTES = {
    DstOffset.STANDARD_TIME: 0,
    DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME: 30,
    DstOffset.DAYLIGHT_TIME: 60,
    DstOffset.DOUBLE_DAYLIGHT_TIME: 120,
}
_DST_CODE = {v: k for k, v in DST_CODES.items()}
TIME_ZONE_UNKNOWN = -128


@dataclass(frozen=True, slots=True)
class LocalTimeInformation:
    """Time zone offset from UTC in minutes (None unknown) and the DST offset."""

    time_zone_minutes: int | None
    dst_offset: DstOffset


def parse_time_zone(name: str, data: bytes, offset: int) -> int | None:
    # GSS §3.229 Time Zone: sint8, 15-minute steps, -48..56, -128 unknown.
    need(name, data, offset, 1, "time_zone")
    tz: int = S8.unpack_from(data, offset)[0]
    if tz == TIME_ZONE_UNKNOWN:
        return None
    if not -48 <= tz <= 56:
        raise bad(name, data, f"time zone {tz} outside -48..56 (15-minute units)")
    return tz * 15


def parse_dst_offset(name: str, data: bytes, offset: int) -> DstOffset:
    # GSS §3.71 DST Offset: uint8 code 0/2/4/8, 255 unknown.
    need(name, data, offset, 1, "dst_offset")
    dst = DST_CODES.get(data[offset])
    if dst is None:
        raise bad(name, data, f"reserved DST offset {data[offset]}")
    return dst


def encode_time_zone(minutes: int | None) -> bytes:
    if minutes is None:
        return S8.pack(TIME_ZONE_UNKNOWN)
    if minutes % 15 or not -48 <= minutes // 15 <= 56:
        raise UnrepresentableValueError(
            f"time zone {minutes} min is not 15-min steps in -12h..+14h"
        )
    return S8.pack(minutes // 15)


def encode_dst_offset(dst: DstOffset) -> bytes:
    return U8.pack(_DST_CODE[dst])


def parse_local_time_information(data: bytes) -> LocalTimeInformation:
    """Decode Local Time Information (GSS §3.137): time zone sint8, DST offset uint8."""
    tz = parse_time_zone(LOCAL_TIME, data, 0)
    dst = parse_dst_offset(LOCAL_TIME, data, 1)
    check_end(LOCAL_TIME, data, 2)
    return LocalTimeInformation(tz, dst)


def encode_local_time_information(value: LocalTimeInformation) -> bytes:
    return encode_time_zone(value.time_zone_minutes) + encode_dst_offset(value.dst_offset)
