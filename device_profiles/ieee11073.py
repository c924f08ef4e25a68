"""IEEE 11073-20601 SFLOAT (16 bit) and FLOAT (32 bit) numbers.

References: IEEE 11073-20601 §F.8 "FLOAT-Type" and "SFLOAT-Type", as used by the
Bluetooth GATT Specification Supplement (GSS) §2.2 "medfloat16"/"medfloat32".

* SFLOAT: signed 4-bit exponent (high nibble), signed 12-bit mantissa; value =
  mantissa × 10^exponent.  Special values are the raw words with exponent 0 and
  mantissa 0x07FF NaN, 0x0800 NRes, 0x07FE +INFINITY, 0x0802 −INFINITY, 0x0801
  reserved.
* FLOAT: signed 8-bit exponent, signed 24-bit mantissa; specials 0x007FFFFF NaN,
  0x00800000 NRes, 0x007FFFFE +INFINITY, 0x00800002 −INFINITY, 0x00800001 reserved.

Decoding goes through :class:`decimal.Decimal`, so ``mantissa × 10^exponent`` becomes
the float nearest to the exact decimal (``0x FF69`` → ``10.5``, not ``10.500000000000002``).
Encoding without an explicit exponent picks the exponent closest to 0 that represents
the value exactly (from the float's shortest ``repr``) and raises
:class:`UnrepresentableValueError` when no exponent does; with an explicit exponent the
value is rounded half-even to that exponent.

Mantissas in the special range with a non-zero exponent (e.g. ``0x17FF``) are not
special per the standard (the specials are defined at exponent 0 only) and decode as
plain numbers, like Nordic's Android BLE library does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from device_profiles.errors import UnrepresentableValueError
from device_profiles.model import SpecialValue

__all__ = [
    "FLOAT_SPECIALS",
    "SFLOAT_SPECIALS",
    "decimal_of_float",
    "decimal_of_sfloat",
    "encode_float",
    "encode_sfloat",
    "parse_float",
    "parse_sfloat",
]


@dataclass(frozen=True, slots=True)
class _Format:
    name: str
    mantissa_bits: int
    exponent_bits: int
    specials: dict[int, SpecialValue]  # raw word -> special

    @property
    def mantissa_mask(self) -> int:
        return (1 << self.mantissa_bits) - 1

    @property
    def word_mask(self) -> int:
        return (1 << (self.mantissa_bits + self.exponent_bits)) - 1


SFLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}
FLOAT_SPECIALS: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}

_SFLOAT = _Format("SFLOAT", 12, 4, SFLOAT_SPECIALS)
_FLOAT = _Format("FLOAT", 24, 8, FLOAT_SPECIALS)


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _split(raw: int, fmt: _Format) -> tuple[int, int]:
    """(mantissa, exponent) of a non-special word."""
    mantissa = _signed(raw & fmt.mantissa_mask, fmt.mantissa_bits)
    exponent = _signed(raw >> fmt.mantissa_bits, fmt.exponent_bits)
    return mantissa, exponent


def _decimal(raw: int, fmt: _Format) -> Decimal | SpecialValue:
    if not 0 <= raw <= fmt.word_mask:
        raise UnrepresentableValueError(f"{fmt.name} word out of range: {raw!r}")
    special = fmt.specials.get(raw)
    if special is not None:
        return special
    mantissa, exponent = _split(raw, fmt)
    return Decimal(mantissa).scaleb(exponent)


def decimal_of_sfloat(raw: int) -> Decimal | SpecialValue:
    """The exact decimal value of an SFLOAT word (for exact unit scaling)."""
    return _decimal(raw, _SFLOAT)


def decimal_of_float(raw: int) -> Decimal | SpecialValue:
    """The exact decimal value of a FLOAT word (for exact unit scaling)."""
    return _decimal(raw, _FLOAT)


def _to_float(value: Decimal | SpecialValue) -> float | SpecialValue:
    return value if isinstance(value, SpecialValue) else float(value)


def parse_sfloat(raw: int) -> float | SpecialValue:
    """Decode a 16-bit SFLOAT word (already read little-endian as an unsigned int)."""
    return _to_float(_decimal(raw, _SFLOAT))


def parse_float(raw: int) -> float | SpecialValue:
    """Decode a 32-bit FLOAT word (already read little-endian as an unsigned int)."""
    return _to_float(_decimal(raw, _FLOAT))


def _special_word(value: SpecialValue, fmt: _Format) -> int:
    for word, special in fmt.specials.items():
        if special is value:
            return word
    raise UnrepresentableValueError(f"no {fmt.name} word for {value!r}")  # pragma: no cover


def _as_decimal(value: float | Decimal, fmt: _Format) -> Decimal:
    if isinstance(value, Decimal):
        return value
    try:
        # repr() is the shortest string that round-trips the float: for a value that
        # came from mantissa × 10^exp it is exactly that decimal.
        return Decimal(repr(float(value)))
    except (InvalidOperation, OverflowError, TypeError) as exc:
        raise UnrepresentableValueError(f"not a {fmt.name} number: {value!r}") from exc


def _encode(value: float | Decimal | SpecialValue, exponent: int | None, fmt: _Format) -> int:
    if isinstance(value, SpecialValue):
        return _special_word(value, fmt)
    if isinstance(value, float) and math.isnan(value):
        return _special_word(SpecialValue.NAN, fmt)
    if isinstance(value, float) and math.isinf(value):
        return _special_word(
            SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY, fmt
        )
    exp_max = (1 << (fmt.exponent_bits - 1)) - 1
    exp_min = -(1 << (fmt.exponent_bits - 1))
    man_max = (1 << (fmt.mantissa_bits - 1)) - 1
    man_min = -(1 << (fmt.mantissa_bits - 1))
    number = _as_decimal(value, fmt)
    if exponent is not None:
        if not exp_min <= exponent <= exp_max:
            raise UnrepresentableValueError(
                f"{fmt.name} exponent {exponent} outside {exp_min}..{exp_max}"
            )
        candidates = [exponent]
        try:
            number = number.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_EVEN)
        except InvalidOperation as exc:
            raise UnrepresentableValueError(
                f"{value!r} does not fit {fmt.name} at exponent {exponent}"
            ) from exc
    else:
        if number.is_zero():
            return 0
        smallest = int(number.normalize().as_tuple().exponent)
        # Exponents up to the normalized one keep the value exact; prefer the one
        # closest to 0 (120 -> mantissa 120 at exponent 0, as devices send it).
        if smallest < 0:
            candidates = [smallest] if smallest >= exp_min else []
        else:
            candidates = list(range(0, min(smallest, exp_max) + 1))
    for exp in candidates:
        scaled = number.scaleb(-exp)
        if scaled != scaled.to_integral_value():
            continue
        mantissa = int(scaled)
        if not man_min <= mantissa <= man_max:
            continue
        raw = ((exp & ((1 << fmt.exponent_bits) - 1)) << fmt.mantissa_bits) | (
            mantissa & fmt.mantissa_mask
        )
        if raw in fmt.specials:
            continue  # e.g. 2047 at exponent 0 would read back as NaN
        return raw
    raise UnrepresentableValueError(f"{value!r} is not exactly representable as {fmt.name}")


def encode_sfloat(value: float | Decimal | SpecialValue, exponent: int | None = None) -> int:
    """Encode to a 16-bit SFLOAT word; write it little-endian with ``<H``."""
    return _encode(value, exponent, _SFLOAT)


def encode_float(value: float | Decimal | SpecialValue, exponent: int | None = None) -> int:
    """Encode to a 32-bit FLOAT word; write it little-endian with ``<I``."""
    return _encode(value, exponent, _FLOAT)
