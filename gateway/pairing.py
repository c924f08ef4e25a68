"""Pairing: discover supported devices, bond if the profile requires it, record the
device as this gateway's patient's, and report ``DevicePaired`` (via the outbox, so
the event survives a broker outage).  ``unpair`` reverses it (``DeviceUnpaired``).

Bonding uses bleak's ``client.pair()``; its success is not trusted: the ``Paired``
property of the BlueZ device object is checked through bleak's BlueZ manager (bluezoo
reports success even when no agent let the pairing happen).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from bleak import BleakClient, BleakScanner
from bleak.backends.bluezdbus.manager import get_global_bluez_manager
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from device_profiles.device_info import parse_dis_string
from device_profiles.errors import MalformedPayloadError
from device_profiles.profiles import DeviceProfile, match_profile
from gateway.config import GatewayConfig
from gateway.outbox import Outbox
from gateway.publisher import Publisher
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from gateway.sync import DEVICE_INFO
from gateway.transport import GattError, GattLink, open_link
from readings import DevicePaired, DeviceUnpaired

log = logging.getLogger(__name__)

_PAIRED_WAIT_S = 3.0


class PairingError(RuntimeError):
    """The device could not be paired (not found, unsupported, bonding failed)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    device: BLEDevice
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]
    profile: DeviceProfile

    @property
    def address(self) -> str:
        return self.device.address.upper()


def _candidate(device: BLEDevice, adv: AdvertisementData) -> Candidate | None:
    name = adv.local_name or device.name
    profile = match_profile(name, adv.service_uuids)
    if profile is None:
        return None
    return Candidate(device, name, adv.rssi, tuple(adv.service_uuids), profile)


async def discover(adapter: str, seconds: float) -> list[Candidate]:
    """Supported devices advertising nearby, strongest signal first."""
    found = await BleakScanner.discover(
        timeout=seconds, return_adv=True, bluez={"adapter": adapter}
    )
    candidates = [c for dev, adv in found.values() if (c := _candidate(dev, adv)) is not None]
    return sorted(candidates, key=lambda c: -c.rssi)


async def find(adapter: str, address: str, seconds: float) -> Candidate | None:
    """Scan until ``address`` advertises (or ``seconds`` pass)."""
    wanted = address.upper()
    result: asyncio.Future[Candidate | None] = asyncio.get_running_loop().create_future()

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        if device.address.upper() == wanted and not result.done():
            result.set_result(_candidate(device, adv))

    async with BleakScanner(detection_callback=seen, bluez={"adapter": adapter}):
        try:
            async with asyncio.timeout(seconds):
                return await result
        except TimeoutError:
            return None


async def is_paired(device: BLEDevice) -> bool:
    path = device.details.get("path") if isinstance(device.details, dict) else None
    if not isinstance(path, str):
        return False
    manager = await get_global_bluez_manager()
    return manager.is_paired(path)


async def bond(link: GattLink, device: BLEDevice, timeout_s: float) -> None:
    """``client.pair()``, then insist on BlueZ's ``Paired`` property."""
    try:
        async with asyncio.timeout(timeout_s):
            await link.client.pair()
    except (TimeoutError, BleakError) as exc:
        raise PairingError(f"{device.address}: pairing failed: {exc}") from exc
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _PAIRED_WAIT_S
    while not await is_paired(device):
        if loop.time() > deadline:
            raise PairingError(
                f"{device.address}: pairing reported success but the device is not paired "
                "(does the device accept pairing without input?)"
            )
        await asyncio.sleep(0.1)


async def _read_info(link: GattLink) -> dict[str, str | None]:
    info: dict[str, str | None] = {}
    for key, uuid in DEVICE_INFO.items():
        if link.has(uuid):
            try:
                raw = await link.read(uuid)
            except GattError as exc:
                log.warning("%s: could not read %s: %s", link.address, key, exc)
                continue
            try:
                info[key] = parse_dis_string(raw, key).strip() or None
            except MalformedPayloadError as exc:
                log.warning("%s: malformed %s: %s", link.address, key, exc)
    return info


async def publish_pending(config: GatewayConfig, outbox: Outbox, timeout_s: float) -> bool:
    """Try to hand the outbox to the broker now; what is left waits for the daemon."""
    if config.mqtt is None:
        return False
    publisher = Publisher(
        config.mqtt,
        config.gateway_id,
        outbox,
        batch_size=config.batch_size,
        client_id=f"hv-gateway-{config.gateway_id}-cli-{secrets.token_hex(8)}",
    )
    await publisher.start()
    runner = asyncio.create_task(publisher.run())
    try:
        return await publisher.drain(timeout_s)
    finally:
        await publisher.stop()
        await runner


async def pair_device(
    config: GatewayConfig,
    address: str,
    *,
    scan_seconds: float = 15.0,
    bond_device: bool | None = None,
    publish_timeout_s: float = 10.0,
) -> PairedDevice:
    """Pair ``address``: find it, connect, bond if required, record, report."""
    candidate = await find(config.adapter, address, scan_seconds)
    if candidate is None:
        raise PairingError(f"{address} is not advertising a supported health service")
    s = config.sync
    async with open_link(
        candidate.device,
        name=candidate.name or candidate.address,
        adapter=config.adapter,
        connect_timeout_s=s.connect_timeout_s,
        attempts=s.connect_attempts,
        op_timeout_s=s.gatt_timeout_s,
        min_interval_s=candidate.profile.min_gatt_interval_s,
    ) as link:
        info = await _read_info(link)
        # Vendor profiles may match on the Device Information only now known.
        profile = (
            match_profile(
                candidate.name, candidate.service_uuids, info.get("manufacturer"), info.get("model")
            )
            or candidate.profile
        )
        if bond_device if bond_device is not None else profile.requires_bonding:
            await bond(link, candidate.device, s.connect_timeout_s)
    now = datetime.now(UTC)
    paired = PairedDevice(
        address=candidate.address,
        profile=profile.id,
        name=candidate.name,
        manufacturer=info.get("manufacturer"),
        model=info.get("model"),
        serial=info.get("serial"),
        firmware=info.get("firmware"),
        patient=config.patient,
        paired_at=now.isoformat(timespec="seconds"),
    )
    db = GatewayDB(config.db_path)
    try:
        devices, outbox = DeviceStore(db), Outbox(db, config.outbox)
        with db.transaction():
            devices.add(paired)
            outbox.enqueue_event(
                DevicePaired(
                    device=paired.address,
                    at=now,
                    profile=profile.id,
                    name=paired.name,
                    manufacturer=paired.manufacturer,
                    model=paired.model,
                    serial=paired.serial,
                )
            )
        log.info("%s: paired as %s (%s)", paired.address, profile.id, profile.display_name)
        await publish_pending(config, outbox, publish_timeout_s)
        return devices.get(paired.address) or paired
    finally:
        db.close()


async def forget_bond(adapter: str, address: str) -> bool:
    """Remove BlueZ's bond with the device (best effort)."""
    try:
        await BleakClient(address, bluez={"adapter": adapter}).unpair()
    except (BleakError, AssertionError) as exc:
        log.info("%s: no BlueZ bond removed (%s)", address, exc)
        return False
    return True


async def unpair_device(
    config: GatewayConfig, address: str, *, forget: bool = True, publish_timeout_s: float = 10.0
) -> bool:
    db = GatewayDB(config.db_path)
    try:
        devices, outbox = DeviceStore(db), Outbox(db, config.outbox)
        with db.transaction():
            removed = devices.remove(address.upper())
            if removed:
                outbox.enqueue_event(DeviceUnpaired(device=address.upper(), at=datetime.now(UTC)))
        if not removed:
            return False
        if forget:
            await forget_bond(config.adapter, address)
        await publish_pending(config, outbox, publish_timeout_s)
        return True
    finally:
        db.close()
