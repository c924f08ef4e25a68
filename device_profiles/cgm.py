"""Continuous Glucose Monitoring Service (0x181F): CGM Measurement (0x2AA7), CGM
Feature (0x2AA8), CGM Status (0x2AA9) and CGM Session Start Time (0x2AAA).

References: CGM Service (CGMS) v1.0.1 §3.1-3.4; GSS §3.55-3.58.

CGM Measurement: one notification holds one or more records, each ``size u8`` (the
record length including itself and the CRC), ``flags u8``, glucose SFLOAT mg/dL, time
offset u16 (minutes since the session start), the Sensor Status Annunciation octets
the flags announce, trend SFLOAT ((mg/dL)/min), quality SFLOAT (%) and, when the sensor
supports E2E safety, an E2E-CRC u16.  The parser returns a tuple of Measurements.

* Sensor Status Annunciation order (CGMS §3.2.1.5, LSO first): Status-Octet (flag b7,
  bits 0-7), Cal/Temp-Octet (flag b6, bits 8-15), Warning-Octet (flag b5, bits
  16-23).  Nordic's Android library reads the flag-b5 octet first and decodes it as
  the Status bits; we follow the spec (see docs/device-profiles.md).
* E2E-CRC: present when ``size`` is 2 more than the fields the flags announce;
  CRC-CCITT (polynomial 0x1021 reflected, seed 0xFFFF, no final XOR, i.e.
  CRC-16/MCRF4XX as Nordic uses) over the record from the size byte up to the CRC.
  A mismatch is a MalformedPayloadError.  ``details["e2e_crc"]`` records presence.
* ``time_offset_minutes`` is the offset from the CGM Session Start Time;
  ``device_time`` is None (the session start comes from 0x2AAA).
* Reserved flag bits (b2-b4) and annunciation bits are ignored; a ``size`` that
  matches neither layout, or a record running past the notification, is an error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from device_profiles._wire import (
    U8,
    U16,
    bad,
    check_end,
    flags_to_set,
    need,
    original_sfloat,
    quantity,
    set_to_flags,
    sfloat_decimal,
)
from device_profiles.current_time import (
    DstOffset,
    encode_dst_offset,
    encode_time_zone,
    parse_dst_offset,
    parse_time_zone,
)
from device_profiles.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time
from device_profiles.errors import MalformedPayloadError, UnrepresentableValueError
from device_profiles.glucose import SAMPLE_TYPE_CODES, SampleLocation, SampleType
from device_profiles.ieee11073 import encode_sfloat
from device_profiles.model import Component, Condition, DetailValue, Kind, Measurement, Quantity

__all__ = [
    "CgmFeature",
    "CgmFeatures",
    "CgmSessionStartTime",
    "CgmStatus",
    "SocpOpcode",
    "SocpProtocolError",
    "SocpRequest",
    "SocpResponse",
    "SocpResponseCode",
    "cgm_measurement",
    "crc16_mcrf4xx",
    "encode_cgm_feature",
    "encode_cgm_measurement",
    "encode_cgm_session_run_time",
    "encode_cgm_session_start_time",
    "encode_cgm_status",
    "encode_socp_request",
    "encode_socp_response",
    "parse_cgm_feature",
    "parse_cgm_measurement",
    "parse_cgm_session_run_time",
    "parse_cgm_session_start_time",
    "parse_cgm_status",
    "parse_socp_request",
    "parse_socp_response",
]

MEASUREMENT = "CGM Measurement (0x2AA7)"
FEATURE = "CGM Feature (0x2AA8)"
STATUS = "CGM Status (0x2AA9)"
SESSION_START = "CGM Session Start Time (0x2AAA)"
SESSION_RUN_TIME = "CGM Session Run Time (0x2AAB)"
SOCP = "CGM Specific Ops Control Point (0x2AAC)"


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_mcrf4xx(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-CCITT as CGMS §3.2.1.9 defines it (reflected 0x1021, seed 0xFFFF)."""
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# Sensor Status Annunciation as one 24-bit value: status octet | cal/temp << 8 | warning << 16.
ANNUNCIATION_BITS: tuple[tuple[int, Condition], ...] = (
    (1 << 0, Condition.SESSION_STOPPED),
    (1 << 1, Condition.BATTERY_LOW),
    (1 << 2, Condition.SENSOR_TYPE_INCORRECT),
    (1 << 3, Condition.SENSOR_MALFUNCTION),
    (1 << 4, Condition.DEVICE_SPECIFIC_ALERT),
    (1 << 5, Condition.GENERAL_DEVICE_FAULT),
    (1 << 8, Condition.TIME_SYNC_REQUIRED),
    (1 << 9, Condition.CALIBRATION_NOT_ALLOWED),
    (1 << 10, Condition.CALIBRATION_RECOMMENDED),
    (1 << 11, Condition.CALIBRATION_REQUIRED),
    (1 << 12, Condition.TEMPERATURE_TOO_HIGH),
    (1 << 13, Condition.TEMPERATURE_TOO_LOW),
    (1 << 16, Condition.BELOW_PATIENT_LOW),
    (1 << 17, Condition.ABOVE_PATIENT_HIGH),
    (1 << 18, Condition.BELOW_HYPO),
    (1 << 19, Condition.ABOVE_HYPER),
    (1 << 20, Condition.RATE_OF_DECREASE_EXCEEDED),
    (1 << 21, Condition.RATE_OF_INCREASE_EXCEEDED),
    (1 << 22, Condition.RESULT_BELOW_RANGE),
    (1 << 23, Condition.RESULT_ABOVE_RANGE),
)
_ANNUNCIATION_CONDITIONS = frozenset(c for _, c in ANNUNCIATION_BITS)

_F_TREND = 0x01
_F_QUALITY = 0x02
_F_WARNING = 0x20
_F_CAL_TEMP = 0x40
_F_STATUS = 0x80
# (flag, shift of the octet in the 24-bit annunciation), in wire order.
_OCTETS = ((_F_STATUS, 0), (_F_CAL_TEMP, 8), (_F_WARNING, 16))


def _check_crc(name: str, data: bytes, start: int, end: int) -> None:
    (sent,) = U16.unpack_from(data, end)
    computed = crc16_mcrf4xx(data[start:end])
    if sent != computed:
        raise bad(
            name,
            data,
            f"E2E-CRC mismatch at offset {end}: sent {sent:#06x}, computed {computed:#06x}",
        )


def _record(data: bytes, start: int) -> tuple[Measurement, int]:
    # CGMS §3.2.1: size, flags, concentration, time offset, annunciation, trend, quality, CRC.
    need(MEASUREMENT, data, start, 2, "size_flags")
    size, flags = data[start], data[start + 1]
    octets = [(flag, shift) for flag, shift in _OCTETS if flags & flag]
    fields_size = (
        6 + len(octets) + (2 if flags & _F_TREND else 0) + (2 if flags & _F_QUALITY else 0)
    )
    if size not in (fields_size, fields_size + 2):
        raise bad(
            MEASUREMENT,
            data,
            f"record at offset {start}: size {size} but flags 0x{flags:02x} need {fields_size} "
            f"(or {fields_size + 2} with E2E-CRC)",
        )
    need(MEASUREMENT, data, start, size, "record")
    crc = size == fields_size + 2
    if crc:
        _check_crc(MEASUREMENT, data, start, start + fields_size)
    raw, time_offset = U16.unpack_from(data, start + 2)[0], U16.unpack_from(data, start + 4)[0]
    offset = start + 6
    annunciation = 0
    for _, shift in octets:
        annunciation |= data[offset] << shift
        offset += 1
    values = {Component.GLUCOSE: quantity(sfloat_decimal(raw), "mg/dL")}
    if flags & _F_TREND:
        values[Component.CGM_TREND] = quantity(
            sfloat_decimal(U16.unpack_from(data, offset)[0]), "mg/dL/min"
        )
        offset += 2
    if flags & _F_QUALITY:
        values[Component.CGM_QUALITY] = quantity(
            sfloat_decimal(U16.unpack_from(data, offset)[0]), "%"
        )
        offset += 2
    details: dict[str, DetailValue] = {"e2e_crc": crc}
    m = Measurement(
        kind=Kind.CGM,
        values=values,
        time_offset_minutes=time_offset,
        conditions=flags_to_set(annunciation, ANNUNCIATION_BITS),
        details=details,
    )
    return m, start + size


def parse_cgm_measurement(data: bytes) -> tuple[Measurement, ...]:
    """Decode a CGM Measurement notification: every record it holds, in order."""
    if not data:
        raise bad(MEASUREMENT, data, "empty notification")
    records: list[Measurement] = []
    offset = 0
    while offset < len(data):
        record, offset = _record(data, offset)
        records.append(record)
    return tuple(records)


def _encode_record(m: Measurement) -> bytes:
    if m.kind is not Kind.CGM or m.time_offset_minutes is None:
        raise UnrepresentableValueError(f"{MEASUREMENT}: needs kind=cgm and a time offset")
    if not 0 <= m.time_offset_minutes <= 0xFFFF:
        raise UnrepresentableValueError(f"{MEASUREMENT}: time offset not u16")
    glucose = m.values.get(Component.GLUCOSE)
    if glucose is None:
        raise UnrepresentableValueError(f"{MEASUREMENT}: missing glucose")
    unknown = m.conditions - _ANNUNCIATION_CONDITIONS
    if unknown:
        raise UnrepresentableValueError(f"{MEASUREMENT}: cannot encode {sorted(unknown)}")
    annunciation = set_to_flags(m.conditions, ANNUNCIATION_BITS)
    flags = 0
    body = [U16.pack(original_sfloat(MEASUREMENT, glucose)), U16.pack(m.time_offset_minutes)]
    for flag, shift in _OCTETS:
        octet = (annunciation >> shift) & 0xFF
        if octet:
            flags |= flag
            body.append(U8.pack(octet))
    for flag, component in ((_F_TREND, Component.CGM_TREND), (_F_QUALITY, Component.CGM_QUALITY)):
        q = m.values.get(component)
        if q is not None:
            flags |= flag
            body.append(U16.pack(original_sfloat(MEASUREMENT, q)))
    payload = b"".join(body)
    crc = bool(m.details.get("e2e_crc"))
    size = 2 + len(payload) + (2 if crc else 0)
    record = bytes((size, flags)) + payload
    return record + U16.pack(crc16_mcrf4xx(record)) if crc else record


def encode_cgm_measurement(records: tuple[Measurement, ...] | Measurement) -> bytes:
    """One notification carrying ``records`` (inverse of :func:`parse_cgm_measurement`)."""
    if isinstance(records, Measurement):
        records = (records,)
    if not records:
        raise UnrepresentableValueError(f"{MEASUREMENT}: no records")
    return b"".join(_encode_record(m) for m in records)


# --- CGM Status (GSS §3.57) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CgmStatus:
    time_offset_minutes: int
    conditions: frozenset[Condition] = frozenset()
    e2e_crc: bool = False


def _crc_tail(name: str, data: bytes, size: int) -> bool:
    """True when an E2E-CRC follows ``size`` bytes of fields (and it checks out)."""
    if len(data) == size + 2:
        _check_crc(name, data, 0, size)
        return True
    check_end(name, data, size)
    return False


def parse_cgm_status(data: bytes) -> CgmStatus:
    """Decode CGM Status: time offset u16, 24-bit annunciation, [E2E-CRC]."""
    need(STATUS, data, 0, 5, "time_offset_status")
    crc = _crc_tail(STATUS, data, 5)
    annunciation = data[2] | data[3] << 8 | data[4] << 16
    return CgmStatus(
        U16.unpack_from(data, 0)[0], flags_to_set(annunciation, ANNUNCIATION_BITS), crc
    )


def _with_crc(body: bytes, crc: bool) -> bytes:
    return body + U16.pack(crc16_mcrf4xx(body)) if crc else body


def encode_cgm_status(status: CgmStatus) -> bytes:
    if not 0 <= status.time_offset_minutes <= 0xFFFF:
        raise UnrepresentableValueError(f"{STATUS}: time offset not u16")
    bits = set_to_flags(status.conditions, ANNUNCIATION_BITS)
    return _with_crc(
        U16.pack(status.time_offset_minutes) + bits.to_bytes(3, "little"), status.e2e_crc
    )


# --- CGM Session Start Time (GSS §3.58) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class CgmSessionStartTime:
    """Session start in device-local time, with the zone and DST the sensor knew."""

    start: datetime | None
    time_zone_minutes: int | None
    dst_offset: DstOffset
    e2e_crc: bool = False


def parse_cgm_session_start_time(data: bytes) -> CgmSessionStartTime:
    """Decode: Date Time (7), Time Zone sint8, DST Offset uint8, [E2E-CRC]."""
    need(SESSION_START, data, 0, DATE_TIME_SIZE + 2, "session_start_time")
    crc = _crc_tail(SESSION_START, data, DATE_TIME_SIZE + 2)
    start = parse_date_time(data, 0, characteristic=SESSION_START, field="session_start_time")
    return CgmSessionStartTime(
        start,
        parse_time_zone(SESSION_START, data, DATE_TIME_SIZE),
        parse_dst_offset(SESSION_START, data, DATE_TIME_SIZE + 1),
        crc,
    )


def encode_cgm_session_start_time(value: CgmSessionStartTime) -> bytes:
    body = (
        encode_date_time(value.start)
        + encode_time_zone(value.time_zone_minutes)
        + encode_dst_offset(value.dst_offset)
    )
    return _with_crc(body, value.e2e_crc)


# --- CGM Feature (GSS §3.56) ---------------------------------------------------------


class CgmFeature(enum.StrEnum):
    CALIBRATION = "calibration"
    PATIENT_HIGH_LOW_ALERTS = "patient_high_low_alerts"
    HYPO_ALERTS = "hypo_alerts"
    HYPER_ALERTS = "hyper_alerts"
    RATE_OF_INCREASE_DECREASE_ALERTS = "rate_of_increase_decrease_alerts"
    DEVICE_SPECIFIC_ALERT = "device_specific_alert"
    SENSOR_MALFUNCTION_DETECTION = "sensor_malfunction_detection"
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION = "sensor_temperature_high_low_detection"
    SENSOR_RESULT_HIGH_LOW_DETECTION = "sensor_result_high_low_detection"
    LOW_BATTERY_DETECTION = "low_battery_detection"
    SENSOR_TYPE_ERROR_DETECTION = "sensor_type_error_detection"
    GENERAL_DEVICE_FAULT = "general_device_fault"
    E2E_CRC = "e2e_crc"
    MULTIPLE_BOND = "multiple_bond"
    MULTIPLE_SESSIONS = "multiple_sessions"
    CGM_TREND_INFORMATION = "cgm_trend_information"
    CGM_QUALITY = "cgm_quality"


FEATURE_BITS = tuple((1 << i, f) for i, f in enumerate(CgmFeature))
_CGM_LOCATIONS = {
    1: SampleLocation.FINGER,
    2: SampleLocation.ALTERNATE_SITE_TEST,
    3: SampleLocation.EARLOBE,
    4: SampleLocation.CONTROL_SOLUTION,
    5: SampleLocation.SUBCUTANEOUS_TISSUE,
    15: SampleLocation.NOT_AVAILABLE,
}
_CGM_LOCATION_CODE = {v: k for k, v in _CGM_LOCATIONS.items()}
_TYPE_CODE = {v: k for k, v in SAMPLE_TYPE_CODES.items()}
_CRC_NOT_SUPPORTED = 0xFFFF


@dataclass(frozen=True, slots=True)
class CgmFeatures:
    supported: frozenset[CgmFeature]
    sample_type: SampleType
    sample_location: SampleLocation


def parse_cgm_feature(data: bytes) -> CgmFeatures:
    """Decode CGM Feature: features 24 bit, type/location nibbles, E2E-CRC u16 (mandatory
    field; 0xFFFF when E2E-CRC is not supported, otherwise verified)."""
    need(FEATURE, data, 0, 6, "features_type_location_crc")
    check_end(FEATURE, data, 6)
    features = flags_to_set(int.from_bytes(data[0:3], "little"), FEATURE_BITS)
    if CgmFeature.E2E_CRC in features:
        _check_crc(FEATURE, data, 0, 4)
    sample_type = SAMPLE_TYPE_CODES.get(data[3] & 0x0F)
    location = _CGM_LOCATIONS.get(data[3] >> 4)
    if sample_type is None or location is None:
        raise bad(FEATURE, data, f"reserved type/sample location {data[3]:#04x}")
    return CgmFeatures(features, sample_type, location)


def encode_cgm_feature(value: CgmFeatures) -> bytes:
    body = set_to_flags(value.supported, FEATURE_BITS).to_bytes(3, "little") + bytes(
        (_TYPE_CODE[value.sample_type] | _CGM_LOCATION_CODE[value.sample_location] << 4,)
    )
    if CgmFeature.E2E_CRC in value.supported:
        return body + U16.pack(crc16_mcrf4xx(body))
    return body + U16.pack(_CRC_NOT_SUPPORTED)


_ = Quantity  # re-exported type used in docs


def cgm_measurement(
    *,
    time_offset_minutes: int,
    mg_dl: float | Decimal,
    conditions: frozenset[Condition] = frozenset(),
    e2e_crc: bool = False,
) -> Measurement:
    """A CGM record as :func:`parse_cgm_measurement` returns it (for encoders/simulators).

    ``mg_dl`` must be representable as an SFLOAT (e.g. a whole number up to 2045; 2046
    and 2047 are the special values +INFINITY and NaN at exponent 0).
    """
    value = sfloat_decimal(encode_sfloat(float(mg_dl)))
    return Measurement(
        kind=Kind.CGM,
        values={Component.GLUCOSE: quantity(value, "mg/dL")},
        time_offset_minutes=time_offset_minutes,
        conditions=conditions,
        details={"e2e_crc": e2e_crc},
    )


# --- CGM Session Run Time (CGMS §3.5) ------------------------------------------------


def parse_cgm_session_run_time(data: bytes) -> tuple[int, bool]:
    """Decode: expected run time u16 hours, [E2E-CRC] -> (hours, CRC present)."""
    need(SESSION_RUN_TIME, data, 0, 2, "session_run_time")
    crc = _crc_tail(SESSION_RUN_TIME, data, 2)
    return U16.unpack_from(data, 0)[0], crc


def encode_cgm_session_run_time(hours: int, e2e_crc: bool = False) -> bytes:
    if not 0 <= hours <= 0xFFFF:
        raise UnrepresentableValueError(f"{SESSION_RUN_TIME}: {hours} h is not a u16")
    return _with_crc(U16.pack(hours), e2e_crc)


# --- CGM Specific Ops Control Point (CGMS §3.7) ---------------------------------------


class SocpOpcode(enum.IntEnum):
    """CGMS §3.7 Op Codes (the ones HomeVitals knows; others are answered "not supported")."""

    SET_COMMUNICATION_INTERVAL = 0x01
    GET_COMMUNICATION_INTERVAL = 0x02
    COMMUNICATION_INTERVAL_RESPONSE = 0x03
    SET_GLUCOSE_CALIBRATION_VALUE = 0x04
    GET_GLUCOSE_CALIBRATION_VALUE = 0x05
    GLUCOSE_CALIBRATION_VALUE_RESPONSE = 0x06
    START_SESSION = 0x1A
    STOP_SESSION = 0x1B
    RESPONSE_CODE = 0x1C


class SocpResponseCode(enum.IntEnum):
    """CGMS §3.7 Response Code values."""

    SUCCESS = 0x01
    OPCODE_NOT_SUPPORTED = 0x02
    INVALID_OPERAND = 0x03
    PROCEDURE_NOT_COMPLETED = 0x04
    PARAMETER_OUT_OF_RANGE = 0x05


class SocpProtocolError(MalformedPayloadError):
    """A SOCP write a sensor must reject; ``response_code`` is its answer (None: the
    bytes are not even a request, e.g. empty)."""

    def __init__(self, data: bytes, reason: str, response_code: SocpResponseCode | None) -> None:
        super().__init__(SOCP, data, reason)
        self.response_code = response_code


@dataclass(frozen=True, slots=True)
class SocpRequest:
    """``opcode`` as an int when it is not one we know (answered "not supported")."""

    opcode: SocpOpcode | int
    operand: bytes = b""
    e2e_crc: bool = False


@dataclass(frozen=True, slots=True)
class SocpResponse:
    """Opcode 0x1C: ``request_opcode`` answered ``code``."""

    request_opcode: SocpOpcode | int
    code: SocpResponseCode
    e2e_crc: bool = False


def _socp_body(data: bytes, e2e_crc: bool) -> bytes:
    # CGMS §3.7: with E2E-CRC supported, every SOCP value ends with the CRC over the rest.
    if not e2e_crc:
        return data
    if len(data) < 3:
        raise bad(SOCP, data, "E2E-CRC missing")
    _check_crc(SOCP, data, 0, len(data) - 2)
    return data[:-2]


def parse_socp_request(data: bytes, *, e2e_crc: bool = False) -> SocpRequest:
    """Decode a SOCP write: ``opcode u8, operand..., [E2E-CRC]``.

    Start/Stop Session take no operand (extra bytes: invalid operand).  A CRC error is a
    plain MalformedPayloadError (the sensor answers it with an ATT error, not on the SOCP).
    """
    need(SOCP, data, 0, 1, "opcode")
    body = _socp_body(data, e2e_crc)
    try:
        opcode: SocpOpcode | int = SocpOpcode(body[0])
    except ValueError:
        opcode = body[0]
    if opcode in (SocpOpcode.START_SESSION, SocpOpcode.STOP_SESSION) and len(body) != 1:
        raise SocpProtocolError(
            data, f"{SocpOpcode(opcode).name} takes no operand", SocpResponseCode.INVALID_OPERAND
        )
    return SocpRequest(opcode, body[1:], e2e_crc)


def encode_socp_request(request: SocpRequest) -> bytes:
    if not 0 <= request.opcode <= 0xFF:
        raise UnrepresentableValueError(f"{SOCP}: opcode {request.opcode} is not a u8")
    return _with_crc(bytes((request.opcode,)) + request.operand, request.e2e_crc)


def parse_socp_response(data: bytes, *, e2e_crc: bool = False) -> SocpResponse:
    """Decode a SOCP indication of opcode 0x1C: request opcode u8, response code u8."""
    body = _socp_body(data, e2e_crc)
    need(SOCP, body, 0, 3, "response")
    check_end(SOCP, body, 3)
    if body[0] != SocpOpcode.RESPONSE_CODE:
        raise bad(SOCP, data, f"opcode {body[0]:#04x} is not a response code")
    try:
        code = SocpResponseCode(body[2])
    except ValueError:
        raise bad(SOCP, data, f"reserved response code {body[2]:#04x}") from None
    request: SocpOpcode | int
    try:
        request = SocpOpcode(body[1])
    except ValueError:
        request = body[1]
    return SocpResponse(request, code, e2e_crc)


def encode_socp_response(response: SocpResponse) -> bytes:
    if not 0 <= response.request_opcode <= 0xFF:
        raise UnrepresentableValueError(f"{SOCP}: opcode {response.request_opcode} is not a u8")
    body = bytes((SocpOpcode.RESPONSE_CODE, response.request_opcode, response.code))
    return _with_crc(body, response.e2e_crc)
