"""A simulated Weight Scale Service (0x181D) scale.

WSS v1.0.0 §3.1-3.2: Weight Scale Feature (0x2A9E, read) and Weight Measurement
(0x2A9D, indicate).  Like a WSP weight scale, it indicates its stored measurements once
the collector enables indications, each marked sent when confirmed, then drops the
link itself (also when it had nothing to send).

Features: time stamp, multiple users, BMI; weight resolution 0.005 kg / 0.01 lb, height
0.001 m / 0.1 in (the Weight Measurement field resolutions, GSS §3.241).  With
multiple users every record carries a User ID (255 "unknown user" when the reading
names none).  A reading in ``weight_lb`` makes an imperial record (flag b0).
"""

from __future__ import annotations

from device_profiles import uuids
from device_profiles.model import (
    Component,
    Condition,
    DetailValue,
    Kind,
    Measurement,
    Quantity,
    SpecialValue,
)
from device_profiles.weight import (
    HeightResolution,
    WeightResolution,
    WeightScaleFeature,
    WeightScaleFeatures,
    WeightUnits,
    encode_weight_measurement,
    encode_weight_scale_feature,
)
from simulators.ble.gatt import Characteristic
from simulators.ble.indicating import IndicatingDevice
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["FEATURES", "WeightScale", "weight_measurement"]

FEATURES = WeightScaleFeatures(
    frozenset(WeightScaleFeature),
    WeightResolution.KG_0_005_LB_0_01,
    HeightResolution.M_0_001_IN_0_1,
)
# Weight Measurement: flags u8, then the weight u16 (GSS §3.241).
_WEIGHT_OFFSET = 1


def _quantity(value: float, unit: str) -> Quantity:
    # Only the device value is encoded; the canonical value is the parser's job.
    return Quantity(value, unit, value, unit)


def weight_measurement(reading: Reading) -> Measurement:
    """The Measurement a multi-user scale stores for ``reading``."""
    if reading.kind is not Kind.WEIGHT:
        raise ReadingFormatError(f"a weight scale cannot store {reading}")
    imperial = reading.weight_lb is not None or reading.height_in is not None
    units = WeightUnits.IMPERIAL if imperial else WeightUnits.SI
    values: dict[Component, Quantity] = {}
    if Condition.MEASUREMENT_UNSUCCESSFUL in reading.conditions:
        unit = "[lb_av]" if imperial else "kg"
        values[Component.WEIGHT] = Quantity(None, "kg", None, unit, SpecialValue.NAN)
    elif reading.weight_lb is not None:
        values[Component.WEIGHT] = _quantity(reading.weight_lb, "[lb_av]")
    elif reading.weight_kg is not None:
        values[Component.WEIGHT] = _quantity(reading.weight_kg, "kg")
    if reading.bmi is not None:
        values[Component.BMI] = _quantity(reading.bmi, "kg/m2")
        if reading.height_in is not None:
            values[Component.HEIGHT] = _quantity(reading.height_in, "[in_i]")
        elif reading.height_m is not None:
            values[Component.HEIGHT] = _quantity(reading.height_m, "m")
    # Multiple users supported: the User ID field is always present (WSS §3.1).
    details: dict[str, DetailValue] = {"units": units, "user_id": reading.user_id}
    return Measurement(
        kind=Kind.WEIGHT,
        values=values,
        device_time=reading.device_time,
        conditions=reading.conditions,
        details=details,
    )


class WeightScale(IndicatingDevice):
    service_uuid = uuids.WEIGHT_SCALE_SERVICE
    measurement_uuid = uuids.WEIGHT_MEASUREMENT
    disconnects_when_done = True

    def measurement_of(self, reading: Reading) -> Measurement:
        m = weight_measurement(reading)
        if m.device_time is None:
            raise ReadingFormatError("this scale time-stamps every record: give device_time")
        return m

    def encode(self, m: Measurement) -> bytes:
        try:
            return encode_weight_measurement(m)
        except ValueError as e:
            raise ReadingFormatError(str(e)) from None

    def truncate(self, data: bytes) -> bytes:
        return data[: _WEIGHT_OFFSET + 1]  # cut inside the weight

    def feature_characteristic(self) -> Characteristic:
        return Characteristic(
            uuids.WEIGHT_SCALE_FEATURE, ["read"], encode_weight_scale_feature(FEATURES)
        )
