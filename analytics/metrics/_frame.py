"""Shared helpers for the vectorized metric code: validation, grouping, local time.

Every metric function takes a long DataFrame of many patients' readings; these helpers
put it in one canonical shape (sorted by patient then time, patient codes 0..P-1) so the
metric code can use ``np.bincount`` and shifted-array comparisons instead of a Python
loop per patient or per reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MINUTE
NAT_NS = np.iinfo(np.int64).min

# A time zone for every patient: one name for all, or a mapping patient_id -> IANA name
# (patients missing from the mapping fall back to UTC).
TimeZones = str | Mapping[str, str]


class MetricInputError(ValueError):
    """The readings frame does not satisfy the column contract."""


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open UTC interval ``[start, end)`` over which metrics are computed."""

    start: pd.Timestamp
    end: pd.Timestamp

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MetricInputError("period bounds must be tz-aware timestamps")
        if self.end <= self.start:
            raise MetricInputError(f"empty period: {self.start} .. {self.end}")

    @classmethod
    def ending(cls, end: pd.Timestamp, days: float) -> Period:
        return cls(end - pd.Timedelta(days=days), end)

    @property
    def days(self) -> float:
        return (self.end - self.start) / pd.Timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Grouped:
    """Readings sorted by (patient, time) with dense patient codes."""

    frame: pd.DataFrame  # the filtered, sorted rows (RangeIndex)
    codes: IntArray  # patient code per row, 0..n_patients-1, non-decreasing
    patients: pd.Index  # patient_id per code
    time_ns: IntArray  # UTC epoch nanoseconds per row
    starts: IntArray  # first row of each patient
    counts: IntArray  # rows per patient

    @property
    def n_patients(self) -> int:
        return len(self.patients)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise MetricInputError(f"{what} frame lacks columns {missing}; has {list(frame.columns)}")
    time = frame["time"] if "time" in frame.columns else None
    if time is None or len(time) == 0 or isinstance(time.dtype, pd.DatetimeTZDtype):
        return
    # object column (e.g. after concatenating with an empty frame): must still hold aware times
    if pd.DatetimeIndex(time).tz is None:
        raise MetricInputError(f"{what} frame column 'time' must be tz-aware, got {time.dtype}")


def group_readings(
    frame: pd.DataFrame, period: Period | None, patients: Iterable[str] | None = None
) -> Grouped:
    """Filter to ``period``, sort by patient then time and assign dense patient codes.

    ``patients`` (optional) fixes the output patient order and includes patients without
    readings; otherwise the sorted distinct ``patient_id`` values are used.
    """
    time_ns = _utc_ns(frame["time"])
    keep = np.ones(len(frame), dtype=bool)
    if period is not None:
        keep &= (time_ns >= period.start.value) & (time_ns < period.end.value)
    # One hash pass over the ids (factorize), then work on the few distinct values.
    raw, uniques = pd.factorize(frame["patient_id"])
    if patients is None:
        present = np.bincount(raw[keep & (raw >= 0)], minlength=len(uniques)) > 0
        index = pd.Index(uniques[present]).sort_values()
    else:
        index = pd.Index(list(patients))
    position = index.get_indexer(pd.Index(uniques)) if len(uniques) else np.zeros(0, np.int64)
    raw_codes = np.where(raw >= 0, position[np.maximum(raw, 0)], -1) if len(raw) else raw
    keep &= raw_codes >= 0
    sel = np.flatnonzero(keep)
    c_sel, t_sel = raw_codes[sel], time_ns[sel]
    dc, dt = np.diff(c_sel), np.diff(t_sel)
    if bool(np.all((dc > 0) | ((dc == 0) & (dt >= 0)))):
        rows = sel  # already ordered by patient then time (e.g. ORDER BY in SQL)
    else:
        rows = sel[np.lexsort((t_sel, c_sel))]
    codes = raw_codes[rows].astype(np.int64)
    counts = np.bincount(codes, minlength=len(index)).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    if len(rows) == len(frame) and (len(rows) == 0 or bool(np.all(np.diff(rows) == 1))):
        sorted_frame = frame.reset_index(drop=True)
    else:
        sorted_frame = frame.iloc[rows].reset_index(drop=True)
    return Grouped(sorted_frame, codes, index, time_ns[rows], starts, counts)


def _utc_ns(times: pd.Series) -> IntArray:
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    index = pd.DatetimeIndex(times)
    if index.tz is None:
        raise MetricInputError(f"reading times must be tz-aware, got {times.dtype}")
    utc = index.tz_convert("UTC").as_unit("ns")
    return np.asarray(utc.asi8, dtype=np.int64)


def utc_offsets_ns(
    time_ns: IntArray, codes: IntArray, patients: pd.Index, tz: TimeZones
) -> IntArray:
    """UTC offset (ns) of each row's instant in its patient's time zone.

    Vectorized per distinct time zone (a handful), not per patient or reading.
    """
    if isinstance(tz, str):
        zone_of_code = np.zeros(len(patients), dtype=np.int64)
        zones = [tz]
    else:
        names = [tz.get(str(p), "UTC") for p in patients]
        zones = sorted(set(names))
        zone_of_code = np.array([zones.index(n) for n in names], dtype=np.int64)
    row_zone = zone_of_code[codes] if len(codes) else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(time_ns), dtype=np.int64)
    for z, name in enumerate(zones):
        if name in ("UTC", "Etc/UTC"):
            continue
        idx = np.flatnonzero(row_zone == z)
        if len(idx) == 0:
            continue
        utc = pd.DatetimeIndex(time_ns[idx], tz="UTC")
        local = utc.tz_convert(name).tz_localize(None).as_unit("ns")
        offsets[idx] = np.asarray(local.asi8, dtype=np.int64) - time_ns[idx]
    return offsets


def local_day_and_minute(
    time_ns: IntArray, codes: IntArray, patients: pd.Index, tz: TimeZones
) -> tuple[IntArray, FloatArray]:
    """Local calendar day (days since epoch) and minute of the local day for each row."""
    local = time_ns + utc_offsets_ns(time_ns, codes, patients, tz)
    day = np.floor_divide(local, NS_PER_DAY)
    minute = (local - day * NS_PER_DAY) / NS_PER_MINUTE
    return day.astype(np.int64), minute.astype(np.float64)


def group_sum(codes: IntArray, values: npt.ArrayLike, n: int) -> FloatArray:
    weights = np.asarray(values, dtype=np.float64)
    return np.asarray(np.bincount(codes, weights=weights, minlength=n), dtype=np.float64)


def group_count(codes: IntArray, n: int) -> FloatArray:
    return np.bincount(codes, minlength=n).astype(np.float64)


def safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def group_mean_sd(
    codes: IntArray, values: FloatArray, n: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-group count, mean and sample SD (ddof=1, as R's ``sd``) of the non-NaN values."""
    ok = ~np.isnan(values)
    c = codes[ok]
    v = values[ok]
    count = group_count(c, n)
    mean = safe_div(group_sum(c, v, n), count)
    dev = v - mean[c]
    sd = np.sqrt(safe_div(group_sum(c, dev * dev, n), count - 1))
    return count, mean, sd


def distinct_days_per_group(codes: IntArray, day: IntArray, n: int) -> FloatArray:
    """Number of distinct local days with at least one row, per group (rows sorted by time)."""
    if len(codes) == 0:
        return np.zeros(n)
    new = np.ones(len(codes), dtype=bool)
    new[1:] = (codes[1:] != codes[:-1]) | (day[1:] != day[:-1])
    return np.asarray(group_count(codes[new], n), dtype=np.float64)


def first_last_time(g: Grouped) -> tuple[pd.Series, pd.Series]:
    """First and last reading time per patient (NaT for patients without readings)."""
    first = np.full(g.n_patients, NAT_NS, dtype=np.int64)
    last = first.copy()
    has = g.counts > 0
    first[has] = g.time_ns[g.starts[has]]
    last[has] = g.time_ns[g.starts[has] + g.counts[has] - 1]
    return _as_times(first, g.patients), _as_times(last, g.patients)


def _as_times(ns: IntArray, index: pd.Index) -> pd.Series:
    times = pd.to_datetime(pd.Series(ns, index=index).where(ns != NAT_NS), unit="ns", utc=True)
    return times
