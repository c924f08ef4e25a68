"""Pulse Oximeter Service (0x1822): PLX Spot-Check Measurement (0x2A5E).

References: Pulse Oximeter Service (PLXS) v1.0.1 §3.1; GSS §3.172 PLX Spot-Check
Measurement.

Layout: flags u8 (b0 timestamp, b1 measurement status, b2 device and sensor status,
b3 pulse amplitude index, b4 device clock is not set), SpO2PR-Spot-Check SpO2 SFLOAT
(%), PR SFLOAT (beats/min), [timestamp 7], [measurement status u16], [device and
sensor status 24 bit], [pulse amplitude index SFLOAT %].

PLX Features (0x2A60, PLXS §3.3; GSS §3.171): Supported Features u16 (b0 measurement
status support present, b1 device and sensor status support present, b2 spot-check
measurement storage, b3 spot-check timestamp, b4 SpO2PR-Fast, b5 SpO2PR-Slow, b6 pulse
amplitude index, b7 multiple bonds), then [Measurement Status Support u16] if b0, then
[Device and Sensor Status Support 24 bit] if b1 — the same bit layouts as the
measurement's status fields, decoded to the Conditions the sensor can report.

Status bits become Conditions (measurement status b5-b15; device and sensor status
b0-b15; flag b4 -> ``Condition.DEVICE_CLOCK_NOT_SET``).  Reserved bits (flags b5-b7,
measurement status b0-b4, device status b16-b23) are ignored; trailing bytes are
rejected unless a reserved flag bit is set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from device_profiles._wire import (
    U8,
    U16,
    bit_table,
    check_end,
    flags_to_set,
    need,
    original_sfloat,
    quantity,
    set_to_flags,
    sfloat_decimal,
)
from device_profiles.date_time import encode_date_time, parse_optional_date_time
from device_profiles.errors import UnrepresentableValueError
from device_profiles.model import Component, Condition, Kind, Measurement

__all__ = [
    "PlxFeature",
    "PlxFeatures",
    "encode_plx_features",
    "encode_plx_spot_check",
    "parse_plx_features",
    "parse_plx_spot_check",
]

NAME = "PLX Spot-Check Measurement (0x2A5E)"

_F_TIME = 0x01
_F_MEASUREMENT_STATUS = 0x02
_F_DEVICE_STATUS = 0x04
_F_PAI = 0x08
_F_CLOCK_NOT_SET = 0x10
_F_RFU = 0xE0

MEASUREMENT_STATUS_BITS: tuple[tuple[int, Condition], ...] = bit_table(
    (
        Condition.MEASUREMENT_ONGOING,
        Condition.EARLY_ESTIMATED_DATA,
        Condition.VALIDATED_DATA,
        Condition.FULLY_QUALIFIED_DATA,
        Condition.DATA_FROM_STORAGE,
        Condition.DEMONSTRATION_DATA,
        Condition.TESTING_DATA,
        Condition.CALIBRATION_ONGOING,
        Condition.MEASUREMENT_UNAVAILABLE,
        Condition.QUESTIONABLE_MEASUREMENT,
        Condition.INVALID_MEASUREMENT,
    ),
    first_bit=5,
)
DEVICE_STATUS_BITS: tuple[tuple[int, Condition], ...] = bit_table(
    (
        Condition.EXTENDED_DISPLAY_UPDATE_ONGOING,
        Condition.EQUIPMENT_MALFUNCTION,
        Condition.SIGNAL_PROCESSING_IRREGULARITY,
        Condition.INADEQUATE_SIGNAL,
        Condition.POOR_SIGNAL,
        Condition.LOW_PERFUSION,
        Condition.ERRATIC_SIGNAL,
        Condition.NONPULSATILE_SIGNAL,
        Condition.QUESTIONABLE_PULSE,
        Condition.SIGNAL_ANALYSIS_ONGOING,
        Condition.SENSOR_INTERFERENCE,
        Condition.SENSOR_UNCONNECTED,
        Condition.UNKNOWN_SENSOR,
        Condition.SENSOR_DISPLACED,
        Condition.SENSOR_MALFUNCTION,
        Condition.SENSOR_DISCONNECTED,
    )
)
_MEASUREMENT_CONDITIONS = frozenset(c for _, c in MEASUREMENT_STATUS_BITS)
_DEVICE_CONDITIONS = frozenset(c for _, c in DEVICE_STATUS_BITS)


def parse_plx_spot_check(data: bytes) -> Measurement:
    """Decode a PLX Spot-Check Measurement indication (GSS §3.172)."""
    # Flags u8, SpO2 and PR SFLOAT, then the optional fields in flag order (PLXS §3.1).
    need(NAME, data, 0, 5, "flags_spo2_pr")
    flags = data[0]
    spo2, pulse = U16.unpack_from(data, 1)[0], U16.unpack_from(data, 3)[0]
    values = {
        Component.SPO2: quantity(sfloat_decimal(spo2), "%"),
        Component.PULSE: quantity(sfloat_decimal(pulse), "/min"),
    }
    device_time, offset = parse_optional_date_time(
        data, 5, flags & _F_TIME, characteristic=NAME, field="timestamp"
    )
    conditions: set[Condition] = set()
    if flags & _F_CLOCK_NOT_SET:
        conditions.add(Condition.DEVICE_CLOCK_NOT_SET)
    if flags & _F_MEASUREMENT_STATUS:
        need(NAME, data, offset, 2, "measurement_status")
        conditions |= flags_to_set(U16.unpack_from(data, offset)[0], MEASUREMENT_STATUS_BITS)
        offset += 2
    if flags & _F_DEVICE_STATUS:
        need(NAME, data, offset, 3, "device_and_sensor_status")
        conditions |= flags_to_set(
            int.from_bytes(data[offset : offset + 3], "little"), DEVICE_STATUS_BITS
        )
        offset += 3
    if flags & _F_PAI:
        need(NAME, data, offset, 2, "pulse_amplitude_index")
        values[Component.PULSE_AMPLITUDE_INDEX] = quantity(
            sfloat_decimal(U16.unpack_from(data, offset)[0]), "%"
        )
        offset += 2
    check_end(NAME, data, offset, rfu_flags=bool(flags & _F_RFU))
    return Measurement(
        kind=Kind.SPO2, values=values, device_time=device_time, conditions=frozenset(conditions)
    )


def encode_plx_spot_check(m: Measurement) -> bytes:
    """Inverse of :func:`parse_plx_spot_check`."""
    if m.kind is not Kind.SPO2:
        raise UnrepresentableValueError(f"{NAME}: kind {m.kind} is not spo2")
    spo2, pulse = m.values.get(Component.SPO2), m.values.get(Component.PULSE)
    if spo2 is None or pulse is None:
        raise UnrepresentableValueError(f"{NAME}: SpO2 and pulse rate are mandatory")
    unknown = (
        m.conditions
        - _MEASUREMENT_CONDITIONS
        - _DEVICE_CONDITIONS
        - {Condition.DEVICE_CLOCK_NOT_SET}
    )
    if unknown:
        raise UnrepresentableValueError(f"{NAME}: cannot encode {sorted(unknown)}")
    flags = _F_CLOCK_NOT_SET if Condition.DEVICE_CLOCK_NOT_SET in m.conditions else 0
    parts = [b"", U16.pack(original_sfloat(NAME, spo2)), U16.pack(original_sfloat(NAME, pulse))]
    if m.device_time is not None:
        flags |= _F_TIME
        parts.append(encode_date_time(m.device_time))
    measurement_status = set_to_flags(m.conditions, MEASUREMENT_STATUS_BITS)
    if measurement_status:
        flags |= _F_MEASUREMENT_STATUS
        parts.append(U16.pack(measurement_status))
    device_status = set_to_flags(m.conditions, DEVICE_STATUS_BITS)
    if device_status:
        flags |= _F_DEVICE_STATUS
        parts.append(device_status.to_bytes(3, "little"))
    pai = m.values.get(Component.PULSE_AMPLITUDE_INDEX)
    if pai is not None:
        flags |= _F_PAI
        parts.append(U16.pack(original_sfloat(NAME, pai)))
    parts[0] = U8.pack(flags)
    return b"".join(parts)


# ---------------------------------------------------------------------- PLX Features
FEATURES_NAME = "PLX Features (0x2A60)"


class PlxFeature(enum.StrEnum):
    """PLX Features, Supported Features b0-b7 (PLXS §3.3.1.1)."""

    MEASUREMENT_STATUS = "measurement_status"  # b0: Measurement Status Support follows
    DEVICE_AND_SENSOR_STATUS = "device_and_sensor_status"  # b1: its support field follows
    SPOT_CHECK_STORAGE = "spot_check_storage"  # b2: stored records (through the RACP)
    SPOT_CHECK_TIMESTAMP = "spot_check_timestamp"
    SPO2PR_FAST = "spo2pr_fast"
    SPO2PR_SLOW = "spo2pr_slow"
    PULSE_AMPLITUDE_INDEX = "pulse_amplitude_index"
    MULTIPLE_BONDS = "multiple_bonds"


_PLX_FEATURE_BITS = bit_table(tuple(PlxFeature))


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    """What a pulse oximeter supports; the two support sets are present on the wire
    iff ``MEASUREMENT_STATUS`` / ``DEVICE_AND_SENSOR_STATUS`` are in ``supported``."""

    supported: frozenset[PlxFeature] = frozenset()
    measurement_status_support: frozenset[Condition] = frozenset()
    device_status_support: frozenset[Condition] = frozenset()


def parse_plx_features(data: bytes) -> PlxFeatures:
    """Decode PLX Features (PLXS §3.3); reserved bits are ignored, trailing bytes not."""
    need(FEATURES_NAME, data, 0, 2, "supported_features")
    supported = flags_to_set(U16.unpack_from(data, 0)[0], _PLX_FEATURE_BITS)
    offset = 2
    measurement: frozenset[Condition] = frozenset()
    device: frozenset[Condition] = frozenset()
    if PlxFeature.MEASUREMENT_STATUS in supported:
        need(FEATURES_NAME, data, offset, 2, "measurement_status_support")
        measurement = flags_to_set(U16.unpack_from(data, offset)[0], MEASUREMENT_STATUS_BITS)
        offset += 2
    if PlxFeature.DEVICE_AND_SENSOR_STATUS in supported:
        need(FEATURES_NAME, data, offset, 3, "device_and_sensor_status_support")
        device = flags_to_set(
            int.from_bytes(data[offset : offset + 3], "little"), DEVICE_STATUS_BITS
        )
        offset += 3
    check_end(FEATURES_NAME, data, offset)
    return PlxFeatures(supported, measurement, device)


def encode_plx_features(features: PlxFeatures) -> bytes:
    """Inverse of :func:`parse_plx_features`."""
    for field_name, members, table, flag in (
        (
            "measurement status",
            features.measurement_status_support,
            _MEASUREMENT_CONDITIONS,
            PlxFeature.MEASUREMENT_STATUS,
        ),
        (
            "device and sensor status",
            features.device_status_support,
            _DEVICE_CONDITIONS,
            PlxFeature.DEVICE_AND_SENSOR_STATUS,
        ),
    ):
        if members - table:
            raise UnrepresentableValueError(
                f"{FEATURES_NAME}: not {field_name} bits: {sorted(members - table)}"
            )
        if members and flag not in features.supported:
            raise UnrepresentableValueError(
                f"{FEATURES_NAME}: {field_name} support given without the {flag} feature"
            )
    parts = [U16.pack(set_to_flags(features.supported, _PLX_FEATURE_BITS))]
    if PlxFeature.MEASUREMENT_STATUS in features.supported:
        parts.append(
            U16.pack(set_to_flags(features.measurement_status_support, MEASUREMENT_STATUS_BITS))
        )
    if PlxFeature.DEVICE_AND_SENSOR_STATUS in features.supported:
        device = set_to_flags(features.device_status_support, DEVICE_STATUS_BITS)
        parts.append(device.to_bytes(3, "little"))
    return b"".join(parts)
