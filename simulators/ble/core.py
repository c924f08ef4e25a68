"""What every simulated device shares: identity, clock, battery, bonding, and the
standard Device Information (0x180A), Battery (0x180F) and Current Time (0x1805)
services.

Current Time (GSS §3.62, 0x2A2B): Exact Time 256 (Date Time, Day of Week 1 = Monday,
Fractions256) then Adjust Reason, 10 bytes.  Reading it gives the device clock (host
local time + the configured skew); writing it (when the profile's clock is settable)
sets the device clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from struct import Struct

from dbus_fast import DBusError
from dbus_fast.aio import MessageBus

from device_profiles import uuids
from device_profiles.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time
from device_profiles.errors import MalformedPayloadError
from device_profiles.profiles import ClockSupport, Quirk
from simulators.ble.clock import DeviceClock, shift_month13
from simulators.ble.gatt import (
    AttError,
    AttErrorCode,
    Characteristic,
    ConfirmTimeoutError,
    RequestContext,
    Service,
    connected_centrals,
    device_property,
)
from simulators.ble.spec import DeviceSpec

__all__ = ["CURRENT_TIME_SIZE", "DeviceCore", "Quirk", "Traits"]

log = logging.getLogger(__name__)

_CT_TAIL = Struct("<BBB")  # day of week, fractions256, adjust reason
CURRENT_TIME_SIZE = DATE_TIME_SIZE + _CT_TAIL.size
ADJUST_MANUAL = 0x01  # adjust reason bit 0: manual time update


@dataclass(frozen=True, slots=True)
class Traits:
    memory_capacity: int | None


class DeviceCore:
    """Shared state and the standard services of one simulated device."""

    def __init__(self, spec: DeviceSpec, bus: MessageBus) -> None:
        self.spec = spec
        self.bus = bus
        self.traits = Traits(memory_capacity=spec.memory_capacity)
        self.clock = DeviceClock(spec.clock_skew_s)
        self.battery = spec.battery
        self.battery_char = Characteristic(
            uuids.BATTERY_LEVEL, ["read", "notify"], on_read=lambda _ctx: bytes([self.battery])
        )
        self.current_time_char: Characteristic | None = None

    def has_quirk(self, quirk: Quirk) -> bool:
        return quirk in self.spec.effective_quirks

    # ------------------------------------------------------------------ bonding
    async def central_paired(self, device_path: str | None) -> bool:
        try:
            if device_path is not None:
                return bool(await device_property(self.bus, device_path, "Paired"))
            for path in await connected_centrals(self.bus, self.spec.adapter):
                if await device_property(self.bus, path, "Paired"):
                    return True
        except DBusError as e:
            log.warning("cannot read Paired: %s", e)
        return False

    async def require_bonding(self, ctx: RequestContext) -> None:
        """Reject a data request from an unpaired central when the device needs bonding."""
        if self.spec.bonding_enforced and not await self.central_paired(ctx.device):
            raise AttError(AttErrorCode.INSUFFICIENT_AUTHENTICATION, "pairing required")

    # ------------------------------------------------------------------ battery
    async def set_battery(self, level: int) -> None:
        if not 0 <= level <= 100:
            raise ValueError(f"battery {level} not a percentage")
        self.battery = level
        try:
            await self.battery_char.send(bytes([level]))
        except ConfirmTimeoutError:
            log.warning("battery notification not confirmed")

    # ------------------------------------------------------------------ current time
    def encode_current_time(self, now: datetime | None = None) -> bytes:
        now = now or self.clock.now()
        data = encode_date_time(now) + _CT_TAIL.pack(now.isoweekday(), 0, 0)
        if self.has_quirk(Quirk.MONTH_13_CLOCK):
            data = shift_month13(data, 0)
        return data

    async def _write_current_time(self, data: bytes, ctx: RequestContext) -> None:
        if self.spec.effective_clock is not ClockSupport.SETTABLE:
            raise AttError(AttErrorCode.WRITE_NOT_PERMITTED, "Current Time is read-only")
        if len(data) != CURRENT_TIME_SIZE:
            raise AttError(
                AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH,
                f"Current Time is {CURRENT_TIME_SIZE} bytes, got {len(data)}",
            )
        try:
            value = parse_date_time(data, 0, characteristic="Current Time (0x2A2B)")
        except MalformedPayloadError as e:
            # CTS §3.1.2: "Data field ignored" is application error 0x80.
            raise AttError(AttErrorCode.APPLICATION_ERROR, "data field ignored") from e
        if value is None:
            raise AttError(AttErrorCode.APPLICATION_ERROR, "data field ignored")
        self.clock.set(value)
        log.info("clock set to %s (skew now %.1f s)", value, self.clock.skew_s)

    # ------------------------------------------------------------------ services
    def standard_services(self) -> list[Service]:
        spec = self.spec
        dis = Service(
            uuids.DEVICE_INFORMATION_SERVICE,
            [
                Characteristic(uuids.MANUFACTURER_NAME, ["read"], spec.manufacturer.encode()),
                Characteristic(uuids.MODEL_NUMBER, ["read"], (spec.model or spec.profile).encode()),
                Characteristic(uuids.SERIAL_NUMBER, ["read"], spec.serial_number.encode()),
                Characteristic(uuids.FIRMWARE_REVISION, ["read"], spec.firmware.encode()),
            ],
        )
        services = [dis, Service(uuids.BATTERY_SERVICE, [self.battery_char])]
        clock = spec.effective_clock
        if clock is not ClockSupport.NONE:
            flags = ["read", "notify"] + (["write"] if clock is ClockSupport.SETTABLE else [])
            self.current_time_char = Characteristic(
                uuids.CURRENT_TIME,
                flags,
                on_read=lambda _ctx: self.encode_current_time(),
                on_write=self._write_current_time,
            )
            services.append(Service(uuids.CURRENT_TIME_SERVICE, [self.current_time_char]))
        return services
