"""RACP requests/responses (GSS §3.188, GLS §4.9 examples)."""

from __future__ import annotations

from datetime import datetime

import pytest

from device_profiles.errors import MalformedPayloadError
from device_profiles.racp import (
    RacpFilterType,
    RacpNumberOfRecords,
    RacpOpcode,
    RacpOperator,
    RacpProtocolError,
    RacpRequest,
    RacpResponseCode,
    RacpStatus,
    abort,
    delete_all,
    encode_racp_request,
    parse_racp,
    parse_racp_response,
    report_all,
    report_number_all,
    report_number_from,
    report_records_from,
)


def test_convenience_bytes() -> None:
    assert report_records_from(0x1234) == bytes.fromhex("0103013412")
    assert report_number_from(5) == bytes.fromhex("0403010500")
    assert report_all() == bytes.fromhex("0101")
    assert report_number_all() == bytes.fromhex("0401")
    assert delete_all() == bytes.fromhex("0201")
    assert abort() == bytes.fromhex("0300")


@pytest.mark.parametrize(
    ("hex_", "message"),
    [
        (
            "0103013412",
            RacpRequest(
                RacpOpcode.REPORT_STORED_RECORDS,
                RacpOperator.GREATER_THAN_OR_EQUAL,
                RacpFilterType.SEQUENCE_NUMBER,
                (0x1234,),
            ),
        ),
        (
            "010401 0a00 1400",
            RacpRequest(
                RacpOpcode.REPORT_STORED_RECORDS,
                RacpOperator.WITHIN_RANGE,
                RacpFilterType.SEQUENCE_NUMBER,
                (10, 20),
            ),
        ),
        (
            "010302 e807010f0a0000",
            RacpRequest(
                RacpOpcode.REPORT_STORED_RECORDS,
                RacpOperator.GREATER_THAN_OR_EQUAL,
                RacpFilterType.USER_FACING_TIME,
                (datetime(2024, 1, 15, 10, 0),),
            ),
        ),
        ("0106", RacpRequest(RacpOpcode.REPORT_STORED_RECORDS, RacpOperator.LAST_RECORD)),
        ("0300", RacpRequest(RacpOpcode.ABORT_OPERATION, RacpOperator.NULL)),
        ("05000a00", RacpNumberOfRecords(10)),
        ("06000101", RacpStatus(RacpOpcode.REPORT_STORED_RECORDS, RacpResponseCode.SUCCESS)),
        (
            "06000106",
            RacpStatus(RacpOpcode.REPORT_STORED_RECORDS, RacpResponseCode.NO_RECORDS_FOUND),
        ),
        ("06001002", RacpStatus(0x10, RacpResponseCode.OPCODE_NOT_SUPPORTED)),
    ],
)
def test_vectors(hex_: str, message: object) -> None:
    data = bytes.fromhex(hex_.replace(" ", ""))
    assert parse_racp(data) == message
    if isinstance(message, RacpRequest):
        assert encode_racp_request(message) == data


@pytest.mark.parametrize(
    ("hex_", "code"),
    [
        ("0107", RacpResponseCode.INVALID_OPERATOR),
        ("0100", RacpResponseCode.INVALID_OPERATOR),
        ("0901", RacpResponseCode.OPCODE_NOT_SUPPORTED),
        ("010309", RacpResponseCode.OPERAND_NOT_SUPPORTED),
        ("01030134", RacpResponseCode.INVALID_OPERAND),
        ("010401 1400 0a00", RacpResponseCode.INVALID_OPERAND),
        ("010100", RacpResponseCode.INVALID_OPERAND),
        ("0301", RacpResponseCode.INVALID_OPERATOR),
    ],
)
def test_protocol_errors_carry_the_response_code(hex_: str, code: RacpResponseCode) -> None:
    with pytest.raises(RacpProtocolError) as info:
        parse_racp(bytes.fromhex(hex_.replace(" ", "")))
    assert info.value.response_code is code


def test_reserved_response_code() -> None:
    with pytest.raises(MalformedPayloadError, match="reserved response code"):
        parse_racp_response(bytes.fromhex("0600010a"))
