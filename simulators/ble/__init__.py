"""Simulated BLE health devices for the BlueZoo test bed (see docs/ble-testbed.md).

Each device is a GATT application on its own virtual adapter, built from the
``device_profiles`` encoders, reached by the gateway through unmodified bleak.
"""

from simulators.ble.control import ControlError, send_command, send_command_async
from simulators.ble.device import SimulatedDevice, serve_device
from simulators.ble.fleet import DeviceFleet, DeviceProcess, FleetError
from simulators.ble.readings import Reading, ReadingFormatError, load_readings
from simulators.ble.spec import SUPPORTED_PROFILES, DeviceSpec, DeviceSpecError

__all__ = [
    "SUPPORTED_PROFILES",
    "ControlError",
    "DeviceFleet",
    "DeviceProcess",
    "DeviceSpec",
    "DeviceSpecError",
    "FleetError",
    "Reading",
    "ReadingFormatError",
    "SimulatedDevice",
    "load_readings",
    "send_command",
    "send_command_async",
    "serve_device",
]
