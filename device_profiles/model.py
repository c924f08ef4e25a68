"""The measurement model every parser returns and every encoder accepts.

One frozen dataclass for all device families: the kind, the values in canonical units
(alongside the device's original value and unit), device-local time, time offset,
sequence number and status conditions as named flags.  Family-specific fields that
are needed to re-encode the exact bytes live in ``details`` as typed enum members or
plain scalars, so ``parse(encode(m)) == m`` holds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

# mg/dL per mmol/L for glucose (molar mass 180.156 g/mol); the constant Tidepool uses.
MGDL_PER_MMOLL = 18.01559
# mmHg per kPa.
MMHG_PER_KPA = 7.50062
KG_PER_LB = 0.45359237


class Kind(enum.StrEnum):
    """What a reading measures; also the ``kind`` of the ingest wire contract."""

    GLUCOSE = "glucose"  # fingerstick / SMBG (Glucose Service)
    CGM = "cgm"  # continuous glucose (CGM Service)
    BLOOD_PRESSURE = "blood_pressure"
    WEIGHT = "weight"
    SPO2 = "spo2"
    TEMPERATURE = "temperature"


class Component(enum.StrEnum):
    """Named value inside a measurement."""

    GLUCOSE = "glucose"  # mg/dL
    SYSTOLIC = "systolic"  # mmHg
    DIASTOLIC = "diastolic"  # mmHg
    MEAN_ARTERIAL = "mean_arterial"  # mmHg
    PULSE = "pulse"  # beats/min
    WEIGHT = "weight"  # kg
    HEIGHT = "height"  # m
    BMI = "bmi"  # kg/m2
    SPO2 = "spo2"  # %
    PULSE_AMPLITUDE_INDEX = "pulse_amplitude_index"  # %
    TEMPERATURE = "temperature"  # degC
    CGM_TREND = "cgm_trend"  # (mg/dL)/min
    CGM_QUALITY = "cgm_quality"  # %
    # Intermediate Cuff Pressure (0x2A36): the live cuff pressure while inflating, never
    # a blood pressure reading, so it gets its own component instead of SYSTOLIC.
    CUFF_PRESSURE = "cuff_pressure"  # mmHg


class Condition(enum.StrEnum):
    """Status conditions reported with a measurement, by name (never raw bits)."""

    # Glucose Measurement sensor status annunciation (GLS 3.106 / GSS 3.105)
    BATTERY_LOW = "battery_low"
    SENSOR_MALFUNCTION = "sensor_malfunction"
    SAMPLE_SIZE_INSUFFICIENT = "sample_size_insufficient"
    STRIP_INSERTION_ERROR = "strip_insertion_error"
    STRIP_TYPE_INCORRECT = "strip_type_incorrect"
    RESULT_ABOVE_RANGE = "result_above_range"  # HI
    RESULT_BELOW_RANGE = "result_below_range"  # LO
    TEMPERATURE_TOO_HIGH = "temperature_too_high"
    TEMPERATURE_TOO_LOW = "temperature_too_low"
    STRIP_PULLED_TOO_SOON = "strip_pulled_too_soon"
    GENERAL_DEVICE_FAULT = "general_device_fault"
    TIME_FAULT = "time_fault"
    CONTROL_SOLUTION = "control_solution"  # type 10 / location 4: not a patient reading
    # Blood Pressure Measurement Status
    BODY_MOVEMENT = "body_movement"
    CUFF_TOO_LOOSE = "cuff_too_loose"
    IRREGULAR_PULSE = "irregular_pulse"
    PULSE_ABOVE_RANGE = "pulse_above_range"
    PULSE_BELOW_RANGE = "pulse_below_range"
    IMPROPER_POSITION = "improper_position"
    # CGM Sensor Status Annunciation (CGMS §3.2.1.5); battery low, sensor malfunction,
    # general device fault, temperature and device-range bits reuse the members above.
    SESSION_STOPPED = "session_stopped"
    SENSOR_TYPE_INCORRECT = "sensor_type_incorrect"
    DEVICE_SPECIFIC_ALERT = "device_specific_alert"
    TIME_SYNC_REQUIRED = "time_sync_required"
    CALIBRATION_NOT_ALLOWED = "calibration_not_allowed"
    CALIBRATION_RECOMMENDED = "calibration_recommended"
    CALIBRATION_REQUIRED = "calibration_required"
    BELOW_PATIENT_LOW = "below_patient_low"
    ABOVE_PATIENT_HIGH = "above_patient_high"
    BELOW_HYPO = "below_hypo"
    ABOVE_HYPER = "above_hyper"
    RATE_OF_DECREASE_EXCEEDED = "rate_of_decrease_exceeded"
    RATE_OF_INCREASE_EXCEEDED = "rate_of_increase_exceeded"
    # Weight Measurement: weight 0xFFFF "measurement unsuccessful"
    MEASUREMENT_UNSUCCESSFUL = "measurement_unsuccessful"
    # PLX Spot-Check Measurement Status (GSS §3.172) and Device and Sensor Status
    DEVICE_CLOCK_NOT_SET = "device_clock_not_set"
    MEASUREMENT_ONGOING = "measurement_ongoing"
    EARLY_ESTIMATED_DATA = "early_estimated_data"
    VALIDATED_DATA = "validated_data"
    FULLY_QUALIFIED_DATA = "fully_qualified_data"
    DATA_FROM_STORAGE = "data_from_storage"
    DEMONSTRATION_DATA = "demonstration_data"
    TESTING_DATA = "testing_data"
    CALIBRATION_ONGOING = "calibration_ongoing"
    MEASUREMENT_UNAVAILABLE = "measurement_unavailable"
    QUESTIONABLE_MEASUREMENT = "questionable_measurement"
    INVALID_MEASUREMENT = "invalid_measurement"
    EXTENDED_DISPLAY_UPDATE_ONGOING = "extended_display_update_ongoing"
    EQUIPMENT_MALFUNCTION = "equipment_malfunction"
    SIGNAL_PROCESSING_IRREGULARITY = "signal_processing_irregularity"
    INADEQUATE_SIGNAL = "inadequate_signal"
    POOR_SIGNAL = "poor_signal"
    LOW_PERFUSION = "low_perfusion"
    ERRATIC_SIGNAL = "erratic_signal"
    NONPULSATILE_SIGNAL = "nonpulsatile_signal"
    QUESTIONABLE_PULSE = "questionable_pulse"
    SIGNAL_ANALYSIS_ONGOING = "signal_analysis_ongoing"
    SENSOR_INTERFERENCE = "sensor_interference"
    SENSOR_UNCONNECTED = "sensor_unconnected"
    UNKNOWN_SENSOR = "unknown_sensor"
    SENSOR_DISPLACED = "sensor_displaced"
    SENSOR_DISCONNECTED = "sensor_disconnected"


class SpecialValue(enum.StrEnum):
    """IEEE-11073 special values (SFLOAT/FLOAT): never numbers, never stored as readings."""

    NAN = "NaN"
    NRES = "NRes"  # not at this resolution
    POSITIVE_INFINITY = "+INFINITY"
    NEGATIVE_INFINITY = "-INFINITY"
    RESERVED = "reserved"


@dataclass(frozen=True, slots=True)
class Quantity:
    """A value in its canonical unit, with what the device actually sent.

    ``unit`` and ``original_unit`` are UCUM codes (``mg/dL``, ``mmol/L``, ``mm[Hg]``,
    ``kPa``, ``kg``, ``[lb_av]``, ``Cel``, ``[degF]``, ``%``, ``/min``).  When the device
    sent an IEEE-11073 special value, ``value`` and ``original_value`` are None and
    ``special`` says which one.
    """

    value: float | None
    unit: str
    original_value: float | None
    original_unit: str
    special: SpecialValue | None = None


DetailValue = int | float | str | bool | None


def _frozen(mapping: Mapping[str, DetailValue] | None) -> Mapping[str, DetailValue]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Measurement:
    """One reading as a device reported it."""

    kind: Kind
    values: Mapping[Component, Quantity]
    device_time: datetime | None = None  # device-local, naive: the device knows no zone
    time_offset_minutes: int | None = None  # the device's own offset to add to base time
    sequence: int | None = None
    conditions: frozenset[Condition] = frozenset()
    details: Mapping[str, DetailValue] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "details", _frozen(self.details))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Measurement):
            return NotImplemented
        return (
            self.kind == other.kind
            and dict(self.values) == dict(other.values)
            and self.device_time == other.device_time
            and self.time_offset_minutes == other.time_offset_minutes
            and self.sequence == other.sequence
            and self.conditions == other.conditions
            and dict(self.details) == dict(other.details)
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.sequence, self.device_time))

    @property
    def local_time(self) -> datetime | None:
        """Device base time plus the device's time offset (still device-local)."""
        if self.device_time is None:
            return None
        from datetime import timedelta

        return self.device_time + timedelta(minutes=self.time_offset_minutes or 0)

    def value(self, component: Component) -> float | None:
        q = self.values.get(component)
        return None if q is None else q.value
