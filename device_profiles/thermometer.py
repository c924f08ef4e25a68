"""Health Thermometer Service (0x1809): Temperature Measurement (0x2A1C).

References: Health Thermometer Service (HTS) v1.0 §3.1; GSS §3.214 Temperature
Measurement, §3.215 Temperature Type.

Layout: flags u8 (b0 Fahrenheit, b1 time stamp, b2 temperature type), temperature
FLOAT (32-bit IEEE-11073), [time stamp 7], [temperature type u8].

Canonical unit is Celsius (``(°F − 32) / 1.8``); the device value and unit are kept
(UCUM ``Cel`` / ``[degF]``, ``details["units"]``).  ``details["temperature_type"]`` is
a :class:`TemperatureType` when sent; codes 0 and 10-255 are reserved (error).
Reserved flag bits b3-b7 are ignored; trailing bytes are rejected unless one is set.
"""

from __future__ import annotations

import enum
from decimal import Decimal

from device_profiles._wire import U8, U32, bad, check_end, float_decimal, need, quantity
from device_profiles.date_time import encode_date_time, parse_optional_date_time
from device_profiles.errors import UnrepresentableValueError
from device_profiles.ieee11073 import encode_float
from device_profiles.model import Component, DetailValue, Kind, Measurement

__all__ = [
    "TemperatureType",
    "TemperatureUnit",
    "encode_temperature_measurement",
    "parse_temperature_measurement",
]

NAME = "Temperature Measurement (0x2A1C)"

_F_FAHRENHEIT = 0x01
_F_TIME = 0x02
_F_TYPE = 0x04
_F_RFU = 0xF8


class TemperatureUnit(enum.StrEnum):
    CELSIUS = "Cel"
    FAHRENHEIT = "[degF]"


class TemperatureType(enum.StrEnum):
    ARMPIT = "armpit"
    BODY = "body"
    EAR = "ear"
    FINGER = "finger"
    GASTRO_INTESTINAL_TRACT = "gastro_intestinal_tract"
    MOUTH = "mouth"
    RECTUM = "rectum"
    TOE = "toe"
    TYMPANUM = "tympanum"


TYPE_CODES = {i + 1: t for i, t in enumerate(TemperatureType)}
_TYPE_CODE = {t: c for c, t in TYPE_CODES.items()}


def _celsius(fahrenheit: Decimal) -> float:
    return (float(fahrenheit) - 32.0) / 1.8


def parse_temperature_measurement(data: bytes) -> Measurement:
    """Decode a Temperature Measurement indication (GSS §3.214)."""
    # Flags u8, temperature FLOAT, then the optional fields in flag order (GSS §3.214).
    need(NAME, data, 0, 5, "flags_temperature")
    flags = data[0]
    exact = float_decimal(U32.unpack_from(data, 1)[0])
    if flags & _F_FAHRENHEIT:
        unit = TemperatureUnit.FAHRENHEIT
        temperature = quantity(exact, unit.value, TemperatureUnit.CELSIUS.value, _celsius)
    else:
        unit = TemperatureUnit.CELSIUS
        temperature = quantity(exact, unit.value)
    details: dict[str, DetailValue] = {"units": unit}
    device_time, offset = parse_optional_date_time(
        data, 5, flags & _F_TIME, characteristic=NAME, field="time_stamp"
    )
    if flags & _F_TYPE:
        need(NAME, data, offset, 1, "temperature_type")
        kind = TYPE_CODES.get(data[offset])
        if kind is None:
            raise bad(NAME, data, f"reserved temperature type {data[offset]:#04x}")
        details["temperature_type"] = kind
        offset += 1
    check_end(NAME, data, offset, rfu_flags=bool(flags & _F_RFU))
    return Measurement(
        kind=Kind.TEMPERATURE,
        values={Component.TEMPERATURE: temperature},
        device_time=device_time,
        details=details,
    )


def encode_temperature_measurement(m: Measurement) -> bytes:
    """Inverse of :func:`parse_temperature_measurement`."""
    q = m.values.get(Component.TEMPERATURE)
    if m.kind is not Kind.TEMPERATURE or q is None:
        raise UnrepresentableValueError(f"{NAME}: needs kind=temperature and a temperature")
    try:
        unit = TemperatureUnit(str(m.details.get("units", TemperatureUnit.CELSIUS)))
        kind = m.details.get("temperature_type")
        temperature_type = None if kind is None else TemperatureType(str(kind))
    except ValueError:
        raise UnrepresentableValueError(f"{NAME}: bad units/temperature_type detail") from None
    flags = _F_FAHRENHEIT if unit is TemperatureUnit.FAHRENHEIT else 0
    if q.special is not None:
        word = encode_float(q.special)
    elif q.original_value is not None:
        word = encode_float(q.original_value)
    else:
        raise UnrepresentableValueError(f"{NAME}: temperature has neither value nor special")
    parts = [b"", U32.pack(word)]
    if m.device_time is not None:
        flags |= _F_TIME
        parts.append(encode_date_time(m.device_time))
    if temperature_type is not None:
        flags |= _F_TYPE
        parts.append(U8.pack(_TYPE_CODE[temperature_type]))
    parts[0] = U8.pack(flags)
    return b"".join(parts)
