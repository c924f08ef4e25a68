"""One table of every characteristic HomeVitals decodes: UUID -> (name, parse, encode).

``decode(uuid, data)`` is what ``homevitals decode <uuid> <hex>`` runs: it raises
:class:`MalformedPayloadError` for bad bytes and :class:`UnknownCharacteristicError`
for a UUID no parser handles.  ``to_jsonable`` renders any result as JSON-ready data:
datetimes as ISO 8601, string enums by value, integer enums (RACP codes) by name,
special values by name (``"NaN"``), sets as sorted lists.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from types import MappingProxyType
from typing import Any

from device_profiles import uuids
from device_profiles.blood_pressure import (
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
    encode_intermediate_cuff_pressure,
    parse_blood_pressure_feature,
    parse_blood_pressure_measurement,
    parse_intermediate_cuff_pressure,
)
from device_profiles.cgm import (
    encode_cgm_feature,
    encode_cgm_measurement,
    encode_cgm_session_start_time,
    encode_cgm_status,
    parse_cgm_feature,
    parse_cgm_measurement,
    parse_cgm_session_start_time,
    parse_cgm_status,
)
from device_profiles.current_time import (
    encode_current_time,
    encode_local_time_information,
    parse_current_time,
    parse_local_time_information,
)
from device_profiles.device_info import (
    encode_battery_level,
    encode_dis_string,
    parse_battery_level,
    parse_dis_string,
)
from device_profiles.errors import UnknownCharacteristicError
from device_profiles.glucose import (
    encode_glucose_context,
    encode_glucose_feature,
    encode_glucose_measurement,
    parse_glucose_context,
    parse_glucose_feature,
    parse_glucose_measurement,
)
from device_profiles.model import Measurement, Quantity
from device_profiles.plx import (
    encode_plx_features,
    encode_plx_spot_check,
    parse_plx_features,
    parse_plx_spot_check,
)
from device_profiles.racp import encode_racp, parse_racp
from device_profiles.thermometer import (
    encode_temperature_measurement,
    parse_temperature_measurement,
)
from device_profiles.uuids import normalize_uuid
from device_profiles.weight import (
    encode_weight_measurement,
    encode_weight_scale_feature,
    parse_weight_measurement,
    parse_weight_scale_feature,
)

__all__ = [
    "CHARACTERISTICS",
    "Characteristic",
    "InvalidHexError",
    "UnknownCharacteristicError",
    "decode",
    "encode",
    "parse_hex",
    "to_jsonable",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Characteristic:
    uuid: str
    name: str
    parse: Callable[[bytes], object]
    encode: Callable[[Any], bytes]


_Row = tuple[str, str, Callable[[bytes], object], Callable[[Any], bytes]]


def _dis(uuid: str, name: str) -> _Row:
    """A Device Information string; its errors name it as ``<name> (0x2A29)``."""
    label = f"{name} (0x{uuid[4:8].upper()})"
    return uuid, name, partial(parse_dis_string, characteristic=label), encode_dis_string


_TABLE: tuple[_Row, ...] = (
    (
        uuids.GLUCOSE_MEASUREMENT,
        "Glucose Measurement",
        parse_glucose_measurement,
        encode_glucose_measurement,
    ),
    (
        uuids.GLUCOSE_CONTEXT,
        "Glucose Measurement Context",
        parse_glucose_context,
        encode_glucose_context,
    ),
    (uuids.GLUCOSE_FEATURE, "Glucose Feature", parse_glucose_feature, encode_glucose_feature),
    (uuids.RACP, "Record Access Control Point", parse_racp, encode_racp),
    (
        uuids.BLOOD_PRESSURE_MEASUREMENT,
        "Blood Pressure Measurement",
        parse_blood_pressure_measurement,
        encode_blood_pressure_measurement,
    ),
    (
        uuids.INTERMEDIATE_CUFF_PRESSURE,
        "Intermediate Cuff Pressure",
        parse_intermediate_cuff_pressure,
        encode_intermediate_cuff_pressure,
    ),
    (
        uuids.BLOOD_PRESSURE_FEATURE,
        "Blood Pressure Feature",
        parse_blood_pressure_feature,
        encode_blood_pressure_feature,
    ),
    _dis(uuids.MANUFACTURER_NAME, "Manufacturer Name String"),
    _dis(uuids.MODEL_NUMBER, "Model Number String"),
    _dis(uuids.SERIAL_NUMBER, "Serial Number String"),
    _dis(uuids.FIRMWARE_REVISION, "Firmware Revision String"),
    _dis(uuids.HARDWARE_REVISION, "Hardware Revision String"),
    _dis(uuids.SOFTWARE_REVISION, "Software Revision String"),
    (uuids.BATTERY_LEVEL, "Battery Level", parse_battery_level, encode_battery_level),
    (uuids.CURRENT_TIME, "Current Time", parse_current_time, encode_current_time),
    (
        uuids.LOCAL_TIME_INFORMATION,
        "Local Time Information",
        parse_local_time_information,
        encode_local_time_information,
    ),
    (uuids.CGM_MEASUREMENT, "CGM Measurement", parse_cgm_measurement, encode_cgm_measurement),
    (uuids.CGM_FEATURE, "CGM Feature", parse_cgm_feature, encode_cgm_feature),
    (uuids.CGM_STATUS, "CGM Status", parse_cgm_status, encode_cgm_status),
    (
        uuids.CGM_SESSION_START_TIME,
        "CGM Session Start Time",
        parse_cgm_session_start_time,
        encode_cgm_session_start_time,
    ),
    (
        uuids.WEIGHT_MEASUREMENT,
        "Weight Measurement",
        parse_weight_measurement,
        encode_weight_measurement,
    ),
    (
        uuids.WEIGHT_SCALE_FEATURE,
        "Weight Scale Feature",
        parse_weight_scale_feature,
        encode_weight_scale_feature,
    ),
    (
        uuids.PLX_SPOT_CHECK,
        "PLX Spot-Check Measurement",
        parse_plx_spot_check,
        encode_plx_spot_check,
    ),
    (uuids.PLX_FEATURES, "PLX Features", parse_plx_features, encode_plx_features),
    (
        uuids.TEMPERATURE_MEASUREMENT,
        "Temperature Measurement",
        parse_temperature_measurement,
        encode_temperature_measurement,
    ),
)

CHARACTERISTICS: Mapping[str, Characteristic] = MappingProxyType(
    {uuid: Characteristic(uuid, name, parse, enc) for uuid, name, parse, enc in _TABLE}
)


def characteristic(uuid_text: str) -> Characteristic:
    uuid = normalize_uuid(uuid_text)
    try:
        return CHARACTERISTICS[uuid]
    except KeyError:
        raise UnknownCharacteristicError(uuid) from None


def decode(uuid_text: str, data: bytes) -> object:
    """Decode ``data`` as the characteristic ``uuid_text`` (``2A18``, ``0x2a18``, 128-bit)."""
    return characteristic(uuid_text).parse(data)


def encode(uuid_text: str, value: object) -> bytes:
    """Inverse of :func:`decode`."""
    return characteristic(uuid_text).encode(value)


class InvalidHexError(ValueError):
    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        super().__init__(f"not hex bytes ({reason}): {text!r}")


_SEPARATORS = re.compile(r"[\s:\-,_]+")
_PREFIX = re.compile(r"^\(0x\)|0x", re.IGNORECASE)


def parse_hex(text: str) -> bytes:
    """Bytes from hex as tools print it: ``0218``, ``02 18``, ``02:18``, ``0x0218``,
    ``0x02 0x18`` or nRF Connect's ``(0x) 02-18``."""
    cleaned = _SEPARATORS.sub("", _PREFIX.sub("", text.strip()))
    if len(cleaned) % 2:
        raise InvalidHexError(text, "odd number of hex digits")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidHexError(text, "non-hex characters") from None


def _json(value: object) -> Any:
    if value is None or (
        isinstance(value, bool | int | float | str) and not isinstance(value, enum.Enum)
    ):
        return value
    if isinstance(value, enum.IntEnum):
        return value.name
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Measurement):
        out: dict[str, Any] = {"kind": value.kind.value}
        out["values"] = {c.value: _json(q) for c, q in value.values.items()}
        for name in ("device_time", "time_offset_minutes", "sequence"):
            out[name] = _json(getattr(value, name))
        out["conditions"] = sorted(c.value for c in value.conditions)
        out["details"] = {k: _json(v) for k, v in value.details.items()}
        return out
    if isinstance(value, Quantity):
        q = {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if value.special is None:
            del q["special"]
        return q
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, frozenset | set):
        return sorted(_json(v) for v in value)
    if isinstance(value, Mapping):
        return {str(_json(k)): _json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def to_jsonable(obj: object) -> dict[str, Any]:
    """A JSON-ready dict for any decode result (scalars/lists wrap as ``{"value": ...}``,
    CGM record tuples as ``{"records": [...]}``)."""
    rendered = _json(obj)
    if isinstance(rendered, dict):
        return rendered
    if isinstance(obj, tuple):
        return {"records": rendered}
    return {"value": rendered}
