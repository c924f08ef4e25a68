"""Runtime fixes for bluezoo 1.0.2, applied when the test bed starts it.

bluezoo (GPL-2.0, a test tool only, never imported by HomeVitals itself) simulates the
``org.bluez`` D-Bus service in user space.  Version 1.0.2 has bugs that break a gateway
reconnecting to the same device, scanning, and peripheral-initiated disconnects; this
module patches them in the bluezoo process only.  Run it as the bluezoo launcher::

    python -m simulators.bluezoo_patches --auto-enable --scan-interval 1 -a 00:00:00:00:00:01 ...

The fixes (see docs/ble-testbed.md):

1. Disconnect leaves the exported client-link GATT objects behind, so the second
   connect fails with ``sd_bus_add_object_vtable ... error number: 17`` (EEXIST).  On
   disconnect we stop notifications, remove the link objects and clear
   ``ServicesResolved`` on both sides, as BlueZ does when the ATT bearer goes away.
   A ``Device1.Disconnect`` called on the *peripheral's* view of the central (a
   device dropping the link itself, as BP cuffs do) is routed to the central's
   device object, so the central sees ``Connected`` go false.
2. ``Device1.ManufacturerData`` is declared ``a{sv}`` and ``AdvertisingData``
   ``a{sv}``; BlueZ uses ``a{qv}`` and ``a{yv}``.  The wrong signature makes
   GetManagedObjects fail (``org.python.Error.TypeError``) once any device advertises
   manufacturer data.
3. Only the first advertisement is ever reported (InterfacesAdded), so a scan started
   later never sees an already-known device.  Every scan round now re-emits ``RSSI``
   as BlueZ does for each received advertisement.
4. The first scan round runs before the scanning client has seen StartDiscovery
   return, so bleak drops its reports and every scan takes a whole scan interval.  The
   first round now starts a moment later (``FIRST_SCAN_DELAY_S``).
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("simulators.bluezoo_patches")

_APPLIED = False

# BlueZ's own property signatures (doc/org.bluez.Device.rst, org.bluez.LEAdvertisement.rst).
_SIGNATURE_FIXES: tuple[tuple[str, str], ...] = (
    ("ManufacturerData", "a{qv}"),
    ("AdvertisingData", "a{yv}"),
)

# Alternating so every re-emission is a real change a client will not coalesce away.
_RSSI_VALUES = (-50, -51)
FIRST_SCAN_DELAY_S = 0.05


def _fix_property_signatures() -> None:
    from bluezoo import device as bz_device
    from bluezoo.interfaces.Device import DeviceInterface
    from bluezoo.interfaces.LEAdvertisement import LEAdvertisementInterface

    targets: list[tuple[type[Any], str, str]] = [
        (DeviceInterface, name, sig) for name, sig in _SIGNATURE_FIXES
    ]
    targets.append((LEAdvertisementInterface, "ManufacturerData", "a{qv}"))
    # Device re-declares the properties with dbus_property_async_override: patch those too.
    targets.extend((bz_device.Device, name, sig) for name, sig in _SIGNATURE_FIXES)
    for cls, name, sig in targets:
        for klass in cls.__mro__:
            prop = klass.__dict__.get(name)
            if prop is not None and hasattr(prop, "property_signature"):
                prop.property_signature = sig


def _fix_rssi_reemission() -> None:
    from bluezoo import device as bz_device

    original_sync: Callable[[Any, Any], Awaitable[None]] = bz_device.Device.properties_sync
    rssi_values = itertools.cycle(_RSSI_VALUES)

    async def properties_sync(self: Any, other: Any) -> None:
        await original_sync(self, other)
        self.rssi = next(rssi_values)
        self.properties_changed.emit(("org.bluez.Device1", {"RSSI": ("n", self.rssi)}, []))

    bz_device.Device.properties_sync = properties_sync


def _fix_first_scan_round() -> None:
    import asyncio

    from bluezoo.bluezoo import BluezMockService

    original_create: Callable[[Any, int], asyncio.Task[None]] = (
        BluezMockService.create_discovering_task
    )

    def create_discovering_task(self: Any, adapter_id: int) -> asyncio.Task[None]:
        async def delayed() -> None:
            await asyncio.sleep(FIRST_SCAN_DELAY_S)
            inner = original_create(self, adapter_id)
            try:
                await inner
            finally:
                inner.cancel()  # StopDiscovery cancels us: stop the real loop too

        return asyncio.create_task(delayed())

    BluezMockService.create_discovering_task = create_discovering_task


def _central_counterpart(device: Any) -> Any | None:
    """The central's device object when ``device`` is a peripheral's view of a central.

    bluezoo links a central-side Device ``G`` (on the central's adapter) to ``G.peer``,
    exported on the peripheral's adapter.  Calling Disconnect on ``G.peer`` would only
    flip flags on an unexported helper object; the link lives on ``G``.
    """
    if device.services or device.adapter is None:
        return None
    central_adapter = device.peer_adapter
    path = f"{central_adapter.get_object_path()}/dev_{device.adapter.address.replace(':', '_')}"
    counterpart = central_adapter.devices.get(path)
    if counterpart is None or counterpart is device or counterpart.peer is not device:
        return None
    return counterpart


def _fix_disconnect_cleanup() -> None:
    from bluezoo import device as bz_device
    from bluezoo import events
    from bluezoo.gatt import GattCharacteristicClientLink

    original_disconnect: Callable[[Any, str | None], Awaitable[None]] = bz_device.Device.disconnect

    async def disconnect(self: Any, uuid: str | None = None) -> None:
        counterpart = _central_counterpart(self)
        if counterpart is not None:
            await counterpart.disconnect(uuid)
            return
        await original_disconnect(self, uuid)
        for link in list(self.services.values()):
            if isinstance(link, GattCharacteristicClientLink):
                link.client_props_changed_subscription.unsubscribe()
                link.client_props_changed_subscription = events.Subscription()
                if link.client.Notifying.get(False):
                    # BlueZ stops notifications when the last subscriber's link goes away.
                    try:
                        await link.client.StopNotify()
                    except Exception:  # the peripheral may already be gone
                        log.debug("StopNotify on %s failed", link, exc_info=True)
            self.peer_adapter.mock.remove_object(link)
        self.services.clear()
        if self.services_resolved:
            await self.ServicesResolved.set_async(False)
        if self.peer is not None and self.peer.services_resolved:
            await self.peer.ServicesResolved.set_async(False)

    bz_device.Device.disconnect = disconnect


def apply() -> None:
    """Apply all fixes to the imported bluezoo modules (idempotent)."""
    global _APPLIED  # noqa: PLW0603 - one-shot module state
    if _APPLIED:
        return
    _fix_property_signatures()
    _fix_rssi_reemission()
    _fix_disconnect_cleanup()
    _fix_first_scan_round()
    _APPLIED = True


def main(argv: list[str] | None = None) -> int:
    """Patch bluezoo, then run its normal command line (``bluezoo --help``)."""
    from bluezoo import bluezoo

    apply()
    sys.argv = [sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    result = bluezoo.main()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
