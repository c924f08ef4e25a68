"""Glucose metrics for CGM and fingerstick (SMBG) readings, vectorized across patients.

Definitions follow the International Consensus on Time in Range (Battelino et al.,
Diabetes Care 2019;42:1593) and the CGM consensus (Danne et al., Diabetes Care
2017;40:1631); where those are silent, the R package iglu (Broll et al. 2021).  Every
formula, its units and each deliberate difference from iglu is in docs/metrics.md.

Column contract of the input frame (one row per reading, any number of patients):

* ``patient_id`` - str
* ``time`` - tz-aware timestamp (UTC or any zone; compared as instants)
* ``mgdl`` - float mg/dL; NaN for a HI/LO result that has no number
* ``result_above_range`` / ``result_below_range`` - optional bool: the device's HI / LO
  flags (``Condition.RESULT_ABOVE_RANGE`` / ``RESULT_BELOW_RANGE``).  HI counts in the
  >250 band and LO in the <54 band; neither enters mean/SD or the indices.

The main entry :func:`glucose_metrics` returns one row per patient (index
``patient_id``) with the columns listed in :data:`GLUCOSE_COLUMNS`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from analytics.metrics._frame import (
    NS_PER_DAY,
    NS_PER_MINUTE,
    BoolArray,
    FloatArray,
    Grouped,
    IntArray,
    Period,
    TimeZones,
    distinct_days_per_group,
    first_last_time,
    group_count,
    group_mean_sd,
    group_readings,
    group_sum,
    local_day_and_minute,
    require_columns,
    safe_div,
    utc_offsets_ns,
)
from analytics.metrics._mage import GRID_MIN, mage_from_grids

# Consensus thresholds, mg/dL.
VERY_LOW = 54.0
LOW = 70.0
HIGH = 180.0
VERY_HIGH = 250.0
PREGNANCY_LOW = 63.0
PREGNANCY_HIGH = 140.0

# GMI (%) = 3.31 + 0.02392 x mean glucose (mg/dL); Bergenstal et al., Diabetes Care 2018.
GMI_INTERCEPT = 3.31
GMI_SLOPE = 0.02392

# Kovatchev risk transform: f(BG) = 1.509 * (ln(BG)^1.084 - 5.381), risk = 10 * f^2.
RISK_ALPHA = 1.084
RISK_BETA = 5.381
RISK_GAMMA = 1.509

# iglu's interpolation: no interpolation across gaps longer than 45 minutes.
INTER_GAP_MIN = 45.0

# Hypoglycemic event: CGM run below the threshold lasting >= 15 min (Danne 2017 /
# Battelino 2019); consecutive CGM readings more than 2 sensor intervals apart break a run.
# SMBG: low readings within 30 min of each other are one event (re-checks after treatment).
CGM_EVENT_MIN_MINUTES = 15.0
SMBG_EVENT_JOIN_MINUTES = 30.0

REQUIRED_COLUMNS = ("patient_id", "time", "mgdl")
HI_COLUMN = "result_above_range"
LO_COLUMN = "result_below_range"


class GlucoseSource(enum.StrEnum):
    """Where readings come from: continuous sensor or fingerstick meter."""

    CGM = "cgm"
    SMBG = "smbg"


GLUCOSE_COLUMNS: tuple[str, ...] = (
    "n_readings",  # all readings in the period, HI/LO included
    "n_numeric",  # readings with a number
    "n_hi",
    "n_lo",
    "days_with_readings",  # distinct local calendar days
    "readings_per_day",  # n_readings / period days
    "percent_expected",  # CGM wear: n_readings / (period / sensor interval) x 100, max 100
    "first_time",
    "last_time",
    "mean",
    "sd",
    "cv",
    "gmi",
    "pct_below_54",
    "pct_54_69",
    "pct_below_70",
    "pct_70_180",
    "pct_181_250",
    "pct_above_180",
    "pct_above_250",
    "pct_below_63",
    "pct_63_140",
    "pct_above_140",
    "hypo_events",
    "hypo_events_54",
    "gri",
    "gri_zone",
    "j_index",
    "lbgi",
    "hbgi",
    "mage",
    "conga",
    "modd",
)


@dataclass(frozen=True, slots=True)
class GlucoseSummary:
    """One patient's glucose metrics over one period (a row of :func:`glucose_metrics`).

    Percentages are 0-100; glucose values mg/dL; NaN where not computable.
    """

    patient_id: str
    source: GlucoseSource
    n_readings: int
    n_numeric: int
    n_hi: int
    n_lo: int
    days_with_readings: int
    readings_per_day: float
    percent_expected: float
    first_time: pd.Timestamp | None
    last_time: pd.Timestamp | None
    mean: float
    sd: float
    cv: float
    gmi: float
    pct_below_54: float
    pct_54_69: float
    pct_below_70: float
    pct_70_180: float
    pct_181_250: float
    pct_above_180: float
    pct_above_250: float
    pct_below_63: float
    pct_63_140: float
    pct_above_140: float
    hypo_events: int
    hypo_events_54: int
    gri: float
    gri_zone: str | None
    j_index: float
    lbgi: float
    hbgi: float
    mage: float
    conga: float
    modd: float

    @classmethod
    def from_row(cls, patient_id: str, source: GlucoseSource, row: pd.Series) -> GlucoseSummary:
        values: dict[str, Any] = {"patient_id": patient_id, "source": source}
        for f in fields(cls):
            if f.name in values:
                continue
            v = row[f.name]
            if f.name in ("first_time", "last_time"):
                values[f.name] = None if pd.isna(v) else pd.Timestamp(v)
            elif f.name == "gri_zone":
                values[f.name] = None if pd.isna(v) else str(v)
            elif f.type == "int":
                values[f.name] = int(v)
            else:
                values[f.name] = float(v)
        return cls(**values)


def glucose_metrics(
    readings: pd.DataFrame,
    period: Period,
    *,
    source: GlucoseSource,
    tz: TimeZones = "UTC",
    sensor_interval_min: float = 5.0,
    conga_hours: int = 1,
    patients: Iterable[str] | None = None,
    variability: bool = True,
) -> pd.DataFrame:
    """All glucose metrics for every patient in ``readings`` over ``period``.

    ``tz`` gives each patient's time zone (local days, and the local-midnight origin of
    iglu's interpolation grid).  ``sensor_interval_min`` is the CGM sampling interval
    (grid step for CONGA/MODD and the denominator of ``percent_expected``).  ``patients``
    fixes the output rows (patients without readings get counts 0 and NaN metrics).
    CGM-only metrics (GMI, MAGE, CONGA, MODD, percent_expected) are NaN for SMBG.
    ``variability=False`` skips the grid metrics (MAGE, CONGA, MODD -> NaN) for speed.
    """
    require_columns(readings, REQUIRED_COLUMNS, "glucose")
    g = group_readings(readings, period, patients)
    n = g.n_patients
    mgdl = g.frame["mgdl"].to_numpy(dtype=np.float64, na_value=np.nan)
    hi = _flag(g.frame, HI_COLUMN)
    lo = _flag(g.frame, LO_COLUMN) & ~hi
    numeric = ~np.isnan(mgdl) & ~hi & ~lo
    usable = numeric | hi | lo
    if not usable.all():
        g = _subset(g, usable)
        mgdl, hi, lo, numeric = mgdl[usable], hi[usable], lo[usable], numeric[usable]
    codes = g.codes
    cgm = source is GlucoseSource.CGM
    out: dict[str, Any] = {}

    n_all = group_count(codes, n)
    out["n_readings"] = n_all.astype(np.int64)
    out["n_numeric"] = group_count(codes[numeric], n).astype(np.int64)
    out["n_hi"] = group_count(codes[hi], n).astype(np.int64)
    out["n_lo"] = group_count(codes[lo], n).astype(np.int64)
    day, _ = local_day_and_minute(g.time_ns, codes, g.patients, tz)
    out["days_with_readings"] = distinct_days_per_group(codes, day, n).astype(np.int64)
    out["readings_per_day"] = n_all / period.days
    expected = period.days * 1440.0 / sensor_interval_min
    out["percent_expected"] = np.minimum(100.0 * n_all / expected, 100.0) if cgm else _nan(n)
    out["first_time"], out["last_time"] = first_last_time(g)

    # Central tendency and spread over numeric readings only.
    value = np.where(numeric, mgdl, np.nan)
    _, mean, sd = group_mean_sd(codes, value, n)
    out["mean"] = mean
    out["sd"] = sd
    out["cv"] = 100.0 * safe_div(sd, mean)
    out["gmi"] = GMI_INTERCEPT + GMI_SLOPE * mean if cgm else _nan(n)

    # Ranges: HI sits above every upper threshold, LO below every lower one.
    v = np.where(hi, np.inf, np.where(lo, -np.inf, mgdl))

    def pct(mask: BoolArray) -> FloatArray:
        return 100.0 * safe_div(group_count(codes[mask], n), n_all)

    out["pct_below_54"] = pct(v < VERY_LOW)
    out["pct_54_69"] = pct((v >= VERY_LOW) & (v < LOW))
    out["pct_below_70"] = pct(v < LOW)
    out["pct_70_180"] = pct((v >= LOW) & (v <= HIGH))
    out["pct_181_250"] = pct((v > HIGH) & (v <= VERY_HIGH))
    out["pct_above_180"] = pct(v > HIGH)
    out["pct_above_250"] = pct(v > VERY_HIGH)
    out["pct_below_63"] = pct(v < PREGNANCY_LOW)
    out["pct_63_140"] = pct((v >= PREGNANCY_LOW) & (v <= PREGNANCY_HIGH))
    out["pct_above_140"] = pct(v > PREGNANCY_HIGH)

    # CGM: runs >= 15 min, readings <= 2 intervals apart; SMBG: lows within 30 min join.
    join, min_minutes, interval = (
        (2.0 * sensor_interval_min, CGM_EVENT_MIN_MINUTES, sensor_interval_min)
        if cgm
        else (SMBG_EVENT_JOIN_MINUTES, 0.0, 0.0)
    )
    for name, threshold in (("hypo_events", LOW), ("hypo_events_54", VERY_LOW)):
        out[name] = _events(
            g, v < threshold, max_gap_min=join, min_minutes=min_minutes, interval_min=interval
        )

    gri = gri_score(out["pct_below_54"], out["pct_54_69"], out["pct_above_250"], out["pct_181_250"])
    out["gri"] = gri
    out["gri_zone"] = gri_zone(gri)
    out["j_index"] = 0.001 * (mean + sd) ** 2
    lbgi, hbgi = _risk_indices(codes[numeric], mgdl[numeric], n)
    out["lbgi"] = lbgi
    out["hbgi"] = hbgi

    if cgm and variability:
        out["mage"], out["conga"], out["modd"] = _grid_metrics(
            g, mgdl, numeric, tz, sensor_interval_min, conga_hours=conga_hours
        )
    else:
        out["mage"] = out["conga"] = out["modd"] = _nan(n)

    frame = pd.DataFrame(
        {k: (v.to_numpy() if isinstance(v, pd.Series) else v) for k, v in out.items()},
        index=pd.Index(g.patients, name="patient_id"),
    )
    return frame.loc[:, list(GLUCOSE_COLUMNS)]


def summarize_glucose(
    readings: pd.DataFrame,
    period: Period,
    *,
    source: GlucoseSource,
    patient_id: str | None = None,
    tz: str = "UTC",
    sensor_interval_min: float = 5.0,
    conga_hours: int = 1,
) -> GlucoseSummary:
    """Single-patient convenience: the typed summary of one patient's readings."""
    if patient_id is None:
        ids = pd.unique(readings["patient_id"].to_numpy())
        if len(ids) != 1:
            raise ValueError(f"expected one patient's readings, got {len(ids)} patient ids")
        patient_id = str(ids[0])
    frame = glucose_metrics(
        readings,
        period,
        source=source,
        tz=tz,
        sensor_interval_min=sensor_interval_min,
        conga_hours=conga_hours,
        patients=[patient_id],
    )
    return GlucoseSummary.from_row(patient_id, source, frame.iloc[0])


def gri_score(
    very_low: FloatArray, low: FloatArray, very_high: FloatArray, high: FloatArray
) -> FloatArray:
    """Glycemia Risk Index (Klonoff et al., J Diabetes Sci Technol 2023), capped at 100.

    Arguments are percentages of readings in the exclusive bands <54, 54-69, >250, 181-250.
    """
    raw = 3.0 * very_low + 2.4 * low + 1.6 * very_high + 0.8 * high
    return np.asarray(np.minimum(raw, 100.0), dtype=np.float64)


GRI_ZONES = (("A", 20.0), ("B", 40.0), ("C", 60.0), ("D", 80.0), ("E", 100.0))


def gri_zone(gri: FloatArray) -> Any:
    """GRI zone A (0-20, best) .. E (80-100), Klonoff 2023; None where GRI is NaN."""
    zones = np.full(len(gri), None, dtype=object)
    for name, upper in reversed(GRI_ZONES):
        zones[gri <= upper] = name
    return zones


def risk_transform(mgdl: FloatArray) -> FloatArray:
    """Kovatchev's symmetrizing transform f(BG); negative below ~112.5 mg/dL."""
    return RISK_GAMMA * (np.log(mgdl) ** RISK_ALPHA - RISK_BETA)


def _risk_indices(codes: IntArray, mgdl: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    f = risk_transform(mgdl)
    risk = 10.0 * f * f
    count = group_count(codes, n)
    lbgi = safe_div(group_sum(codes, np.where(f < 0, risk, 0.0), n), count)
    hbgi = safe_div(group_sum(codes, np.where(f > 0, risk, 0.0), n), count)
    return lbgi, hbgi


def range_values(frame: pd.DataFrame) -> FloatArray:
    """mg/dL per row for range counting: HI -> +inf, LO -> -inf, NaN = unusable row."""
    mgdl = frame["mgdl"].to_numpy(dtype=np.float64, na_value=np.nan)
    hi = _flag(frame, HI_COLUMN)
    lo = _flag(frame, LO_COLUMN) & ~hi
    return np.where(hi, np.inf, np.where(lo, -np.inf, mgdl))


def _flag(frame: pd.DataFrame, column: str) -> BoolArray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(frame[column].to_numpy(dtype=bool, na_value=False), dtype=bool)


def _nan(n: int) -> FloatArray:
    return np.full(n, np.nan)


def _subset(g: Grouped, keep: BoolArray) -> Grouped:
    codes = g.codes[keep]
    counts = np.bincount(codes, minlength=g.n_patients).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    return Grouped(
        g.frame.loc[keep].reset_index(drop=True), codes, g.patients, g.time_ns[keep], starts, counts
    )


def _events(
    g: Grouped, low: BoolArray, *, max_gap_min: float, min_minutes: float, interval_min: float
) -> IntArray:
    """Count runs of consecutive low readings per patient.

    Consecutive means: same patient, no non-low reading in between, at most ``max_gap_min``
    apart.  A run counts when (last - first + one interval) >= ``min_minutes``.
    """
    idx = np.flatnonzero(low)
    n = g.n_patients
    if len(idx) == 0:
        return np.zeros(n, dtype=np.int64)
    c = g.codes[idx]
    t = g.time_ns[idx]
    start = np.ones(len(idx), dtype=bool)
    start[1:] = (
        (c[1:] != c[:-1])
        | (idx[1:] != idx[:-1] + 1)
        | ((t[1:] - t[:-1]) > max_gap_min * NS_PER_MINUTE)
    )
    first = np.flatnonzero(start)
    last = np.concatenate((first[1:], [len(idx)])) - 1
    minutes = (t[last] - t[first]) / NS_PER_MINUTE + interval_min
    ok = minutes >= min_minutes
    return np.bincount(c[first[ok]], minlength=n).astype(np.int64)


# ---------------------------------------------------------------------------------------
# iglu's day-by-day grid (CGMS2DayByDay) and the metrics computed on it.


@dataclass(frozen=True, slots=True)
class _Grid:
    values: FloatArray  # all patients' grids, concatenated
    starts: IntArray  # offset of each patient's grid
    lengths: IntArray  # ndays * points_per_day (0 without numeric readings)
    points_per_day: int


def interpolation_grid(
    g: Grouped,
    mgdl: FloatArray,
    numeric: BoolArray,
    tz: TimeZones,
    step_min: float,
    *,
    inter_gap_min: float = INTER_GAP_MIN,
) -> _Grid:
    """iglu ``CGMS2DayByDay`` for every patient at once.

    Grid points: local midnight of the patient's first reading + k*step, k = 1..ndays*ppd,
    ndays = ceil((last - first) in days + 1).  Linear interpolation between consecutive
    readings; points strictly inside a gap longer than ``inter_gap_min`` stay NaN; a
    reading exactly on a grid point gives its value (the last one of duplicates).
    """
    n = g.n_patients
    ppd = round(1440.0 / step_min)
    codes = g.codes[numeric]
    t_ns = g.time_ns[numeric]
    y = mgdl[numeric]
    counts = np.bincount(codes, minlength=n)
    has = counts > 0
    lengths = np.zeros(n, dtype=np.int64)
    if not has.any():
        return _Grid(np.zeros(0), np.zeros(n, dtype=np.int64), lengths, ppd)
    starts_r = np.concatenate(([0], np.cumsum(counts)[:-1]))
    first = np.zeros(n, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    first[has] = t_ns[starts_r[has]]
    last[has] = t_ns[starts_r[has] + counts[has] - 1]
    pats = np.flatnonzero(has)
    offset = utc_offsets_ns(first[pats], pats.astype(np.int64), g.patients, tz)
    local_first = first[pats] + offset
    day0 = np.zeros(n, dtype=np.int64)
    day0[pats] = (local_first // NS_PER_DAY) * NS_PER_DAY - offset
    ndays = np.ceil((last[pats] - first[pats]) / NS_PER_DAY + 1.0).astype(np.int64)
    lengths[pats] = ndays * ppd
    gstarts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    total = int(lengths.sum())

    step_ms = round(step_min * 60_000)
    span = (int(ndays.max()) + 2) * 86_400_000
    gcode = np.repeat(np.arange(n, dtype=np.int64), lengths)
    k = np.arange(total, dtype=np.int64) - gstarts[gcode] + 1
    gkey = gcode * span + k * step_ms
    # Search on integer-ms keys; grid points are whole ms, and rounding reading times *up*
    # keeps every reading on the correct side of every grid point.  Values use exact ns.
    rel_ns = t_ns - day0[codes]
    rkey = codes * span + (-((-rel_ns) // 1_000_000))
    pos = np.searchsorted(rkey, gkey, side="right")
    left = np.maximum(pos - 1, 0)
    right = np.minimum(pos, len(rkey) - 1)
    left_ok = (pos > 0) & (codes[left] == gcode)
    g_ns = k * step_ms * 1_000_000
    exact = left_ok & (rel_ns[left] == g_ns)
    right_ok = left_ok & (pos < len(rkey)) & (codes[right] == gcode)
    width = (rel_ns[right] - rel_ns[left]).astype(np.float64)
    close = right_ok & (width <= inter_gap_min * NS_PER_MINUTE)
    out = np.full(total, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (g_ns - rel_ns[left]) / width
        interp = y[left] + (y[right] - y[left]) * frac
    out[close] = interp[close]
    out[exact] = y[left[exact]]
    return _Grid(out, gstarts, lengths, ppd)


def _lagged_pairs(grid: _Grid, lag: int) -> tuple[IntArray, FloatArray]:
    """(patient code, difference) for every grid pair ``lag`` points apart within a patient."""
    n = len(grid.lengths)
    gcode = np.repeat(np.arange(n, dtype=np.int64), grid.lengths)
    if lag >= len(grid.values):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    same = gcode[lag:] == gcode[:-lag]
    diff = grid.values[lag:] - grid.values[:-lag]
    ok = same & ~np.isnan(diff)
    return gcode[:-lag][ok], diff[ok]


def _grid_metrics(
    g: Grouped,
    mgdl: FloatArray,
    numeric: BoolArray,
    tz: TimeZones,
    step_min: float,
    *,
    conga_hours: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = g.n_patients
    grid = interpolation_grid(g, mgdl, numeric, tz, step_min)
    # CONGA_n (iglu conga): SD of differences n hours apart on the flattened grid.
    c_codes, c_diff = _lagged_pairs(grid, round(60.0 / step_min) * conga_hours)
    _, _, conga = group_mean_sd(c_codes, c_diff, n)
    # MODD (iglu modd, lag 1 day): mean |difference| at the same grid time on adjacent days.
    m_codes, m_diff = _lagged_pairs(grid, grid.points_per_day)
    modd = safe_div(group_sum(m_codes, np.abs(m_diff), n), group_count(m_codes, n))
    # MAGE always runs on iglu's 5-minute grid.
    mgrid = (
        grid
        if math.isclose(step_min, GRID_MIN)
        else interpolation_grid(g, mgdl, numeric, tz, GRID_MIN)
    )
    # All patients at once: the turning-point search runs vectorized across them.
    mage = mage_from_grids(mgrid.values, mgrid.starts, mgrid.lengths)
    return mage, conga, modd


# ---------------------------------------------------------------------------------------
# Ambulatory Glucose Profile


AGP_PERCENTILES = (5, 25, 50, 75, 95)


def agp_profile(
    readings: pd.DataFrame,
    period: Period,
    *,
    tz: TimeZones = "UTC",
    bin_minutes: int = 15,
    smooth_bins: int = 3,
    patients: Iterable[str] | None = None,
) -> pd.DataFrame:
    """AGP percentile curves by local time of day, for every patient.

    Readings (numeric only) fall into ``1440 / bin_minutes`` time-of-day bins; in each bin
    the 5/25/50/75/95th percentiles (linear interpolation, numpy/R type 7) are taken; then
    each curve is smoothed with a centred circular moving average of ``smooth_bins`` bins
    (wrapping across midnight; empty bins skipped; 1 = no smoothing).

    Returns long format: ``patient_id, bin_start_min, n, p5, p25, p50, p75, p95`` with
    every bin of every patient that has readings (NaN percentiles in empty bins).
    """
    require_columns(readings, REQUIRED_COLUMNS, "glucose")
    if 1440 % bin_minutes or smooth_bins < 1 or smooth_bins % 2 == 0:
        raise ValueError(
            f"bin_minutes must divide 1440 and smooth_bins be odd: {bin_minutes}, {smooth_bins}"
        )
    g = group_readings(readings, period, patients)
    mgdl = g.frame["mgdl"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(mgdl) & ~_flag(g.frame, HI_COLUMN) & ~_flag(g.frame, LO_COLUMN)
    nbins = 1440 // bin_minutes
    n = g.n_patients
    _, minute = local_day_and_minute(g.time_ns[ok], g.codes[ok], g.patients, tz)
    b = np.minimum((minute // bin_minutes).astype(np.int64), nbins - 1)
    cell = g.codes[ok] * nbins + b
    vals = mgdl[ok]
    order = np.lexsort((vals, cell))
    cell, vals = cell[order], vals[order]
    cnt = np.bincount(cell, minlength=n * nbins)
    start = np.concatenate(([0], np.cumsum(cnt)[:-1]))
    curves: dict[str, FloatArray] = {}
    for q in AGP_PERCENTILES:
        pos = (cnt - 1) * (q / 100.0)
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        i_lo = np.clip(start + lo, 0, max(len(vals) - 1, 0))
        i_hi = np.clip(start + np.minimum(lo + 1, cnt - 1), 0, max(len(vals) - 1, 0))
        raw = vals[i_lo] + (vals[i_hi] - vals[i_lo]) * frac if len(vals) else np.zeros(n * nbins)
        raw = np.where(cnt > 0, raw, np.nan).reshape(n, nbins)
        curves[f"p{q}"] = _circular_smooth(raw, smooth_bins).ravel()
    has = np.repeat(np.bincount(g.codes[ok], minlength=n) > 0, nbins)
    frame = pd.DataFrame(
        {
            "patient_id": np.repeat(np.asarray(g.patients, dtype=object), nbins),
            "bin_start_min": np.tile(np.arange(nbins, dtype=np.int64) * bin_minutes, n),
            "n": cnt.astype(np.int64),
            **curves,
        }
    )
    return frame.loc[has].reset_index(drop=True)


def _circular_smooth(curve: FloatArray, width: int) -> FloatArray:
    if width == 1:
        return curve
    ok = ~np.isnan(curve)
    total = np.zeros_like(curve)
    count = np.zeros_like(curve)
    half = width // 2
    for shift in range(-half, half + 1):
        total += np.roll(np.where(ok, curve, 0.0), shift, axis=1)
        count += np.roll(ok.astype(np.float64), shift, axis=1)
    return np.where(ok, total / np.maximum(count, 1.0), np.nan)
