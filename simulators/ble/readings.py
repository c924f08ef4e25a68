"""Readings a simulated device holds in memory, and their JSON-lines file format.

One JSON object per line; blank lines and lines starting with ``#`` are ignored::

    {"device_time": "2026-11-20T07:30:00", "mg_dl": 112, "sequence": 1}
    {"device_time": "2026-11-20T12:05:00", "mmol_l": 9.4, "conditions": ["battery_low"]}
    {"device_time": "2026-11-20T07:31:00", "systolic": 131, "diastolic": 84, "pulse": 71}

Glucose: ``mg_dl`` or ``mmol_l`` (or neither, for a status-only record), optional
``sequence`` (the meter numbers records without one), ``sample_type`` /
``sample_location`` (``device_profiles.glucose`` names), ``time_offset_minutes``.
CGM (``"kind": "cgm"``, always explicit): ``mg_dl`` and either ``device_time`` (the
sensor's local time; the offset from its session start is derived) or
``time_offset_minutes``; optional ``trend_mg_dl_min`` ((mg/dL)/min) and ``quality_pct``
(%), the CGM Measurement's trend and quality fields.
Blood pressure: ``systolic``, ``diastolic`` (mmHg), optional ``mean_arterial``,
``pulse``, ``user_id``.
Weight (``"kind": "weight"``, or inferred from its keys): ``weight_kg`` (SI scale) or
``weight_lb`` (imperial scale), optional ``bmi`` (kg/m²) with ``height_m`` / ``height_in``
in the same unit system, ``user_id``; neither weight key with the condition
``measurement_unsuccessful`` is the scale's 0xFFFF record.
SpO2 (``"kind": "spo2"``, or inferred from ``spo2``): ``spo2`` (%), ``pulse``
(beats/min), optional ``pulse_amplitude_index`` (%).
All: ``device_time`` is the device's own local clock reading
(ISO, no zone), ``conditions`` are :class:`device_profiles.model.Condition` values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from device_profiles.model import Component, Condition, Kind, Measurement

__all__ = [
    "Reading",
    "ReadingFormatError",
    "dump_readings",
    "load_readings",
    "parse_lines",
    "reading_from_json",
    "reading_from_measurement",
]


class ReadingFormatError(ValueError):
    """A readings line that is not a valid reading."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One stored reading, before the device encodes it."""

    kind: Kind
    device_time: datetime | None
    mg_dl: float | None = None
    mmol_l: float | None = None
    systolic: float | None = None
    diastolic: float | None = None
    mean_arterial: float | None = None
    pulse: float | None = None
    user_id: int | None = None
    sequence: int | None = None
    time_offset_minutes: int | None = None
    sample_type: str | None = None
    sample_location: str | None = None
    conditions: frozenset[Condition] = frozenset()
    trend_mg_dl_min: float | None = None  # CGM only: CGM Trend, (mg/dL)/min
    quality_pct: float | None = None  # CGM only: CGM Quality, %
    weight_kg: float | None = None  # weight: an SI scale's record
    weight_lb: float | None = None  # weight: an imperial scale's record
    height_m: float | None = None  # weight, with bmi: SI height
    height_in: float | None = None  # weight, with bmi: imperial height
    bmi: float | None = None  # weight: kg/m²
    spo2: float | None = None  # spo2: %
    pulse_amplitude_index: float | None = None  # spo2: %

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value}
        for key in (
            "mg_dl",
            "mmol_l",
            "systolic",
            "diastolic",
            "mean_arterial",
            "pulse",
            "user_id",
            "sequence",
            "time_offset_minutes",
            "sample_type",
            "sample_location",
            "trend_mg_dl_min",
            "quality_pct",
            *_WEIGHT_KEYS,
            *_SPO2_KEYS,
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.device_time is not None:
            out["device_time"] = self.device_time.isoformat()
        if self.conditions:
            out["conditions"] = sorted(c.value for c in self.conditions)
        return out


_GLUCOSE_KEYS = {"mg_dl", "mmol_l", "sample_type", "sample_location", "sequence"}
_BP_KEYS = {"systolic", "diastolic", "mean_arterial", "pulse", "user_id"}
# Tuples: Reading.to_json writes them in this order.
_WEIGHT_KEYS = ("weight_kg", "weight_lb", "height_m", "height_in", "bmi")
_SPO2_KEYS = ("spo2", "pulse_amplitude_index")


def _number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingFormatError(f"{key} must be a number, got {value!r}")
    return float(value) if isinstance(value, float) else value


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReadingFormatError(f"{key} must be an integer, got {value!r}")
    return value


def _str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReadingFormatError(f"{key} must be a string, got {value!r}")
    return value


_SIMULATED_KINDS = frozenset({Kind.GLUCOSE, Kind.CGM, Kind.BLOOD_PRESSURE, Kind.WEIGHT, Kind.SPO2})


def reading_from_json(obj: Mapping[str, Any]) -> Reading:
    """Validate one decoded JSON object into a :class:`Reading`."""
    kind_text = _str(obj, "kind")
    if kind_text is not None:
        try:
            kind = Kind(kind_text)
        except ValueError:
            raise ReadingFormatError(f"unknown kind {kind_text!r}") from None
    elif obj.keys() & set(_WEIGHT_KEYS):
        kind = Kind.WEIGHT
    elif obj.keys() & set(_SPO2_KEYS):  # before BP: an oximeter record has a pulse too
        kind = Kind.SPO2
    elif _BP_KEYS & obj.keys():
        kind = Kind.BLOOD_PRESSURE
    elif _GLUCOSE_KEYS & obj.keys():
        kind = Kind.GLUCOSE
    else:
        raise ReadingFormatError(f"cannot tell the kind of reading: {dict(obj)!r}")
    if kind not in _SIMULATED_KINDS:
        raise ReadingFormatError(
            f"simulated devices hold glucose, CGM, blood pressure, weight or SpO2 readings,"
            f" not {kind}"
        )
    time_text = _str(obj, "device_time")
    try:
        device_time = datetime.fromisoformat(time_text) if time_text else None
    except ValueError:
        raise ReadingFormatError(f"device_time {time_text!r} is not ISO 8601") from None
    if device_time is not None and device_time.tzinfo is not None:
        raise ReadingFormatError("device_time is the device's local clock: give it without zone")
    raw_conditions = obj.get("conditions", [])
    if not isinstance(raw_conditions, list):
        raise ReadingFormatError("conditions must be a list")
    try:
        conditions = frozenset(Condition(c) for c in raw_conditions)
    except ValueError as e:
        raise ReadingFormatError(str(e)) from None
    reading = Reading(
        kind=kind,
        device_time=device_time,
        mg_dl=_number(obj, "mg_dl"),
        mmol_l=_number(obj, "mmol_l"),
        systolic=_number(obj, "systolic"),
        diastolic=_number(obj, "diastolic"),
        mean_arterial=_number(obj, "mean_arterial"),
        pulse=_number(obj, "pulse"),
        user_id=_int(obj, "user_id"),
        sequence=_int(obj, "sequence"),
        time_offset_minutes=_int(obj, "time_offset_minutes"),
        sample_type=_str(obj, "sample_type"),
        sample_location=_str(obj, "sample_location"),
        conditions=conditions,
        trend_mg_dl_min=_number(obj, "trend_mg_dl_min"),
        quality_pct=_number(obj, "quality_pct"),
        **{key: _number(obj, key) for key in (*_WEIGHT_KEYS, *_SPO2_KEYS)},
    )
    _check_weight(reading)
    _check_spo2(reading)
    _check_foreign(reading)
    if kind is not Kind.CGM and (
        reading.trend_mg_dl_min is not None or reading.quality_pct is not None
    ):
        raise ReadingFormatError("trend_mg_dl_min and quality_pct belong to CGM readings")
    if kind is Kind.BLOOD_PRESSURE and (reading.systolic is None or reading.diastolic is None):
        raise ReadingFormatError("a blood pressure reading needs systolic and diastolic")
    if reading.sequence is not None and not 0 <= reading.sequence <= 0xFFFF:
        raise ReadingFormatError(f"sequence {reading.sequence} is not a u16")
    return reading


def _check_weight(r: Reading) -> None:
    fields = (r.weight_kg, r.weight_lb, r.height_m, r.height_in, r.bmi)
    if r.kind is not Kind.WEIGHT:
        if any(v is not None for v in fields):
            raise ReadingFormatError(f"{', '.join(_WEIGHT_KEYS)} belong to weight readings")
        return
    if r.weight_kg is not None and r.weight_lb is not None:
        raise ReadingFormatError("a weight reading has weight_kg or weight_lb, not both")
    if r.weight_kg is None and r.weight_lb is None:
        if Condition.MEASUREMENT_UNSUCCESSFUL not in r.conditions:
            raise ReadingFormatError(
                "a weight reading needs weight_kg or weight_lb (or measurement_unsuccessful)"
            )
    elif Condition.MEASUREMENT_UNSUCCESSFUL in r.conditions:
        raise ReadingFormatError("an unsuccessful weight measurement has no weight")
    if r.height_m is not None and r.height_in is not None:
        raise ReadingFormatError("a weight reading has height_m or height_in, not both")
    height = r.height_m if r.height_m is not None else r.height_in
    if (r.bmi is None) != (height is None):
        raise ReadingFormatError("bmi and height come together (Weight Measurement flag b3)")
    # One unit system per record (Weight Measurement flag b0 covers weight and height).
    if (r.weight_kg is not None and r.height_in is not None) or (
        r.weight_lb is not None and r.height_m is not None
    ):
        raise ReadingFormatError("weight and height must use the same unit system")


def _check_spo2(r: Reading) -> None:
    if r.kind is not Kind.SPO2:
        if r.spo2 is not None or r.pulse_amplitude_index is not None:
            raise ReadingFormatError("spo2 and pulse_amplitude_index belong to SpO2 readings")
        return
    if r.spo2 is None or r.pulse is None:
        raise ReadingFormatError("an SpO2 reading needs spo2 and pulse")


# Fields a scale or an oximeter record cannot carry (the others are checked above).
_NOT_FOR = {
    Kind.WEIGHT: ("mg_dl", "mmol_l", "systolic", "diastolic", "mean_arterial", "pulse"),
    Kind.SPO2: ("mg_dl", "mmol_l", "systolic", "diastolic", "mean_arterial", "user_id"),
}
_NO_RECORD_NUMBER = ("sequence", "time_offset_minutes", "sample_type", "sample_location")


def _check_foreign(r: Reading) -> None:
    if r.kind not in _NOT_FOR:
        return
    foreign = [k for k in (*_NOT_FOR[r.kind], *_NO_RECORD_NUMBER) if getattr(r, k) is not None]
    if foreign:
        raise ReadingFormatError(f"a {r.kind.value} reading has no {', '.join(foreign)}")


def parse_lines(lines: Iterable[str], source: str = "<readings>") -> list[Reading]:
    out: list[Reading] = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ReadingFormatError("each line must be a JSON object")
            out.append(reading_from_json(obj))
        except (ValueError, ReadingFormatError) as e:
            raise ReadingFormatError(f"{source}:{n}: {e}") from None
    return out


def load_readings(path: Path) -> list[Reading]:
    """Read a JSON-lines readings file."""
    with path.open(encoding="utf-8") as f:
        return parse_lines(f, str(path))


def dump_readings(readings: Iterable[Reading], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in readings:
            f.write(json.dumps(r.to_json()) + "\n")


def _original(m: Measurement, component: Component) -> tuple[float | None, str | None]:
    q = m.values.get(component)
    return (None, None) if q is None else (q.original_value, q.original_unit)


def _user_id(m: Measurement) -> int | None:
    user = m.details.get("user_id")
    return user if isinstance(user, int) and not isinstance(user, bool) else None


def reading_from_measurement(m: Measurement) -> Reading:
    """A simulated patient's measurement as the stored record of the device that took it.

    Each kind maps to its own kind: a fingerstick (glucose) stays a meter record, a CGM
    measurement a sensor record (its time offset kept), BP a cuff record, weight a
    scale record (in the scale's own units), SpO2 an oximeter record.  Kinds no
    simulated device stores (temperature) raise :class:`ReadingFormatError`.
    """
    if m.kind is Kind.GLUCOSE:
        value, unit = _original(m, Component.GLUCOSE)
        mmol = unit == "mmol/L"
        sample_type = m.details.get("sample_type")
        location = m.details.get("sample_location")
        return Reading(
            kind=Kind.GLUCOSE,
            device_time=m.device_time,
            mg_dl=None if mmol else value,
            mmol_l=value if mmol else None,
            sequence=m.sequence,
            time_offset_minutes=m.time_offset_minutes,
            sample_type=sample_type if isinstance(sample_type, str) else None,
            sample_location=location if isinstance(location, str) else None,
            conditions=m.conditions,
        )
    if m.kind is Kind.CGM:
        mg_dl = m.value(Component.GLUCOSE)
        if mg_dl is None:
            raise ReadingFormatError("a CGM record needs a glucose value (mg/dL)")
        if m.device_time is None and m.time_offset_minutes is None:
            raise ReadingFormatError("a CGM record needs device_time or time_offset_minutes")
        return Reading(
            kind=Kind.CGM,
            device_time=m.device_time,
            mg_dl=mg_dl,
            time_offset_minutes=m.time_offset_minutes,
            conditions=m.conditions,
            trend_mg_dl_min=m.value(Component.CGM_TREND),
            quality_pct=m.value(Component.CGM_QUALITY),
        )
    if m.kind is Kind.BLOOD_PRESSURE:
        return Reading(
            kind=Kind.BLOOD_PRESSURE,
            device_time=m.device_time,
            systolic=m.value(Component.SYSTOLIC),
            diastolic=m.value(Component.DIASTOLIC),
            mean_arterial=m.value(Component.MEAN_ARTERIAL),
            pulse=m.value(Component.PULSE),
            user_id=_user_id(m),
            conditions=m.conditions,
        )
    if m.kind is Kind.WEIGHT:
        weight, weight_unit = _original(m, Component.WEIGHT)
        height, height_unit = _original(m, Component.HEIGHT)
        imperial = weight_unit == "[lb_av]"
        return Reading(
            kind=Kind.WEIGHT,
            device_time=m.device_time,
            weight_kg=None if imperial else weight,
            weight_lb=weight if imperial else None,
            height_m=height if height_unit == "m" else None,
            height_in=height if height_unit == "[in_i]" else None,
            bmi=m.value(Component.BMI),
            user_id=_user_id(m),
            conditions=m.conditions,
        )
    if m.kind is Kind.SPO2:
        return Reading(
            kind=Kind.SPO2,
            device_time=m.device_time,
            spo2=m.value(Component.SPO2),
            pulse=m.value(Component.PULSE),
            pulse_amplitude_index=m.value(Component.PULSE_AMPLITUDE_INDEX),
            conditions=m.conditions,
        )
    raise ReadingFormatError(f"no simulated device stores {m.kind.value} readings")
