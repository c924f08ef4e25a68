"""Typed results of a simulated patient: numpy arrays, DataFrames, Measurements, Readings.

Each device series is a frozen bundle of equal-length arrays (``time`` is UTC, ``device_time``
is what the device clock shows: local wall time plus the patient's clock skew) with three
views: ``to_frame()`` for inspection, ``measurements()`` (``device_profiles`` objects, as a
parser would return them) and ``readings(device_id)`` (``readings.wire`` readings, as a gateway
would publish them).

Device range (HI/LO): a value beyond the device's range keeps the range *limit* as its
number and carries ``Condition.RESULT_BELOW_RANGE`` (LO) or ``RESULT_ABOVE_RANGE`` (HI).
The number is then a bound, not a measurement (LO 20 means "20 or less"): consumers must
read the condition, and analytics must count a LO as below every threshold under the limit.
We keep the limit rather than dropping the number because it is what most meters transmit
with the status annunciation and it keeps "LO" sortable and plottable.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from device_profiles.blood_pressure import PressureUnit
from device_profiles.glucose import GlucoseUnit, SampleLocation, SampleType
from device_profiles.model import Component, Condition, Kind, Measurement, Quantity
from readings import Original, Reading, RecordKey
from simulators.patients.timebase import DatetimeArray

RANGE_LOW = -1
RANGE_OK = 0
RANGE_HIGH = 1

# Device ranges (canonical units).
METER_RANGE_MGDL = (20.0, 600.0)
METER_RANGE_MMOLL = (1.1, 33.3)
CGM_RANGE_MGDL = (40.0, 400.0)
CUFF_PRESSURE_RANGE = (0.0, 299.0)
CUFF_PULSE_RANGE = (40.0, 180.0)

_BP_DETAILS: dict[str, int | float | str | bool | None] = {"units": "mmHg", "intermediate": False}
_RANGE_CONDITION = {
    RANGE_LOW: (Condition.RESULT_BELOW_RANGE,),
    RANGE_OK: (),
    RANGE_HIGH: (Condition.RESULT_ABOVE_RANGE,),
}


def utc_datetimes(times: DatetimeArray) -> list[datetime]:
    seconds = times.astype("datetime64[s]").astype(np.int64).tolist()
    return [datetime.fromtimestamp(s, UTC) for s in seconds]


def naive_datetimes(times: DatetimeArray) -> list[datetime]:
    return [t.replace(tzinfo=None) for t in utc_datetimes(times)]


def iso_seconds(times: DatetimeArray) -> list[str]:
    """Device times as the gateway reports them: ISO 8601 to the second, no zone."""
    return [str(s) for s in np.datetime_as_string(times.astype("datetime64[s]"), unit="s")]


# The kind-specific fields of one wire reading, in this order: values, conditions,
# original, details, record number (a meter's sequence number; a CGM's time offset, which
# numbers its records within the session and is no wire ``seq``).  A plain tuple, not a NamedTuple: a CGM month is ~8,600 readings
# and building named tuples by keyword cost ~10 % of ``readings()``.
_WireFields = tuple[
    dict[Component, float],
    list[Condition],
    dict[Component, Original],
    dict[str, int | float | str | bool | None],
    int | None,
]


def _wire_readings(
    series: DeviceSeries, device_id: str, fields: Iterable[_WireFields]
) -> list[Reading]:
    """Wire readings of ``series``, one per item of ``fields`` (in row order).

    Identity (``readings.RecordKey``, as ``readings.decode.to_reading`` builds it: for a
    CGM record the session-local time and the offset), UTC time, device time and clock
    skew are built the same way for every kind, here, so the three series cannot drift
    apart in how a gateway would report them.
    """
    skew = float(series.skew_s) if series.skew_s else None
    kind = series.kind
    numbered = kind is not Kind.CGM
    return [
        Reading(
            id=RecordKey(device_id, kind, None, dt, seq).reading_id,
            device=device_id,
            kind=kind,
            time=t,
            values=values,
            device_time=dt,
            seq=seq if numbered else None,
            skew_s=skew,
            conditions=conditions,
            original=original,
            details=details,
        )
        for t, dt, (values, conditions, original, details, seq) in zip(
            utc_datetimes(series.time), iso_seconds(series.device_time), fields, strict=True
        )
    ]


@dataclass(frozen=True, slots=True, eq=False)
class TrueGlucose:
    """The patient's blood glucose on the 5-minute grid (what no device sees exactly)."""

    time: DatetimeArray
    local_time: DatetimeArray
    glucose: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.time.size)

    def at(self, times: DatetimeArray) -> NDArray[np.float64]:
        """Blood glucose interpolated at UTC ``times``."""
        x = self.time.astype(np.int64).astype(np.float64)
        return np.interp(times.astype("datetime64[s]").astype(np.int64), x, self.glucose)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"time": self.time, "local_time": self.local_time, "glucose": self.glucose}
        )


@dataclass(frozen=True, slots=True, eq=False)
class SmbgSeries:
    """Fingerstick readings from a blood glucose meter (Glucose Service)."""

    kind: ClassVar[Kind] = Kind.GLUCOSE

    time: DatetimeArray
    device_time: DatetimeArray
    glucose: NDArray[np.float64]  # mg/dL (canonical)
    original: NDArray[np.float64]  # what the meter displays, in original_unit
    original_unit: str  # "mg/dL" or "mmol/L" (sent over BLE as kg/L or mol/L)
    flag: NDArray[np.int8]  # RANGE_LOW / RANGE_OK / RANGE_HIGH
    sequence: NDArray[np.int64]
    meal: NDArray[np.str_]  # fasting / preprandial / postprandial / bedtime / casual
    true_glucose: NDArray[np.float64]  # blood glucose at the time (for scoring)
    skew_s: int = 0

    def __len__(self) -> int:
        return int(self.time.size)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time": self.time,
                "device_time": self.device_time,
                "glucose": self.glucose,
                "flag": self.flag,
                "sequence": self.sequence,
                "meal": self.meal,
                "true_glucose": self.true_glucose,
            }
        )

    @property
    def wire_unit(self) -> GlucoseUnit:
        return GlucoseUnit.MOL_PER_L if self.original_unit == "mmol/L" else GlucoseUnit.KG_PER_L

    def _rows(self) -> Iterator[tuple[float, float, int, int]]:
        """Per reading, the columns both views read: glucose, displayed value, sequence, flag."""
        return zip(
            self.glucose.tolist(),
            self.original.tolist(),
            self.sequence.tolist(),
            self.flag.tolist(),
            strict=True,
        )

    def measurements(self) -> list[Measurement]:
        """As ``device_profiles.glucose`` parses them (the meal context is a separate
        characteristic, so it is not in the measurement; see ``meal``)."""
        unit = self.original_unit
        details = {
            "units": self.wire_unit,
            "sample_type": SampleType.CAPILLARY_PLASMA,
            "sample_location": SampleLocation.FINGER,
        }
        return [
            Measurement(
                kind=Kind.GLUCOSE,
                values={Component.GLUCOSE: Quantity(g, "mg/dL", o, unit)},
                device_time=t,
                sequence=s,
                conditions=frozenset(_RANGE_CONDITION[f]),
                details=details,
            )
            for (g, o, s, f), t in zip(self._rows(), naive_datetimes(self.device_time), strict=True)
        ]

    def readings(self, device_id: str) -> list[Reading]:
        """As a gateway publishes them, with the meal context merged into the details."""
        unit = self.original_unit
        wire_unit = str(self.wire_unit)
        return _wire_readings(
            self,
            device_id,
            (
                (
                    {Component.GLUCOSE: g},
                    list(_RANGE_CONDITION[f]),
                    {Component.GLUCOSE: Original(o, unit)},
                    {
                        "units": wire_unit,
                        "sample_type": "capillary_plasma",
                        "sample_location": "finger",
                        "meal": m,
                    },
                    s,
                )
                for (g, o, s, f), m in zip(self._rows(), self.meal.tolist(), strict=True)
            ),
        )


@dataclass(frozen=True, slots=True, eq=False)
class CgmSeries:
    """Continuous glucose readings every 5 minutes (CGM Service), with gaps.

    The CGM reports a time offset in minutes since its session (sensor) start; its
    ``device_time`` is the session start's local time (CGM Session Start Time) plus that
    offset, so it does not follow a daylight-saving change in the middle of a session and
    is unique per device (the reading identity uses it, with no sequence number).
    """

    kind: ClassVar[Kind] = Kind.CGM

    time: DatetimeArray
    device_time: DatetimeArray
    session_start: DatetimeArray  # device-local session start of each reading
    time_offset: NDArray[np.int64]  # minutes since session start
    glucose: NDArray[np.float64]  # mg/dL, integer values, clipped to 40-400
    trend: NDArray[np.float64]  # (mg/dL)/min over the last 15 minutes
    flag: NDArray[np.int8]
    true_glucose: NDArray[np.float64]
    skew_s: int = 0

    def __len__(self) -> int:
        return int(self.time.size)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time": self.time,
                "device_time": self.device_time,
                "time_offset": self.time_offset,
                "glucose": self.glucose,
                "trend": self.trend,
                "flag": self.flag,
                "true_glucose": self.true_glucose,
            }
        )

    def _rows(self) -> Iterator[tuple[float, float, int, int]]:
        """Per reading, the columns both views read: glucose, trend, time offset, flag."""
        return zip(
            self.glucose.tolist(),
            self.trend.tolist(),
            self.time_offset.tolist(),
            self.flag.tolist(),
            strict=True,
        )

    def measurements(self) -> list[Measurement]:
        return [
            Measurement(
                kind=Kind.CGM,
                values={
                    Component.GLUCOSE: Quantity(g, "mg/dL", g, "mg/dL"),
                    Component.CGM_TREND: Quantity(tr, "mg/dL/min", tr, "mg/dL/min"),
                },
                time_offset_minutes=off,
                conditions=frozenset(_RANGE_CONDITION[f]),
                details={"e2e_crc": False},
            )
            for g, tr, off, f in self._rows()
        ]

    def readings(self, device_id: str) -> list[Reading]:
        return _wire_readings(
            self,
            device_id,
            (
                (
                    {Component.GLUCOSE: g, Component.CGM_TREND: tr},
                    list(_RANGE_CONDITION[f]),
                    {
                        Component.GLUCOSE: Original(g, "mg/dL"),
                        Component.CGM_TREND: Original(tr, "mg/dL/min"),
                    },
                    {"e2e_crc": False, "time_offset_min": off},
                    off,  # the record number within the session (identity only)
                )
                for g, tr, off, f in self._rows()
            ),
        )


@dataclass(frozen=True, slots=True, eq=False)
class BpSeries:
    """Home blood-pressure cuff readings (Blood Pressure Service); no sequence numbers."""

    kind: ClassVar[Kind] = Kind.BLOOD_PRESSURE

    time: DatetimeArray
    device_time: DatetimeArray
    systolic: NDArray[np.float64]  # mmHg, integers
    diastolic: NDArray[np.float64]
    mean_arterial: NDArray[np.float64]
    pulse: NDArray[np.float64]  # beats/min
    irregular: NDArray[np.bool_]  # the cuff flagged an irregular pulse
    movement: NDArray[np.bool_]  # body movement detected
    pulse_flag: NDArray[np.int8]  # pulse outside the cuff's 40-180 range
    session: NDArray[np.str_]  # morning / evening / extra
    skew_s: int = 0

    def __len__(self) -> int:
        return int(self.time.size)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time": self.time,
                "device_time": self.device_time,
                "systolic": self.systolic,
                "diastolic": self.diastolic,
                "mean_arterial": self.mean_arterial,
                "pulse": self.pulse,
                "irregular": self.irregular,
                "movement": self.movement,
                "session": self.session,
            }
        )

    def _rows(self) -> Iterator[tuple[float, float, float, float, list[Condition]]]:
        """Per reading, what both views read: systolic, diastolic, mean, pulse, conditions."""
        return zip(
            self.systolic.tolist(),
            self.diastolic.tolist(),
            self.mean_arterial.tolist(),
            self.pulse.tolist(),
            self._conditions(),
            strict=True,
        )

    def _conditions(self) -> list[list[Condition]]:
        out: list[list[Condition]] = []
        for irr, mov, pf in zip(
            self.irregular.tolist(), self.movement.tolist(), self.pulse_flag.tolist(), strict=True
        ):
            conds: list[Condition] = []  # sorted, as the gateway sends them
            if mov:
                conds.append(Condition.BODY_MOVEMENT)
            if irr:
                conds.append(Condition.IRREGULAR_PULSE)
            if pf == RANGE_HIGH:
                conds.append(Condition.PULSE_ABOVE_RANGE)
            elif pf == RANGE_LOW:
                conds.append(Condition.PULSE_BELOW_RANGE)
            out.append(conds)
        return out

    def measurements(self) -> list[Measurement]:
        mmhg = "mm[Hg]"
        return [
            Measurement(
                kind=Kind.BLOOD_PRESSURE,
                values={
                    Component.SYSTOLIC: Quantity(s, mmhg, s, mmhg),
                    Component.DIASTOLIC: Quantity(d, mmhg, d, mmhg),
                    Component.MEAN_ARTERIAL: Quantity(m, mmhg, m, mmhg),
                    Component.PULSE: Quantity(p, "/min", p, "/min"),
                },
                device_time=t,
                conditions=frozenset(c),
                details={"units": PressureUnit.MMHG, "intermediate": False},
            )
            for (s, d, m, p, c), t in zip(
                self._rows(), naive_datetimes(self.device_time), strict=True
            )
        ]

    def readings(self, device_id: str) -> list[Reading]:
        return _wire_readings(
            self,
            device_id,
            (
                (
                    {
                        Component.SYSTOLIC: s,
                        Component.DIASTOLIC: d,
                        Component.MEAN_ARTERIAL: m,
                        Component.PULSE: p,
                    },
                    c,
                    {
                        Component.SYSTOLIC: Original(s, "mm[Hg]"),
                        Component.DIASTOLIC: Original(d, "mm[Hg]"),
                        Component.MEAN_ARTERIAL: Original(m, "mm[Hg]"),
                        Component.PULSE: Original(p, "/min"),
                    },
                    dict(_BP_DETAILS),
                    None,  # cuffs send no sequence number
                )
                for s, d, m, p, c in self._rows()
            ),
        )


DeviceSeries = SmbgSeries | CgmSeries | BpSeries


def empty_datetimes() -> DatetimeArray:
    return np.zeros(0, dtype="datetime64[s]")


__all__ = [
    "CGM_RANGE_MGDL",
    "CUFF_PRESSURE_RANGE",
    "CUFF_PULSE_RANGE",
    "METER_RANGE_MGDL",
    "METER_RANGE_MMOLL",
    "RANGE_HIGH",
    "RANGE_LOW",
    "RANGE_OK",
    "BpSeries",
    "CgmSeries",
    "DeviceSeries",
    "SmbgSeries",
    "TrueGlucose",
    "empty_datetimes",
    "iso_seconds",
    "naive_datetimes",
    "utc_datetimes",
]
