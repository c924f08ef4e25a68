"""Bluetooth SIG service and characteristic UUIDs used by HomeVitals.

Reference: Bluetooth Core Specification Vol 3 Part B §2.5.1 (the Bluetooth Base UUID
``0000xxxx-0000-1000-8000-00805f9b34fb``) and the SIG "Assigned Numbers" document
(§3.4 GATT services, §3.8 characteristics).  Every constant is the full lowercase
128-bit form, which is what bleak reports.
"""

from __future__ import annotations

import re

__all__ = [
    "BASE_UUID_SUFFIX",
    "BATTERY_LEVEL",
    "BATTERY_SERVICE",
    "BLOOD_PRESSURE_FEATURE",
    "BLOOD_PRESSURE_MEASUREMENT",
    "BLOOD_PRESSURE_SERVICE",
    "CGM_FEATURE",
    "CGM_MEASUREMENT",
    "CGM_SERVICE",
    "CGM_SESSION_START_TIME",
    "CGM_SPECIFIC_OPS_CONTROL_POINT",
    "CGM_STATUS",
    "CURRENT_TIME",
    "CURRENT_TIME_SERVICE",
    "DEVICE_INFORMATION_SERVICE",
    "FIRMWARE_REVISION",
    "GLUCOSE_CONTEXT",
    "GLUCOSE_FEATURE",
    "GLUCOSE_MEASUREMENT",
    "GLUCOSE_SERVICE",
    "HARDWARE_REVISION",
    "HEALTH_THERMOMETER_SERVICE",
    "INTERMEDIATE_CUFF_PRESSURE",
    "LOCAL_TIME_INFORMATION",
    "MANUFACTURER_NAME",
    "MODEL_NUMBER",
    "PLX_CONTINUOUS",
    "PLX_FEATURES",
    "PLX_SPOT_CHECK",
    "PULSE_OXIMETER_SERVICE",
    "RACP",
    "SERIAL_NUMBER",
    "SOFTWARE_REVISION",
    "SYSTEM_ID",
    "TEMPERATURE_MEASUREMENT",
    "TEMPERATURE_TYPE",
    "WEIGHT_MEASUREMENT",
    "WEIGHT_SCALE_FEATURE",
    "WEIGHT_SCALE_SERVICE",
    "InvalidUuidError",
    "normalize_uuid",
    "short_uuid",
    "uuid16",
]

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"


class InvalidUuidError(ValueError):
    """Text that is neither a 16/32-bit short UUID nor a 128-bit UUID."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"not a Bluetooth UUID: {text!r}")


def uuid16(short: int) -> str:
    """The full 128-bit UUID of a 16-bit (or 32-bit) SIG-assigned number."""
    if not 0 <= short <= 0xFFFFFFFF:
        raise InvalidUuidError(hex(short))
    return f"{short:08x}{BASE_UUID_SUFFIX}"


_SHORT = re.compile(r"(?:0x)?([0-9a-f]{4}|[0-9a-f]{8})")
_FULL = re.compile(
    r"\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?"
)


def normalize_uuid(text: str) -> str:
    """``2A18``, ``0x2a18``, ``00002a18`` or any 128-bit spelling -> lowercase 128-bit."""
    cleaned = text.strip().lower()
    if m := _SHORT.fullmatch(cleaned):
        return uuid16(int(m.group(1), 16))
    if m := _FULL.fullmatch(cleaned):
        return "-".join(m.groups())
    raise InvalidUuidError(text)


def short_uuid(uuid: str) -> int | None:
    """The SIG-assigned 16-bit number of a base-UUID, or None for a vendor UUID."""
    full = normalize_uuid(uuid)
    if full.endswith(BASE_UUID_SUFFIX) and full.startswith("0000"):
        return int(full[4:8], 16)
    return None


# Services (Assigned Numbers §3.4)
GLUCOSE_SERVICE = uuid16(0x1808)
BLOOD_PRESSURE_SERVICE = uuid16(0x1810)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
BATTERY_SERVICE = uuid16(0x180F)
CURRENT_TIME_SERVICE = uuid16(0x1805)
CGM_SERVICE = uuid16(0x181F)
WEIGHT_SCALE_SERVICE = uuid16(0x181D)
PULSE_OXIMETER_SERVICE = uuid16(0x1822)
HEALTH_THERMOMETER_SERVICE = uuid16(0x1809)

# Characteristics (Assigned Numbers §3.8)
GLUCOSE_MEASUREMENT = uuid16(0x2A18)
GLUCOSE_CONTEXT = uuid16(0x2A34)
GLUCOSE_FEATURE = uuid16(0x2A51)
RACP = uuid16(0x2A52)
BLOOD_PRESSURE_MEASUREMENT = uuid16(0x2A35)
INTERMEDIATE_CUFF_PRESSURE = uuid16(0x2A36)
BLOOD_PRESSURE_FEATURE = uuid16(0x2A49)
SYSTEM_ID = uuid16(0x2A23)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
FIRMWARE_REVISION = uuid16(0x2A26)
HARDWARE_REVISION = uuid16(0x2A27)
SOFTWARE_REVISION = uuid16(0x2A28)
MANUFACTURER_NAME = uuid16(0x2A29)
BATTERY_LEVEL = uuid16(0x2A19)
CURRENT_TIME = uuid16(0x2A2B)
LOCAL_TIME_INFORMATION = uuid16(0x2A0F)
CGM_MEASUREMENT = uuid16(0x2AA7)
CGM_FEATURE = uuid16(0x2AA8)
CGM_STATUS = uuid16(0x2AA9)
CGM_SESSION_START_TIME = uuid16(0x2AAA)
CGM_SPECIFIC_OPS_CONTROL_POINT = uuid16(0x2AAC)
WEIGHT_MEASUREMENT = uuid16(0x2A9D)
WEIGHT_SCALE_FEATURE = uuid16(0x2A9E)
PLX_SPOT_CHECK = uuid16(0x2A5E)
PLX_CONTINUOUS = uuid16(0x2A5F)
PLX_FEATURES = uuid16(0x2A60)
TEMPERATURE_MEASUREMENT = uuid16(0x2A1C)
TEMPERATURE_TYPE = uuid16(0x2A1D)
