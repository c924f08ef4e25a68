"""A simulated Blood Pressure Service (0x1810) cuff.

BLS v1.1.1 §3.1: Blood Pressure Measurement is indicated.  As home cuffs do, this one
sends its stored *unsent* measurements as soon as the central enables indications, one
at a time, each marked sent when its confirmation arrives.  Quirks:

* ``UNSENT_ONLY_THEN_DISCONNECTS``: after the last one it drops the link itself;
* ``BONDED_HOST_ONLY``: nothing is sent to a central that has not paired;
* ``ERASES_AFTER_DOWNLOAD``: a sent measurement is deleted from memory.

A standard cuff stays connected and indicates new measurements (added through the
control channel) straight away.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from device_profiles import uuids
from device_profiles.blood_pressure import (
    BloodPressureFeature,
    BloodPressureFeatures,
    PressureUnit,
    encode_blood_pressure_feature,
    encode_blood_pressure_measurement,
)
from device_profiles.model import Component, DetailValue, Kind, Measurement, Quantity
from simulators.ble.clock import shift_month13
from simulators.ble.core import DeviceCore, Quirk
from simulators.ble.gatt import Characteristic
from simulators.ble.indicating import IndicatingDevice, StoredRecord
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["BloodPressureCuff", "StoredMeasurement", "bp_measurement"]

log = logging.getLogger(__name__)

# Blood Pressure Measurement: flags u8 and three SFLOATs, then the time stamp.
_TIME_STAMP_OFFSET = 7
_FEATURES = BloodPressureFeatures(
    frozenset(
        {
            BloodPressureFeature.BODY_MOVEMENT_DETECTION,
            BloodPressureFeature.CUFF_FIT_DETECTION,
            BloodPressureFeature.IRREGULAR_PULSE_DETECTION,
        }
    )
)


def _mmhg(value: float) -> Quantity:
    return Quantity(value, "mm[Hg]", value, "mm[Hg]")


def bp_measurement(reading: Reading) -> Measurement:
    """The Measurement a cuff stores for ``reading`` (mmHg; MAP computed if absent)."""
    if reading.kind is not Kind.BLOOD_PRESSURE or reading.systolic is None:
        raise ReadingFormatError(f"a blood pressure cuff cannot store {reading}")
    if reading.diastolic is None:
        raise ReadingFormatError("a blood pressure reading needs a diastolic value")
    mean = reading.mean_arterial
    if mean is None:
        mean = round(reading.diastolic + (reading.systolic - reading.diastolic) / 3)
    values = {
        Component.SYSTOLIC: _mmhg(reading.systolic),
        Component.DIASTOLIC: _mmhg(reading.diastolic),
        Component.MEAN_ARTERIAL: _mmhg(mean),
    }
    if reading.pulse is not None:
        values[Component.PULSE] = Quantity(reading.pulse, "/min", reading.pulse, "/min")
    details: dict[str, DetailValue] = {"units": PressureUnit.MMHG, "intermediate": False}
    if reading.user_id is not None:
        details["user_id"] = reading.user_id
    return Measurement(
        kind=Kind.BLOOD_PRESSURE,
        values=values,
        device_time=reading.device_time,
        conditions=reading.conditions,
        details=details,
    )


# The cuff's stored records are the shared ones (kept under the old name).
StoredMeasurement = StoredRecord


class BloodPressureCuff(IndicatingDevice):
    """Blood Pressure Service behaviour on top of a :class:`DeviceCore`."""

    service_uuid = uuids.BLOOD_PRESSURE_SERVICE
    measurement_uuid = uuids.BLOOD_PRESSURE_MEASUREMENT
    _log = log
    _transfer_name = "download"

    def __init__(self, core: DeviceCore, readings: Sequence[Reading]) -> None:
        self.disconnects_when_done = core.has_quirk(Quirk.UNSENT_ONLY_THEN_DISCONNECTS)
        self.feature = Characteristic(
            uuids.BLOOD_PRESSURE_FEATURE, ["read"], encode_blood_pressure_feature(_FEATURES)
        )
        super().__init__(core, readings)

    def measurement_of(self, reading: Reading) -> Measurement:
        return bp_measurement(reading)

    def encode(self, m: Measurement) -> bytes:
        data = encode_blood_pressure_measurement(m)
        if self.core.has_quirk(Quirk.MONTH_13_CLOCK) and m.device_time is not None:
            data = shift_month13(data, _TIME_STAMP_OFFSET)
        return data

    def truncate(self, data: bytes) -> bytes:
        return data[: _TIME_STAMP_OFFSET - 2]  # cut inside the MAP value

    def feature_characteristic(self) -> Characteristic:
        return self.feature

    def sends_only_to_bonded(self) -> bool:
        # Not the profile's bonding_enforced: a standard cuff indicates to any central.
        return self.core.has_quirk(Quirk.BONDED_HOST_ONLY)

    def on_sent(self, record: StoredRecord) -> None:
        if self.core.has_quirk(Quirk.ERASES_AFTER_DOWNLOAD):
            self.memory.remove(record)
