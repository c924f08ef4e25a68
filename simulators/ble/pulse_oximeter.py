"""A simulated Pulse Oximeter Service (0x1822) spot-check oximeter.

PLXS v1.0.1: PLX Features (0x2A60, read, §3.3) and PLX Spot-Check Measurement (0x2A5E,
indicate, §3.1).  Spot checks taken while no collector was connected are held and
indicated, one at a time and each marked sent when confirmed, once the collector
enables indications; a new one is indicated at once.  The oximeter stays connected.

Features: time stamp, measurement status, device and sensor status, pulse amplitude
index.  The Spot-Check Measurement Storage feature (b2) is *not* announced: stored
records behind a RACP are a different procedure, which the gateway's
``pulse-oximeter`` profile (indications on connect) does not use.  A reading whose
conditions the support fields do not list is refused, as a real sensor cannot report it.
"""

from __future__ import annotations

from device_profiles import uuids
from device_profiles.model import Component, Condition, Kind, Measurement, Quantity
from device_profiles.plx import (
    PlxFeature,
    PlxFeatures,
    encode_plx_features,
    encode_plx_spot_check,
)
from simulators.ble.gatt import Characteristic
from simulators.ble.indicating import IndicatingDevice
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["FEATURES", "PulseOximeter", "spot_check_measurement"]

FEATURES = PlxFeatures(
    frozenset(
        {
            PlxFeature.MEASUREMENT_STATUS,
            PlxFeature.DEVICE_AND_SENSOR_STATUS,
            PlxFeature.SPOT_CHECK_TIMESTAMP,
            PlxFeature.PULSE_AMPLITUDE_INDEX,
        }
    ),
    measurement_status_support=frozenset(
        {
            Condition.EARLY_ESTIMATED_DATA,
            Condition.VALIDATED_DATA,
            Condition.FULLY_QUALIFIED_DATA,
            Condition.QUESTIONABLE_MEASUREMENT,
            Condition.INVALID_MEASUREMENT,
        }
    ),
    device_status_support=frozenset(
        {
            Condition.EQUIPMENT_MALFUNCTION,
            Condition.INADEQUATE_SIGNAL,
            Condition.POOR_SIGNAL,
            Condition.LOW_PERFUSION,
            Condition.ERRATIC_SIGNAL,
            Condition.SENSOR_DISPLACED,
            Condition.SENSOR_DISCONNECTED,
        }
    ),
)
# Flags b4 "device clock is not set" needs no support bit (GSS §3.172 flags).
_REPORTABLE = (
    FEATURES.measurement_status_support
    | FEATURES.device_status_support
    | {Condition.DEVICE_CLOCK_NOT_SET}
)
# PLX Spot-Check Measurement: flags u8, SpO2 SFLOAT, PR SFLOAT (GSS §3.172).
_PR_OFFSET = 3


def _quantity(value: float, unit: str) -> Quantity:
    return Quantity(value, unit, value, unit)


def spot_check_measurement(reading: Reading) -> Measurement:
    """The Measurement an oximeter stores for ``reading``."""
    if reading.kind is not Kind.SPO2 or reading.spo2 is None or reading.pulse is None:
        raise ReadingFormatError(f"a pulse oximeter cannot store {reading}")
    values = {
        Component.SPO2: _quantity(reading.spo2, "%"),
        Component.PULSE: _quantity(reading.pulse, "/min"),
    }
    if reading.pulse_amplitude_index is not None:
        values[Component.PULSE_AMPLITUDE_INDEX] = _quantity(reading.pulse_amplitude_index, "%")
    return Measurement(
        kind=Kind.SPO2,
        values=values,
        device_time=reading.device_time,
        conditions=reading.conditions,
    )


class PulseOximeter(IndicatingDevice):
    service_uuid = uuids.PULSE_OXIMETER_SERVICE
    measurement_uuid = uuids.PLX_SPOT_CHECK

    def measurement_of(self, reading: Reading) -> Measurement:
        m = spot_check_measurement(reading)
        unsupported = m.conditions - _REPORTABLE
        if unsupported:
            raise ReadingFormatError(
                f"PLX Features do not announce {sorted(c.value for c in unsupported)}"
            )
        return m

    def encode(self, m: Measurement) -> bytes:
        try:
            return encode_plx_spot_check(m)  # SFLOATs exact, or refused now
        except ValueError as e:
            raise ReadingFormatError(str(e)) from None

    def truncate(self, data: bytes) -> bytes:
        return data[: _PR_OFFSET + 1]  # cut inside the pulse rate

    def feature_characteristic(self) -> Characteristic:
        return Characteristic(uuids.PLX_FEATURES, ["read"], encode_plx_features(FEATURES))
