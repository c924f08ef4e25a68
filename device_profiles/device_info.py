"""Device Information Service (0x180A) strings and Battery Level (0x2A19).

References: Device Information Service v1.1 §3.1-3.6 (utf8s characteristics:
Manufacturer Name 0x2A29, Model Number 0x2A24, Serial Number 0x2A25, Hardware 0x2A27,
Firmware 0x2A26, Software Revision 0x2A28); Battery Service v1.0 §3.1 / GSS §3.27
Battery Level (uint8 percent, 0..100; 101..255 reserved).

Strings are decoded as strict UTF-8 (invalid sequences are a MalformedPayloadError).
Many devices pad fixed-size fields with NUL bytes: trailing NULs are stripped, which is
the only normalization applied.
"""

from __future__ import annotations

from device_profiles._wire import bad, check_end, need
from device_profiles.errors import UnrepresentableValueError

__all__ = ["encode_battery_level", "encode_dis_string", "parse_battery_level", "parse_dis_string"]

BATTERY = "Battery Level (0x2A19)"


def parse_dis_string(data: bytes, characteristic: str = "Device Information string") -> str:
    """Decode a DIS utf8s value (strict UTF-8, trailing NUL padding removed)."""
    try:
        return data.rstrip(b"\x00").decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise bad(
            characteristic, data, f"invalid UTF-8 at offset {exc.start}: {exc.reason}"
        ) from None


def encode_dis_string(value: str) -> bytes:
    if "\x00" in value:
        raise UnrepresentableValueError("DIS strings cannot carry NUL characters")
    return value.encode("utf-8")


def parse_battery_level(data: bytes) -> int:
    """Battery level in percent; values above 100 are reserved and rejected."""
    need(BATTERY, data, 0, 1, "battery_level")
    check_end(BATTERY, data, 1)
    if data[0] > 100:
        raise bad(BATTERY, data, f"battery level {data[0]} % is reserved (> 100)")
    return data[0]


def encode_battery_level(percent: int) -> bytes:
    if not 0 <= percent <= 100:
        raise UnrepresentableValueError(f"battery level {percent} % not in 0..100")
    return bytes((percent,))
