"""One BLE session with a device: connect, then GATT operations with timeouts.

Everything Bluetooth goes through here (plain bleak + bleak-retry-connector on BlueZ).
Every operation runs under ``asyncio.timeout`` (a peripheral that dies is not always
noticed by BlueZ), fragile devices get a minimum gap between operations
(``DeviceProfile.min_gatt_interval_s``), and a lost link wakes every waiting
subscriber with ``None`` so downloads stop at once instead of at their timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

log = logging.getLogger(__name__)

T = TypeVar("T")

Subscriber = Callable[[bytes | None], None]  # None: the link was lost


class GattError(Exception):
    """A GATT operation failed; ``kind`` names the error counter it goes to."""

    kind = "gatt"


class GattTimeoutError(GattError):
    kind = "timeout"


class LinkLostError(GattError):
    kind = "link_lost"


class ConnectError(GattError):
    kind = "connect"


class GattLink:
    """A connected device.  Use :func:`open_link`."""

    def __init__(
        self,
        client: BleakClient,
        disconnected: asyncio.Event,
        *,
        op_timeout_s: float,
        min_interval_s: float = 0.0,
    ) -> None:
        self.client = client
        self.disconnected = disconnected
        self.op_timeout_s = op_timeout_s
        self.min_interval_s = min_interval_s
        self._last_op = 0.0
        self._subscribers: list[Subscriber] = []

    @property
    def address(self) -> str:
        return self.client.address

    def has(self, uuid: str) -> bool:
        return self.client.services.get_characteristic(uuid) is not None

    def link_lost(self) -> None:
        self.disconnected.set()
        for subscriber in self._subscribers:
            subscriber(None)

    async def _run(self, what: str, op: Coroutine[Any, Any, T]) -> T:
        loop = asyncio.get_running_loop()
        wait = self._last_op + self.min_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.disconnected.is_set():
            op.close()
            raise LinkLostError(f"{what}: link lost")
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await op
        except TimeoutError as exc:
            raise GattTimeoutError(f"{what}: no answer in {self.op_timeout_s:.0f} s") from exc
        except BleakError as exc:
            if self.disconnected.is_set() or not self.client.is_connected:
                raise LinkLostError(f"{what}: link lost ({exc})") from exc
            raise GattError(f"{what}: {exc}") from exc
        finally:
            self._last_op = loop.time()

    async def read(self, uuid: str) -> bytes:
        return bytes(await self._run(f"read {uuid[4:8]}", self.client.read_gatt_char(uuid)))

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        await self._run(
            f"write {uuid[4:8]} {data.hex()}",
            self.client.write_gatt_char(uuid, data, response=response),
        )

    async def subscribe(self, uuid: str, callback: Subscriber) -> None:
        """Notifications/indications of ``uuid`` -> ``callback(bytes)``; None = link lost."""

        def on_value(_: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(bytes(data))

        self._subscribers.append(callback)
        await self._run(f"subscribe {uuid[4:8]}", self.client.start_notify(uuid, on_value))


@asynccontextmanager
async def open_link(
    device: BLEDevice,
    *,
    name: str,
    adapter: str,
    connect_timeout_s: float,
    attempts: int,
    op_timeout_s: float,
    min_interval_s: float = 0.0,
) -> AsyncIterator[GattLink]:
    """Connect (bleak-retry-connector's retry policy), yield the link, always disconnect."""
    disconnected = asyncio.Event()
    holder: list[GattLink] = []

    def on_disconnect(_: BleakClient) -> None:
        log.debug("%s: disconnected", device.address)
        if holder:
            holder[0].link_lost()
        else:
            disconnected.set()

    try:
        async with asyncio.timeout(connect_timeout_s * attempts):
            client = await establish_connection(
                BleakClient,
                device,
                name,
                disconnected_callback=on_disconnect,
                max_attempts=attempts,
                timeout=connect_timeout_s,
                bluez={"adapter": adapter},
            )
    except TimeoutError as exc:
        raise ConnectError(
            f"connect: no connection in {connect_timeout_s * attempts:.0f} s"
        ) from exc
    except BleakError as exc:
        raise ConnectError(f"connect: {exc}") from exc
    link = GattLink(client, disconnected, op_timeout_s=op_timeout_s, min_interval_s=min_interval_s)
    holder.append(link)
    try:
        yield link
    finally:
        if client.is_connected:
            try:
                async with asyncio.timeout(op_timeout_s):
                    await client.disconnect()
            except (TimeoutError, BleakError) as exc:
                log.warning("%s: disconnect failed: %s", device.address, exc)
