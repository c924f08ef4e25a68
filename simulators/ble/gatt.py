"""A small typed GATT-server framework over BlueZ's D-Bus API (dbus-fast).

A simulated device is a GATT *application*: ``org.bluez.GattService1`` and
``org.bluez.GattCharacteristic1`` objects under one root path, registered with
``GattManager1.RegisterApplication`` on the device's adapter, plus an
``LEAdvertisement1`` registered with ``LEAdvertisingManager1.RegisterAdvertisement``
(BlueZ doc: ``org.bluez.GattManager.rst``, ``org.bluez.GattCharacteristic.rst``,
``org.bluez.LEAdvertisement.rst``, ``org.bluez.Agent.rst``).  It works against real
BlueZ and against bluezoo.

Notifications and indications are a ``PropertiesChanged`` of ``Value``; BlueZ calls
``Confirm()`` when the central acknowledges an indication (bluezoo confirms
notifications too).  Values are sent one at a time, each waiting for its Confirm: a real
server must do that for indications, and it keeps dbus-fast 5.2.0 from treating a full
socket (EAGAIN) as fatal.

Errors a handler raises as :class:`AttError` reach the central as the matching ATT
error (BlueZ maps ``org.bluez.Error.*`` names; see ``dbus_error_to_att_ecode`` in
``src/gatt-database.c``).
"""

# No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures
# from the annotations, and a postponed ``-> None`` would reach it as the string "None".
import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from dbus_fast import DBusError, Message, MessageType, PropertyAccess, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

__all__ = [
    "Advertisement",
    "Agent",
    "AttError",
    "AttErrorCode",
    "Characteristic",
    "ConfirmTimeoutError",
    "GattApplication",
    "Options",
    "Service",
    "bluez_call",
    "connected_centrals",
    "device_property",
    "disconnect_central",
    "wait_bus_closed",
]

log = logging.getLogger(__name__)

BLUEZ = "org.bluez"
AGENT_PATH_SUFFIX = "agent"
DEFAULT_CONFIRM_TIMEOUT_S = 5.0

# D-Bus types in the form dbus-fast reads from annotations and mypy understands.
DBusStr = Annotated[str, DBusSignature("s")]
DBusPath = Annotated[str, DBusSignature("o")]
DBusBool = Annotated[bool, DBusSignature("b")]
DBusU16 = Annotated[int, DBusSignature("q")]
DBusU32 = Annotated[int, DBusSignature("u")]
DBusBytes = Annotated[bytes, DBusSignature("ay")]
DBusStrList = Annotated[list[str], DBusSignature("as")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ManufacturerDataT = Annotated[dict[int, Variant], DBusSignature("a{qv}")]


class AttErrorCode(enum.IntEnum):
    """ATT error codes a simulated device answers with (Core Vol 3 Part F §3.4.1.1,
    Core Specification Supplement Part B §1.2 for the common profile codes)."""

    WRITE_NOT_PERMITTED = 0x03
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    APPLICATION_ERROR = 0x80  # e.g. CTS "data field ignored"
    # CGMS v1.0.1 application errors for E2E-CRC protected writes.
    MISSING_CRC = 0x80  # same code as APPLICATION_ERROR: an alias
    INVALID_CRC = 0x81
    OUT_OF_RANGE = 0xFF  # Core Specification Supplement Part B §1.2
    CCCD_IMPROPERLY_CONFIGURED = 0xFD
    PROCEDURE_ALREADY_IN_PROGRESS = 0xFE


class AttError(DBusError):
    """A GATT request the device rejects with an ATT error.

    bluezoo hands the device's D-Bus error to the central unchanged, so it is phrased
    the way a real BlueZ *central* reports a peer's ATT error
    (``org.bluez.Error.Failed: Operation failed with ATT error: 0x..``), which bleak
    turns into ``BleakGATTProtocolError(code)``.  Do not use ``org.bluez.Error.InProgress``
    for 0xFE: bleak treats that name as "BlueZ busy" and silently retries the write.
    """

    def __init__(self, code: "AttErrorCode", text: str) -> None:
        super().__init__(
            "org.bluez.Error.Failed", f"Operation failed with ATT error: 0x{code:02x} ({text})"
        )
        self.code = code


class ConfirmTimeoutError(TimeoutError):
    """The central did not confirm an indication in time."""


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is asking: BlueZ passes the central's device object path in the options."""

    device: str | None  # /org/bluez/hciN/dev_XX_XX_XX_XX_XX_XX (on our adapter)

    @classmethod
    def from_options(cls, options: dict[str, Variant]) -> "RequestContext":
        device = options.get("device")
        return cls(device=str(device.value) if device is not None else None)


ReadHandler = Callable[[RequestContext], bytes]
WriteHandler = Callable[[bytes, RequestContext], Awaitable[None]]
SubscribeHandler = Callable[[bool], None]


class Characteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1``.

    ``flags`` are BlueZ's (``read``, ``write``, ``notify``, ``indicate``, ...).  A plain
    read returns :attr:`value` unless ``on_read`` is given; writes go to ``on_write``
    (none: the value is stored).  ``on_subscribe(True/False)`` follows StartNotify /
    StopNotify, i.e. the CCCD the central wrote.
    """

    def __init__(
        self,
        uuid: str,
        flags: Sequence[str],
        value: bytes = b"",
        *,
        on_read: ReadHandler | None = None,
        on_write: WriteHandler | None = None,
        on_subscribe: SubscribeHandler | None = None,
    ) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        # Never assign self.name: ServiceInterface uses it for the interface name.
        self.uuid = uuid
        self.flags = list(flags)
        self.value = value
        self.path = ""
        self.service_path = ""
        self.notifying = False
        self.on_read = on_read
        self.on_write = on_write
        self.on_subscribe = on_subscribe
        self._sent = 0
        self._confirmed = 0
        self._confirm_event = asyncio.Event()
        self._send_lock = asyncio.Lock()

    # --- D-Bus properties
    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802 - D-Bus member names
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusPath:  # noqa: N802
        return self.service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusStrList:  # noqa: N802
        return self.flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:  # noqa: N802
        return self.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> DBusBool:  # noqa: N802
        return self.notifying

    # --- D-Bus methods
    @dbus_method()
    def ReadValue(self, options: Options) -> DBusBytes:  # noqa: N802
        ctx = RequestContext.from_options(options)
        if self.on_read is not None:
            self.value = self.on_read(ctx)
        return self.value

    @dbus_method()
    async def WriteValue(self, value: DBusBytes, options: Options) -> None:  # noqa: N802
        data = bytes(value)
        log.debug("write %s %s", self.uuid[4:8], data.hex())
        if self.on_write is None:
            self.value = data
            return
        await self.on_write(data, RequestContext.from_options(options))

    @dbus_method()
    def StartNotify(self) -> None:  # noqa: N802
        self._set_notifying(True)

    @dbus_method()
    def StopNotify(self) -> None:  # noqa: N802
        self._set_notifying(False)

    @dbus_method()
    def Confirm(self) -> None:  # noqa: N802
        self._confirmed += 1
        self._confirm_event.set()

    # --- server side API
    def _set_notifying(self, on: bool) -> None:
        if self.notifying == on:
            return
        self.notifying = on
        self.emit_properties_changed({"Notifying": on})
        if not on:
            self._confirm_event.set()  # wake a sender waiting for a Confirm that won't come
        if self.on_subscribe is not None:
            self.on_subscribe(on)

    async def send(self, value: bytes, timeout: float = DEFAULT_CONFIRM_TIMEOUT_S) -> bool:
        """Notify or indicate ``value`` and wait for its Confirm.

        Returns False when the central is not (or no longer) subscribed; raises
        :class:`ConfirmTimeoutError` when no Confirm arrives within ``timeout``.
        """
        async with self._send_lock:
            if not self.notifying:
                return False
            self.value = value
            self._sent += 1
            target = self._sent
            self._confirm_event.clear()
            self.emit_properties_changed({"Value": value})
            try:
                async with asyncio.timeout(timeout):
                    while self._confirmed < target:
                        if not self.notifying:
                            return False
                        await self._confirm_event.wait()
                        self._confirm_event.clear()
            except TimeoutError:
                # Re-align the counters so a late Confirm cannot satisfy the next value.
                self._confirmed = self._sent
                raise ConfirmTimeoutError(
                    f"no Confirm for {self.uuid} within {timeout:.1f} s"
                ) from None
            return True


class Service(ServiceInterface):
    """``org.bluez.GattService1`` with its characteristics."""

    def __init__(self, uuid: str, characteristics: Sequence[Characteristic] = ()) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid = uuid
        self.characteristics = list(characteristics)
        self.path = ""

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:  # noqa: N802
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:  # noqa: N802
        return True


class Advertisement(ServiceInterface):
    """``org.bluez.LEAdvertisement1``: connectable, discoverable, by service UUIDs."""

    def __init__(
        self,
        local_name: str,
        service_uuids: Sequence[str],
        appearance: int = 0,
        manufacturer_data: dict[int, bytes] | None = None,
    ) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.local_name = local_name
        self.service_uuids = list(service_uuids)
        self.appearance = appearance
        self.manufacturer_data = dict(manufacturer_data or {})

    @dbus_method()
    def Release(self) -> None:  # noqa: N802
        log.info("advertisement %s released", self.local_name)

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> DBusStr:  # noqa: N802
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> DBusStrList:  # noqa: N802
        return self.service_uuids

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> DBusStr:  # noqa: N802
        return self.local_name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:  # noqa: N802
        return True  # bluezoo only reports advertisements that say so

    @dbus_property(access=PropertyAccess.READ)
    def Appearance(self) -> DBusU16:  # noqa: N802
        return self.appearance

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> ManufacturerDataT:  # noqa: N802
        return {cid: Variant("ay", data) for cid, data in self.manufacturer_data.items()}


class Agent(ServiceInterface):
    """``org.bluez.Agent1`` with capability NoInputNoOutput: "just works" pairing."""

    CAPABILITY = "NoInputNoOutput"

    def __init__(self) -> None:
        super().__init__("org.bluez.Agent1")

    @dbus_method()
    def Release(self) -> None:  # noqa: N802
        log.info("agent released")

    @dbus_method()
    def RequestAuthorization(self, device: DBusPath) -> None:  # noqa: N802
        log.info("agent: authorize %s", device)

    @dbus_method()
    def AuthorizeService(self, device: DBusPath, uuid: DBusStr) -> None:  # noqa: N802
        log.info("agent: authorize service %s for %s", uuid, device)

    @dbus_method()
    def RequestConfirmation(self, device: DBusPath, passkey: DBusU32) -> None:  # noqa: N802
        log.info("agent: confirm passkey %06d for %s", passkey, device)

    @dbus_method()
    def Cancel(self) -> None:  # noqa: N802
        log.info("agent: pairing cancelled")


async def bluez_call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    *,
    signature: str = "",
    body: Sequence[Any] = (),
) -> list[Any]:
    """Call an ``org.bluez`` method; a D-Bus error reply raises :class:`DBusError`."""
    reply = await bus.call(
        Message(
            destination=BLUEZ,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
        )
    )
    if reply is None:
        raise DBusError("org.freedesktop.DBus.Error.NoReply", f"{interface}.{member}")
    if reply.message_type is MessageType.ERROR:
        raise DBusError(reply.error_name or "unknown", str(reply.body[0] if reply.body else ""))
    return list(reply.body)


async def device_property(bus: MessageBus, device_path: str, name: str) -> Any:
    """One ``org.bluez.Device1`` property (e.g. ``Paired``) of a device object."""
    (variant,) = await bluez_call(
        bus,
        device_path,
        "org.freedesktop.DBus.Properties",
        "Get",
        signature="ss",
        body=["org.bluez.Device1", name],
    )
    return variant.value


async def connected_centrals(bus: MessageBus, adapter: str) -> list[str]:
    """Device objects on ``adapter`` that are connected (our view of the centrals)."""
    (objects,) = await bluez_call(
        bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
    )
    prefix = f"/org/bluez/{adapter}/dev_"
    return [
        path
        for path, ifaces in objects.items()
        if path.startswith(prefix)
        and "/" not in path[len(prefix) :]
        and "org.bluez.Device1" in ifaces
        and ifaces["org.bluez.Device1"]["Connected"].value
    ]


async def disconnect_central(bus: MessageBus, adapter: str) -> int:
    """Drop every link to ``adapter`` from the peripheral side; returns how many."""
    centrals = await connected_centrals(bus, adapter)
    for path in centrals:
        await bluez_call(bus, path, "org.bluez.Device1", "Disconnect")
    return len(centrals)


async def wait_bus_closed(bus: MessageBus) -> None:
    """Until ``bus`` disconnects (dbus-fast leaves this coroutine unannotated)."""
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]


class GattApplication:
    """Services exported under ``root`` and registered on ``adapter`` with an advert."""

    def __init__(
        self,
        bus: MessageBus,
        adapter: str,
        root: str,
        services: Sequence[Service],
        advertisement: Advertisement,
    ) -> None:
        self.bus = bus
        self.adapter = adapter
        self.adapter_path = f"/org/bluez/{adapter}"
        self.root = root
        self.services = list(services)
        self.advertisement = advertisement
        self.advertisement_path = f"{root}/advertisement0"
        self.agent_path = f"{root}/{AGENT_PATH_SUFFIX}"
        self._registered = False
        self._advertising = False
        self._agent: Agent | None = None
        self._agent_task: asyncio.Task[None] | None = None

    def _export(self) -> None:
        for i, service in enumerate(self.services):
            service.path = f"{self.root}/service{i}"
            self.bus.export(service.path, service)
            for j, char in enumerate(service.characteristics):
                char.service_path = service.path
                char.path = f"{service.path}/char{j}"
                self.bus.export(char.path, char)
        self.bus.export(self.advertisement_path, self.advertisement)

    async def register(self, *, agent: bool = False) -> None:
        """Export, register the application and advertisement, and optionally an agent."""
        self._export()
        await bluez_call(
            self.bus,
            self.adapter_path,
            "org.bluez.GattManager1",
            "RegisterApplication",
            signature="oa{sv}",
            body=[self.root, {}],
        )
        self._registered = True
        await bluez_call(
            self.bus,
            self.adapter_path,
            "org.bluez.LEAdvertisingManager1",
            "RegisterAdvertisement",
            signature="oa{sv}",
            body=[self.advertisement_path, {}],
        )
        self._advertising = True
        if agent:
            self._agent = Agent()
            self.bus.export(self.agent_path, self._agent)
            if not await self._register_agent():
                # bluezoo accepts one agent per bus, from whichever device came first;
                # keep trying so pairing still works if that device goes away.
                self._agent_task = asyncio.create_task(self._agent_retry())

    async def _register_agent(self) -> bool:
        try:
            await bluez_call(
                self.bus,
                "/org/bluez",
                "org.bluez.AgentManager1",
                "RegisterAgent",
                signature="os",
                body=[self.agent_path, Agent.CAPABILITY],
            )
        except DBusError as e:
            if e.type == "org.bluez.Error.AlreadyExists":
                return False
            raise
        await bluez_call(
            self.bus,
            "/org/bluez",
            "org.bluez.AgentManager1",
            "RequestDefaultAgent",
            signature="o",
            body=[self.agent_path],
        )
        log.info("agent %s registered (%s)", self.agent_path, Agent.CAPABILITY)
        return True

    async def _agent_retry(self) -> None:
        while not await self._register_agent():
            await asyncio.sleep(1.0)

    async def unregister(self) -> None:
        """Withdraw the advertisement, application and agent (errors are logged only)."""
        if self._agent_task is not None:
            self._agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._agent_task
        steps: list[tuple[str, str, str, str, list[Any]]] = []
        if self._agent is not None:
            steps.append(
                ("/org/bluez", "org.bluez.AgentManager1", "UnregisterAgent", "o", [self.agent_path])
            )
        if self._advertising:
            steps.append(
                (
                    self.adapter_path,
                    "org.bluez.LEAdvertisingManager1",
                    "UnregisterAdvertisement",
                    "o",
                    [self.advertisement_path],
                )
            )
        if self._registered:
            steps.append(
                (
                    self.adapter_path,
                    "org.bluez.GattManager1",
                    "UnregisterApplication",
                    "o",
                    [self.root],
                )
            )
        for path, iface, member, sig, body in steps:
            try:
                await bluez_call(self.bus, path, iface, member, signature=sig, body=body)
            except DBusError as e:
                log.debug("%s.%s: %s", iface, member, e)
        self._agent = None
        self._advertising = self._registered = False
