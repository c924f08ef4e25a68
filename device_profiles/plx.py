"""Pulse Oximeter Service (0x1822): PLX Spot-Check Measurement (0x2A5E).

References: Pulse Oximeter Service (PLXS) v1.0.1 §3.1; GSS §3.172 PLX Spot-Check
Measurement.

Layout: flags u8 (b0 timestamp, b1 measurement status, b2 device and sensor status,
b3 pulse amplitude index, b4 device clock is not set), SpO2PR-Spot-Check SpO2 SFLOAT
(%), PR SFLOAT (beats/min), [timestamp 7], [measurement status u16], [device and
sensor status 24 bit], [pulse amplitude index SFLOAT %].

Status bits become Conditions (measurement status b5-b15; device and sensor status
b0-b15; flag b4 -> ``Condition.DEVICE_CLOCK_NOT_SET``).  Reserved bits (flags b5-b7,
measurement status b0-b4, device status b16-b23) are ignored; trailing bytes are
rejected unless a reserved flag bit is set.
"""

from __future__ import annotations

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

__all__ = ["encode_plx_spot_check", "parse_plx_spot_check"]

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
