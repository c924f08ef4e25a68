"""Battery Level (0x2A19): see :mod:`device_profiles.device_info` (Battery Service v1.0 §3.1)."""

from device_profiles.device_info import encode_battery_level, parse_battery_level

__all__ = ["encode_battery_level", "parse_battery_level"]
