"""UUID helpers, device profile matching and the registry/JSON/hex helpers."""

from __future__ import annotations

import json

import pytest

from device_profiles import uuids
from device_profiles.errors import MalformedPayloadError, UnknownCharacteristicError
from device_profiles.profiles import (
    PROFILES,
    Quirk,
    UnknownProfileError,
    get_profile,
    match_profile,
)
from device_profiles.registry import InvalidHexError, decode, parse_hex, to_jsonable
from device_profiles.uuids import InvalidUuidError, normalize_uuid, uuid16


def test_uuid_helpers() -> None:
    full = "00002a18-0000-1000-8000-00805f9b34fb"
    assert uuid16(0x2A18) == full == uuids.GLUCOSE_MEASUREMENT
    for text in (
        "2A18",
        "0x2a18",
        "00002A18",
        full.upper(),
        "{00002a18000010008000 00805f9b34fb}".replace(" ", ""),
    ):
        assert normalize_uuid(text) == full
    with pytest.raises(InvalidUuidError):
        normalize_uuid("2a1")


def test_profiles_exist() -> None:
    for pid in ("glucose-meter", "bp-cuff", "cgm", "weight-scale", "pulse-oximeter", "thermometer"):
        assert get_profile(pid).id == pid
    vendor = [p for p in PROFILES.values() if p.quirks]
    assert len(vendor) >= 3
    with pytest.raises(UnknownProfileError):
        get_profile("nope")


def test_match_profile_vendor_wins() -> None:
    assert match_profile("meter+06645397", [uuids.GLUCOSE_SERVICE]) is get_profile(
        "glucose-meter-ignores-filter"
    )
    assert match_profile("meter+06645397", []) is get_profile("glucose-meter-ignores-filter")
    assert match_profile("Some meter", ["1808"]) is get_profile("glucose-meter")
    assert match_profile("BPM-1234", ["0x1810"]) is get_profile("bp-cuff-unsent-only")
    assert match_profile(None, ["181f"]) is get_profile("cgm")
    assert match_profile("speaker", ["180f"]) is None
    assert Quirk.MONTH_13_CLOCK in get_profile("glucose-meter-month13").quirks


def test_parse_hex_formats() -> None:
    expected = bytes.fromhex("020100")
    for text in ("020100", "02 01 00", "02:01:00", "0x020100", "(0x) 02-01-00", "0x02 0x01 0x00"):
        assert parse_hex(text) == expected
    with pytest.raises(InvalidHexError):
        parse_hex("0g")
    with pytest.raises(InvalidHexError):
        parse_hex("021")


def test_decode_errors() -> None:
    with pytest.raises(UnknownCharacteristicError):
        decode("2aff", b"")
    with pytest.raises(MalformedPayloadError):
        decode("2a18", b"")


def test_to_jsonable() -> None:
    m = decode("2a18", parse_hex("(0x) 02-01-00-E8-07-03-0F-07-00-00-FF-07-11"))
    out = to_jsonable(m)
    assert out["device_time"] == "2024-03-15T07:00:00"
    assert out["values"]["glucose"]["special"] == "NaN"
    assert out["values"]["glucose"]["value"] is None
    assert out["details"]["sample_type"] == "capillary_whole_blood"
    json.dumps(out)
    assert to_jsonable(decode("2a19", b"\x50")) == {"value": 80}
    assert (
        to_jsonable(decode("2a52", parse_hex("01 03 01 05 00")))["opcode"]
        == "REPORT_STORED_RECORDS"
    )
    assert len(to_jsonable(decode("2aa7", parse_hex("06000c100500")))["records"]) == 1
