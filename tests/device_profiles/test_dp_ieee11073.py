"""IEEE 11073-20601 SFLOAT/FLOAT vectors (words from the standard's §F.8 definitions and
Nordic's Android-BLE-Common-Library DataTest) and round trips."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_profiles.errors import UnrepresentableValueError
from device_profiles.ieee11073 import encode_float, encode_sfloat, parse_float, parse_sfloat
from device_profiles.model import SpecialValue

SFLOAT_VECTORS = [
    (0x0078, 120.0),  # exponent 0
    (0xB069, 0.00105),  # 105 × 10^-5 kg/L = 105 mg/dL: signed exponent (0xB = -5)
    (0xF3E5, 99.7),  # Nordic CGM test: quality 997 × 10^-1
    (0xE4D2, 12.34),  # Nordic CGM test: 1234 × 10^-2
    (0x100C, 120.0),  # 12 × 10^1
    (0x0FFF, -1.0),  # negative mantissa
    (0x8001, 1e-08),  # most negative exponent
    (0x77FD, 2045e7),  # largest normal value
    (0x17FF, 20470.0),  # special mantissa with exponent ≠ 0 is a number
]
SFLOAT_SPECIALS = [
    (0x07FF, SpecialValue.NAN),
    (0x0800, SpecialValue.NRES),
    (0x07FE, SpecialValue.POSITIVE_INFINITY),
    (0x0802, SpecialValue.NEGATIVE_INFINITY),
    (0x0801, SpecialValue.RESERVED),
]
FLOAT_SPECIALS = [
    (0x007FFFFF, SpecialValue.NAN),
    (0x00800000, SpecialValue.NRES),
    (0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
    (0x00800002, SpecialValue.NEGATIVE_INFINITY),
    (0x00800001, SpecialValue.RESERVED),
]


@pytest.mark.parametrize(("raw", "value"), SFLOAT_VECTORS)
def test_parse_sfloat(raw: int, value: float) -> None:
    assert parse_sfloat(raw) == value


@pytest.mark.parametrize(("raw", "special"), SFLOAT_SPECIALS)
def test_sfloat_specials(raw: int, special: SpecialValue) -> None:
    assert parse_sfloat(raw) is special
    assert encode_sfloat(special) == raw


@pytest.mark.parametrize(("raw", "special"), FLOAT_SPECIALS)
def test_float_specials(raw: int, special: SpecialValue) -> None:
    assert parse_float(raw) is special
    assert encode_float(special) == raw


def test_float_vectors() -> None:
    # HTS example: 36.4 °C = 364 × 10^-1 -> 0xFF00016C
    assert parse_float(0xFF00016C) == 36.4
    assert encode_float(36.4) == 0xFF00016C
    assert parse_float(0x00000000) == 0.0
    assert parse_float(0x80FFFFFF) == -1e-128


def test_encode_prefers_exponent_zero_and_is_exact() -> None:
    assert encode_sfloat(120) == 0x0078
    assert encode_sfloat(0.00105) == 0xB069
    assert encode_sfloat(1e9) == 0x63E8  # 1000 × 10^6
    assert encode_sfloat(float("nan")) == 0x07FF
    assert encode_sfloat(float("-inf")) == 0x0802


def test_encode_with_exponent_rounds_half_even() -> None:
    assert parse_sfloat(encode_sfloat(98.25, exponent=-1)) == 98.2
    assert parse_sfloat(encode_sfloat(Decimal("98.35"), exponent=-1)) == 98.4


@pytest.mark.parametrize("value", [12345, 2047, 1e-9, 1234.5])
def test_unrepresentable(value: float) -> None:
    with pytest.raises(UnrepresentableValueError):
        encode_sfloat(value)


def test_exponent_out_of_range() -> None:
    with pytest.raises(UnrepresentableValueError):
        encode_sfloat(1.0, exponent=8)
    with pytest.raises(UnrepresentableValueError):
        encode_sfloat(1e300, exponent=-8)


@settings(max_examples=500)
@given(st.integers(0, 0xFFFF))
def test_sfloat_word_round_trip(raw: int) -> None:
    value = parse_sfloat(raw)
    assert parse_sfloat(encode_sfloat(value)) == value


@settings(max_examples=500)
@given(st.integers(-(2**23) + 3, 2**23 - 3), st.integers(-128, 127))
def test_float_value_round_trip(mantissa: int, exponent: int) -> None:
    word = ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)
    value = parse_float(word)
    assert not isinstance(value, SpecialValue)
    assert value == float(Decimal(mantissa).scaleb(exponent))
    assert parse_float(encode_float(value)) == value
