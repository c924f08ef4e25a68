"""How records come out of a device: one small strategy per ``FetchMethod``.

A new device family is a new ``DeviceProfile`` (data); only a new *way of fetching*
needs a new class here, registered in ``FETCHERS``, with the cursor policy it resumes by
(``gateway.cursors``).

A fetcher speaks the protocol and hands each raw measurement to a :class:`RecordSink`
(``gateway.sync.RecordBuffer``), which parses, filters, and commits records together
with the device cursor its policy keeps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from zoneinfo import ZoneInfo

from device_profiles import uuids
from device_profiles.cgm import (
    CgmFeature,
    CgmSessionStartTime,
    parse_cgm_feature,
    parse_cgm_session_start_time,
    parse_cgm_status,
)
from device_profiles.errors import MalformedPayloadError
from device_profiles.profiles import DeviceProfile, FetchMethod, Quirk
from device_profiles.racp import (
    RacpResponseCode,
    RacpStatus,
    parse_racp_response,
    report_all,
    report_records_from,
    report_records_from_time_offset,
)
from gateway.config import SyncSettings
from gateway.cursors import (
    CgmTimeOffsetCursor,
    CursorPolicy,
    DeviceTimeCursor,
    NoCursor,
    SequenceCursor,
)
from gateway.store import PairedDevice
from gateway.transport import GattError, GattLink, GattTimeoutError, LinkLostError

log = logging.getLogger(__name__)

MAX_SEQUENCE = 0xFFFF


class RacpError(GattError):
    """The device answered the RACP request with an error code."""

    kind = "racp"


class RecordSink(Protocol):
    def add(self, raw: bytes) -> None:
        """One measurement as received (parsed, filtered and buffered by the sink)."""

    def flush(self) -> None:
        """Commit what is buffered (outbox rows + cursor, one transaction)."""

    def malformed(self, characteristic: str, exc: MalformedPayloadError) -> None:
        """Count and log bytes that are not a valid message."""

    def start_cgm_session(
        self, start_time: CgmSessionStartTime, *, e2e_crc: bool, current_offset: int | None
    ) -> int | None:
        """CGM: the session the next records belong to; returns the cursor to resume
        from (the last time offset committed in *this* session), None for all records."""


class Fetcher(Protocol):
    # The device hangs up when it is done: anything else (setting its clock) must
    # happen before the fetch.
    device_ends_session: bool

    def cursor_policy(
        self, device: PairedDevice, profile: DeviceProfile, zone: ZoneInfo
    ) -> CursorPolicy:
        """How this way of fetching knows what is new (``gateway.cursors``)."""
        ...

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None: ...


Item = tuple[str, bytes] | None  # (characteristic uuid, value); None: link lost


class CgmSessionError(GattError):
    """The CGM sensor's session cannot be established (unknown start, bad CRC, ...)."""

    kind = "cgm_session"


async def _racp_download(
    link: GattLink,
    profile: DeviceProfile,
    request: bytes,
    sink: RecordSink,
    settings: SyncSettings,
) -> None:
    """Subscribe to the measurement and the RACP, write ``request``, hand every record to
    the sink until the RACP answers (GLS §4.9 / CGMS §3.6 share the procedure)."""
    inbox: asyncio.Queue[Item] = asyncio.Queue()

    def on_record(data: bytes | None) -> None:
        inbox.put_nowait(None if data is None else (profile.measurement_uuid, data))

    def on_racp(data: bytes | None) -> None:
        inbox.put_nowait(None if data is None else (uuids.RACP, data))

    await link.subscribe(profile.measurement_uuid, on_record)
    await link.subscribe(uuids.RACP, on_racp)
    await link.write(uuids.RACP, request)
    received = 0
    while True:
        try:
            async with asyncio.timeout(settings.racp_idle_timeout_s):
                item = await inbox.get()
        except TimeoutError as exc:
            raise GattTimeoutError(
                f"RACP: nothing for {settings.racp_idle_timeout_s:.0f} s after {received} records"
            ) from exc
        if item is None:
            raise LinkLostError(f"link lost during the RACP download ({received} records)")
        uuid, data = item
        if uuid != uuids.RACP:
            received += 1
            sink.add(data)
            continue
        try:
            response = parse_racp_response(data)
        except MalformedPayloadError as exc:
            sink.malformed("RACP", exc)
            continue
        if not isinstance(response, RacpStatus):
            continue  # a number-of-records answer we did not ask for
        if response.code in (RacpResponseCode.SUCCESS, RacpResponseCode.NO_RECORDS_FOUND):
            log.debug("%s: RACP %s after %d records", link.address, response.code.name, received)
            return
        raise RacpError(f"RACP request {request.hex()} answered {response.code.name}")


class RacpSequenceFetcher:
    """Glucose-style stored records: RACP "report records with sequence ≥ cursor + 1".

    The first download (no cursor), a reversed-sequence meter (its numbers shift as it
    stores records, so they are no cursor) and a cursor at the u16 limit ask for all
    records; the sink drops the ones already committed.
    """

    device_ends_session = False

    def cursor_policy(
        self, device: PairedDevice, profile: DeviceProfile, zone: ZoneInfo
    ) -> CursorPolicy:
        if Quirk.REVERSED_SEQUENCE in profile.quirks:
            return DeviceTimeCursor(device)
        return SequenceCursor(device)

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None:
        if cursor is None or cursor >= MAX_SEQUENCE or Quirk.REVERSED_SEQUENCE in profile.quirks:
            request = report_all()
        else:
            request = report_records_from(cursor + 1)
        await _racp_download(link, profile, request, sink, settings)


class CgmRacpFetcher:
    """CGM sensor (CGMS v1.0.1): stored records by Time Offset over the RACP.

    1. Read CGM Feature (0x2AA8): does the sensor protect its values with E2E-CRC?
    2. Read CGM Session Start Time (0x2AAA) and CGM Status (0x2AA9, current offset): the
       sink decides whether the stored cursor belongs to this session.
    3. RACP "report records with Time Offset ≥ cursor + 1" (``01 03 01 <u16>``, CGMS §3.6
       filter type 0x01), or "all records" for a new session / first download.

    The cursor and the records are committed together by the sink, as for glucose
    meters.  A sensor whose session start is unknown is not downloaded (its records
    could not be dated); the error says so and nothing is lost.
    """

    device_ends_session = False

    def cursor_policy(
        self, device: PairedDevice, profile: DeviceProfile, zone: ZoneInfo
    ) -> CursorPolicy:
        return CgmTimeOffsetCursor(device, zone)

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None:
        try:
            features = parse_cgm_feature(await link.read(uuids.CGM_FEATURE))
            start_time = parse_cgm_session_start_time(await link.read(uuids.CGM_SESSION_START_TIME))
        except MalformedPayloadError as exc:
            sink.malformed(exc.characteristic, exc)
            raise CgmSessionError(f"{exc.characteristic}: {exc.reason}") from exc
        e2e_crc = CgmFeature.E2E_CRC in features.supported
        if e2e_crc and not start_time.e2e_crc:
            raise CgmSessionError("CGM Session Start Time: E2E-CRC missing (the sensor has it)")
        if start_time.start is None:
            raise CgmSessionError(
                "CGM Session Start Time unknown: records cannot be dated, not fetching"
            )
        current_offset: int | None = None
        if link.has(uuids.CGM_STATUS):
            try:
                current_offset = parse_cgm_status(
                    await link.read(uuids.CGM_STATUS)
                ).time_offset_minutes
            except MalformedPayloadError as exc:
                sink.malformed(exc.characteristic, exc)
        resume = sink.start_cgm_session(start_time, e2e_crc=e2e_crc, current_offset=current_offset)
        if resume is None or resume >= MAX_SEQUENCE:
            request = report_all()
        else:
            request = report_records_from_time_offset(resume + 1)
        await _racp_download(link, profile, request, sink, settings)


class IndicationsOnConnectFetcher:
    """BP-cuff style: the device indicates its unsent records once we subscribe, then
    hangs up (or goes quiet).  Each record is committed as it arrives: the device
    considers it sent once BlueZ confirmed the indication."""

    device_ends_session = True

    def cursor_policy(
        self, device: PairedDevice, profile: DeviceProfile, zone: ZoneInfo
    ) -> CursorPolicy:
        return NoCursor(device)

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None:
        inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        await link.subscribe(profile.measurement_uuid, inbox.put_nowait)
        # Give the device longer to start than to continue.
        idle = settings.indication_idle_s * 3
        while True:
            try:
                async with asyncio.timeout(idle):
                    data = await inbox.get()
            except TimeoutError:
                return  # quiet: it has nothing more
            if data is None:
                return  # the device hung up: the normal end of its transfer
            sink.add(data)
            sink.flush()
            idle = settings.indication_idle_s


FETCHERS: dict[FetchMethod, Fetcher] = {
    FetchMethod.RACP_SEQUENCE: RacpSequenceFetcher(),
    FetchMethod.INDICATIONS_ON_CONNECT: IndicationsOnConnectFetcher(),
    FetchMethod.RACP_TIME_OFFSET: CgmRacpFetcher(),
}


def cursor_policy(device: PairedDevice, profile: DeviceProfile, zone: ZoneInfo) -> CursorPolicy:
    """The cursor policy of ``profile``'s fetch method."""
    return FETCHERS[profile.fetch].cursor_policy(device, profile, zone)
