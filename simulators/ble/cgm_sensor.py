"""A simulated CGM sensor: Continuous Glucose Monitoring Service (0x181F), CGMS v1.0.1.

Characteristics (CGMS §3):

* CGM Measurement 0x2AA7 (notify): one record per notification, with the trend and
  quality fields when the reading has them, sent only through the RACP here (a real
  sensor also notifies live readings at its communication interval; the gateway does
  not rely on them).
* CGM Feature 0x2AA8 (read): trend and quality supported; E2E-CRC supported or not
  (``DeviceSpec.e2e_crc``); the feature's own CRC field is 0xFFFF when not supported.
* CGM Status 0x2AA9 (read): the current time offset and "session stopped".
* CGM Session Start Time 0x2AAA (read/write): Date Time, Time Zone, DST Offset.  A
  collector writes *its current time*; the sensor stores "written time − current time
  offset" as the session start (the way Nordic's nRF5 CGMS implements it).
* CGM Session Run Time 0x2AAB (read): expected run time in hours.
* Record Access Control Point 0x2A52 (write/indicate): the glucose meter's procedures
  (:class:`~simulators.ble.glucose_meter.GlucoseMeter`: report / delete / number of
  records, abort, every response code) over records keyed by **Time Offset**, filter
  type 0x01 (CGMS §3.6); user facing time (0x02) is answered "operand not supported".
* CGM Specific Ops Control Point 0x2AAC (write/indicate): Start Session (0x1A) and Stop
  Session (0x1B); other op codes are answered "op code not supported".  A new session
  restarts the time offset at 0 and clears the stored records.

With E2E-CRC every CGM-specific value carries the CRC (CGMS §3.1.1.x "E2E-CRC"); a
write without it fails with ATT 0x80 (missing CRC), with a wrong one 0x81 (invalid
CRC).  The RACP never carries a CRC (it is the shared GSS characteristic).

``DeviceSpec.malformed``: the lowest-offset record goes out with a corrupted CRC (with
E2E-CRC) or truncated (without).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from device_profiles import uuids
from device_profiles.cgm import (
    CgmFeature,
    CgmFeatures,
    CgmSessionStartTime,
    CgmStatus,
    SocpOpcode,
    SocpProtocolError,
    SocpResponse,
    SocpResponseCode,
    cgm_measurement,
    crc16_mcrf4xx,
    encode_cgm_feature,
    encode_cgm_measurement,
    encode_cgm_session_run_time,
    encode_cgm_session_start_time,
    encode_cgm_status,
    encode_socp_response,
    parse_cgm_session_start_time,
    parse_socp_request,
)
from device_profiles.date_time import DATE_TIME_SIZE
from device_profiles.errors import MalformedPayloadError
from device_profiles.glucose import SampleLocation, SampleType
from device_profiles.ieee11073 import encode_sfloat, parse_sfloat
from device_profiles.model import Component, Condition, Kind, Quantity
from simulators.ble.core import DeviceCore
from simulators.ble.gatt import (
    AttError,
    AttErrorCode,
    Characteristic,
    ConfirmTimeoutError,
    RequestContext,
    Service,
)
from simulators.ble.glucose_meter import GlucoseMeter, StoredRecord
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["CGM_SESSION_RUN_TIME", "CgmSensor"]

log = logging.getLogger(__name__)

CGM_SESSION_RUN_TIME = uuids.uuid16(0x2AAB)
_SST_SIZE = DATE_TIME_SIZE + 2  # Date Time, Time Zone, DST Offset
_MAX_OFFSET = 0xFFFF
_BASE_FEATURES = frozenset(
    {
        CgmFeature.LOW_BATTERY_DETECTION,
        CgmFeature.SENSOR_MALFUNCTION_DETECTION,
        CgmFeature.SENSOR_RESULT_HIGH_LOW_DETECTION,
        CgmFeature.GENERAL_DEVICE_FAULT,
        CgmFeature.CGM_TREND_INFORMATION,
        CgmFeature.CGM_QUALITY,
    }
)


def _sfloat_quantity(value: float, unit: str) -> Quantity:
    """``value`` as the receiver decodes it from the SFLOAT the sensor sends."""
    decoded = parse_sfloat(encode_sfloat(value))
    if not isinstance(decoded, float):
        raise ReadingFormatError(f"{value} {unit} is not a finite SFLOAT")
    return Quantity(decoded, unit, decoded, unit)


class CgmSensor(GlucoseMeter):
    """CGM Service behaviour on a :class:`DeviceCore`; RACP inherited from the meter.

    ``records`` hold :class:`StoredRecord` whose ``sequence`` is the record's time
    offset (the RACP key of the CGM Service).
    """

    def __init__(self, core: DeviceCore, readings: Sequence[Reading]) -> None:
        spec = core.spec
        self.e2e_crc = spec.e2e_crc
        times = [r.device_time for r in readings if r.device_time is not None]
        start = spec.session_start or (min(times) if times else core.clock.now().replace(second=0))
        # What 0x2AAA reports (collector's local time) and when the session began on the
        # sensor's own clock (what the current time offset counts from).
        self.session_start: datetime = start
        self._started_at: datetime = start
        self.time_zone_minutes = spec.time_zone_minutes
        self.dst_offset = spec.dst_offset
        self.running = True
        self._socp_task: asyncio.Task[None] | None = None
        super().__init__(core, ())
        features = _BASE_FEATURES | ({CgmFeature.E2E_CRC} if self.e2e_crc else set())
        self.measurement = Characteristic(uuids.CGM_MEASUREMENT, ["notify"])
        self.feature = Characteristic(
            uuids.CGM_FEATURE,
            ["read"],
            encode_cgm_feature(
                CgmFeatures(
                    frozenset(features),
                    SampleType.INTERSTITIAL_FLUID,
                    SampleLocation.SUBCUTANEOUS_TISSUE,
                )
            ),
        )
        self.status_char = Characteristic(
            uuids.CGM_STATUS, ["read"], on_read=lambda _ctx: self._encode_status()
        )
        self.session_start_char = Characteristic(
            uuids.CGM_SESSION_START_TIME,
            ["read", "write"],
            on_read=lambda _ctx: self._encode_session_start(),
            on_write=self._write_session_start,
        )
        self.run_time_char = Characteristic(
            CGM_SESSION_RUN_TIME,
            ["read"],
            encode_cgm_session_run_time(spec.session_run_time_h, self.e2e_crc),
        )
        self.socp = Characteristic(
            uuids.CGM_SPECIFIC_OPS_CONTROL_POINT,
            ["write", "indicate"],
            on_write=self._on_socp_write,
        )
        self.add_readings(readings)

    # ------------------------------------------------------------------ GATT layout
    def services(self) -> list[Service]:
        return [
            Service(
                uuids.CGM_SERVICE,
                [
                    self.measurement,
                    self.feature,
                    self.status_char,
                    self.session_start_char,
                    self.run_time_char,
                    self.racp,
                    self.socp,
                ],
            )
        ]

    @property
    def service_uuids(self) -> list[str]:
        return [uuids.CGM_SERVICE]

    # ------------------------------------------------------------------ store
    def current_offset(self) -> int:
        """Minutes since the session began, on the sensor's clock."""
        minutes = int((self.core.clock.now() - self._started_at).total_seconds() // 60)
        return min(max(minutes, 0), _MAX_OFFSET)

    def _offset_of(self, reading: Reading) -> int:
        if reading.time_offset_minutes is not None:
            offset = reading.time_offset_minutes
        elif reading.device_time is not None:
            delta = reading.device_time - self.session_start
            if delta % timedelta(minutes=1):
                raise ReadingFormatError(
                    f"{reading.device_time} is not a whole number of minutes after the "
                    f"session start {self.session_start}"
                )
            offset = delta // timedelta(minutes=1)
        else:
            raise ReadingFormatError("a CGM reading needs device_time or time_offset_minutes")
        if not 0 <= offset <= _MAX_OFFSET:
            raise ReadingFormatError(
                f"time offset {offset} min is outside the session (0..{_MAX_OFFSET})"
            )
        return offset

    def add_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store CGM readings of the running session; returns their time offsets."""
        added: list[int] = []
        taken = {r.sequence for r in self.records}
        for reading in readings:
            if reading.kind is not Kind.CGM:
                raise ReadingFormatError(f"a CGM sensor cannot store a {reading.kind} reading")
            if reading.mg_dl is None:
                raise ReadingFormatError("a CGM reading needs mg_dl")
            offset = self._offset_of(reading)
            if offset in taken:
                raise ReadingFormatError(f"time offset {offset} is already stored")
            m = cgm_measurement(
                time_offset_minutes=offset,
                mg_dl=reading.mg_dl,
                conditions=reading.conditions,
                e2e_crc=self.e2e_crc,
            )
            extra = {
                component: _sfloat_quantity(value, unit)
                for component, value, unit in (
                    (Component.CGM_TREND, reading.trend_mg_dl_min, "mg/dL/min"),
                    (Component.CGM_QUALITY, reading.quality_pct, "%"),
                )
                if value is not None
            }
            if extra:  # CGMS §3.1.1.5-6: trend and quality fields, announced by the flags
                m = replace(m, values={**m.values, **extra})
            encode_cgm_measurement(m)  # fail now, not mid-transfer
            self.records.append(StoredRecord(offset, m))
            taken.add(offset)
            added.append(offset)
        self.records.sort(key=lambda r: r.sequence)
        return added

    def _visible_records(self) -> list[StoredRecord]:
        return list(self.records)

    def start_session(self, start: datetime | None = None) -> None:
        """A new sensor session: offsets restart at 0, stored records are cleared."""
        now = self.core.clock.now()
        self.session_start = start or now.replace(second=0)
        self._started_at = self.session_start if start is not None else now
        self.records = []
        self.running = True
        log.info("session started at %s", self.session_start)

    def stop_session(self) -> None:
        self.running = False
        log.info("session stopped")

    def status(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "first_offset": self.records[0].sequence if self.records else None,
            "last_offset": self.records[-1].sequence if self.records else None,
            "session_start": self.session_start.isoformat(),
            "session_running": self.running,
            "time_offset": self.current_offset(),
        }

    # ------------------------------------------------------------------ wire bytes
    def _encode(self, record: StoredRecord) -> bytes:
        data = encode_cgm_measurement(record.measurement)
        if self.core.spec.malformed and self.records and record is self.records[0]:
            if self.e2e_crc:
                return data[:-1] + bytes((data[-1] ^ 0xFF,))  # the E2E-CRC does not match
            return data[:3]  # cut inside the glucose concentration
        return data

    def _encode_status(self) -> bytes:
        conditions = frozenset() if self.running else frozenset({Condition.SESSION_STOPPED})
        return encode_cgm_status(CgmStatus(self.current_offset(), conditions, self.e2e_crc))

    def _encode_session_start(self) -> bytes:
        return encode_cgm_session_start_time(
            CgmSessionStartTime(
                self.session_start, self.time_zone_minutes, self.dst_offset, self.e2e_crc
            )
        )

    def _check_write(self, data: bytes, size: int) -> None:
        """Length and E2E-CRC of a write to a CGM-specific characteristic."""
        if not self.e2e_crc:
            if len(data) != size:
                raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, f"need {size} bytes")
            return
        if len(data) == size:
            raise AttError(AttErrorCode.MISSING_CRC, "E2E-CRC missing")
        if len(data) != size + 2:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, f"need {size} + 2 bytes")
        if crc16_mcrf4xx(data[:size]) != int.from_bytes(data[size : size + 2], "little"):
            raise AttError(AttErrorCode.INVALID_CRC, "E2E-CRC does not match")

    async def _write_session_start(self, data: bytes, ctx: RequestContext) -> None:
        await self.core.require_bonding(ctx)
        self._check_write(data, _SST_SIZE)
        try:
            value = parse_cgm_session_start_time(data)
        except MalformedPayloadError as e:
            raise AttError(AttErrorCode.OUT_OF_RANGE, e.reason) from None
        if value.start is None:
            raise AttError(AttErrorCode.OUT_OF_RANGE, "unknown date")
        # The collector wrote its current time: the session began offset minutes earlier.
        self.session_start = value.start - timedelta(minutes=self.current_offset())
        self.time_zone_minutes = value.time_zone_minutes
        self.dst_offset = value.dst_offset
        log.info("session start time set to %s", self.session_start)

    # ------------------------------------------------------------------ SOCP
    async def _on_socp_write(self, data: bytes, ctx: RequestContext) -> None:
        await self.core.require_bonding(ctx)
        if not self.socp.notifying:
            raise AttError(AttErrorCode.CCCD_IMPROPERLY_CONFIGURED, "SOCP indications not enabled")
        if not data:
            raise AttError(AttErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH, "empty SOCP write")
        if self.e2e_crc:
            self._check_write(data, len(data) - 2 if len(data) > 2 else len(data))
        if self._socp_task is not None and not self._socp_task.done():
            raise AttError(
                AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, "a SOCP procedure is already running"
            )
        self._socp_task = asyncio.get_running_loop().create_task(self._run_socp(data))

    async def _run_socp(self, data: bytes) -> None:
        try:
            request = parse_socp_request(data, e2e_crc=self.e2e_crc)
        except SocpProtocolError as e:
            await self._socp_respond(data[0], e.response_code or SocpResponseCode.INVALID_OPERAND)
            return
        except MalformedPayloadError as e:
            log.warning("SOCP %s rejected: %s", data.hex(), e.reason)
            return
        if request.opcode is SocpOpcode.START_SESSION:
            if self.running:
                code = SocpResponseCode.PROCEDURE_NOT_COMPLETED  # stop the running one first
            else:
                self.start_session()
                code = SocpResponseCode.SUCCESS
        elif request.opcode is SocpOpcode.STOP_SESSION:
            self.stop_session()
            code = SocpResponseCode.SUCCESS
        else:
            code = SocpResponseCode.OPCODE_NOT_SUPPORTED
        await self._socp_respond(request.opcode, code)

    async def _socp_respond(self, opcode: int, code: SocpResponseCode) -> None:
        try:
            await self.socp.send(encode_socp_response(SocpResponse(opcode, code, self.e2e_crc)))
        except ConfirmTimeoutError:
            log.warning("SOCP response not confirmed")
