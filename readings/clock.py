"""Device time -> UTC.

A health device keeps a naive local wall clock (Glucose/BP base time, Current Time
0x2A2B); it knows no time zone and its clock is often wrong.  The gateway:

1. measures the skew when it connects: the device's current time, read as a wall
   clock in the gateway's zone, minus the gateway's own UTC clock
   (``skew_s > 0``: the device is ahead);
   kept stable between sessions (``stable_skew``) so a record fetched twice gets the
   same UTC time;
2. converts each record: base time + the record's time offset (if any), read as a
   wall clock in the gateway's zone, minus the skew.

The record keeps the device-reported text too (``Reading.device_time``), so a later
better skew estimate can re-derive the UTC time and the reading identity never changes.

DST policy (documented in docs/gateway.md): a wall time is read with ``fold=0``.
- Ambiguous times (the repeated hour when clocks go back) are taken as the first
  occurrence (the summer-time offset).
- Nonexistent times (the skipped hour when clocks go forward) are read with the
  offset in force before the jump, so 02:30 on a New York spring-forward day becomes
  07:30Z (= 03:30 EDT).  A device that does not follow DST has a skew of about an hour
  for half the year; the measured skew absorbs it for records made near the sync.

Devices without a clock service: the skew is unknown (``None``), device time is
trusted as a wall clock in the gateway's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# A skew smaller than this is clock granularity and transport delay, not an error.
NEGLIGIBLE_SKEW_S = 2.0
# A new measurement within this of the device's previous skew keeps the previous one.
SKEW_TOLERANCE_S = 1.0


def localize(wall: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall time in ``zone`` as an aware datetime (fold=0 policy, see module doc)."""
    if wall.tzinfo is not None:
        return wall
    return wall.replace(tzinfo=zone, fold=0)


def wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    return localize(wall, zone).astimezone(UTC)


def measure_skew(device_now: datetime, gateway_now: datetime, zone: ZoneInfo) -> float:
    """Device clock minus gateway clock, in seconds (``device_now`` is naive local)."""
    return (wall_to_utc(device_now, zone) - gateway_now.astimezone(UTC)).total_seconds()


def stable_skew(measured: float, previous: float | None) -> float:
    """The skew to use for this session: whole seconds (0 when negligible), and the
    previous value while the new measurement stays within ``SKEW_TOLERANCE_S`` of it
    (the jitter of one measurement: whole-second device clocks and transport delay), so a
    record fetched again gets the same UTC time.

    Identity no longer depends on time (``readings.identity``: ingest keeps one row per
    reading id), so any real clock change is applied at once: a 20 s correction of the
    device clock moves the next readings by 20 s, not "kept within 30 s" as before.
    """
    rounded = float(round(measured))
    if abs(rounded) <= NEGLIGIBLE_SKEW_S:
        rounded = 0.0  # whole-second device clocks read up to 1 s "behind"
    if previous is not None and abs(rounded - previous) <= SKEW_TOLERANCE_S:
        return previous
    return rounded


def device_time_to_utc(
    device_time: datetime,
    *,
    zone: ZoneInfo,
    offset_minutes: int | None = None,
    skew_s: float | None = None,
) -> datetime:
    """UTC time of a record: (base time + offset) in ``zone``, corrected by the skew."""
    wall = device_time + timedelta(minutes=offset_minutes or 0)
    utc = wall_to_utc(wall, zone)
    if skew_s is not None:
        utc -= timedelta(seconds=skew_s)
    return utc


def device_time_text(device_time: datetime) -> str:
    """The device-reported time as stored and hashed into the reading id."""
    return device_time.replace(tzinfo=None).isoformat()


def gateway_wall_now(zone: ZoneInfo, now: datetime | None = None) -> datetime:
    """The gateway's wall clock in ``zone`` (naive), e.g. to set a device clock."""
    current = now or datetime.now(UTC)
    return current.astimezone(zone).replace(tzinfo=None)


def session_start_to_utc(
    start: datetime,
    *,
    time_zone_minutes: int | None,
    dst_minutes: int | None,
    zone: ZoneInfo,
) -> datetime:
    """UTC of a CGM Session Start Time (CGMS §3.4; GSS Time Zone / DST Offset).

    The sensor reports the start as the local wall time of the collector that set it,
    with that collector's Time Zone (offset of its *standard* time from UTC) and DST
    Offset: UTC = wall − (time zone + DST).  When either field is unknown the wall
    time is read in the gateway's zone (the ``fold=0`` policy above).
    """
    if time_zone_minutes is None or dst_minutes is None:
        return wall_to_utc(start, zone)
    offset = timedelta(minutes=time_zone_minutes + dst_minutes)
    return (start - offset).replace(tzinfo=UTC)
