"""Where a device's download resumes: one cursor policy per way of fetching.

The fetcher that speaks a device's protocol (``gateway.fetch``) picks the policy; the
session's :class:`~gateway.sync.RecordBuffer` asks it, for every record, whether it is
already committed and how far it moves the cursor, and commits the cursor with the
records.  The policies:

* :class:`SequenceCursor`: glucose meters (RACP by sequence number, GLS §4.9); the
  cursor is the highest sequence number committed.
* :class:`DeviceTimeCursor`: meters with the ``REVERSED_SEQUENCE`` quirk, whose numbers
  shift as they store records: no number is an identity or a cursor, the last device
  time committed is.
* :class:`CgmTimeOffsetCursor`: CGM sensors (RACP by Time Offset, CGMS §3.6); the cursor
  is the highest time offset committed, valid only within the sensor session it was
  taken in.
* :class:`NoCursor`: devices that indicate their unsent records on connect (BP cuffs,
  scales, oximeters, thermometers): they keep track of what was sent themselves.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from device_profiles.cgm import MEASUREMENT as CGM_MEASUREMENT
from device_profiles.cgm import CgmSessionStartTime
from device_profiles.errors import MalformedPayloadError
from device_profiles.model import Measurement
from gateway.store import PairedDevice
from readings import (
    E2E_CRC_MISSING,
    CgmSession,
    RecordNumber,
    device_time_text,
    without_sequence,
)

log = logging.getLogger(__name__)

# A CGM Session Start Time within this of the stored one is the same session (another
# collector rewrote it with a slightly different clock): keep the stored start, so the
# cursor and the reading identities stay valid.
CGM_SESSION_TOLERANCE = timedelta(minutes=15)

Rejection = tuple[MalformedPayloadError, RecordNumber]


class CursorPolicy(Protocol):
    """What a download already has, and where it resumes."""

    @property
    def session(self) -> CgmSession | None:
        """The CGM sensor session the records belong to (None for other devices)."""

    def start_cgm_session(
        self, start_time: CgmSessionStartTime, *, e2e_crc: bool, current_offset: int | None
    ) -> int | None:
        """CGM: the session the next records belong to; returns the cursor to resume from
        (the last time offset committed in *this* session), None for all records."""

    def rejects(self, m: Measurement, raw: bytes) -> Rejection | None:
        """A parsed record that is still no reading (e.g. its E2E-CRC is missing): the
        error and number to report it with."""

    def seen(self, m: Measurement) -> bool:
        """Note a record of this download; True if it is already committed (devices that
        ignore the RACP filter send those again)."""

    def identity(self, m: Measurement) -> Measurement:
        """``m`` as it is stored (without what does not identify it)."""

    def position(self, m: Measurement) -> int | None:
        """The cursor once ``m`` is committed (None: ``m`` does not move it)."""

    def skip_past(self, number: RecordNumber) -> int | None:
        """The cursor once a malformed record numbered ``number`` is committed as an
        event, if it may pass it (None: it stays, the record is fetched again)."""

    def committed(self, cursor: int | None, device_time: str | None) -> None:
        """The records up to ``cursor`` and ``device_time`` are committed."""


class _Policy:
    """What the policies share: the committed cursor and no session of their own."""

    def __init__(self, device: PairedDevice) -> None:
        self.device = device
        self.cursor = device.cursor

    @property
    def session(self) -> CgmSession | None:
        return None

    def start_cgm_session(
        self, start_time: CgmSessionStartTime, *, e2e_crc: bool, current_offset: int | None
    ) -> int | None:
        raise TypeError(f"{self.device.address}: {type(self).__name__} has no CGM session")

    def rejects(self, m: Measurement, raw: bytes) -> Rejection | None:
        return None

    def seen(self, m: Measurement) -> bool:
        return False

    def identity(self, m: Measurement) -> Measurement:
        return m

    def position(self, m: Measurement) -> int | None:
        return None

    def skip_past(self, number: RecordNumber) -> int | None:
        return None

    def committed(self, cursor: int | None, device_time: str | None) -> None:
        if cursor is not None:
            self.cursor = max(self.cursor or 0, cursor)


class NoCursor(_Policy):
    """Indications on connect: the device sends only what it has not sent, once."""


class SequenceCursor(_Policy):
    """RACP by sequence number: records up to the cursor are committed."""

    def __init__(self, device: PairedDevice) -> None:
        super().__init__(device)
        # The highest sequence number seen in this download (else the cursor): a
        # malformed record numbered right after it may move the cursor (``skip_past``).
        self._last_seq = device.cursor

    def seen(self, m: Measurement) -> bool:
        if m.sequence is None:
            return False
        self._last_seq = max(self._last_seq or 0, m.sequence)
        return self.cursor is not None and m.sequence <= self.cursor

    def position(self, m: Measurement) -> int | None:
        return m.sequence

    def skip_past(self, number: RecordNumber) -> int | None:
        """Only when the sequence number follows the highest one of this download (or
        the cursor) by exactly one — a garbage number (0xFFFF, a firmware bug) does not,
        and passing it would skip records the device has not sent yet."""
        moved: int | None = None
        if (
            number.seq is not None
            and self._last_seq is not None
            and number.seq == self._last_seq + 1
        ):
            self._last_seq = moved = number.seq
        _log_skip(self.device, number, moved)
        return moved


class DeviceTimeCursor(_Policy):
    """Reversed sequence numbers: the last committed device time says what is new."""

    def __init__(self, device: PairedDevice) -> None:
        super().__init__(device)
        self.last_device_time = device.last_device_time

    def seen(self, m: Measurement) -> bool:
        return (
            m.device_time is not None
            and self.last_device_time is not None
            and device_time_text(m.device_time) <= self.last_device_time
        )

    def identity(self, m: Measurement) -> Measurement:
        # Its numbers shift as the meter stores records: neither identity nor cursor.
        return m if m.sequence is None else without_sequence(m)

    def committed(self, cursor: int | None, device_time: str | None) -> None:
        super().committed(cursor, device_time)
        if device_time is not None and (
            self.last_device_time is None or device_time > self.last_device_time
        ):
            self.last_device_time = device_time


class CgmTimeOffsetCursor(_Policy):
    """RACP by Time Offset within one sensor session (set by ``start_cgm_session``)."""

    def __init__(self, device: PairedDevice, zone: ZoneInfo) -> None:
        super().__init__(device)
        self.zone = zone
        self._session: CgmSession | None = None
        # The sensor's current time offset (CGM Status), read before the download.
        self.current_offset: int | None = None

    @property
    def session(self) -> CgmSession | None:
        return self._session

    def start_cgm_session(
        self, start_time: CgmSessionStartTime, *, e2e_crc: bool, current_offset: int | None
    ) -> int | None:
        session = CgmSession.from_start_time(start_time, self.zone, e2e_crc=e2e_crc)
        if session is None:
            raise ValueError("CGM session start time is unknown")  # the fetcher checks first
        stored = self.device.session
        previous = (
            None if stored is None else CgmSession.from_key(stored, self.zone, e2e_crc=e2e_crc)
        )
        same = (
            previous is not None
            and abs(previous.start_utc - session.start_utc) <= CGM_SESSION_TOLERANCE
            # Offsets restart at 0 in a new session: a sensor "now" below the cursor
            # cannot be the session the cursor was taken in.
            and not (
                current_offset is not None
                and self.device.cursor is not None
                and current_offset < self.device.cursor
            )
        )
        self.current_offset = current_offset
        if same and previous is not None:
            self._session = previous
            self.cursor = self.device.cursor
        else:
            if stored is not None:
                log.info(
                    "%s: new CGM session started %s (was %s): fetching all its records",
                    self.device.address,
                    session.start,
                    None if previous is None else previous.start,
                )
            self._session = session
            self.cursor = None
        return self.cursor

    def rejects(self, m: Measurement, raw: bytes) -> Rejection | None:
        if self._session is not None and self._session.e2e_crc and not m.details.get("e2e_crc"):
            return (
                MalformedPayloadError(CGM_MEASUREMENT, raw, E2E_CRC_MISSING),
                RecordNumber(time_offset=m.time_offset_minutes),
            )
        return None

    def seen(self, m: Measurement) -> bool:
        # Sensors that ignore the filter, or a cursor at the u16 limit.
        return (
            m.time_offset_minutes is not None
            and self.cursor is not None
            and m.time_offset_minutes <= self.cursor
        )

    def position(self, m: Measurement) -> int | None:
        return m.time_offset_minutes

    def skip_past(self, number: RecordNumber) -> int | None:
        """Only when the time offset lies above the cursor and below the sensor's current
        offset read before the download: every record up to it was in this download."""
        moved: int | None = None
        offset, current = number.time_offset, self.current_offset
        if (
            offset is not None
            and current is not None
            and offset < current
            and (self.cursor is None or offset > self.cursor)
        ):
            moved = offset
        _log_skip(self.device, number, moved)
        return moved


def _log_skip(device: PairedDevice, number: RecordNumber, moved: int | None) -> None:
    log.info(
        "%s: malformed record %s: %s",
        device.address,
        number,
        "the cursor may pass it"
        if moved is not None
        else "the cursor stays (it is fetched again next sync)",
    )
