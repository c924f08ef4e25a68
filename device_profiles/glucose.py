"""Glucose Service characteristics: Glucose Measurement (0x2A18), Glucose Measurement
Context (0x2A34) and Glucose Feature (0x2A51).

References: Bluetooth Glucose Service (GLS) v1.0.1 §3.106-3.108 and the GATT
Specification Supplement (GSS) §3.103 Glucose Feature, §3.104 Glucose Measurement,
§3.105 Glucose Measurement Context.

Glucose Measurement is decoded into :class:`~device_profiles.model.Measurement`:

* concentration in mg/dL (``kg/L × 100 000`` exactly; ``mol/L × 1000 → mmol/L`` exactly,
  then ``× MGDL_PER_MMOLL``); ``Quantity.original_value``/``original_unit`` hold the
  device's display value, mg/dL for kg/L meters and mmol/L for mol/L meters, and
  ``details["units"]`` the wire unit (:class:`GlucoseUnit`);
* ``details["sample_type"]``/``details["sample_location"]``: :class:`SampleType` /
  :class:`SampleLocation` members; a reserved code is a MalformedPayloadError;
* sensor status annunciation bits -> :class:`~device_profiles.model.Condition`;
  type 10 or location 4 -> ``Condition.CONTROL_SOLUTION`` (not a patient reading);
* ``details["context_follows"]``: flag b4, a Glucose Measurement Context with the same
  sequence number will follow.

Reserved flag bits (b5-b7) and reserved status bits (b12-b15) are ignored; trailing
bytes are rejected unless a reserved flag bit is set (see ``_wire.check_end``).  A base
time with year/month/day 0 ("unknown") gives ``device_time=None``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from struct import error as struct_error
from typing import TypeVar

from device_profiles._wire import (
    S16,
    U8,
    U8_U16,
    U16,
    U16_U8,
    bad,
    bit_table,
    check_end,
    encode_feature_bits,
    flags_to_set,
    need,
    original_sfloat,
    parse_feature_bits,
    quantity,
    set_to_flags,
    sfloat_decimal,
)
from device_profiles.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time
from device_profiles.errors import UnrepresentableValueError
from device_profiles.ieee11073 import encode_sfloat
from device_profiles.model import (
    MGDL_PER_MMOLL,
    Component,
    Condition,
    DetailValue,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)

__all__ = [
    "CarbohydrateId",
    "GlucoseContext",
    "GlucoseFeature",
    "GlucoseFeatures",
    "GlucoseUnit",
    "Health",
    "Meal",
    "MedicationId",
    "SampleLocation",
    "SampleType",
    "Tester",
    "encode_glucose_context",
    "encode_glucose_feature",
    "encode_glucose_measurement",
    "glucose_measurement",
    "parse_glucose_context",
    "parse_glucose_feature",
    "parse_glucose_measurement",
]

T = TypeVar("T", bound=enum.StrEnum)

MEASUREMENT = "Glucose Measurement (0x2A18)"
CONTEXT = "Glucose Measurement Context (0x2A34)"
FEATURE = "Glucose Feature (0x2A51)"

MGDL_PER_KGL = Decimal(100_000)  # 1 kg/L = 100 000 mg/dL
MMOLL_PER_MOLL = Decimal(1000)


class GlucoseUnit(enum.StrEnum):
    """Concentration unit on the wire (flag b2)."""

    KG_PER_L = "kg/L"
    MOL_PER_L = "mol/L"


class SampleType(enum.StrEnum):
    """GSS §3.104 Type field (low nibble)."""

    CAPILLARY_WHOLE_BLOOD = "capillary_whole_blood"
    CAPILLARY_PLASMA = "capillary_plasma"
    VENOUS_WHOLE_BLOOD = "venous_whole_blood"
    VENOUS_PLASMA = "venous_plasma"
    ARTERIAL_WHOLE_BLOOD = "arterial_whole_blood"
    ARTERIAL_PLASMA = "arterial_plasma"
    UNDETERMINED_WHOLE_BLOOD = "undetermined_whole_blood"
    UNDETERMINED_PLASMA = "undetermined_plasma"
    INTERSTITIAL_FLUID = "interstitial_fluid"
    CONTROL_SOLUTION = "control_solution"


class SampleLocation(enum.StrEnum):
    """GSS §3.104 Sample Location field (high nibble)."""

    FINGER = "finger"
    ALTERNATE_SITE_TEST = "alternate_site_test"
    EARLOBE = "earlobe"
    CONTROL_SOLUTION = "control_solution"
    NOT_AVAILABLE = "not_available"
    SUBCUTANEOUS_TISSUE = "subcutaneous_tissue"  # CGM Feature only (CGMS §3.1.2)


SAMPLE_TYPE_CODES: Mapping[int, SampleType] = {i + 1: t for i, t in enumerate(SampleType)}
SAMPLE_LOCATION_CODES: Mapping[int, SampleLocation] = {
    1: SampleLocation.FINGER,
    2: SampleLocation.ALTERNATE_SITE_TEST,
    3: SampleLocation.EARLOBE,
    4: SampleLocation.CONTROL_SOLUTION,
    15: SampleLocation.NOT_AVAILABLE,
}
_TYPE_CODE = {t: c for c, t in SAMPLE_TYPE_CODES.items()}
_LOCATION_CODE = {t: c for c, t in SAMPLE_LOCATION_CODES.items()}

# GSS §3.104 Sensor Status Annunciation (b12-b15 RFU).
STATUS_BITS: tuple[tuple[int, Condition], ...] = (
    (0x0001, Condition.BATTERY_LOW),
    (0x0002, Condition.SENSOR_MALFUNCTION),
    (0x0004, Condition.SAMPLE_SIZE_INSUFFICIENT),
    (0x0008, Condition.STRIP_INSERTION_ERROR),
    (0x0010, Condition.STRIP_TYPE_INCORRECT),
    (0x0020, Condition.RESULT_ABOVE_RANGE),
    (0x0040, Condition.RESULT_BELOW_RANGE),
    (0x0080, Condition.TEMPERATURE_TOO_HIGH),
    (0x0100, Condition.TEMPERATURE_TOO_LOW),
    (0x0200, Condition.STRIP_PULLED_TOO_SOON),
    (0x0400, Condition.GENERAL_DEVICE_FAULT),
    (0x0800, Condition.TIME_FAULT),
)
_STATUS_CONDITIONS = frozenset(c for _, c in STATUS_BITS)

_F_TIME_OFFSET = 0x01
_F_CONCENTRATION = 0x02
_F_MOL_PER_L = 0x04
_F_STATUS = 0x08
_F_CONTEXT_FOLLOWS = 0x10
_F_RFU = 0xE0


def _is_control_solution(sample_type: SampleType, location: SampleLocation) -> bool:
    """Type 10 or location 4: a control-solution test, not a patient reading."""
    return sample_type is SampleType.CONTROL_SOLUTION or location is SampleLocation.CONTROL_SOLUTION


def _mgdl_from_mmoll(mmoll: Decimal) -> float:
    return float(mmoll) * MGDL_PER_MMOLL


@lru_cache(maxsize=8192)
def _glucose_quantity(raw: int, unit: GlucoseUnit) -> Quantity:
    """mg/dL Quantity for a concentration word (cached: Quantities are immutable)."""
    exact = sfloat_decimal(raw)
    if unit is GlucoseUnit.MOL_PER_L:
        mmoll = exact if isinstance(exact, SpecialValue) else exact * MMOLL_PER_MOLL
        return quantity(mmoll, "mmol/L", "mg/dL", _mgdl_from_mmoll)
    return quantity(exact if isinstance(exact, SpecialValue) else exact * MGDL_PER_KGL, "mg/dL")


def parse_glucose_measurement(data: bytes, *, month13_rollover: bool = False) -> Measurement:
    """Decode one Glucose Measurement notification (GSS §3.104).

    ``month13_rollover`` is for ``Quirk.MONTH_13_CLOCK`` profiles only; see
    :mod:`device_profiles.date_time`.
    """
    # Flags u8, sequence number u16, base time (7), then the optional fields in flag
    # order (GSS §3.104).
    if len(data) < 3:
        need(MEASUREMENT, data, 0, 1, "flags")
        need(MEASUREMENT, data, 1, 2, "sequence_number")
    flags = data[0]
    (sequence,) = U16.unpack_from(data, 1)
    device_time = parse_date_time(
        data, 3, characteristic=MEASUREMENT, field="base_time", month13_rollover=month13_rollover
    )
    offset = 3 + DATE_TIME_SIZE
    time_offset: int | None = None
    if flags & _F_TIME_OFFSET:
        need(MEASUREMENT, data, offset, 2, "time_offset")
        (time_offset,) = S16.unpack_from(data, offset)
        offset += 2
    values: dict[Component, Quantity] = {}
    details: dict[str, DetailValue] = {"context_follows": bool(flags & _F_CONTEXT_FOLLOWS)}
    conditions: set[Condition] = set()
    if flags & _F_CONCENTRATION:
        # Concentration SFLOAT, then Type (low nibble) / Sample Location (high nibble).
        need(MEASUREMENT, data, offset, 3, "concentration_type_location")
        raw, type_location = U16_U8.unpack_from(data, offset)
        offset += 3
        sample_type = SAMPLE_TYPE_CODES.get(type_location & 0x0F)
        if sample_type is None:
            raise bad(MEASUREMENT, data, f"reserved sample type {type_location & 0x0F:#x}")
        location = SAMPLE_LOCATION_CODES.get(type_location >> 4)
        if location is None:
            raise bad(MEASUREMENT, data, f"reserved sample location {type_location >> 4:#x}")
        unit = GlucoseUnit.MOL_PER_L if flags & _F_MOL_PER_L else GlucoseUnit.KG_PER_L
        values[Component.GLUCOSE] = _glucose_quantity(raw, unit)
        details["units"] = unit
        details["sample_type"] = sample_type
        details["sample_location"] = location
        if _is_control_solution(sample_type, location):
            conditions.add(Condition.CONTROL_SOLUTION)
    if flags & _F_STATUS:
        need(MEASUREMENT, data, offset, 2, "sensor_status_annunciation")
        (status,) = U16.unpack_from(data, offset)
        offset += 2
        conditions |= flags_to_set(status, STATUS_BITS)
    check_end(MEASUREMENT, data, offset, rfu_flags=bool(flags & _F_RFU))
    return Measurement(
        kind=Kind.GLUCOSE,
        values=values,
        device_time=device_time,
        time_offset_minutes=time_offset,
        sequence=sequence,
        conditions=frozenset(conditions),
        details=details,
    )


def _wire_decimal(q: Quantity, unit: GlucoseUnit) -> Decimal:
    if q.original_value is None:
        raise UnrepresentableValueError(f"{MEASUREMENT}: glucose has neither value nor special")
    display = Decimal(repr(q.original_value))
    return display / (MMOLL_PER_MOLL if unit is GlucoseUnit.MOL_PER_L else MGDL_PER_KGL)


def _detail_enum(m: Measurement, key: str, cls: type[T]) -> T:
    raw = m.details.get(key)
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return cls(raw)
    except ValueError:
        raise UnrepresentableValueError(f"{MEASUREMENT}: details[{key!r}]={raw!r}") from None


def encode_glucose_measurement(m: Measurement) -> bytes:
    """Bytes a meter would notify for ``m`` (inverse of :func:`parse_glucose_measurement`)."""
    if m.kind is not Kind.GLUCOSE or m.sequence is None:
        raise UnrepresentableValueError(f"{MEASUREMENT}: needs kind=glucose and a sequence")
    if not 0 <= m.sequence <= 0xFFFF:
        raise UnrepresentableValueError(f"{MEASUREMENT}: sequence {m.sequence} not u16")
    flags = _F_CONTEXT_FOLLOWS if m.details.get("context_follows") else 0
    parts = [b"", U16.pack(m.sequence), encode_date_time(m.device_time)]
    if m.time_offset_minutes is not None:
        flags |= _F_TIME_OFFSET
        if not -0x8000 <= m.time_offset_minutes <= 0x7FFF:
            raise UnrepresentableValueError(f"{MEASUREMENT}: time offset not s16")
        parts.append(S16.pack(m.time_offset_minutes))
    q = m.values.get(Component.GLUCOSE)
    control = False
    if q is not None:
        flags |= _F_CONCENTRATION
        unit = _detail_enum(m, "units", GlucoseUnit)
        if unit is GlucoseUnit.MOL_PER_L:
            flags |= _F_MOL_PER_L
        sample_type = _detail_enum(m, "sample_type", SampleType)
        location = _detail_enum(m, "sample_location", SampleLocation)
        control = _is_control_solution(sample_type, location)
        word = (
            original_sfloat(MEASUREMENT, q)
            if q.special is not None
            else encode_sfloat(_wire_decimal(q, unit))
        )
        parts.append(U16_U8.pack(word, _TYPE_CODE[sample_type] | _LOCATION_CODE[location] << 4))
    if (Condition.CONTROL_SOLUTION in m.conditions) != control:
        raise UnrepresentableValueError(
            f"{MEASUREMENT}: CONTROL_SOLUTION must match sample type/location"
        )
    unknown = m.conditions - _STATUS_CONDITIONS - {Condition.CONTROL_SOLUTION}
    if unknown:
        raise UnrepresentableValueError(f"{MEASUREMENT}: cannot encode {sorted(unknown)}")
    status = set_to_flags(m.conditions, STATUS_BITS)
    if status:
        flags |= _F_STATUS
        parts.append(U16.pack(status))
    parts[0] = U8.pack(flags)
    return b"".join(parts)


def glucose_measurement(
    *,
    sequence: int,
    device_time: datetime | None,
    mg_dl: float | None = None,
    mmol_l: float | None = None,
    sample_type: SampleType = SampleType.CAPILLARY_PLASMA,
    sample_location: SampleLocation = SampleLocation.FINGER,
    time_offset_minutes: int | None = None,
    conditions: frozenset[Condition] = frozenset(),
    context_follows: bool = False,
) -> Measurement:
    """Build the Measurement a meter reading mg/dL (or mmol/L) would decode to.

    For simulators and tests: the result equals ``parse_glucose_measurement`` of its
    encoding.  Give ``mg_dl`` (kg/L on the wire) or ``mmol_l`` (mol/L), or neither.
    """
    details: dict[str, DetailValue] = {"context_follows": context_follows}
    values: dict[Component, Quantity] = {}
    cond = set(conditions)
    if mg_dl is not None and mmol_l is not None:
        raise UnrepresentableValueError("give mg_dl or mmol_l, not both")
    if mg_dl is not None or mmol_l is not None:
        if mg_dl is not None:
            details["units"] = GlucoseUnit.KG_PER_L
            values[Component.GLUCOSE] = Quantity(mg_dl, "mg/dL", mg_dl, "mg/dL")
        elif mmol_l is not None:
            details["units"] = GlucoseUnit.MOL_PER_L
            values[Component.GLUCOSE] = Quantity(
                _mgdl_from_mmoll(Decimal(repr(mmol_l))), "mg/dL", mmol_l, "mmol/L"
            )
        details["sample_type"] = sample_type
        details["sample_location"] = sample_location
        if _is_control_solution(sample_type, sample_location):
            cond.add(Condition.CONTROL_SOLUTION)
    return Measurement(
        kind=Kind.GLUCOSE,
        values=values,
        device_time=device_time,
        time_offset_minutes=time_offset_minutes,
        sequence=sequence,
        conditions=frozenset(cond),
        details=details,
    )


# --- Glucose Measurement Context (GSS §3.105) -------------------------------------


class CarbohydrateId(enum.StrEnum):
    BREAKFAST = "breakfast"
    LUNCH = "lunch"
    DINNER = "dinner"
    SNACK = "snack"
    DRINK = "drink"
    SUPPER = "supper"
    BRUNCH = "brunch"


class Meal(enum.StrEnum):
    PREPRANDIAL = "preprandial"
    POSTPRANDIAL = "postprandial"
    FASTING = "fasting"
    CASUAL = "casual"
    BEDTIME = "bedtime"


class Tester(enum.StrEnum):
    SELF = "self"
    HEALTH_CARE_PROFESSIONAL = "health_care_professional"
    LAB_TEST = "lab_test"
    NOT_AVAILABLE = "not_available"


class Health(enum.StrEnum):
    MINOR_HEALTH_ISSUES = "minor_health_issues"
    MAJOR_HEALTH_ISSUES = "major_health_issues"
    DURING_MENSES = "during_menses"
    UNDER_STRESS = "under_stress"
    NO_HEALTH_ISSUES = "no_health_issues"
    NOT_AVAILABLE = "not_available"


class MedicationId(enum.StrEnum):
    RAPID_ACTING_INSULIN = "rapid_acting_insulin"
    SHORT_ACTING_INSULIN = "short_acting_insulin"
    INTERMEDIATE_ACTING_INSULIN = "intermediate_acting_insulin"
    LONG_ACTING_INSULIN = "long_acting_insulin"
    PRE_MIXED_INSULIN = "pre_mixed_insulin"


def _codes(cls: type[T], not_available: T | None = None) -> dict[int, T]:
    codes = {i + 1: member for i, member in enumerate(m for m in cls if m is not not_available)}
    if not_available is not None:
        codes[15] = not_available
    return codes


_CARB = _codes(CarbohydrateId)
_MEAL = _codes(Meal)
_TESTER = _codes(Tester, Tester.NOT_AVAILABLE)
_HEALTH = _codes(Health, Health.NOT_AVAILABLE)
_MEDICATION = _codes(MedicationId)

EXERCISE_DURATION_OVERRUN = 0xFFFF  # "overrun": longer than 65534 s


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """Glucose Measurement Context, matched to its measurement by ``sequence``.

    Amounts are Quantities: carbohydrate in grams (wire: kg), medication in mg (wire:
    kg) or mL (wire: L), HbA1c in %.
    """

    sequence: int
    carbohydrate: CarbohydrateId | None = None
    carbohydrate_amount: Quantity | None = None
    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    exercise_duration_s: int | None = None  # 0xFFFF = overrun
    exercise_intensity_percent: int | None = None
    medication: MedicationId | None = None
    medication_amount: Quantity | None = None
    hba1c: Quantity | None = None
    extended_flags: int | None = None  # all bits RFU in GLS 1.0.1; kept for re-encoding


_C_CARB = 0x01
_C_MEAL = 0x02
_C_TESTER_HEALTH = 0x04
_C_EXERCISE = 0x08
_C_MEDICATION = 0x10
_C_MEDICATION_LITERS = 0x20
_C_HBA1C = 0x40
_C_EXTENDED = 0x80


_UNIT_FACTOR: Mapping[tuple[str, str], Decimal] = {
    ("kg", "g"): Decimal(1000),
    ("kg", "mg"): Decimal(1_000_000),
    ("L", "mL"): Decimal(1000),
}


def _amount(raw: int, original_unit: str, unit: str) -> Quantity:
    """Quantity in ``unit`` for an SFLOAT in ``original_unit`` (exact decimal scaling)."""
    exact = sfloat_decimal(raw)
    if not isinstance(exact, Decimal):
        return Quantity(None, unit, None, original_unit, exact)
    return Quantity(
        float(exact * _UNIT_FACTOR[original_unit, unit]), unit, float(exact), original_unit
    )


def _code(name: str, data: bytes, table: Mapping[int, T], code: int) -> T:
    member = table.get(code)
    if member is None:
        raise bad(CONTEXT, data, f"reserved {name} {code:#x}")
    return member


def parse_glucose_context(data: bytes) -> GlucoseContext:
    """Decode a Glucose Measurement Context notification (GSS §3.105)."""
    # Flags u8, sequence u16, [extended flags u8], then optional fields in flag order.
    need(CONTEXT, data, 0, 3, "flags_sequence_number")
    flags = data[0]
    (sequence,) = U16.unpack_from(data, 1)
    offset = 3
    ctx = GlucoseContext(sequence=sequence)
    if flags & _C_EXTENDED:
        need(CONTEXT, data, offset, 1, "extended_flags")
        ctx = replace(ctx, extended_flags=data[offset])
        offset += 1
    if flags & _C_CARB:
        need(CONTEXT, data, offset, 3, "carbohydrate")
        code, raw = U8_U16.unpack_from(data, offset)
        offset += 3
        ctx = replace(
            ctx,
            carbohydrate=_code("carbohydrate id", data, _CARB, code),
            carbohydrate_amount=_amount(raw, "kg", "g"),
        )
    if flags & _C_MEAL:
        need(CONTEXT, data, offset, 1, "meal")
        ctx = replace(ctx, meal=_code("meal", data, _MEAL, data[offset]))
        offset += 1
    if flags & _C_TESTER_HEALTH:
        # Tester low nibble, Health high nibble.
        need(CONTEXT, data, offset, 1, "tester_health")
        ctx = replace(
            ctx,
            tester=_code("tester", data, _TESTER, data[offset] & 0x0F),
            health=_code("health", data, _HEALTH, data[offset] >> 4),
        )
        offset += 1
    if flags & _C_EXERCISE:
        need(CONTEXT, data, offset, 3, "exercise")
        duration, intensity = U16_U8.unpack_from(data, offset)
        offset += 3
        if intensity > 100:
            raise bad(CONTEXT, data, f"exercise intensity {intensity} % > 100")
        ctx = replace(ctx, exercise_duration_s=duration, exercise_intensity_percent=intensity)
    if flags & _C_MEDICATION:
        need(CONTEXT, data, offset, 3, "medication")
        code, raw = U8_U16.unpack_from(data, offset)
        offset += 3
        liters = bool(flags & _C_MEDICATION_LITERS)
        ctx = replace(
            ctx,
            medication=_code("medication id", data, _MEDICATION, code),
            medication_amount=_amount(raw, "L", "mL") if liters else _amount(raw, "kg", "mg"),
        )
    if flags & _C_HBA1C:
        need(CONTEXT, data, offset, 2, "hba1c")
        ctx = replace(ctx, hba1c=quantity(sfloat_decimal(U16.unpack_from(data, offset)[0]), "%"))
        offset += 2
    check_end(CONTEXT, data, offset)
    return ctx


def _pair_error(name: str) -> UnrepresentableValueError:
    return UnrepresentableValueError(f"{CONTEXT}: {name} fields must be set together")


def encode_glucose_context(ctx: GlucoseContext) -> bytes:
    """Inverse of :func:`parse_glucose_context`."""
    if not 0 <= ctx.sequence <= 0xFFFF:
        raise UnrepresentableValueError(f"{CONTEXT}: sequence {ctx.sequence} not u16")
    flags = 0
    body: list[bytes] = []
    if ctx.extended_flags is not None:
        flags |= _C_EXTENDED
        body.append(U8.pack(ctx.extended_flags))
    if (ctx.carbohydrate is None) != (ctx.carbohydrate_amount is None):
        raise _pair_error("carbohydrate")
    if ctx.carbohydrate is not None and ctx.carbohydrate_amount is not None:
        flags |= _C_CARB
        body.append(
            U8_U16.pack(
                _inverse(_CARB)[ctx.carbohydrate], original_sfloat(CONTEXT, ctx.carbohydrate_amount)
            )
        )
    if ctx.meal is not None:
        flags |= _C_MEAL
        body.append(U8.pack(_inverse(_MEAL)[ctx.meal]))
    if (ctx.tester is None) != (ctx.health is None):
        raise _pair_error("tester/health")
    if ctx.tester is not None and ctx.health is not None:
        flags |= _C_TESTER_HEALTH
        body.append(U8.pack(_inverse(_TESTER)[ctx.tester] | _inverse(_HEALTH)[ctx.health] << 4))
    if (ctx.exercise_duration_s is None) != (ctx.exercise_intensity_percent is None):
        raise _pair_error("exercise")
    if ctx.exercise_duration_s is not None and ctx.exercise_intensity_percent is not None:
        flags |= _C_EXERCISE
        body.append(U16_U8.pack(ctx.exercise_duration_s, ctx.exercise_intensity_percent))
    if (ctx.medication is None) != (ctx.medication_amount is None):
        raise _pair_error("medication")
    if ctx.medication is not None and ctx.medication_amount is not None:
        flags |= _C_MEDICATION
        if ctx.medication_amount.original_unit == "L":
            flags |= _C_MEDICATION_LITERS
        body.append(
            U8_U16.pack(
                _inverse(_MEDICATION)[ctx.medication],
                original_sfloat(CONTEXT, ctx.medication_amount),
            )
        )
    if ctx.hba1c is not None:
        flags |= _C_HBA1C
        body.append(U16.pack(original_sfloat(CONTEXT, ctx.hba1c)))
    try:
        return U8.pack(flags) + U16.pack(ctx.sequence) + b"".join(body)
    except struct_error as exc:
        raise UnrepresentableValueError(f"{CONTEXT}: {exc}") from exc


def _inverse(table: Mapping[int, T]) -> dict[T, int]:
    return {member: code for code, member in table.items()}


# --- Glucose Feature (GSS §3.103) ----------------------------------------------------


class GlucoseFeature(enum.StrEnum):
    LOW_BATTERY_DETECTION = "low_battery_detection"
    SENSOR_MALFUNCTION_DETECTION = "sensor_malfunction_detection"
    SENSOR_SAMPLE_SIZE = "sensor_sample_size"
    SENSOR_STRIP_INSERTION_ERROR_DETECTION = "sensor_strip_insertion_error_detection"
    SENSOR_STRIP_TYPE_ERROR_DETECTION = "sensor_strip_type_error_detection"
    SENSOR_RESULT_HIGH_LOW_DETECTION = "sensor_result_high_low_detection"
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION = "sensor_temperature_high_low_detection"
    SENSOR_READ_INTERRUPT_DETECTION = "sensor_read_interrupt_detection"
    GENERAL_DEVICE_FAULT = "general_device_fault"
    TIME_FAULT = "time_fault"
    MULTIPLE_BOND = "multiple_bond"


FEATURE_BITS: tuple[tuple[int, GlucoseFeature], ...] = bit_table(GlucoseFeature)


@dataclass(frozen=True, slots=True)
class GlucoseFeatures:
    """Glucose Feature: the supported features (b11-b15 RFU, ignored)."""

    supported: frozenset[GlucoseFeature] = frozenset()


def parse_glucose_feature(data: bytes) -> GlucoseFeatures:
    """Decode Glucose Feature (GSS §3.103): u16 bit field."""
    return GlucoseFeatures(parse_feature_bits(FEATURE, data, FEATURE_BITS))


def encode_glucose_feature(features: GlucoseFeatures) -> bytes:
    return encode_feature_bits(features.supported, FEATURE_BITS)
