"""The one error type every parser raises on untrusted bytes."""

from __future__ import annotations


class MalformedPayloadError(ValueError):
    """Device bytes that cannot be decoded.

    Carries the characteristic, the raw bytes as hex and what was wrong, so a log line
    or a dead letter is enough to reproduce the problem with ``homevitals decode``.
    """

    def __init__(self, characteristic: str, data: bytes, reason: str) -> None:
        self.characteristic = characteristic
        self.hex = data.hex()
        self.reason = reason
        super().__init__(f"{characteristic}: {reason} (bytes: {self.hex or '<empty>'})")


class InvalidDateTimeError(MalformedPayloadError):
    """A date-time field with an out-of-range component (e.g. the month-13 vendor bug).

    ``field`` names the component (``"month"``, ``"day"``, ...) and ``value`` is what the
    device sent, so a quirk profile can decide to correct it (see
    :func:`device_profiles.date_time.parse_date_time`).
    """

    def __init__(
        self, characteristic: str, data: bytes, reason: str, *, field: str, value: int
    ) -> None:
        super().__init__(characteristic, data, reason)
        self.field = field
        self.value = value


class UnrepresentableValueError(ValueError):
    """An encoder was given a value the wire format cannot carry exactly.

    For example 1234.5 as an SFLOAT (12-bit mantissa), a user id of 300, or a
    measurement missing a mandatory component.
    """


class UnknownCharacteristicError(ValueError):
    """``registry.decode`` was given a UUID that no parser handles."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        super().__init__(f"no decoder for characteristic {uuid}")
