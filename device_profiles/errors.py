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
