"""Spec-exact decoding and encoding of standard Bluetooth health-device characteristics.

Depends on nothing else of HomeVitals.
"""

from device_profiles.errors import MalformedPayloadError
from device_profiles.model import (
    Component,
    Condition,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)

__all__ = [
    "Component",
    "Condition",
    "Kind",
    "MalformedPayloadError",
    "Measurement",
    "Quantity",
    "SpecialValue",
]
