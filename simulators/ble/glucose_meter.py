"""A simulated Glucose Service (0x1808) meter with the full Record Access Control Point.

Implements GLS v1.0.1 §4.9 (RACP procedures) against a store of records:

* report stored records / delete stored records / report number of stored records with
  operators all, ≤, ≥, within range, first, last on filter type 0x01 (sequence
  number); abort operation;
* answers: success, op code not supported, invalid operator, operator not supported
  (operators a profile leaves out), invalid operand, no records found, abort
  unsuccessful (a meter that cannot abort), procedure not completed (Glucose
  Measurement notifications off), operand not supported (any filter type but 0x01);
* a write while RACP indications are off fails with ATT 0xFD (CCCD improperly
  configured); a second request while one runs fails with 0xFE (procedure already in
  progress), except abort;
* records go out one at a time, each waiting for its Confirm, and an abort stops the
  transfer between two records.  An aborted report sends no response of its own; the
  abort answers success.

Vendor quirks (``device_profiles.profiles.Quirk``) change the answers on purpose.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from device_profiles import uuids
from device_profiles.glucose import (
    GlucoseFeature,
    GlucoseFeatures,
    SampleLocation,
    SampleType,
    encode_glucose_feature,
    encode_glucose_measurement,
    glucose_measurement,
)
from device_profiles.model import Condition, Kind, Measurement
from device_profiles.racp import (
    RacpFilterType,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpProtocolError,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    RacpStatus,
    encode_racp_response,
    parse_racp_request,
)
from simulators.ble.clock import shift_month13
from simulators.ble.core import DeviceCore, Quirk
from simulators.ble.gatt import (
    AttError,
    AttErrorCode,
    Characteristic,
    ConfirmTimeoutError,
    RequestContext,
    Service,
)
from simulators.ble.readings import Reading, ReadingFormatError

__all__ = ["GlucoseMeter", "StoredRecord"]

log = logging.getLogger(__name__)

# Glucose Measurement: flags u8, sequence u16, then the base time.
_BASE_TIME_OFFSET = 3
# The far-future record some meters add when their memory is full (DOMAIN.md).
FAKE_HI_TIME = datetime(2099, 12, 31, 23, 59, 0)
FAKE_HI_MG_DL = 600.0
_FEATURES = GlucoseFeatures(
    frozenset(
        {
            GlucoseFeature.LOW_BATTERY_DETECTION,
            GlucoseFeature.SENSOR_MALFUNCTION_DETECTION,
            GlucoseFeature.SENSOR_RESULT_HIGH_LOW_DETECTION,
            GlucoseFeature.TIME_FAULT,
        }
    )
)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    sequence: int
    measurement: Measurement


class GlucoseMeter:
    """Glucose Service behaviour on top of a :class:`DeviceCore`."""

    def __init__(self, core: DeviceCore, readings: Sequence[Reading]) -> None:
        self.core = core
        self.records: list[StoredRecord] = []
        self._procedure: asyncio.Task[None] | None = None
        self._abort_requested = False
        self.measurement = Characteristic(uuids.GLUCOSE_MEASUREMENT, ["notify"])
        self.feature = Characteristic(
            uuids.GLUCOSE_FEATURE, ["read"], encode_glucose_feature(_FEATURES)
        )
        self.racp = Characteristic(uuids.RACP, ["write", "indicate"], on_write=self._on_racp_write)
        self.add_readings(readings)

    # ------------------------------------------------------------------ store
    def services(self) -> list[Service]:
        return [Service(uuids.GLUCOSE_SERVICE, [self.measurement, self.feature, self.racp])]

    @property
    def service_uuids(self) -> list[str]:
        return [uuids.GLUCOSE_SERVICE]

    def _next_sequence(self) -> int:
        return (max((r.sequence for r in self.records), default=0) + 1) & 0xFFFF

    def add_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store readings (numbering those without a sequence); returns their sequences.

        With ``Quirk.REVERSED_SEQUENCE`` the meter numbers its memory newest-first: the
        newest record is always 1 and older records move up as new ones arrive.
        """
        reversed_numbers = self.core.has_quirk(Quirk.REVERSED_SEQUENCE)
        for reading in readings:
            if reading.kind is not Kind.GLUCOSE:
                raise ReadingFormatError(f"a glucose meter cannot store a {reading.kind} reading")
        if reversed_numbers:
            shift = len(readings)
            self.records = [
                StoredRecord(r.sequence + shift, _with_sequence(r.measurement, r.sequence + shift))
                for r in self.records
            ]
        added: list[int] = []
        for i, reading in enumerate(readings):
            if reversed_numbers:
                seq = len(readings) - i
            elif reading.sequence is not None:
                seq = reading.sequence
            else:
                seq = self._next_sequence()
            if any(r.sequence == seq for r in self.records):
                raise ReadingFormatError(f"sequence {seq} is already stored")
            m = glucose_measurement(
                sequence=seq,
                device_time=reading.device_time,
                mg_dl=reading.mg_dl,
                mmol_l=reading.mmol_l,
                sample_type=SampleType(reading.sample_type or SampleType.CAPILLARY_PLASMA),
                sample_location=SampleLocation(reading.sample_location or SampleLocation.FINGER),
                time_offset_minutes=reading.time_offset_minutes,
                conditions=reading.conditions,
            )
            encode_glucose_measurement(m)  # fail now, not mid-transfer
            self.records.append(StoredRecord(seq, m))
            added.append(seq)
        self.records.sort(key=lambda r: r.sequence)
        return added

    def _memory_full(self) -> bool:
        capacity = self.core.traits.memory_capacity
        return capacity is not None and len(self.records) >= capacity

    def _visible_records(self) -> list[StoredRecord]:
        """What the meter believes it holds, including its own fake record if any."""
        records = list(self.records)
        if self.core.has_quirk(Quirk.FAKE_HI_WHEN_FULL) and self._memory_full():
            seq = self._next_sequence()
            fake = glucose_measurement(
                sequence=seq,
                device_time=FAKE_HI_TIME,
                mg_dl=FAKE_HI_MG_DL,
                conditions=frozenset({Condition.RESULT_ABOVE_RANGE}),
            )
            records.append(StoredRecord(seq, fake))
        return records

    def status(self) -> dict[str, Any]:
        return {
            "records": len(self.records),
            "first_sequence": self.records[0].sequence if self.records else None,
            "last_sequence": self.records[-1].sequence if self.records else None,
        }

    # ------------------------------------------------------------------ wire bytes
    def _encode(self, record: StoredRecord) -> bytes:
        data = encode_glucose_measurement(record.measurement)
        if self.core.has_quirk(Quirk.MONTH_13_CLOCK):
            data = shift_month13(data, _BASE_TIME_OFFSET)
        if (
            self.core.spec.malformed
            and self.records
            and record.sequence == self.records[0].sequence
        ):
            # One corrupt memory slot: the record is cut off inside its base time.
            data = data[: _BASE_TIME_OFFSET + 2]
        return data

    # ------------------------------------------------------------------ RACP
    def _select(self, request: RacpRequest) -> list[StoredRecord] | RacpResponseCode:
        records = self._visible_records()
        op = request.operator
        if op in self.core.spec.unsupported_racp_operators:
            return RacpResponseCode.OPERATOR_NOT_SUPPORTED
        if request.filter_type not in (None, RacpFilterType.SEQUENCE_NUMBER):
            return RacpResponseCode.OPERAND_NOT_SUPPORTED  # user facing time: not supported
        if (
            request.opcode is RacpOpcode.REPORT_STORED_RECORDS
            and self.core.has_quirk(Quirk.IGNORES_RACP_FILTER)
            and op
            in (
                RacpOperator.LESS_THAN_OR_EQUAL,
                RacpOperator.GREATER_THAN_OR_EQUAL,
                RacpOperator.WITHIN_RANGE,
            )
        ):
            return records
        values = [v for v in request.operand if isinstance(v, int)]
        if op is RacpOperator.ALL_RECORDS:
            return records
        if op is RacpOperator.FIRST_RECORD:
            return records[:1]
        if op is RacpOperator.LAST_RECORD:
            return records[-1:]
        if op is RacpOperator.LESS_THAN_OR_EQUAL:
            return [r for r in records if r.sequence <= values[0]]
        if op is RacpOperator.GREATER_THAN_OR_EQUAL:
            return [r for r in records if r.sequence >= values[0]]
        if op is RacpOperator.WITHIN_RANGE:
            return [r for r in records if values[0] <= r.sequence <= values[1]]
        return RacpResponseCode.INVALID_OPERATOR

    async def _on_racp_write(self, data: bytes, ctx: RequestContext) -> None:
        await self.core.require_bonding(ctx)
        if not self.racp.notifying:
            raise AttError(AttErrorCode.CCCD_IMPROPERLY_CONFIGURED, "RACP indications not enabled")
        running = self._procedure is not None and not self._procedure.done()
        if running and data[:2] == bytes((RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)):
            asyncio.get_running_loop().create_task(self._abort())
            return
        if running:
            raise AttError(
                AttErrorCode.PROCEDURE_ALREADY_IN_PROGRESS, "a RACP procedure is already running"
            )
        # The write is acknowledged first; the procedure's indications follow.
        self._procedure = asyncio.get_running_loop().create_task(self._run(data))

    async def _respond(self, response: RacpResponse) -> None:
        try:
            await self.racp.send(encode_racp_response(response))
        except ConfirmTimeoutError:
            log.warning("RACP response %s not confirmed", response)

    async def _abort(self) -> None:
        procedure = self._procedure
        if not self.core.spec.racp_abort_supported:
            await self._respond(
                RacpStatus(RacpOpcode.ABORT_OPERATION, RacpResponseCode.ABORT_UNSUCCESSFUL)
            )
            return
        self._abort_requested = True
        if procedure is not None:
            await asyncio.wait([procedure])
        await self._respond(RacpStatus(RacpOpcode.ABORT_OPERATION, RacpResponseCode.SUCCESS))

    async def _run(self, data: bytes) -> None:
        self._abort_requested = False
        try:
            request = parse_racp_request(data)
        except RacpProtocolError as e:
            log.info("RACP %s rejected: %s", data.hex(), e.reason)
            await self._respond(RacpStatus(data[0] if data else 0, e.response_code))
            return
        log.info("RACP %s", request)
        if request.opcode is RacpOpcode.ABORT_OPERATION:
            # Nothing is running: there is nothing to abort, which is a success.
            await self._respond(RacpStatus(request.opcode, RacpResponseCode.SUCCESS))
            return
        selected = self._select(request)
        if isinstance(selected, RacpResponseCode):
            await self._respond(RacpStatus(request.opcode, selected))
            return
        if request.opcode is RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS:
            await self._respond(RacpNumberOfRecords(len(selected)))
            return
        if not selected:
            await self._respond(RacpStatus(request.opcode, RacpResponseCode.NO_RECORDS_FOUND))
            return
        if request.opcode is RacpOpcode.DELETE_STORED_RECORDS:
            gone = {r.sequence for r in selected}
            self.records = [r for r in self.records if r.sequence not in gone]
            await self._respond(RacpStatus(request.opcode, RacpResponseCode.SUCCESS))
            return
        await self._report(request, selected)

    async def _report(self, request: RacpRequest, selected: list[StoredRecord]) -> None:
        if not self.measurement.notifying:
            await self._respond(
                RacpStatus(request.opcode, RacpResponseCode.PROCEDURE_NOT_COMPLETED)
            )
            return
        for record in selected:
            if self._abort_requested:
                log.info("report aborted before sequence %d", record.sequence)
                return  # the abort answers for both
            delay = self.core.spec.record_interval_s
            if delay:
                await asyncio.sleep(delay)
            try:
                sent = await self.measurement.send(self._encode(record))
            except ConfirmTimeoutError:
                sent = False
            if not sent:
                if self.racp.notifying:
                    await self._respond(
                        RacpStatus(request.opcode, RacpResponseCode.PROCEDURE_NOT_COMPLETED)
                    )
                return
        if self._abort_requested:
            return
        await self._respond(RacpStatus(request.opcode, RacpResponseCode.SUCCESS))


def _with_sequence(m: Measurement, sequence: int) -> Measurement:
    return Measurement(
        kind=m.kind,
        values=m.values,
        device_time=m.device_time,
        time_offset_minutes=m.time_offset_minutes,
        sequence=sequence,
        conditions=m.conditions,
        details=m.details,
    )
