"""Decoded wire batches -> validated columns per table, ready for COPY.

Validation runs on numpy arrays across the whole batch (one mask per limit), so the cost
per reading is a few vector operations, not Python branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from device_profiles.model import Component, Condition, Kind
from ingest.validation import EARLIEST, FUTURE_TOLERANCE, PLAUSIBLE, REQUIRED
from ingest.wire import Reading

HI_LO = frozenset({Condition.RESULT_ABOVE_RANGE, Condition.RESULT_BELOW_RANGE})
GLUCOSE_COLUMNS = (
    "time",
    "reading_id",
    "device_id",
    "patient_id",
    "source",
    "mgdl",
    "conditions",
    "sequence",
    "device_time",
    "skew_s",
    "original_value",
    "original_unit",
    "gateway_id",
)
BP_COLUMNS = (
    "time",
    "reading_id",
    "device_id",
    "patient_id",
    "systolic",
    "diastolic",
    "mean_arterial",
    "pulse",
    "conditions",
    "device_time",
    "skew_s",
    "original_unit",
    "user_id",
    "gateway_id",
)
BODY_COLUMNS = (
    "time",
    "reading_id",
    "device_id",
    "patient_id",
    "kind",
    "components",
    "conditions",
    "device_time",
    "skew_s",
    "gateway_id",
)

TABLE_OF_KIND: dict[Kind, str] = {
    Kind.GLUCOSE: "glucose",
    Kind.CGM: "glucose",
    Kind.BLOOD_PRESSURE: "blood_pressure",
    Kind.WEIGHT: "body_readings",
    Kind.SPO2: "body_readings",
    Kind.TEMPERATURE: "body_readings",
}


@dataclass(slots=True)
class Located:
    """A reading with where it came from (for dead letters and attribution)."""

    reading: Reading
    gateway: str
    topic: str
    payload: bytes
    index: int


@dataclass(slots=True)
class Rejected:
    topic: str
    gateway: str | None
    device: str | None
    payload: bytes
    reason: str
    index: int | None = None


@dataclass(slots=True)
class Split:
    """Valid readings grouped by table, plus the rejects."""

    by_table: dict[str, list[Located]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


def _value(reading: Reading, component: Component) -> float:
    value = reading.values.get(component)
    return np.nan if value is None else float(value)


_single_encoder = msgspec.json.Encoder()


def reading_payload(gateway: str, reading: Reading) -> bytes:
    """A one-reading batch: what a per-reading dead letter keeps, replayable as is."""
    return _single_encoder.encode(
        {
            "schema": "homevitals.readings/1",
            "gateway": gateway,
            "sent_at": datetime.now(UTC),
            "readings": [reading],
        }
    )


def validate(located: list[Located], known_devices: set[str], now: datetime) -> Split:
    """Check every reading; vectorized over the batch."""
    split = Split()
    if not located:
        return split
    n = len(located)
    reasons: list[str | None] = [None] * n

    def reject(mask: np.ndarray[Any, np.dtype[np.bool_]], why: list[str] | str) -> None:
        for i in np.flatnonzero(mask):
            if reasons[i] is None:
                reasons[i] = why if isinstance(why, str) else why[i]

    times = np.array([loc.reading.time.timestamp() for loc in located], dtype=np.float64)
    reject(times < EARLIEST.timestamp(), "time before 2000-01-01: device clock unset")
    reject(
        times > (now + FUTURE_TOLERANCE).timestamp(),
        [f"time {loc.reading.time.isoformat()} is in the future" for loc in located],
    )
    for component, (low, high) in PLAUSIBLE.items():
        values = np.array([_value(loc.reading, component) for loc in located], dtype=np.float64)
        present = ~np.isnan(values)
        bad = present & ((values < low) | (values > high))
        if bad.any():
            reject(
                bad,
                [
                    f"implausible {component.value} {values[i]:g} (allowed {low:g}..{high:g})"
                    if bad[i]
                    else ""
                    for i in range(n)
                ],
            )
    for i, loc in enumerate(located):
        if reasons[i] is not None:
            continue
        reading = loc.reading
        missing = [c for c in REQUIRED[reading.kind] if c not in reading.values]
        if missing and not (
            reading.kind in (Kind.GLUCOSE, Kind.CGM) and HI_LO.intersection(reading.conditions)
        ):
            reasons[i] = (
                f"{reading.kind.value} reading without {', '.join(c.value for c in missing)}"
            )
        elif reading.device not in known_devices:
            reasons[i] = f"unknown device {reading.device!r} (not paired on any gateway)"
    for i, loc in enumerate(located):
        reason = reasons[i]
        if reason is None:
            split.by_table.setdefault(TABLE_OF_KIND[loc.reading.kind], []).append(loc)
        else:
            split.rejected.append(
                Rejected(
                    loc.topic,
                    loc.gateway,
                    loc.reading.device,
                    reading_payload(loc.gateway, loc.reading),
                    reason,
                    loc.index,
                )
            )
    return split


def _conditions(reading: Reading) -> list[str]:
    return [c.value for c in reading.conditions]


def glucose_rows(rows: list[Located], patients: list[int | None]) -> list[tuple[Any, ...]]:
    out = []
    for loc, patient in zip(rows, patients, strict=True):
        r = loc.reading
        original = r.original.get(Component.GLUCOSE)
        out.append(
            (
                r.time,
                r.id,
                r.device,
                patient,
                "cgm" if r.kind is Kind.CGM else "smbg",
                r.values.get(Component.GLUCOSE),
                _conditions(r),
                r.seq,
                r.device_time,
                r.skew_s,
                None if original is None else original.value,
                None if original is None else original.unit,
                loc.gateway,
            )
        )
    return out


def bp_rows(rows: list[Located], patients: list[int | None]) -> list[tuple[Any, ...]]:
    out = []
    for loc, patient in zip(rows, patients, strict=True):
        r = loc.reading
        original = r.original.get(Component.SYSTOLIC)
        user = r.details.get("user_id")
        out.append(
            (
                r.time,
                r.id,
                r.device,
                patient,
                r.values[Component.SYSTOLIC],
                r.values[Component.DIASTOLIC],
                r.values.get(Component.MEAN_ARTERIAL),
                r.values.get(Component.PULSE),
                _conditions(r),
                r.device_time,
                r.skew_s,
                None if original is None else original.unit,
                user if isinstance(user, int) and not isinstance(user, bool) else None,
                loc.gateway,
            )
        )
    return out


def body_rows(rows: list[Located], patients: list[int | None]) -> list[tuple[Any, ...]]:
    out = []
    for loc, patient in zip(rows, patients, strict=True):
        r = loc.reading
        components = {c.value: v for c, v in r.values.items()}
        out.append(
            (
                r.time,
                r.id,
                r.device,
                patient,
                r.kind.value,
                components,
                _conditions(r),
                r.device_time,
                r.skew_s,
                loc.gateway,
            )
        )
    return out
