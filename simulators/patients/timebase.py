"""Time handling: patients live by their local wall clock, the data is stamped in UTC.

Arrays of instants are ``datetime64[s]``: UTC for ``time``, naive local wall-clock time
for what a device clock shows.  Conversions go through pandas (vectorised, zoneinfo
rules); a local time that does not exist (spring forward) moves forward, an ambiguous
one (fall back) takes the first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

STEP_S = 300  # the 5-minute simulation grid (and the CGM sampling interval)
STEPS_PER_DAY = 86_400 // STEP_S

DatetimeArray = NDArray[np.datetime64]


def local_midnight_utc(day: date, timezone: str) -> datetime:
    """The UTC instant of local midnight starting ``day``."""
    stamp = pd.Timestamp(datetime.combine(day, time())).tz_localize(
        timezone, ambiguous=True, nonexistent="shift_forward"
    )
    return stamp.tz_convert("UTC").to_pydatetime()


def local_to_utc(local: DatetimeArray, timezone: str) -> DatetimeArray:
    if local.size == 0:
        return local.astype("datetime64[s]")
    index = pd.DatetimeIndex(local).tz_localize(
        timezone, ambiguous=np.ones(local.size, dtype=bool), nonexistent="shift_forward"
    )
    return np.asarray(index.tz_convert("UTC").tz_localize(None), dtype="datetime64[s]")


def utc_to_local(utc: DatetimeArray, timezone: str) -> DatetimeArray:
    if utc.size == 0:
        return utc.astype("datetime64[s]")
    index = pd.DatetimeIndex(utc).tz_localize("UTC").tz_convert(timezone).tz_localize(None)
    return np.asarray(index, dtype="datetime64[s]")


def hour_of_day(local: DatetimeArray) -> NDArray[np.float64]:
    """Fractional local hour (0-24) of naive local times."""
    seconds = (local - local.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.int64)
    return np.asarray(seconds / 3600.0, dtype=np.float64)


def to_datetime64(moment: datetime) -> np.datetime64:
    """A timezone-aware datetime as a naive-UTC ``datetime64[s]``."""
    if moment.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime")
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "s")


def to_utc_datetime(value: Any) -> datetime:
    """A naive-UTC ``datetime64`` (or pandas timestamp) as an aware UTC datetime."""
    stamp = pd.Timestamp(value)
    return datetime(
        stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second, tzinfo=UTC
    )


def grid(start_utc: datetime, steps: int, step_s: int = STEP_S) -> DatetimeArray:
    return to_datetime64(start_utc) + np.arange(steps, dtype=np.int64) * np.timedelta64(step_s, "s")
