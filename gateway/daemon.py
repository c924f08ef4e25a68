"""The gateway daemon: scan, sync paired devices as they advertise, publish.

- One BleakScanner runs for the daemon's lifetime on the configured adapter.
- A paired device seen advertising gets a session task (``gateway.sync``) when it is
  due; at most ``max_concurrent`` sessions run at once (a semaphore).  A session that
  fails is retried with exponential backoff (``retry_delay``); one that succeeded is
  left alone for ``resync_interval_s``.  Nothing a device does can stop the daemon or
  another device's session.
- The publisher drains the outbox to MQTT; the daemon writes its status (broker state,
  outbox depth, sessions) into the state database for ``gateway status``.
- ``once=True``: stop after every paired device synced once (or ``duration_s``), then
  drain the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from device_profiles.profiles import UnknownProfileError, get_profile
from gateway.config import GatewayConfig, SyncSettings
from gateway.outbox import Outbox
from gateway.publisher import Publisher
from gateway.store import DeviceStore, GatewayDB, PairedDevice, StatusStore
from gateway.sync import DeviceSession, SessionEnv, SessionResult
from readings import DeviceInventory, DeviceSynced

log = logging.getLogger(__name__)

STATUS_KEY = "daemon"
_TICK_S = 1.0


def retry_delay(failures: int, settings: SyncSettings) -> float:
    """Backoff after ``failures`` consecutive failed sessions (the one retry policy)."""
    return float(min(settings.retry_max_s, settings.retry_min_s * 2 ** max(0, failures - 1)))


def rss_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass(slots=True)
class DeviceSchedule:
    due: float = 0.0  # loop time
    failures: int = 0
    synced_once: bool = False


class GatewayDaemon:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        once: bool = False,
        duration_s: float | None = None,
        drain_timeout_s: float = 30.0,
    ) -> None:
        self.config = config
        self.once = once
        self.duration_s = duration_s
        self.drain_timeout_s = drain_timeout_s
        self.db = GatewayDB(config.db_path)
        self.devices = DeviceStore(self.db)
        self.outbox = Outbox(self.db, config.outbox)
        self.status = StatusStore(self.db)
        self.publisher: Publisher | None = None
        if config.mqtt is not None:
            self.publisher = Publisher(
                config.mqtt,
                config.gateway_id,
                self.outbox,
                batch_size=config.batch_size,
                receipt_timeout_s=config.mqtt.receipt_timeout_s,
            )
        self.env = SessionEnv(
            adapter=config.adapter,
            zone=config.timezone,
            settings=config.sync,
            db=self.db,
            devices=self.devices,
            outbox=self.outbox,
            on_commit=self._committed,
        )
        self._paired: dict[str, PairedDevice] = {}
        self._schedule: dict[str, DeviceSchedule] = {}
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._semaphore = asyncio.Semaphore(config.sync.max_concurrent)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # stop requested or a session ended
        self._started_at = datetime.now(UTC)
        self.sessions_run = 0
        self.results: list[tuple[str, SessionResult]] = []
        self._last_status: dict[str, object] | None = None
        self._last_status_at = 0.0

    def _committed(self) -> None:
        if self.publisher is not None:
            self.publisher.notify()

    # -- devices -------------------------------------------------------------------
    def _reload_devices(self) -> None:
        """Pick up pairings/unpairings made by ``gateway pair`` while running."""
        self._paired = {d.address.upper(): d for d in self.devices.all()}
        for address in list(self._schedule):
            if address not in self._paired:
                del self._schedule[address]
        for address in self._paired:
            self._schedule.setdefault(address, DeviceSchedule())

    def _on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        paired = self._paired.get(address)
        if paired is None or self._stop.is_set() or address in self._sessions:
            return
        schedule = self._schedule.setdefault(address, DeviceSchedule())
        if self.once and schedule.synced_once:
            return
        if asyncio.get_running_loop().time() < schedule.due:
            return
        task = asyncio.create_task(self._session(paired, device), name=f"sync {address}")
        self._sessions[address] = task

    async def _session(self, paired: PairedDevice, ble_device: BLEDevice) -> None:
        address = paired.address.upper()
        try:
            await self._sync(paired, ble_device)
        finally:
            self._sessions.pop(address, None)
            self._wake.set()

    async def _sync(self, paired: PairedDevice, ble_device: BLEDevice) -> None:
        address = paired.address.upper()
        schedule = self._schedule.setdefault(address, DeviceSchedule())
        loop = asyncio.get_running_loop()
        try:
            profile = get_profile(paired.profile)
        except UnknownProfileError:
            log.error("%s: unknown profile %r; re-pair the device", address, paired.profile)
            schedule.due = loop.time() + self.config.sync.retry_max_s
            return
        try:
            async with self._semaphore:
                current = self.devices.get(paired.address) or paired  # fresh cursor
                log.info("%s: syncing (%s, cursor %s)", address, profile.id, current.cursor)
                result = await DeviceSession(current, profile, self.env).run(ble_device)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not stop the gateway or other devices
            log.exception("%s: session crashed", address)
            self.devices.count_error(paired.address, "internal", repr(exc))
            schedule.failures += 1
            schedule.due = loop.time() + retry_delay(schedule.failures, self.config.sync)
            return
        self.sessions_run += 1
        self.results.append((address, result))
        self._finish(paired, result, schedule, loop.time())

    def _finish(
        self, paired: PairedDevice, result: SessionResult, schedule: DeviceSchedule, now: float
    ) -> None:
        settings = self.config.sync
        at = datetime.now(UTC)
        error = None if result.error is None else f"{result.error.kind}: {result.error}"
        if result.error is None:
            schedule.failures = 0
            schedule.synced_once = True
            schedule.due = now + settings.resync_interval_s
            outcome = {
                "device": paired.address,
                "readings": result.readings,
                "elapsed_s": round(result.elapsed_s, 3),
                "battery_percent": result.battery_percent,
                "skew_s": None if result.skew_s is None else round(result.skew_s, 1),
                "malformed": result.malformed,
                "malformed_reported": result.reported,
                "duplicates": result.duplicates,
            }
            # One dict for the message and the JSON-log fields.
            log.info(
                "%(device)s: synced %(readings)d readings in %(elapsed_s).2f s (battery"
                " %(battery_percent)s%%, skew %(skew_s)s s, %(malformed)d malformed"
                " (%(malformed_reported)d newly reported), %(duplicates)d duplicates)",
                outcome,
                extra=outcome,
            )
        else:
            schedule.failures += 1
            delay = retry_delay(schedule.failures, settings)
            schedule.due = now + delay
            failure = {
                "device": paired.address,
                "readings": result.readings,
                "error": error,
                "retry_in_s": round(delay, 1),
            }
            log.warning(
                "%(device)s: session failed after %(readings)d readings: %(error)s"
                " (retry in %(retry_in_s).0f s)",
                failure,
                extra=failure,
            )
        self.devices.record_sync(
            paired.address,
            at=at,
            readings=result.readings,
            battery_percent=result.battery_percent,
            skew_s=result.skew_s,
            error=error,
            info=result.info,
        )
        self.outbox.enqueue_event(
            DeviceSynced(
                device=paired.address,
                at=at,
                readings=result.readings,
                battery_percent=result.battery_percent,
                skew_s=result.skew_s,
                error=error,
            )
        )
        self._committed()

    # -- status --------------------------------------------------------------------
    def write_status(self, state: str, *, force: bool = True) -> None:
        """Write the status row; unless forced, only when it changed or every 15 s
        (each write is an fsync: spare the Raspberry Pi's SD card)."""
        broker: dict[str, object] = {"configured": self.publisher is not None}
        if self.publisher is not None:
            s = self.publisher.state
            broker.update(
                connected=s.connected,
                since=None if s.last_change is None else s.last_change.isoformat(),
                last_error=s.last_error,
                host=f"{self.publisher.settings.host}:{self.publisher.settings.port}",
                published_rows=s.published_rows,  # PUBACKed by the broker
                confirmed_rows=s.confirmed_rows,  # committed by ingest (receipts)
                awaiting_receipt=self.publisher.inflight_batches,
                resent_batches=s.resent_batches,
                receipts_subscribed=s.receipts_subscribed,
            )
        content: dict[str, object] = {
            "state": state,
            "pid": os.getpid(),
            "gateway_id": self.config.gateway_id,
            "adapter": self.config.adapter,
            "started_at": self._started_at.isoformat(timespec="seconds"),
            "outbox_depth": self.outbox.depth(),
            "sessions_active": sorted(self._sessions),
            "broker": broker,
        }
        now = time.monotonic()
        if not force and content == self._last_status and now - self._last_status_at < 15:
            return
        self._last_status, self._last_status_at = content, now
        self.status.put(
            STATUS_KEY,
            {
                **content,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "rss_kib": rss_kib(),
            },
        )

    def _all_synced_once(self) -> bool:
        return bool(self._paired) and all(
            self._schedule.get(a, DeviceSchedule()).synced_once for a in self._paired
        )

    def _report_inventory(self) -> None:
        """Tell the server which devices this gateway holds (through the outbox)."""
        at = datetime.now(UTC)
        with self.db.transaction():
            for paired in self._paired.values():
                self.outbox.enqueue_event(
                    DeviceInventory(
                        device=paired.address,
                        at=at,
                        profile=paired.profile,
                        name=paired.name,
                        manufacturer=paired.manufacturer,
                        model=paired.model,
                        serial=paired.serial,
                        firmware=paired.firmware,
                    )
                )

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- main ----------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped (SIGTERM/SIGINT), ``duration_s``, or (once) all synced.

        Exit codes with ``once``: 0 done, 3 some device not synced in time, 4 outbox not
        drained to the broker (the rows stay on disk for the next run).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        self._reload_devices()
        if not self._paired:
            log.warning("no paired devices: pair one with `homevitals gateway pair`")
        self._report_inventory()
        publisher_task: asyncio.Task[None] | None = None
        if self.publisher is not None:
            await self.publisher.start()
            publisher_task = asyncio.create_task(self.publisher.run(), name="publisher")
        scanner = BleakScanner(
            detection_callback=self._on_advertisement, bluez={"adapter": self.config.adapter}
        )
        deadline = None if self.duration_s is None else loop.time() + self.duration_s
        log.info(
            "gateway %s running on %s with %d paired device(s)",
            self.config.gateway_id,
            self.config.adapter,
            len(self._paired),
        )
        exit_code = 0
        try:
            await scanner.start()
            while not self._stop.is_set():
                self._reload_devices()
                self.write_status("running", force=False)
                if self.once and self._all_synced_once() and not self._sessions:
                    break
                if deadline is not None and loop.time() >= deadline:
                    if self.once and not self._all_synced_once():
                        exit_code = 3
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_TICK_S):
                        await self._wake.wait()
        finally:
            self._stop.set()
            with contextlib.suppress(Exception):
                await scanner.stop()
            sessions = list(self._sessions.values())
            for task in sessions:
                task.cancel()  # their RecordBuffer commits what arrived
            await asyncio.gather(*sessions, return_exceptions=True)
            if self.publisher is not None:
                if self.once:
                    drained = await self.publisher.drain(self.drain_timeout_s)
                    if not drained:
                        log.warning("outbox not drained: %d rows wait", self.outbox.depth())
                        exit_code = exit_code or 4
                await self.publisher.stop()
            if publisher_task is not None:
                await publisher_task
            self.write_status("stopped")
        return exit_code

    def close(self) -> None:
        self.db.close()


async def run_gateway(
    config: GatewayConfig, *, once: bool = False, duration_s: float | None = None
) -> int:
    daemon = GatewayDaemon(config, once=once, duration_s=duration_s)
    try:
        return await daemon.run()
    finally:
        daemon.close()
