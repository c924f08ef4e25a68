"""One simulated device on its own adapter: GATT application, advertisement, agent.

In-process::

    async with SimulatedDevice(spec, bus_address) as device:
        device.add_readings([...])

As a process: ``python -m simulators.ble --spec spec.json`` (see ``__main__``), which
runs :func:`serve_device`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus

from device_profiles.model import Kind
from simulators.ble import control
from simulators.ble.bp_cuff import BloodPressureCuff
from simulators.ble.cgm_sensor import CgmSensor
from simulators.ble.core import DeviceCore, Quirk
from simulators.ble.gatt import (
    Advertisement,
    GattApplication,
    disconnect_central,
    wait_bus_closed,
)
from simulators.ble.glucose_meter import GlucoseMeter
from simulators.ble.pulse_oximeter import PulseOximeter
from simulators.ble.readings import Reading, reading_from_json
from simulators.ble.spec import DeviceSpec
from simulators.ble.weight_scale import WeightScale

__all__ = ["SimulatedDevice", "serve_device"]

log = logging.getLogger(__name__)

# GAP Appearance values (Assigned Numbers §2.6, category << 6 | sub-category): generic
# glucose meter (category 0x010), blood pressure arm (0x00E, 1), generic continuous
# glucose monitor (0x034), generic pulse oximeter (0x031), generic weight scale (0x032).
_APPEARANCE = {
    Kind.GLUCOSE: 0x0400,
    Kind.BLOOD_PRESSURE: 0x0381,
    Kind.CGM: 0x0D00,
    Kind.SPO2: 0x0C40,
    Kind.WEIGHT: 0x0C80,
}
Behaviour = GlucoseMeter | BloodPressureCuff | CgmSensor | WeightScale | PulseOximeter


class SimulatedDevice:
    """A running simulated device.  Use as an async context manager or start()/stop()."""

    def __init__(self, spec: DeviceSpec, bus_address: str | None = None) -> None:
        self.spec = spec
        self.bus_address = bus_address
        self._bus: MessageBus | None = None
        self._app: GattApplication | None = None
        self._control: asyncio.Server | None = None
        self.behaviour: Behaviour | None = None
        self.core: DeviceCore | None = None

    @property
    def root_path(self) -> str:
        return f"/org/homevitals/sim/{self.spec.adapter}"

    async def start(self) -> None:
        if self.bus_address is not None:
            bus = MessageBus(bus_address=self.bus_address)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM)
        self._bus = await bus.connect()
        core = DeviceCore(self.spec, self._bus)
        behaviour: Behaviour
        if self.spec.device_profile.family is Kind.CGM:
            behaviour = CgmSensor(core, self.spec.readings)
        elif self.spec.device_profile.family is Kind.GLUCOSE:
            behaviour = GlucoseMeter(core, self.spec.readings)
        elif self.spec.device_profile.family is Kind.WEIGHT:
            behaviour = WeightScale(core, self.spec.readings)
        elif self.spec.device_profile.family is Kind.SPO2:
            behaviour = PulseOximeter(core, self.spec.readings)
        else:
            behaviour = BloodPressureCuff(core, self.spec.readings)
        self.core, self.behaviour = core, behaviour
        services = behaviour.services() + core.standard_services()
        advertisement = Advertisement(
            self.spec.name,
            behaviour.service_uuids,
            appearance=_APPEARANCE.get(self.spec.device_profile.family, 0),
        )
        self._app = GattApplication(
            self._bus, self.spec.adapter, self.root_path, services, advertisement
        )
        await self._app.register(agent=self.spec.device_profile.requires_bonding)
        if self.spec.control_socket is not None:
            self._control = await control.serve(self.spec.control_socket, self.handle_command)
        log.info(
            "%s (%s) ready on %s with %d record(s)",
            self.spec.name,
            self.spec.profile,
            self.spec.adapter,
            len(self.spec.readings),
        )

    async def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
            self._control = None
            if self.spec.control_socket is not None:
                self.spec.control_socket.unlink(missing_ok=True)
        if self._app is not None:
            await self._app.unregister()
            self._app = None
        if self._bus is not None:
            self._bus.disconnect()
            with contextlib.suppress(Exception):
                await wait_bus_closed(self._bus)
            self._bus = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_closed(self) -> None:
        """Until the bus connection drops (bluez gone, or stop())."""
        if self._bus is not None:
            await wait_bus_closed(self._bus)

    # ------------------------------------------------------------------ control API
    def _require(self) -> tuple[DeviceCore, Behaviour]:
        if self.core is None or self.behaviour is None:
            raise RuntimeError("device not started")
        return self.core, self.behaviour

    def add_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store new readings while running; glucose: their sequence numbers, CGM: their
        time offsets, cuffs, scales and oximeters: their memory positions."""
        return self._require()[1].add_readings(readings)

    async def disconnect(self) -> int:
        """Drop the link from the device side (a real device going to sleep)."""
        core, _ = self._require()
        return await disconnect_central(core.bus, self.spec.adapter)

    def status(self) -> dict[str, Any]:
        core, behaviour = self._require()
        return {
            "name": self.spec.name,
            "profile": self.spec.profile,
            "adapter": self.spec.adapter,
            "serial": self.spec.serial_number,
            "battery": core.battery,
            "clock_skew_s": round(core.clock.skew_s, 3),
            "device_time": core.clock.now().isoformat(),
            "quirks": sorted(q.value for q in self.spec.effective_quirks),
            **behaviour.status(),
        }

    async def handle_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """One control-channel command (see :mod:`simulators.ble.control`)."""
        core, _ = self._require()
        name = command.get("cmd")
        if name == "add":
            raw = command.get("readings", [])
            if not isinstance(raw, list):
                raise ValueError("readings must be a list")
            added = self.add_readings([reading_from_json(r) for r in raw])
            return {"added": len(added), "ids": added}
        if name == "status":
            return self.status()
        if name == "battery":
            await core.set_battery(int(command["level"]))
            return {"battery": core.battery}
        if name == "set_skew":
            core.clock.skew = timedelta(seconds=float(command["seconds"]))
            return {"clock_skew_s": core.clock.skew_s}
        if name == "disconnect":
            return {"dropped": await self.disconnect()}
        if name in ("start_session", "stop_session"):
            _, behaviour = self._require()
            if not isinstance(behaviour, CgmSensor):
                raise ValueError(f"{name} is a CGM sensor command")
            if name == "stop_session":
                behaviour.stop_session()
            else:
                start = command.get("start")
                behaviour.start_session(None if start is None else datetime.fromisoformat(start))
            return behaviour.status()
        if name == "insert_strip":
            # Some meters drop the link when a strip goes in (DOMAIN.md).
            dropped = 0
            if core.has_quirk(Quirk.DROPS_LINK_ON_STRIP_INSERT):
                dropped = await self.disconnect()
            return {"dropped": dropped}
        raise ValueError(f"unknown command {name!r}")


async def serve_device(
    spec: DeviceSpec,
    bus_address: str | None,
    on_ready: Callable[[SimulatedDevice], None] | None = None,
) -> None:
    """Run one device until cancelled or until its bus goes away."""
    device = SimulatedDevice(spec, bus_address)
    try:
        await device.start()
        if on_ready is not None:
            on_ready(device)
        await device.wait_closed()
    finally:
        with contextlib.suppress(DBusError, OSError, asyncio.CancelledError):
            await asyncio.shield(device.stop())
