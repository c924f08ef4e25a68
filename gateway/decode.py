"""Characteristic bytes -> ``ingest.wire.Reading``.

Parsing is ``device_profiles``' job (spec-exact, one typed error on bad bytes, decoding
quirks applied by the profile); this module turns a ``Measurement`` into the wire reading: UTC time
(``gateway.clock``), the device-reported time kept as text, canonical values, the
device's original values, named conditions and the deterministic reading id.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from device_profiles.model import Measurement
from device_profiles.profiles import DeviceProfile
from gateway.clock import device_time_text, device_time_to_utc
from ingest.wire import Original, Reading, reading_id

Parser = Callable[[bytes], tuple[Measurement, ...]]


def parser_for(profile: DeviceProfile) -> Parser:
    """The profile's parser (quirks applied by ``DeviceProfile.parse_measurement``),
    always returning a tuple (one CGM notification can hold several records)."""

    def parse(data: bytes) -> tuple[Measurement, ...]:
        result = profile.parse_measurement(data)
        return result if isinstance(result, tuple) else (result,)

    return parse


@dataclass(frozen=True, slots=True)
class TimeContext:
    """What converting device time needs: zone, measured skew, receive time."""

    zone: ZoneInfo
    skew_s: float | None
    received_at: datetime  # UTC; the reading time when the device gives none


def _detail(value: object) -> int | float | str | bool | None:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def to_reading(device_id: str, m: Measurement, clock: TimeContext) -> Reading:
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
    if m.device_time is not None:
        device_time: str | None = device_time_text(m.device_time)
        time = device_time_to_utc(
            m.device_time,
            zone=clock.zone,
            offset_minutes=m.time_offset_minutes,
            skew_s=clock.skew_s,
        )
        identity_time = device_time or ""
    else:
        device_time = None
        time = clock.received_at
        # No device time: with a sequence number the identity is still stable;
        # without one, the receive time is all there is.
        identity_time = "" if m.sequence is not None else f"gw:{time.isoformat()}"
    return Reading(
        id=reading_id(device_id, m.kind, identity_time, m.sequence),
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
    )
