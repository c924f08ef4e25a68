"""Simulated devices on the session's BLE bed (``ble_bed`` in ``tests/conftest.py``).

The bed sets ``DBUS_SYSTEM_BUS_ADDRESS`` in ``os.environ`` before any test touches bleak:
bleak connects its BlueZ manager (once per event loop) to whatever that variable says.
Each test keeps its bleak use inside one ``asyncio.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from device_profiles.model import Kind
from simulators.ble import DeviceFleet, DeviceProcess, DeviceSpec, Reading
from simulators.ble.testing import Central, bp_readings, glucose_readings
from simulators.testbed import AdapterInfo, TestbedInfo

# The session's devices, by role.  Tests that change a device's state own it alone.  The
# adapters named here are placeholders (they fix each device's serial and name); each
# device runs on a fresh adapter of the shared bed.
SPECS: dict[str, DeviceSpec] = {
    "reader": DeviceSpec("glucose-meter", "hci1", readings=glucose_readings(10)),
    "deleter": DeviceSpec(
        "glucose-meter", "hci2", readings=glucose_readings(10), enforce_bonding=False
    ),
    "aborter": DeviceSpec(
        "glucose-meter",
        "hci3",
        readings=glucose_readings(200),
        record_interval_s=0.01,
        enforce_bonding=False,
    ),
    "cuff": DeviceSpec("bp-cuff-unsent-only", "hci4", readings=bp_readings(3)),
    "settable": DeviceSpec(
        "glucose-meter-ignores-filter", "hci5", readings=glucose_readings(5), clock_skew_s=3600
    ),
    "pairing": DeviceSpec("glucose-meter", "hci6", readings=glucose_readings(2)),
    "standard_cuff": DeviceSpec("bp-cuff", "hci7", readings=bp_readings(1), enforce_bonding=False),
    "month13": DeviceSpec(
        "glucose-meter-month13",
        "hci8",
        readings=(
            Reading(Kind.GLUCOSE, datetime(2026, 12, 5, 8, 0), mg_dl=100.0),  # sent truncated
            Reading(Kind.GLUCOSE, datetime(2027, 1, 5, 8, 0), mg_dl=101.0),  # month 13
            Reading(Kind.GLUCOSE, datetime(2027, 2, 5, 8, 0), mg_dl=102.0),
        ),
        malformed=True,
        enforce_bonding=False,
    ),
}


@pytest.fixture(scope="session")
def ble_testbed(ble_bed: TestbedInfo) -> TestbedInfo:
    return ble_bed


@pytest.fixture(scope="session")
def ble_roles(ble_adapter: Callable[[], AdapterInfo]) -> dict[str, DeviceSpec]:
    return {role: spec.with_changes(adapter=ble_adapter().name) for role, spec in SPECS.items()}


@pytest.fixture(scope="session")
def ble_fleet(ble_testbed: TestbedInfo, ble_roles: dict[str, DeviceSpec]) -> Iterator[DeviceFleet]:
    with DeviceFleet(ble_testbed, ble_testbed.state_dir / "simulators") as fleet:
        fleet.start_many(list(ble_roles.values()))
        yield fleet


@pytest.fixture(scope="session")
def ble_devices(
    ble_fleet: DeviceFleet, ble_roles: dict[str, DeviceSpec]
) -> dict[str, DeviceProcess]:
    return {role: ble_fleet.devices[spec.adapter] for role, spec in ble_roles.items()}


@pytest.fixture
def central(ble_testbed: TestbedInfo, ble_devices: dict[str, DeviceProcess]) -> Central:
    return Central(ble_testbed)
