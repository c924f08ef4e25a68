"""Record Access Control Point (RACP, 0x2A52): typed requests and responses.

References: GSS §3.188 Record Access Control Point; Glucose Service (GLS) v1.0.1
§3.9 / §4.9 (procedures, filter types, response codes).

Wire format: ``opcode u8, operator u8, operand...``.

* Requests (written by the collector): opcodes 1 report stored records, 2 delete
  stored records, 4 report number of stored records (all with an operator), 3 abort
  (operator null, no operand).  Operators 1 all / 5 first / 6 last take no operand;
  2 "≤" and 3 "≥" take ``filter type u8`` and one value; 4 "within range" takes
  ``filter type`` and a min/max pair.  Filter type 0x01 is the sequence number (u16)
  for the Glucose Service (the CGM Service uses 0x01 for time offset, same u16 shape);
  0x02 is the user-facing time (7-byte Date Time).
* Responses (indicated by the sensor): opcode 5 number of stored records (operator
  null, u16) and opcode 6 response code (operator null, request opcode u8, code u8).

Malformed messages raise :class:`RacpProtocolError` (a MalformedPayloadError) carrying
the :class:`RacpResponseCode` a compliant server would answer with, so a simulator can
reply correctly.  Trailing bytes are rejected (``invalid operand``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from device_profiles._wire import U8, U16, need
from device_profiles.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time
from device_profiles.errors import MalformedPayloadError, UnrepresentableValueError

__all__ = [
    "RacpFilterType",
    "RacpNumberOfRecords",
    "RacpOpcode",
    "RacpOperator",
    "RacpProtocolError",
    "RacpRequest",
    "RacpResponse",
    "RacpResponseCode",
    "RacpStatus",
    "abort",
    "delete_all",
    "encode_racp",
    "encode_racp_request",
    "encode_racp_response",
    "parse_racp",
    "parse_racp_request",
    "parse_racp_response",
    "report_all",
    "report_first",
    "report_last",
    "report_number_all",
    "report_number_from",
    "report_number_from_time_offset",
    "report_records_from",
    "report_records_from_time_offset",
]

NAME = "Record Access Control Point (0x2A52)"


class RacpOpcode(enum.IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class RacpOperator(enum.IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL = 2
    GREATER_THAN_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class RacpFilterType(enum.IntEnum):
    SEQUENCE_NUMBER = 1  # CGM Service: time offset (same u16 operand)
    USER_FACING_TIME = 2
    # CGMS v1.0.1 §3.6 (RACP): filter type 0x01 is the Time Offset (u16 minutes).
    TIME_OFFSET = 1  # an alias of SEQUENCE_NUMBER: same code, same operand shape


class RacpResponseCode(enum.IntEnum):
    SUCCESS = 1
    OPCODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


class RacpProtocolError(MalformedPayloadError):
    """A RACP message a server must reject; ``response_code`` is the answer to send."""

    def __init__(self, data: bytes, reason: str, response_code: RacpResponseCode) -> None:
        super().__init__(NAME, data, reason)
        self.response_code = response_code


_REQUEST_OPCODES = frozenset(
    {
        RacpOpcode.REPORT_STORED_RECORDS,
        RacpOpcode.DELETE_STORED_RECORDS,
        RacpOpcode.ABORT_OPERATION,
        RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)
_NO_OPERAND = frozenset(
    {RacpOperator.ALL_RECORDS, RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD}
)
_ONE_OPERAND = frozenset({RacpOperator.LESS_THAN_OR_EQUAL, RacpOperator.GREATER_THAN_OR_EQUAL})

Operand = tuple[int, ...] | tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class RacpRequest:
    """A collector's request.  ``operand`` is () / (value,) / (min, max) by operator."""

    opcode: RacpOpcode
    operator: RacpOperator
    filter_type: RacpFilterType | None = None
    operand: Operand = ()


@dataclass(frozen=True, slots=True)
class RacpNumberOfRecords:
    """Opcode 5: number of stored records that match the request."""

    count: int


@dataclass(frozen=True, slots=True)
class RacpStatus:
    """Opcode 6: the outcome of ``request_opcode`` (an int when it was not a known opcode)."""

    request_opcode: RacpOpcode | int
    code: RacpResponseCode


RacpResponse = RacpNumberOfRecords | RacpStatus


def _fail(data: bytes, reason: str, code: RacpResponseCode) -> RacpProtocolError:
    return RacpProtocolError(data, reason, code)


def _operand_values(data: bytes, count: int) -> tuple[RacpFilterType, Operand]:
    # GSS §3.188: operand = filter type u8 then one value or a (min, max) pair.
    if len(data) < 3:
        raise _fail(data, "missing filter type", RacpResponseCode.INVALID_OPERAND)
    try:
        filter_type = RacpFilterType(data[2])
    except ValueError:
        raise _fail(
            data,
            f"filter type {data[2]:#04x} not supported",
            RacpResponseCode.OPERAND_NOT_SUPPORTED,
        ) from None
    size = 2 if filter_type is RacpFilterType.SEQUENCE_NUMBER else DATE_TIME_SIZE
    if len(data) != 3 + size * count:
        raise _fail(
            data,
            f"operand needs {count} × {size} bytes after the filter type, have {len(data) - 3}",
            RacpResponseCode.INVALID_OPERAND,
        )
    if filter_type is RacpFilterType.SEQUENCE_NUMBER:
        ints = tuple(U16.unpack_from(data, 3 + 2 * i)[0] for i in range(count))
        if count == 2 and ints[0] > ints[1]:
            raise _fail(
                data, f"range {ints[0]}..{ints[1]} is empty", RacpResponseCode.INVALID_OPERAND
            )
        return filter_type, ints
    times: list[datetime] = []
    for i in range(count):
        try:
            value = parse_date_time(
                data, 3 + DATE_TIME_SIZE * i, characteristic=NAME, field="operand"
            )
        except MalformedPayloadError as exc:
            raise _fail(data, exc.reason, RacpResponseCode.INVALID_OPERAND) from None
        if value is None:
            raise _fail(data, "unknown date in operand", RacpResponseCode.INVALID_OPERAND)
        times.append(value)
    if count == 2 and times[0] > times[1]:
        raise _fail(data, "time range is empty", RacpResponseCode.INVALID_OPERAND)
    return filter_type, tuple(times)


def parse_racp_request(data: bytes) -> RacpRequest:
    """Decode a request written to the RACP (what a simulated meter receives)."""
    if len(data) < 2:
        raise _fail(
            data,
            f"need opcode and operator, have {len(data)} bytes",
            RacpResponseCode.INVALID_OPERATOR,
        )
    try:
        opcode = RacpOpcode(data[0])
    except ValueError:
        opcode = None
    if opcode is None or opcode not in _REQUEST_OPCODES:
        raise _fail(
            data, f"opcode {data[0]:#04x} is not a request", RacpResponseCode.OPCODE_NOT_SUPPORTED
        )
    try:
        operator = RacpOperator(data[1])
    except ValueError:
        raise _fail(
            data, f"invalid operator {data[1]:#04x}", RacpResponseCode.INVALID_OPERATOR
        ) from None
    if opcode is RacpOpcode.ABORT_OPERATION:
        if operator is not RacpOperator.NULL:
            raise _fail(data, "abort takes the null operator", RacpResponseCode.INVALID_OPERATOR)
        if len(data) != 2:
            raise _fail(data, "abort takes no operand", RacpResponseCode.INVALID_OPERAND)
        return RacpRequest(opcode, operator)
    if operator is RacpOperator.NULL:
        raise _fail(data, f"{opcode.name} needs an operator", RacpResponseCode.INVALID_OPERATOR)
    if operator in _NO_OPERAND:
        if len(data) != 2:
            raise _fail(data, f"{operator.name} takes no operand", RacpResponseCode.INVALID_OPERAND)
        return RacpRequest(opcode, operator)
    filter_type, operand = _operand_values(data, 1 if operator in _ONE_OPERAND else 2)
    return RacpRequest(opcode, operator, filter_type, operand)


def parse_racp_response(data: bytes) -> RacpResponse:
    """Decode an indication from the RACP (what the gateway receives)."""
    need(NAME, data, 0, 2, "opcode_operator")
    opcode, operator = data[0], data[1]
    if operator != RacpOperator.NULL:
        raise MalformedPayloadError(NAME, data, f"response operator {operator:#04x}, expected null")
    if opcode == RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        need(NAME, data, 2, 2, "number_of_records")
        _exact(data, 4)
        return RacpNumberOfRecords(U16.unpack_from(data, 2)[0])
    if opcode == RacpOpcode.RESPONSE_CODE:
        need(NAME, data, 2, 2, "request_opcode_response_code")
        _exact(data, 4)
        try:
            code = RacpResponseCode(data[3])
        except ValueError:
            raise MalformedPayloadError(
                NAME, data, f"reserved response code {data[3]:#04x}"
            ) from None
        request: RacpOpcode | int
        try:
            request = RacpOpcode(data[2])
        except ValueError:
            request = data[2]
        return RacpStatus(request, code)
    raise MalformedPayloadError(NAME, data, f"opcode {opcode:#04x} is not a response")


def _exact(data: bytes, size: int) -> None:
    if len(data) != size:
        raise MalformedPayloadError(NAME, data, f"{len(data) - size} unexpected trailing bytes")


def parse_racp(data: bytes) -> RacpRequest | RacpResponse:
    """Decode either direction, by opcode (5 and 6 are responses)."""
    if data[:1] in (b"\x05", b"\x06"):
        return parse_racp_response(data)
    return parse_racp_request(data)


def encode_racp_request(request: RacpRequest) -> bytes:
    """Bytes to write to the RACP for ``request``."""
    if request.opcode not in _REQUEST_OPCODES:
        raise UnrepresentableValueError(f"{request.opcode!r} is not a request opcode")
    head = bytes((request.opcode, request.operator))
    if request.filter_type is None:
        if request.operand:
            raise UnrepresentableValueError("operand without filter type")
        return head
    out = [head, U8.pack(request.filter_type)]
    for value in request.operand:
        if request.filter_type is RacpFilterType.SEQUENCE_NUMBER:
            if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise UnrepresentableValueError(f"sequence operand {value!r} is not a u16")
            out.append(U16.pack(value))
        else:
            if not isinstance(value, datetime):
                raise UnrepresentableValueError(f"user facing time operand {value!r}")
            out.append(encode_date_time(value))
    return b"".join(out)


def encode_racp_response(response: RacpResponse) -> bytes:
    """Bytes a sensor indicates for ``response``."""
    if isinstance(response, RacpNumberOfRecords):
        if not 0 <= response.count <= 0xFFFF:
            raise UnrepresentableValueError(f"record count {response.count} is not a u16")
        return bytes((RacpOpcode.NUMBER_OF_STORED_RECORDS_RESPONSE, 0)) + U16.pack(response.count)
    if not 0 <= response.request_opcode <= 0xFF:
        raise UnrepresentableValueError(f"request opcode {response.request_opcode} is not a u8")
    return bytes((RacpOpcode.RESPONSE_CODE, 0, response.request_opcode, response.code))


def encode_racp(message: RacpRequest | RacpResponse) -> bytes:
    if isinstance(message, RacpRequest):
        return encode_racp_request(message)
    return encode_racp_response(message)


def _seq(opcode: RacpOpcode, seq: int) -> bytes:
    return encode_racp_request(
        RacpRequest(
            opcode, RacpOperator.GREATER_THAN_OR_EQUAL, RacpFilterType.SEQUENCE_NUMBER, (seq,)
        )
    )


def report_records_from(seq: int) -> bytes:
    """``01 03 01 <seq u16>``: report records with sequence number ≥ ``seq``.

    "Everything after the last record I have" is ``report_records_from(last + 1)``.
    """
    return _seq(RacpOpcode.REPORT_STORED_RECORDS, seq)


def report_number_from(seq: int) -> bytes:
    """``04 03 01 <seq u16>``: how many records have sequence number ≥ ``seq``."""
    return _seq(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, seq)


def report_all() -> bytes:
    """``01 01``: report all stored records."""
    return bytes((RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.ALL_RECORDS))


def report_first() -> bytes:
    return bytes((RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.FIRST_RECORD))


def report_last() -> bytes:
    return bytes((RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD))


def report_number_all() -> bytes:
    """``04 01``: number of all stored records."""
    return bytes((RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, RacpOperator.ALL_RECORDS))


def delete_all() -> bytes:
    """``02 01``: delete all stored records."""
    return bytes((RacpOpcode.DELETE_STORED_RECORDS, RacpOperator.ALL_RECORDS))


def abort() -> bytes:
    """``03 00``: abort the running procedure."""
    return bytes((RacpOpcode.ABORT_OPERATION, RacpOperator.NULL))


def _time_offset(opcode: RacpOpcode, minutes: int) -> bytes:
    return encode_racp_request(
        RacpRequest(
            opcode, RacpOperator.GREATER_THAN_OR_EQUAL, RacpFilterType.TIME_OFFSET, (minutes,)
        )
    )


def report_records_from_time_offset(minutes: int) -> bytes:
    """``01 03 01 <minutes u16>``: CGM records with Time Offset ≥ ``minutes`` (CGMS §3.6).

    A CGM collector's "everything after what I have" is ``(last offset + 1)``.
    """
    return _time_offset(RacpOpcode.REPORT_STORED_RECORDS, minutes)


def report_number_from_time_offset(minutes: int) -> bytes:
    """``04 03 01 <minutes u16>``: how many CGM records have Time Offset ≥ ``minutes``."""
    return _time_offset(RacpOpcode.REPORT_NUMBER_OF_STORED_RECORDS, minutes)
