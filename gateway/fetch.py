"""How records come out of a device: one small strategy per ``FetchMethod``.

A new device family is a new ``DeviceProfile`` (data); only a new *way of fetching*
needs a new class here, registered in ``FETCHERS``.

A fetcher speaks the protocol and hands each raw measurement to a :class:`RecordSink`
(``gateway.sync.RecordBuffer``), which parses, filters, and commits records together
with the device cursor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from device_profiles import uuids
from device_profiles.errors import MalformedPayloadError
from device_profiles.profiles import DeviceProfile, FetchMethod, Quirk
from device_profiles.racp import (
    RacpResponseCode,
    RacpStatus,
    parse_racp_response,
    report_all,
    report_records_from,
)
from gateway.config import SyncSettings
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


class Fetcher(Protocol):
    # The device hangs up when it is done: anything else (setting its clock) must
    # happen before the fetch.
    device_ends_session: bool

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None: ...


Item = tuple[str, bytes] | None  # (characteristic uuid, value); None: link lost


class RacpSequenceFetcher:
    """Glucose-style stored records: RACP "report records with sequence ≥ cursor + 1".

    The first download (no cursor), a reversed-sequence meter (its numbers shift as it
    stores records, so they are no cursor) and a cursor at the u16 limit ask for all
    records; the sink drops the ones already committed.
    """

    device_ends_session = False

    async def fetch(
        self,
        link: GattLink,
        profile: DeviceProfile,
        cursor: int | None,
        sink: RecordSink,
        settings: SyncSettings,
    ) -> None:
        inbox: asyncio.Queue[Item] = asyncio.Queue()

        def on_record(data: bytes | None) -> None:
            inbox.put_nowait(None if data is None else (profile.measurement_uuid, data))

        def on_racp(data: bytes | None) -> None:
            inbox.put_nowait(None if data is None else (uuids.RACP, data))

        await link.subscribe(profile.measurement_uuid, on_record)
        await link.subscribe(uuids.RACP, on_racp)
        if cursor is None or cursor >= MAX_SEQUENCE or Quirk.REVERSED_SEQUENCE in profile.quirks:
            request = report_all()
        else:
            request = report_records_from(cursor + 1)
        await link.write(uuids.RACP, request)
        received = 0
        while True:
            try:
                async with asyncio.timeout(settings.racp_idle_timeout_s):
                    item = await inbox.get()
            except TimeoutError as exc:
                raise GattTimeoutError(
                    f"RACP: nothing for {settings.racp_idle_timeout_s:.0f} s "
                    f"after {received} records"
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
                log.debug(
                    "%s: RACP %s after %d records", link.address, response.code.name, received
                )
                return
            raise RacpError(f"RACP request {request.hex()} answered {response.code.name}")


class IndicationsOnConnectFetcher:
    """BP-cuff style: the device indicates its unsent records once we subscribe, then
    hangs up (or goes quiet).  Each record is committed as it arrives: the device
    considers it sent once BlueZ confirmed the indication."""

    device_ends_session = True

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
    # A live stream while connected (CGM): collect until it goes quiet.
    FetchMethod.NOTIFICATIONS: IndicationsOnConnectFetcher(),
}
