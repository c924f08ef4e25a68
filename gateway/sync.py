"""One device session: device information, battery, clock, fetch, commit, clock set.

``DeviceSession.run`` connects to one advertising device and brings its new records
into the outbox.  Records and the device cursor are committed together
(:class:`RecordBuffer`), every ``commit_every`` records and at the end, so a cut link or
a crash loses nothing and re-fetches at most one chunk (same reading ids).

A record the parser rejects is not dropped: it becomes a ``DeviceRecordMalformed``
event (raw bytes, reason) committed in the same transaction, which ingest keeps as a
dead letter.  When the record's RACP number can still be read and is trustworthy, the
cursor moves past it, so a malformed newest record is not fetched at every sync.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bleak.backends.device import BLEDevice

from device_profiles import uuids
from device_profiles.cgm import CgmSessionStartTime
from device_profiles.current_time import current_time_now, encode_current_time, parse_current_time
from device_profiles.device_info import parse_battery_level, parse_dis_string
from device_profiles.errors import MalformedPayloadError
from device_profiles.model import Measurement
from device_profiles.profiles import ClockSupport, DeviceProfile, Quirk
from gateway.config import SyncSettings
from gateway.cursors import CursorPolicy
from gateway.fetch import FETCHERS, cursor_policy
from gateway.outbox import Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from gateway.transport import GattError, GattLink, open_link
from readings import (
    FUTURE_TOLERANCE,
    MAX_ATTRIBUTE_BYTES,
    MAX_MALFORMED_REASON,
    NEGLIGIBLE_SKEW_S,
    CgmSession,
    DeviceRecordMalformed,
    Parser,
    Reading,
    RecordNumber,
    TimeContext,
    gateway_wall_now,
    measure_skew,
    parser_for,
    readable_record_number,
    stable_skew,
    to_reading,
)

log = logging.getLogger(__name__)

DEVICE_INFO = {
    "manufacturer": uuids.MANUFACTURER_NAME,
    "model": uuids.MODEL_NUMBER,
    "serial": uuids.SERIAL_NUMBER,
    "firmware": uuids.FIRMWARE_REVISION,
}


@dataclass(slots=True)
class SessionResult:
    readings: int = 0
    malformed: int = 0
    reported: int = 0  # malformed records put in the outbox as events (first time seen)
    duplicates: int = 0
    battery_percent: int | None = None
    skew_s: float | None = None
    clock_set: bool = False
    info: dict[str, str | None] = field(default_factory=dict)
    error: GattError | None = None
    elapsed_s: float = 0.0  # connect to disconnect


class RecordBuffer:
    """Parses, filters and commits records of one session (a ``fetch.RecordSink``).

    What is already committed and where the cursor stands is the business of the fetch
    method's :class:`~gateway.cursors.CursorPolicy` (``cursors``; by default the one its
    fetcher picks); the buffer commits records, malformed-record events and the cursor
    together every ``commit_every`` records.
    """

    def __init__(
        self,
        *,
        device: PairedDevice,
        profile: DeviceProfile,
        parse: Parser,
        clock: TimeContext,
        device_now: datetime | None,
        db: GatewayDB,
        devices: DeviceStore,
        outbox: Outbox,
        commit_every: int,
        on_commit: Callable[[], None] | None = None,
        cursors: CursorPolicy | None = None,
    ) -> None:
        self.device = device
        self.profile = profile
        self.parse = parse
        self.clock = clock
        self.db = db
        self.devices = devices
        self.outbox = outbox
        self.commit_every = commit_every
        self._on_commit = on_commit
        self.cursors = cursors or cursor_policy(device, profile, clock.zone)
        reference = device_now or gateway_wall_now(clock.zone)
        self.latest_plausible = reference + FUTURE_TOLERANCE
        self.pending: list[Reading] = []
        self.pending_events: list[DeviceRecordMalformed] = []
        self._pending_cursor: int | None = None
        self._pending_time: str | None = None
        self._position = 0  # records of this session so far, in indication order
        self._arrived = datetime.min.replace(tzinfo=UTC)  # the last record's arrival
        self.result = SessionResult()

    @property
    def session(self) -> CgmSession | None:
        """The CGM sensor session of the records (None for other devices)."""
        return self.cursors.session

    def malformed(self, characteristic: str, exc: MalformedPayloadError) -> None:
        """Log and count bytes that are not a valid message (a record, or a control
        point answer); records are also reported (``_malformed_record``)."""
        self.result.malformed += 1
        log.warning(
            "%s: malformed %s: %s (raw %s)",
            self.device.address,
            characteristic,
            exc.reason,
            exc.hex,
        )
        self.devices.count_error(self.device.address, "malformed", f"{exc.reason}: {exc.hex}")

    def start_cgm_session(
        self, start_time: CgmSessionStartTime, *, e2e_crc: bool, current_offset: int | None
    ) -> int | None:
        return self.cursors.start_cgm_session(
            start_time, e2e_crc=e2e_crc, current_offset=current_offset
        )

    def add(self, raw: bytes) -> None:
        try:
            measurements = self.parse(raw)
        except MalformedPayloadError as exc:
            self._malformed_record(raw, exc)
        else:
            for m in measurements:
                self._add(m, raw)
        if len(self.pending) + len(self.pending_events) >= self.commit_every:
            self.flush()

    def _malformed_record(
        self, raw: bytes, exc: MalformedPayloadError, number: RecordNumber | None = None
    ) -> None:
        """Log, count and report a record the parser rejected (committed by ``flush``).

        When its number is readable and trustworthy (``CursorPolicy.skip_past``), the
        cursor moves past it with its event; otherwise the record is fetched again at the
        next sync (reported once: see ``DeviceStore.first_report``) until a newer valid
        record moves the cursor.
        """
        self.malformed(exc.characteristic, exc)
        if number is None:
            number = readable_record_number(self.profile.measurement_uuid, raw)
        session = self.cursors.session
        self.pending_events.append(
            DeviceRecordMalformed(
                device=self.device.address,
                at=datetime.now(UTC),
                characteristic=self.profile.measurement_uuid,
                raw=raw[:MAX_ATTRIBUTE_BYTES].hex(),  # an ATT value is never longer
                reason=exc.reason[:MAX_MALFORMED_REASON],
                profile=self.profile.id,
                seq=number.seq,
                time_offset_min=number.time_offset,
                skew_s=self.clock.skew_s,
                zone=self.clock.zone.key,
                cgm_session=None if session is None else session.key,
            )
        )
        self._move_cursor(self.cursors.skip_past(number))

    def _move_cursor(self, to: int | None) -> None:
        if to is not None:
            self._pending_cursor = max(self._pending_cursor or 0, to)

    def _add(self, m: Measurement, raw: bytes) -> None:
        # Every record's place in the session (and when it arrived): the identity of a
        # record with neither device time nor number (readings.RecordKey.received).
        self._position += 1
        self._arrived = max(datetime.now(UTC), self._arrived + timedelta(microseconds=1))
        position, arrived = self._position, self._arrived
        rejection = self.cursors.rejects(m, raw)
        if rejection is not None:
            self._malformed_record(raw, *rejection)
            return
        if self.cursors.seen(m):
            self.result.duplicates += 1
            return
        if m.local_time is not None and m.local_time > self.latest_plausible:
            log.warning(
                "%s: dropping a record dated %s, after the device's own clock (raw %s)",
                self.device.address,
                m.local_time,
                raw.hex(),
            )
            self.devices.count_error(self.device.address, "implausible_time", raw.hex())
            return
        m = self.cursors.identity(m)
        reading = to_reading(
            self.device.address,
            m,
            self.clock,
            self.cursors.session,
            position=position,
            received_at=arrived,
        )
        self.pending.append(reading)
        self._move_cursor(self.cursors.position(m))
        # The device-local time the reading rests on (a CGM record's: session start +
        # offset), committed as the device's last device time.
        text = reading.device_time
        if text is not None and (self._pending_time is None or text > self._pending_time):
            self._pending_time = text

    def flush(self) -> None:
        if not self.pending and not self.pending_events:
            return
        with self.db.transaction() as conn:
            self.outbox.enqueue_readings(conn, self.pending)
            reports = self._first_reports(conn)
            self.outbox.enqueue_events(conn, reports)
            self.devices.advance(
                conn,
                self.device.address,
                cursor=self._pending_cursor,
                last_device_time=self._pending_time,
                session=None if self.session is None else self.session.key,
            )
        self.cursors.committed(self._pending_cursor, self._pending_time)
        self.result.readings += len(self.pending)
        self.result.reported += len(reports)
        self.pending.clear()
        self.pending_events.clear()
        if self._on_commit is not None:
            self._on_commit()

    def _first_reports(self, conn: sqlite3.Connection) -> list[DeviceRecordMalformed]:
        """The pending malformed records not reported before (same transaction)."""
        fresh = [
            event
            for event in self.pending_events
            if self.devices.first_report(conn, self.device.address, _report_digest(event))
        ]
        if len(fresh) < len(self.pending_events):
            log.info(
                "%s: %d malformed records were reported before: not again",
                self.device.address,
                len(self.pending_events) - len(fresh),
            )
        return fresh


def _report_digest(event: DeviceRecordMalformed) -> str:
    """The identity of a malformed record: what the device sent, where."""
    return hashlib.sha256(f"{event.characteristic}\x1f{event.raw}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class SessionEnv:
    """What every session shares: settings, zone, adapter and the state."""

    adapter: str
    zone: ZoneInfo
    settings: SyncSettings
    db: GatewayDB
    devices: DeviceStore
    outbox: Outbox
    on_commit: Callable[[], None] | None = None


async def read_device_info(
    link: GattLink, device: PairedDevice, env: SessionEnv
) -> dict[str, str | None]:
    info: dict[str, str | None] = {}
    for key, uuid in DEVICE_INFO.items():
        if not link.has(uuid):
            continue
        try:
            raw = await link.read(uuid)
        except GattError as exc:
            if exc.kind == "link_lost":
                raise
            env.devices.count_error(device.address, exc.kind, str(exc))
            continue
        try:
            info[key] = parse_dis_string(raw, key).strip() or None
        except MalformedPayloadError as exc:
            env.devices.count_error(device.address, "malformed", f"{key} {exc.hex}")
    return info


async def read_battery(link: GattLink, device: PairedDevice, env: SessionEnv) -> int | None:
    if not link.has(uuids.BATTERY_LEVEL):
        return None
    raw = await link.read(uuids.BATTERY_LEVEL)
    try:
        return parse_battery_level(raw)
    except MalformedPayloadError as exc:
        env.devices.count_error(device.address, "malformed", f"battery {exc.hex}")
        log.warning("%s: malformed battery level: %s (raw %s)", device.address, exc.reason, exc.hex)
        return None


def _has_clock(link: GattLink, profile: DeviceProfile) -> bool:
    return (
        profile.clock is not ClockSupport.NONE
        and Quirk.NO_CURRENT_TIME_SERVICE not in profile.quirks
        and link.has(uuids.CURRENT_TIME)
    )


async def read_device_clock(
    link: GattLink, device: PairedDevice, profile: DeviceProfile, env: SessionEnv
) -> tuple[datetime | None, float | None]:
    """(device's current wall time, skew in seconds) or (None, None) if unknown."""
    if not _has_clock(link, profile):
        return None, None
    before = datetime.now(UTC)
    raw = await link.read(uuids.CURRENT_TIME)
    after = datetime.now(UTC)
    gateway_now = before + (after - before) / 2  # the device answered about mid-way
    try:
        current = parse_current_time(raw)
    except MalformedPayloadError as exc:
        log.warning("%s: malformed Current Time: %s (raw %s)", device.address, exc.reason, exc.hex)
        env.devices.count_error(device.address, "malformed", f"current time {exc.hex}")
        return None, None
    if current.time is None:
        return None, None
    # A clock without fractions is truncated to the second: its true time is on average
    # half a second later.
    fraction = current.fractions256 / 256 if current.fractions256 else 0.5
    device_now = current.time + timedelta(seconds=fraction)
    skew = stable_skew(measure_skew(device_now, gateway_now, env.zone), device.skew_s)
    return device_now, skew


async def set_device_clock(link: GattLink, env: SessionEnv) -> None:
    now = current_time_now(gateway_wall_now(env.zone))
    await link.write(uuids.CURRENT_TIME, encode_current_time(now))


class DeviceSession:
    def __init__(self, device: PairedDevice, profile: DeviceProfile, env: SessionEnv) -> None:
        self.device = device
        self.profile = profile
        self.env = env

    async def _set_clock(self, link: GattLink, skew_s: float | None) -> bool:
        try:
            await set_device_clock(link, self.env)
        except GattError as exc:
            if exc.kind == "link_lost":
                raise
            log.warning("%s: could not set the device clock: %s", self.device.address, exc)
            self.env.devices.count_error(self.device.address, exc.kind, f"set clock: {exc}")
            return False
        log.info("%s: device clock set (skew was %+.0f s)", self.device.address, skew_s or 0)
        return True

    async def run(self, ble_device: BLEDevice) -> SessionResult:
        """Sync once.  GATT failures end up in ``result.error`` (records so far kept)."""
        env, device, profile = self.env, self.device, self.profile
        parse = parser_for(profile)
        s = env.settings
        result = SessionResult()
        buffer: RecordBuffer | None = None
        started = time.perf_counter()
        try:
            async with open_link(
                ble_device,
                name=device.name or device.address,
                adapter=env.adapter,
                connect_timeout_s=s.connect_timeout_s,
                attempts=s.connect_attempts,
                op_timeout_s=s.gatt_timeout_s,
                min_interval_s=profile.min_gatt_interval_s,
            ) as link:
                result.info = await read_device_info(link, device, env)
                result.battery_percent = await read_battery(link, device, env)
                device_now, result.skew_s = await read_device_clock(link, device, profile, env)
                fetcher = FETCHERS[profile.fetch]
                buffer = RecordBuffer(
                    device=device,
                    profile=profile,
                    parse=parse,
                    clock=TimeContext(env.zone, result.skew_s, datetime.now(UTC)),
                    device_now=device_now,
                    db=env.db,
                    devices=env.devices,
                    outbox=env.outbox,
                    commit_every=s.commit_every,
                    on_commit=env.on_commit,
                    cursors=fetcher.cursor_policy(device, profile, env.zone),
                )
                set_clock = (
                    profile.clock is ClockSupport.SETTABLE
                    and result.skew_s is not None
                    and abs(result.skew_s) > NEGLIGIBLE_SKEW_S
                )
                # Records stored so far carry the old clock: they are converted with the
                # skew measured above.  Set the clock after a download (a crash before
                # its commit re-fetches with the same skew), unless the device hangs up.
                if set_clock and fetcher.device_ends_session:
                    result.clock_set = await self._set_clock(link, result.skew_s)
                try:
                    await fetcher.fetch(link, profile, device.cursor, buffer, s)
                finally:
                    buffer.flush()
                if set_clock and not result.clock_set and not link.disconnected.is_set():
                    result.clock_set = await self._set_clock(link, result.skew_s)
        except GattError as exc:
            result.error = exc
            env.devices.count_error(device.address, exc.kind, str(exc))
        if buffer is not None:
            result.readings = buffer.result.readings
            result.malformed = buffer.result.malformed
            result.reported = buffer.result.reported
            result.duplicates = buffer.result.duplicates
        result.elapsed_s = time.perf_counter() - started
        return result
