"""A minimal gateway-side client for tests and demos: plain bleak on the test bed.

Not used by the gateway itself; it exists so simulator tests (and anyone poking at the
bed by hand) drive the simulated devices the way the gateway does, with unmodified bleak.
bleak reads ``DBUS_SYSTEM_BUS_ADDRESS`` when its BlueZ manager first connects (once per
event loop): set it (``simulators.testbed.env_for``) before using this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from dbus_fast.aio import MessageBus

from device_profiles import uuids
from device_profiles.model import Kind
from simulators.ble.gatt import device_property
from simulators.ble.readings import Reading
from simulators.testbed import TestbedInfo

__all__ = ["Central", "RacpSession", "bp_readings", "glucose_readings", "sequence_of"]

T0 = datetime(2026, 11, 2, 7, 30)


def glucose_readings(n: int, start: datetime = T0) -> tuple[Reading, ...]:
    return tuple(
        Reading(Kind.GLUCOSE, start + timedelta(hours=6 * i), mg_dl=90.0 + i, sequence=i + 1)
        for i in range(n)
    )


def bp_readings(n: int, start: datetime = T0) -> tuple[Reading, ...]:
    return tuple(
        Reading(
            Kind.BLOOD_PRESSURE,
            start + timedelta(hours=12 * i),
            systolic=120.0 + i,
            diastolic=80.0,
            pulse=70.0,
        )
        for i in range(n)
    )


def sequence_of(record: bytes) -> int:
    return int.from_bytes(record[1:3], "little")


@dataclass
class RacpSession:
    """A connected bleak client with Glucose Measurement and RACP subscribed."""

    client: BleakClient
    records: list[bytes] = field(default_factory=list)
    responses: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def request(self, data: bytes, timeout: float = 5.0) -> bytes:
        self.records.clear()
        await self.client.write_gatt_char(uuids.RACP, data, response=True)
        return await asyncio.wait_for(self.responses.get(), timeout)

    @property
    def sequences(self) -> list[int]:
        return [sequence_of(r) for r in self.records]


@dataclass(frozen=True)
class Central:
    """The gateway side: plain bleak on the bed's gateway adapter."""

    info: TestbedInfo

    def device_path(self, address: str) -> str:
        return f"/org/bluez/{self.info.gateway_adapter}/dev_{address.replace(':', '_')}"

    async def find(self, address: str) -> BLEDevice:
        device = await BleakScanner.find_device_by_address(
            address, timeout=5, bluez={"adapter": self.info.gateway_adapter}
        )
        assert device is not None, f"{address} not found by scanning"
        return device

    async def paired(self, address: str) -> bool:
        """Ask org.bluez, not the Pair() call (bluezoo can report success unpaired)."""
        bus = await MessageBus(bus_address=self.info.bus_address).connect()
        try:
            return bool(await device_property(bus, self.device_path(address), "Paired"))
        finally:
            bus.disconnect()

    @asynccontextmanager
    async def connect(
        self,
        address: str,
        *,
        pair: bool = False,
        disconnected: Callable[[], None] | None = None,
    ) -> AsyncIterator[BleakClient]:
        device = await self.find(address)
        client = BleakClient(
            device,
            bluez={"adapter": self.info.gateway_adapter},
            timeout=10,
            disconnected_callback=(lambda _c: disconnected()) if disconnected else None,
        )
        await client.connect()
        try:
            if pair:
                await client.pair()
                assert await self.paired(address), "Pair() returned but Paired is false"
            yield client
        finally:
            await client.disconnect()

    @asynccontextmanager
    async def racp(
        self, address: str, *, pair: bool = True, notify_measurements: bool = True
    ) -> AsyncIterator[RacpSession]:
        async with self.connect(address, pair=pair) as client:
            session = RacpSession(client)
            if notify_measurements:
                await client.start_notify(
                    uuids.GLUCOSE_MEASUREMENT, lambda _c, d: session.records.append(bytes(d))
                )
            await client.start_notify(
                uuids.RACP, lambda _c, d: session.responses.put_nowait(bytes(d))
            )
            yield session
