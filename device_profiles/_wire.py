"""Shared helpers for bounds-checked decoding of untrusted characteristic bytes.

Private to ``device_profiles``: every parser checks the length it needs before each
``unpack_from`` and turns a short payload into :class:`MalformedPayloadError` naming the
field, the offset and how many bytes were there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from functools import lru_cache
from struct import Struct
from typing import TypeVar

from device_profiles.errors import MalformedPayloadError, UnrepresentableValueError
from device_profiles.ieee11073 import decimal_of_float, decimal_of_sfloat, encode_sfloat
from device_profiles.model import Quantity, SpecialValue

E = TypeVar("E")

U8 = Struct("<B")
S8 = Struct("<b")
U16 = Struct("<H")
S16 = Struct("<h")
U32 = Struct("<I")
U8_U16 = Struct("<BH")
U16_U8 = Struct("<HB")


def need(name: str, data: bytes, offset: int, size: int, field: str) -> None:
    """Raise unless ``data`` holds ``size`` bytes at ``offset`` for ``field``."""
    if len(data) < offset + size:
        have = max(len(data) - offset, 0)
        raise MalformedPayloadError(
            name,
            data,
            f"truncated at field {field!r} (need {size} bytes at offset {offset}, have {have})",
        )


def check_end(name: str, data: bytes, offset: int, *, rfu_flags: bool = False) -> None:
    """Reject bytes after the last field the flags announce, unless an RFU flag is set.

    GSS §2.4 tells receivers to ignore RFU bits.  A future revision that defines an RFU
    flag bit will append the field it announces, so when an RFU flag bit is set we
    ignore trailing bytes (forward compatibility); when every flag bit is known, the
    flags determine the length exactly and extra bytes mean a corrupt or mis-framed
    payload, which we reject rather than guess.
    """
    if len(data) != offset and not (rfu_flags and len(data) > offset):
        raise MalformedPayloadError(
            name, data, f"{len(data) - offset} unexpected trailing bytes at offset {offset}"
        )


@lru_cache(maxsize=8192)
def sfloat_decimal(raw: int) -> Decimal | SpecialValue:
    """Cached exact value of an SFLOAT word (65536 possible words; readings repeat)."""
    return decimal_of_sfloat(raw)


def float_decimal(raw: int) -> Decimal | SpecialValue:
    return decimal_of_float(raw)


def quantity(
    value: Decimal | SpecialValue,
    original_unit: str,
    unit: str | None = None,
    to_canonical: Callable[[Decimal], float] | None = None,
) -> Quantity:
    """A Quantity from an exact device value; specials stay specials."""
    canonical_unit = original_unit if unit is None else unit
    if isinstance(value, SpecialValue):
        return Quantity(None, canonical_unit, None, original_unit, value)
    original = float(value)
    canonical = original if to_canonical is None else to_canonical(value)
    return Quantity(canonical, canonical_unit, original, original_unit)


def original_sfloat(name: str, q: Quantity) -> int:
    """SFLOAT word for a Quantity's original value (or its special value)."""
    if q.special is not None:
        return encode_sfloat(q.special)
    if q.original_value is None:
        raise UnrepresentableValueError(f"{name}: quantity has neither value nor special")
    return encode_sfloat(q.original_value)


def bad(name: str, data: bytes, reason: str) -> MalformedPayloadError:
    return MalformedPayloadError(name, data, reason)


def flags_to_set(value: int, table: tuple[tuple[int, E], ...]) -> frozenset[E]:
    """Named members for the set bits of ``value`` (unknown/RFU bits are ignored)."""
    return frozenset(member for bit, member in table if value & bit)


def set_to_flags(members: Collection[E], table: tuple[tuple[int, E], ...]) -> int:
    """Inverse of :func:`flags_to_set` for the members that ``table`` knows."""
    value = 0
    for bit, member in table:
        if member in members:
            value |= bit
    return value


def bit_table(members: Iterable[E], first_bit: int = 0) -> tuple[tuple[int, E], ...]:
    """``(bit, member)`` pairs for members that take consecutive bits from ``first_bit``."""
    return tuple((1 << bit, member) for bit, member in enumerate(members, first_bit))


def parse_feature_bits(name: str, data: bytes, table: tuple[tuple[int, E], ...]) -> frozenset[E]:
    """A Feature characteristic that is exactly one u16 bit field (GSS §3.31 Blood
    Pressure Feature, §3.103 Glucose Feature); unknown/RFU bits are ignored."""
    need(name, data, 0, 2, "features")
    check_end(name, data, 2)
    return flags_to_set(U16.unpack_from(data, 0)[0], table)


def encode_feature_bits(members: Collection[E], table: tuple[tuple[int, E], ...]) -> bytes:
    """Inverse of :func:`parse_feature_bits`."""
    return U16.pack(set_to_flags(members, table))
