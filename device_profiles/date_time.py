"""Date Time (GSS §3.70, characteristic 0x2A08): the 7-byte date-time used by many
health characteristics (Glucose Measurement base time, Blood Pressure time stamp,
Weight, PLX, Thermometer, CGM Session Start Time, Current Time).

Layout (little-endian): year u16 (1582..9999, 0 = unknown), month u8 (1..12, 0 =
unknown), day u8 (1..31, 0 = unknown), hours u8 (0..23), minutes u8 (0..59), seconds u8
(0..59).  The value is device-local time with no zone, so it decodes to a *naive*
``datetime``.

Decisions:

* If year, month or day is 0 ("unknown" per the GSS) the date-time decodes to ``None``
  (a measurement with an unknown date keeps its value; ``device_time`` is None and the
  ingest side falls back to the gateway's receive time).  ``encode_date_time(None)``
  writes all zeros.
* Any other out-of-range component (month 13, day 32, hour 24, 30 February) raises
  :class:`InvalidDateTimeError`, a :class:`MalformedPayloadError` subclass naming the
  field and value.
* Month 13 is a known vendor clock bug (DOMAIN.md: "one family reports month 13"):
  its clock forgets to carry December+1 into the year.  Passing
  ``month13_rollover=True`` (done by profiles with ``Quirk.MONTH_13_CLOCK``) reads
  month 13 as January of the following year.  The standard parser never does this.
"""

from __future__ import annotations

from datetime import datetime
from struct import Struct

from device_profiles._wire import need
from device_profiles.errors import InvalidDateTimeError, UnrepresentableValueError

__all__ = [
    "DATE_TIME",
    "DATE_TIME_SIZE",
    "encode_date_time",
    "parse_date_time",
    "parse_optional_date_time",
]

DATE_TIME = Struct("<HBBBBB")
DATE_TIME_SIZE = DATE_TIME.size  # 7
_ZERO = bytes(DATE_TIME_SIZE)


def parse_date_time(
    data: bytes,
    offset: int = 0,
    *,
    characteristic: str = "Date Time",
    field: str = "date_time",
    month13_rollover: bool = False,
) -> datetime | None:
    """Decode 7 bytes at ``offset``; None when the device says the date is unknown."""
    need(characteristic, data, offset, DATE_TIME_SIZE, field)
    year, month, day, hours, minutes, seconds = DATE_TIME.unpack_from(data, offset)
    if year == 0 or month == 0 or day == 0:
        return None
    for name, value, limit in zip(
        ("hours", "minutes", "seconds"), (hours, minutes, seconds), (23, 59, 59), strict=True
    ):
        if value > limit:
            raise InvalidDateTimeError(
                characteristic,
                data,
                f"{field}: {name} {value} out of range 0..{limit}",
                field=name,
                value=value,
            )
    if not 1582 <= year <= 9999:
        raise InvalidDateTimeError(
            characteristic,
            data,
            f"{field}: year {year} out of range 1582..9999",
            field="year",
            value=year,
        )
    if month == 13 and month13_rollover and year < 9999:
        year, month = year + 1, 1
    if month > 12:
        raise InvalidDateTimeError(
            characteristic,
            data,
            f"{field}: month {month} out of range 1..12",
            field="month",
            value=month,
        )
    try:
        return datetime(year, month, day, hours, minutes, seconds)
    except ValueError:
        raise InvalidDateTimeError(
            characteristic,
            data,
            f"{field}: day {day} does not exist in {year}-{month:02d}",
            field="day",
            value=day,
        ) from None


def parse_optional_date_time(
    data: bytes, offset: int, present: int, *, characteristic: str, field: str
) -> tuple[datetime | None, int]:
    """An optional 7-byte time stamp that a flag bit announces (Blood Pressure, Weight,
    PLX and Temperature Measurement): ``(date-time, offset after it)`` when ``present``
    is non-zero, else ``(None, offset)``."""
    if not present:
        return None, offset
    value = parse_date_time(data, offset, characteristic=characteristic, field=field)
    return value, offset + DATE_TIME_SIZE


def encode_date_time(value: datetime | None) -> bytes:
    """7 bytes for a naive device-local datetime; all zeros for "unknown"."""
    if value is None:
        return _ZERO
    if value.tzinfo is not None:
        raise UnrepresentableValueError(
            f"Date Time carries device-local time without a zone, got aware {value.isoformat()}"
        )
    if value.year < 1582:
        raise UnrepresentableValueError(f"Date Time year {value.year} before 1582")
    if value.microsecond:
        raise UnrepresentableValueError(f"Date Time has whole seconds only: {value.isoformat()}")
    return DATE_TIME.pack(
        value.year, value.month, value.day, value.hour, value.minute, value.second
    )
