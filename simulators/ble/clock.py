"""A device's own clock: the real local clock plus a skew, settable over Current Time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

__all__ = ["DeviceClock", "shift_month13"]

Now = Callable[[], datetime]


class DeviceClock:
    """Naive device-local time = the host's local time + ``skew``.

    Devices know no time zone: they show whatever someone set them to.  Writing Current
    Time sets the clock, so the skew becomes (about) zero relative to the writer.
    """

    def __init__(self, skew_s: float = 0.0, now: Now = datetime.now) -> None:
        self._now = now
        self.skew = timedelta(seconds=skew_s)

    def now(self) -> datetime:
        return (self._now() + self.skew).replace(microsecond=0)

    def set(self, device_time: datetime) -> None:
        self.skew = device_time - self._now()

    @property
    def skew_s(self) -> float:
        return self.skew.total_seconds()


def shift_month13(data: bytes, offset: int) -> bytes:
    """Rewrite a January Date Time at ``offset`` the way the MONTH_13_CLOCK meters do.

    Their clock forgets to carry December + 1 into the year, so January of year Y is
    sent as month 13 of year Y-1 (see ``device_profiles.date_time``).  Other months,
    and "unknown" dates, are left alone.
    """
    year = int.from_bytes(data[offset : offset + 2], "little")
    month = data[offset + 2]
    if month != 1 or year == 0:
        return data
    patched = bytearray(data)
    patched[offset : offset + 2] = (year - 1).to_bytes(2, "little")
    patched[offset + 2] = 13
    return bytes(patched)
