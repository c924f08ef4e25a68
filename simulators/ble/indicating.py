"""Devices that indicate their stored measurements once the central subscribes.

The Weight Scale Profile (WSP v1.0.0, Weight Scale role: stored data, then the scale
ends the connection), the Pulse Oximeter Profile's spot-check
measurement (PLXS v1.0.1 §3.1.1) and a home blood pressure cuff (BLS v1.1.1 §3.1,
Blood Pressure Measurement is indicated) work this way: no control point, the sensor
indicates what it holds as soon as the collector enables indications, one value at a
time, and marks each one sent when its confirmation arrives.  A subclass says how a
reading becomes bytes and whether the device hangs up when it is done; the hooks
``sends_only_to_bonded`` and ``on_sent`` cover a device that picks its centrals or
forgets what it sent.

``DeviceSpec.malformed``: the first measurement sent goes out cut short (the subclass
says where), undecodable — for the gateway's "malformed record" path.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dbus_fast import DBusError

from device_profiles.model import Measurement
from simulators.ble.core import DeviceCore
from simulators.ble.gatt import Characteristic, ConfirmTimeoutError, Service, disconnect_central
from simulators.ble.readings import Reading

__all__ = ["IndicatingDevice", "StoredRecord"]

log = logging.getLogger(__name__)

# Give the central a moment after enabling indications, as real devices do.
SEND_DELAY_S = 0.1
DISCONNECT_DELAY_S = 0.2


@dataclass(slots=True)
class StoredRecord:
    measurement: Measurement
    data: bytes  # the encoded value, checked when stored (never fails mid-transfer)
    sent: bool = False


class IndicatingDevice(ABC):
    """Stored records indicated on subscribe; new ones at once while subscribed."""

    service_uuid: str
    measurement_uuid: str
    # The device drops the link after the last stored record (a WSP weight scale).
    disconnects_when_done: bool = False
    # Where the transfer is logged, and what the "dropped the link" line calls it.
    _log: ClassVar[logging.Logger] = log
    _transfer_name: ClassVar[str] = "transfer"

    def __init__(self, core: DeviceCore, readings: Sequence[Reading]) -> None:
        self.core = core
        self.memory: list[StoredRecord] = []
        self._malformed_pending = core.spec.malformed
        self._task: asyncio.Task[None] | None = None
        self.measurement = Characteristic(
            self.measurement_uuid, ["indicate"], on_subscribe=self._on_subscribe
        )
        self.add_readings(readings)

    # ------------------------------------------------------------------ subclass API
    @abstractmethod
    def measurement_of(self, reading: Reading) -> Measurement:
        """The measurement the device stores for ``reading`` (ReadingFormatError if it
        cannot hold it, e.g. a condition its features do not announce)."""

    @abstractmethod
    def encode(self, m: Measurement) -> bytes: ...

    @abstractmethod
    def truncate(self, data: bytes) -> bytes:
        """The malformed version of ``data`` (``DeviceSpec.malformed``)."""

    @abstractmethod
    def feature_characteristic(self) -> Characteristic: ...

    def sends_only_to_bonded(self) -> bool:
        """Whether a central that has not paired gets nothing.

        Profiles that need a bond (WSP) send nothing to a stranger.
        """
        return self.core.spec.bonding_enforced

    def on_sent(self, record: StoredRecord) -> None:
        """Called once ``record`` is confirmed and marked sent (e.g. to erase it)."""
        return  # most devices keep what they sent

    # ------------------------------------------------------------------ behaviour
    def services(self) -> list[Service]:
        return [Service(self.service_uuid, [self.measurement, self.feature_characteristic()])]

    @property
    def service_uuids(self) -> list[str]:
        return [self.service_uuid]

    def add_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store new (unsent) measurements; returns their memory positions.

        A connected central with indications on gets them right away.
        """
        new = []
        for reading in readings:
            m = self.measurement_of(reading)
            new.append(StoredRecord(m, self.encode(m)))  # fail now, not mid-transfer
        first = len(self.memory)
        self.memory.extend(new)
        if new and self.measurement.notifying:
            self._start_sending(delay=0.0)
        return list(range(first, first + len(new)))

    def status(self) -> dict[str, Any]:
        return {
            "records": len(self.memory),
            "unsent": sum(not s.sent for s in self.memory),
        }

    def _wire(self, record: StoredRecord) -> bytes:
        if self._malformed_pending:
            self._malformed_pending = False
            return self.truncate(record.data)
        return record.data

    def _on_subscribe(self, on: bool) -> None:
        if on:
            self._start_sending(delay=SEND_DELAY_S)

    def _start_sending(self, delay: float) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._send_unsent(delay))

    async def _send_unsent(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.sends_only_to_bonded() and not await self.core.central_paired(None):
            self._log.info("central not bonded: sending nothing")
            await self._maybe_disconnect()
            return
        sent = 0
        while self.measurement.notifying:
            pending = next((s for s in self.memory if not s.sent), None)
            if pending is None:
                break
            try:
                confirmed = await self.measurement.send(self._wire(pending))
            except ConfirmTimeoutError:
                confirmed = False
            if not confirmed:
                self._log.info("indication not confirmed; it stays unsent")
                return
            pending.sent = True
            sent += 1
            self.on_sent(pending)
        self._log.info("sent %d stored measurement(s)", sent)
        await self._maybe_disconnect()

    async def _maybe_disconnect(self) -> None:
        if not self.disconnects_when_done:
            return
        await asyncio.sleep(DISCONNECT_DELAY_S)
        try:
            n = await disconnect_central(self.core.bus, self.core.spec.adapter)
        except DBusError as e:
            self._log.warning("could not drop the link: %s", e)
            return
        self._log.info("dropped %d link(s) after the %s", n, self._transfer_name)
