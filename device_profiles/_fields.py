"""Measurement fields that several characteristics carry the same way.

Private to ``device_profiles``:

* User ID, u8 with 0xFF "unknown user" (GSS §3.32 Blood Pressure Measurement, §3.241
  Weight Measurement), kept as ``details["user_id"]``: the id, or None for 0xFF.
* ``details["units"]``, the unit system an encoder writes back into the flags.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from device_profiles._wire import U8, need
from device_profiles.errors import UnrepresentableValueError
from device_profiles.model import DetailValue, Measurement

UNKNOWN_USER = 0xFF

U = TypeVar("U", bound=enum.StrEnum)


def parse_user_id(name: str, data: bytes, offset: int) -> int | None:
    """The User ID octet at ``offset``; None for 0xFF "unknown user"."""
    if len(data) <= offset:
        need(name, data, offset, 1, "user_id")
    user = data[offset]
    return None if user == UNKNOWN_USER else user


def encode_user_id(name: str, user: DetailValue) -> bytes:
    """Inverse of :func:`parse_user_id`: None (or 255) -> 0xFF, else the id 0..254."""
    if user is None:
        user = UNKNOWN_USER
    if not isinstance(user, int) or isinstance(user, bool) or not 0 <= user <= UNKNOWN_USER:
        raise UnrepresentableValueError(f"{name}: user id {user!r} not in 0..254 or None")
    return U8.pack(user)


def units_detail(name: str, m: Measurement, units: type[U], default: U) -> U:
    """``m.details["units"]`` as a ``units`` member; ``default`` when the key is absent."""
    try:
        return units(str(m.details.get("units", default)))
    except ValueError:
        raise UnrepresentableValueError(f"{name}: units {m.details.get('units')!r}") from None
