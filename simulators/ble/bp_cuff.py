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

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dbus_fast import DBusError

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
from simulators.ble.gatt import Characteristic, ConfirmTimeoutError, Service, disconnect_central
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["BloodPressureCuff", "StoredMeasurement", "bp_measurement"]

log = logging.getLogger(__name__)

# Blood Pressure Measurement: flags u8 and three SFLOATs, then the time stamp.
_TIME_STAMP_OFFSET = 7
# Give the central a moment after enabling indications, as real cuffs do.
SEND_DELAY_S = 0.1
DISCONNECT_DELAY_S = 0.2
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


@dataclass(slots=True)
class StoredMeasurement:
    measurement: Measurement
    sent: bool = False


class BloodPressureCuff:
    """Blood Pressure Service behaviour on top of a :class:`DeviceCore`."""

    def __init__(self, core: DeviceCore, readings: Sequence[Reading]) -> None:
        self.core = core
        self.memory: list[StoredMeasurement] = []
        self._malformed_pending = core.spec.malformed
        self._task: asyncio.Task[None] | None = None
        self.measurement = Characteristic(
            uuids.BLOOD_PRESSURE_MEASUREMENT, ["indicate"], on_subscribe=self._on_subscribe
        )
        self.feature = Characteristic(
            uuids.BLOOD_PRESSURE_FEATURE, ["read"], encode_blood_pressure_feature(_FEATURES)
        )
        self.add_readings(readings)

    def services(self) -> list[Service]:
        return [Service(uuids.BLOOD_PRESSURE_SERVICE, [self.measurement, self.feature])]

    @property
    def service_uuids(self) -> list[str]:
        return [uuids.BLOOD_PRESSURE_SERVICE]

    def add_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store new (unsent) measurements; returns their memory positions.

        A connected central with indications on gets them right away.
        """
        new = [bp_measurement(r) for r in readings]
        for m in new:
            encode_blood_pressure_measurement(m)  # fail now, not mid-transfer
        first = len(self.memory)
        self.memory.extend(StoredMeasurement(m) for m in new)
        if new and self.measurement.notifying:
            self._start_sending(delay=0.0)
        return list(range(first, first + len(new)))

    def status(self) -> dict[str, Any]:
        return {
            "records": len(self.memory),
            "unsent": sum(not s.sent for s in self.memory),
        }

    def _encode(self, m: Measurement) -> bytes:
        data = encode_blood_pressure_measurement(m)
        if self.core.has_quirk(Quirk.MONTH_13_CLOCK) and m.device_time is not None:
            data = shift_month13(data, _TIME_STAMP_OFFSET)
        if self._malformed_pending:
            self._malformed_pending = False
            data = data[: _TIME_STAMP_OFFSET - 2]  # cut inside the MAP value
        return data

    def _on_subscribe(self, on: bool) -> None:
        if on:
            self._start_sending(delay=SEND_DELAY_S)

    def _start_sending(self, delay: float) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._send_unsent(delay))

    async def _send_unsent(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.core.has_quirk(Quirk.BONDED_HOST_ONLY) and not await self.core.central_paired(None):
            log.info("central not bonded: sending nothing")
            await self._maybe_disconnect()
            return
        sent = 0
        while self.measurement.notifying:
            pending = next((s for s in self.memory if not s.sent), None)
            if pending is None:
                break
            try:
                confirmed = await self.measurement.send(self._encode(pending.measurement))
            except ConfirmTimeoutError:
                confirmed = False
            if not confirmed:
                log.info("indication not confirmed; it stays unsent")
                return
            pending.sent = True
            sent += 1
            if self.core.has_quirk(Quirk.ERASES_AFTER_DOWNLOAD):
                self.memory.remove(pending)
        log.info("sent %d stored measurement(s)", sent)
        await self._maybe_disconnect()

    async def _maybe_disconnect(self) -> None:
        if not self.core.has_quirk(Quirk.UNSENT_ONLY_THEN_DISCONNECTS):
            return
        await asyncio.sleep(DISCONNECT_DELAY_S)
        try:
            n = await disconnect_central(self.core.bus, self.core.spec.adapter)
        except DBusError as e:
            log.warning("could not drop the link: %s", e)
            return
        log.info("dropped %d link(s) after the download", n)
