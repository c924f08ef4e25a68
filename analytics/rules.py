"""Review rules as data, and their pure, vectorized evaluation.

A rule is a definition (:class:`Rule`); :func:`evaluate` computes, for every patient and
every applicable rule, a :class:`RuleResult` with the evidence it rests on (metric
values, the thresholds from the patient's :class:`~analytics.targets.Targets`, and the
time range of the readings used).  No database access: the caller passes readings
frames covering at least the last ``max(trend_days, adherence_window_days,
2 * adherence_trend_days)`` days (30 by default) and persists the triggered results.
Thresholds are documented in docs/metrics.md.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analytics.metrics._frame import (
    NS_PER_DAY,
    NS_PER_MINUTE,
    BoolArray,
    FloatArray,
    Grouped,
    Period,
    TimeZones,
    distinct_days_per_group,
    group_count,
    group_mean_sd,
    group_readings,
    local_day_and_minute,
    safe_div,
)
from analytics.metrics.glucose import VERY_HIGH, VERY_LOW, range_values
from analytics.metrics.trends import (
    daily_fasting_glucose,
    daily_morning_systolic,
    trend_per_patient,
)
from analytics.targets import Targets


class Severity(enum.StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RuleKind(enum.StrEnum):
    URGENT = "urgent"
    WINDOW = "window"
    TREND = "trend"
    ADHERENCE = "adherence"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    kind: RuleKind
    description: str


RULES: tuple[Rule, ...] = (
    Rule(
        "urgent_low_glucose",
        Severity.URGENT,
        RuleKind.URGENT,
        "A glucose reading below the urgent-low threshold (54 mg/dL) or a LO result.",
    ),
    Rule(
        "urgent_high_glucose",
        Severity.URGENT,
        RuleKind.URGENT,
        "A glucose reading above the urgent-high threshold (400 mg/dL) or a HI result.",
    ),
    Rule(
        "urgent_bp_crisis",
        Severity.URGENT,
        RuleKind.URGENT,
        "A blood-pressure reading above 180 systolic or 120 diastolic.",
    ),
    Rule(
        "cgm_tbr_over_target",
        Severity.HIGH,
        RuleKind.WINDOW,
        "CGM time below range (<70, <63 in pregnancy) above target.",
    ),
    Rule(
        "cgm_tbr54_over_target",
        Severity.HIGH,
        RuleKind.WINDOW,
        "CGM time below 54 mg/dL above target.",
    ),
    Rule(
        "cgm_tar_over_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "CGM time above range (>180, >140 in pregnancy) above target.",
    ),
    Rule(
        "cgm_tar250_over_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "CGM time above 250 mg/dL above target.",
    ),
    Rule(
        "cgm_tir_under_target", Severity.MEDIUM, RuleKind.WINDOW, "CGM time in range below target."
    ),
    Rule(
        "smbg_low_readings",
        Severity.HIGH,
        RuleKind.WINDOW,
        "At least 10 % of fingerstick readings below 70 mg/dL over the window.",
    ),
    Rule(
        "smbg_high_readings",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "At least 25 % of fingerstick readings above 180 mg/dL over the window.",
    ),
    Rule(
        "bp_home_average_above_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "Home blood-pressure average at or above the patient's target.",
    ),
    Rule(
        "bp_irregular_pulse",
        Severity.LOW,
        RuleKind.WINDOW,
        "At least 3 home blood-pressure readings flagged with an irregular pulse in 14 days,"
        " once on both readings of a session (body movement excluded): review the rhythm.",
    ),
    Rule(
        "trend_fasting_glucose_rising",
        Severity.MEDIUM,
        RuleKind.TREND,
        "Fasting glucose rising: Mann-Kendall p < 0.05 and Theil-Sen slope >= 1 mg/dL/day,"
        " the last 7 daily values at a median >= 100 mg/dL.",
    ),
    Rule(
        "trend_morning_systolic_rising",
        Severity.MEDIUM,
        RuleKind.TREND,
        "Morning systolic rising: Mann-Kendall p < 0.05 and slope >= 0.5 mmHg/day.",
    ),
    Rule(
        "adherence_no_data",
        Severity.MEDIUM,
        RuleKind.ADHERENCE,
        "No readings of any kind for the last 3 days.",
    ),
    Rule(
        "adherence_low_days",
        Severity.LOW,
        RuleKind.ADHERENCE,
        "Fewer than 16 days with readings in the last 30 days.",
    ),
    Rule(
        "adherence_declining",
        Severity.LOW,
        RuleKind.ADHERENCE,
        "Readings on fewer than 8 of the last 14 days, at least 30 % fewer days than in"
        " the 14 days before.",
    ),
)
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


@dataclass(frozen=True, slots=True)
class RuleResult:
    patient_id: str
    rule_id: str
    severity: Severity
    triggered: bool
    evidence: Mapping[str, Any] = field(default_factory=dict)
    evidence_from: pd.Timestamp | None = None  # first reading the result rests on
    evidence_to: pd.Timestamp | None = None  # last reading the result rests on


@dataclass(frozen=True, slots=True)
class _Outcome:
    """Vectorized outcome of one rule for all patients (arrays indexed by patient code)."""

    triggered: BoolArray
    evidence: dict[str, Any]  # name -> per-patient array or scalar
    first_ns: Any  # int64 array, iNaT = none
    last_ns: Any


_INAT = np.iinfo(np.int64).min


def evaluate(
    now: pd.Timestamp,
    *,
    cgm: pd.DataFrame | None = None,
    smbg: pd.DataFrame | None = None,
    bp: pd.DataFrame | None = None,
    targets: Targets | Mapping[str, Targets] | None = None,
    tz: TimeZones = "UTC",
    patients: Iterable[str] | None = None,
    urgent_since: pd.Timestamp | None = None,
    sensor_interval_min: float = 5.0,
    rules: Iterable[Rule] = RULES,
) -> list[RuleResult]:
    """Evaluate ``rules`` for every patient at ``now``.

    ``cgm``/``smbg`` follow the glucose column contract (``patient_id, time, mgdl``
    [+ HI/LO flags, ``meal``]); ``bp`` the blood-pressure one.  A rule whose data kind is
    not given (frame ``None``) is skipped.  ``targets`` is one :class:`Targets` for all or
    a mapping per patient (missing patients get ``Targets()``).  Urgent rules look at
    readings in ``[urgent_since, now]`` (default: the last 24 h).  Results are ordered by
    patient, then rule order.  Patients lacking enough data for a window or trend rule get
    ``triggered=False`` with ``evidence['insufficient_data'] = True``.
    """
    frames = {"cgm": cgm, "smbg": smbg, "bp": bp}
    ids: set[str] = set(patients or [])
    for f in frames.values():
        if f is not None:
            ids.update(str(p) for p in pd.unique(f["patient_id"].to_numpy()))
    index = pd.Index(sorted(ids))
    if isinstance(targets, Targets) or targets is None:
        per_patient = [targets or Targets()] * len(index)
    else:
        per_patient = [targets.get(p, Targets()) for p in index]
    ctx = _Context(
        now,
        index,
        per_patient,
        tz,
        urgent_since or now - pd.Timedelta(hours=24),
        sensor_interval_min,
    )
    selected = list(rules)
    outcomes: dict[str, _Outcome] = {}
    for rule in selected:
        needs = _NEEDS[rule.id]
        present = [frames[k] for k in needs if frames[k] is not None]
        if not present:
            continue
        outcomes[rule.id] = _EVALUATORS[rule.id](ctx, frames)
    results: list[RuleResult] = []
    for code, pid in enumerate(index):
        for rule in selected:
            oc = outcomes.get(rule.id)
            if oc is None:
                continue
            evidence = {k: _item(v, code) for k, v in oc.evidence.items()}
            results.append(
                RuleResult(
                    patient_id=str(pid),
                    rule_id=rule.id,
                    severity=rule.severity,
                    triggered=bool(oc.triggered[code]),
                    evidence=evidence,
                    evidence_from=_ts(oc.first_ns[code]),
                    evidence_to=_ts(oc.last_ns[code]),
                )
            )
    return results


def results_frame(results: Iterable[RuleResult]) -> pd.DataFrame:
    """Results as a flat DataFrame (one row per patient and rule)."""
    return pd.DataFrame(
        [
            {
                "patient_id": r.patient_id,
                "rule_id": r.rule_id,
                "severity": r.severity.value,
                "triggered": r.triggered,
                "evidence_from": r.evidence_from,
                "evidence_to": r.evidence_to,
                "evidence": dict(r.evidence),
            }
            for r in results
        ]
    )


# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    now: pd.Timestamp
    patients: pd.Index
    targets: list[Targets]
    tz: TimeZones
    urgent_since: pd.Timestamp
    sensor_interval_min: float

    def t(self, name: str) -> FloatArray:
        """Target ``name`` per patient (NaN where None)."""
        return np.array(
            [np.nan if getattr(t, name) is None else float(getattr(t, name)) for t in self.targets],
            dtype=np.float64,
        )

    @property
    def n(self) -> int:
        return len(self.patients)


def _item(v: Any, code: int) -> Any:
    if isinstance(v, np.ndarray):
        x = v[code]
        if isinstance(x, np.floating):
            f = float(x)
            return None if np.isnan(f) else f
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.bool_):
            return bool(x)
        return x
    return v


def _ts(ns: Any) -> pd.Timestamp | None:
    return None if int(ns) == _INAT else pd.Timestamp(int(ns), tz="UTC")


def _span(g: Grouped, mask: BoolArray, n: int) -> tuple[Any, Any]:
    """First and last instant of the masked rows per patient (iNaT where none)."""
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, _INAT, dtype=np.int64)
    np.minimum.at(first, g.codes[mask], g.time_ns[mask])
    np.maximum.at(last, g.codes[mask], g.time_ns[mask])
    first[first == np.iinfo(np.int64).max] = _INAT
    return first, last


def _window(ctx: _Context, frame: pd.DataFrame, days_field: str) -> tuple[Grouped, BoolArray]:
    """Rows within each patient's own window ``(now - days, now]``."""
    days = ctx.t(days_field)
    span = float(np.nanmax(days)) if len(days) else 1.0
    g = group_readings(
        frame, Period(ctx.now - pd.Timedelta(days=span), ctx.now + pd.Timedelta(1)), ctx.patients
    )
    cutoff = ctx.now.value - (days * NS_PER_DAY).astype(np.int64)
    return g, g.time_ns >= cutoff[g.codes]


def _urgent_glucose(
    ctx: _Context, frames: Mapping[str, pd.DataFrame | None], low: bool
) -> _Outcome:
    n = ctx.n
    parts = [f for k in ("cgm", "smbg") if (f := frames[k]) is not None]
    cols = ["patient_id", "time", "mgdl", "result_above_range", "result_below_range"]
    frame = pd.concat([p.reindex(columns=cols) for p in parts], ignore_index=True)
    g = group_readings(frame, Period(ctx.urgent_since, ctx.now + pd.Timedelta(1)), ctx.patients)
    v = range_values(g.frame)
    name = "urgent_low_mgdl" if low else "urgent_high_mgdl"
    thr = ctx.t(name)
    hit = v < thr[g.codes] if low else v > thr[g.codes]
    flagged = np.isneginf(v) if low else np.isposinf(v)
    count = group_count(g.codes[hit], n)
    extreme = np.full(n, np.inf if low else -np.inf)
    numeric_hit = hit & np.isfinite(v)
    (np.minimum if low else np.maximum).at(extreme, g.codes[numeric_hit], v[numeric_hit])
    extreme[np.isinf(extreme)] = np.nan
    first, last = _span(g, hit, n)
    key = "min_mgdl" if low else "max_mgdl"
    return _Outcome(
        count > 0,
        {
            "n_readings": count.astype(np.int64),
            "n_flagged_lo" if low else "n_flagged_hi": group_count(g.codes[flagged], n).astype(
                np.int64
            ),
            key: extreme,
            "threshold_mgdl": thr,
        },
        first,
        last,
    )


def _urgent_bp(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    bp = frames["bp"]
    assert bp is not None
    n = ctx.n
    g = group_readings(bp, Period(ctx.urgent_since, ctx.now + pd.Timedelta(1)), ctx.patients)
    s = g.frame["systolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    d = g.frame["diastolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    ts, td = ctx.t("crisis_systolic"), ctx.t("crisis_diastolic")
    hit = (s > ts[g.codes]) | (d > td[g.codes])
    count = group_count(g.codes[hit], n)
    mx_s = np.full(n, np.nan)
    mx_d = np.full(n, np.nan)
    if hit.any():
        agg = pd.DataFrame({"c": g.codes[hit], "s": s[hit], "d": d[hit]}).groupby("c").max()
        mx_s[agg.index.to_numpy()] = agg["s"].to_numpy()
        mx_d[agg.index.to_numpy()] = agg["d"].to_numpy()
    first, last = _span(g, hit, n)
    return _Outcome(
        count > 0,
        {
            "n_readings": count.astype(np.int64),
            "max_systolic": mx_s,
            "max_diastolic": mx_d,
            "threshold_systolic": ts,
            "threshold_diastolic": td,
        },
        first,
        last,
    )


def _cgm_window(ctx: _Context, frames: Mapping[str, pd.DataFrame | None], which: str) -> _Outcome:
    cgm = frames["cgm"]
    assert cgm is not None
    n = ctx.n
    g, inwin = _window(ctx, cgm, "window_days")
    v = range_values(g.frame)
    usable = inwin & ~np.isnan(v)
    c = g.codes
    count = group_count(c[usable], n)
    days = ctx.t("window_days")
    wear = np.minimum(100.0 * count / (days * 1440.0 / ctx.sensor_interval_min), 100.0)
    lo, hi = ctx.t("range_low"), ctx.t("range_high")

    def pct(mask: BoolArray) -> FloatArray:
        return 100.0 * safe_div(group_count(c[usable & mask], n), count)

    bad = "above"
    if which == "tbr":
        metric, target = pct(v < lo[c]), ctx.t("tbr_max_pct")
    elif which == "tbr54":
        metric, target = pct(v < VERY_LOW), ctx.t("tbr54_max_pct")
    elif which == "tar":
        metric, target = pct(v > hi[c]), ctx.t("tar_max_pct")
    elif which == "tar250":
        metric, target = pct(v > VERY_HIGH), ctx.t("tar250_max_pct")
    else:
        metric, target, bad = pct((v >= lo[c]) & (v <= hi[c])), ctx.t("tir_min_pct"), "below"
    enough = wear >= ctx.t("min_cgm_wear_pct")
    has_target = ~np.isnan(target)
    with np.errstate(invalid="ignore"):
        off = metric > target if bad == "above" else metric < target
    first, last = _span(g, usable, n)
    return _Outcome(
        enough & has_target & off,
        {
            "metric_pct": metric,
            "target_pct": target,
            "range_low": lo,
            "range_high": hi,
            "n_readings": count.astype(np.int64),
            "wear_pct": wear,
            "min_wear_pct": ctx.t("min_cgm_wear_pct"),
            "window_days": days,
            "insufficient_data": ~enough,
        },
        first,
        last,
    )


def _smbg_window(ctx: _Context, frames: Mapping[str, pd.DataFrame | None], low: bool) -> _Outcome:
    smbg = frames["smbg"]
    assert smbg is not None
    n = ctx.n
    g, inwin = _window(ctx, smbg, "window_days")
    v = range_values(g.frame)
    usable = inwin & ~np.isnan(v)
    c = g.codes
    count = group_count(c[usable], n)
    mask = usable & ((v < 70.0) if low else (v > 180.0))
    metric = 100.0 * safe_div(group_count(c[mask], n), count)
    target = ctx.t("smbg_low_max_pct" if low else "smbg_high_max_pct")
    enough = count >= ctx.t("smbg_min_readings")
    first, last = _span(g, usable, n)
    return _Outcome(
        enough & (metric >= target),
        {
            "metric_pct": metric,
            "threshold_pct": target,
            "n_readings": count.astype(np.int64),
            "min_readings": ctx.t("smbg_min_readings"),
            "insufficient_data": ~enough,
        },
        first,
        last,
    )


def _bp_window(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    bp = frames["bp"]
    assert bp is not None
    n = ctx.n
    g, inwin = _window(ctx, bp, "window_days")
    s = g.frame["systolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    d = g.frame["diastolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = inwin & ~np.isnan(s) & ~np.isnan(d)
    count, mean_s, _ = group_mean_sd(g.codes, np.where(ok, s, np.nan), n)
    _, mean_d, _ = group_mean_sd(g.codes, np.where(ok, d, np.nan), n)
    ts, td = ctx.t("bp_systolic"), ctx.t("bp_diastolic")
    enough = count >= ctx.t("bp_min_readings")
    first, last = _span(g, ok, n)
    with np.errstate(invalid="ignore"):
        above = (mean_s >= ts) | (mean_d >= td)
    return _Outcome(
        enough & above,
        {
            "mean_systolic": mean_s,
            "mean_diastolic": mean_d,
            "target_systolic": ts,
            "target_diastolic": td,
            "n_readings": count.astype(np.int64),
            "min_readings": ctx.t("bp_min_readings"),
            "insufficient_data": ~enough,
        },
        first,
        last,
    )


def _trend(ctx: _Context, frames: Mapping[str, pd.DataFrame | None], fasting: bool) -> _Outcome:
    n = ctx.n
    days = float(np.nanmax(ctx.t("trend_days"))) if n else 30.0
    period = Period(ctx.now - pd.Timedelta(days=days), ctx.now + pd.Timedelta(1))
    if fasting:
        parts = [f for k in ("smbg", "cgm") if (f := frames[k]) is not None]
        cols = ["patient_id", "time", "mgdl", "meal"]
        glucose = pd.concat([p.reindex(columns=cols) for p in parts], ignore_index=True)
        daily = daily_fasting_glucose(glucose, period, tz=ctx.tz)
        slope_field = "fasting_slope_mgdl_per_day"
    else:
        bp = frames["bp"]
        assert bp is not None
        daily = daily_morning_systolic(bp, period, tz=ctx.tz)
        slope_field = "morning_systolic_slope_mmhg_per_day"
    # Per-patient trend windows: keep each patient's own last trend_days.
    d_codes = ctx.patients.get_indexer(pd.Index(daily["patient_id"]))
    d_ns = np.asarray(pd.DatetimeIndex(daily["time"]).as_unit("ns").asi8, dtype=np.int64)
    cutoff = ctx.now.value - (ctx.t("trend_days") * NS_PER_DAY).astype(np.int64)
    keep = d_ns >= cutoff[d_codes]
    daily = daily.loc[keep]
    tr = trend_per_patient(daily, min_days=3, patients=list(ctx.patients))
    n_days = tr["n_days"].to_numpy(dtype=np.float64)
    slope = tr["slope_per_day"].to_numpy(dtype=np.float64)
    p = tr["mk_p"].to_numpy(dtype=np.float64)
    min_days = ctx.t("trend_min_days")
    enough = n_days >= min_days
    level = _recent_median(daily, ctx.patients, ctx.t("trend_level_days"))
    # Only fasting glucose has a level guard (a rise within the normal range is no concern).
    min_level = ctx.t("fasting_trend_min_mgdl") if fasting else np.full(n, -np.inf)
    with np.errstate(invalid="ignore"):
        hit = enough & (p < ctx.t("trend_alpha")) & (slope >= ctx.t(slope_field))
        hit &= level >= min_level
    first = np.full(n, _INAT, dtype=np.int64)
    last = np.full(n, _INAT, dtype=np.int64)
    if len(daily):
        tns = pd.DatetimeIndex(daily["time"]).as_unit("ns").asi8
        codes = ctx.patients.get_indexer(pd.Index(daily["patient_id"]))
        first_tmp = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_tmp, codes, tns)
        np.maximum.at(last, codes, tns)
        first = np.where(first_tmp == np.iinfo(np.int64).max, _INAT, first_tmp)
    return _Outcome(
        hit,
        {
            "slope_per_day": slope,
            "slope_threshold_per_day": ctx.t(slope_field),
            "mk_p": p,
            "alpha": ctx.t("trend_alpha"),
            "n_days": n_days.astype(np.int64),
            "min_days": min_days,
            "recent_median": level,
            "min_recent_median": np.where(np.isinf(min_level), np.nan, min_level),
            "insufficient_data": ~enough,
        },
        first,
        last,
    )


def _recent_median(daily: pd.DataFrame, patients: pd.Index, days: FloatArray) -> FloatArray:
    """Median of each patient's last ``days`` daily values (NaN without any)."""
    out = np.full(len(patients), np.nan)
    if not len(daily):
        return out
    codes = patients.get_indexer(pd.Index(daily["patient_id"]))
    frame = pd.DataFrame(
        {"code": codes, "t": daily["time"].to_numpy(), "value": daily["value"].to_numpy()}
    ).sort_values(["code", "t"], kind="stable")
    rank = frame.groupby("code").cumcount(ascending=False).to_numpy()
    recent = frame.loc[rank < days[frame["code"].to_numpy()]]
    med = recent.groupby("code")["value"].median()
    out[med.index.to_numpy()] = med.to_numpy(dtype=np.float64)
    return out


def _all_readings(frames: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    parts = [f.loc[:, ["patient_id", "time"]] for f in frames.values() if f is not None]
    return pd.concat(parts, ignore_index=True)


def _no_data(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    n = ctx.n
    g = group_readings(
        _all_readings(frames),
        Period(pd.Timestamp(0, tz="UTC"), ctx.now + pd.Timedelta(1)),
        ctx.patients,
    )
    _, last = _span(g, np.ones(len(g.codes), dtype=bool), n)
    limit = ctx.t("no_data_days")
    cutoff = ctx.now.value - (limit * NS_PER_DAY).astype(np.int64)
    silent = last < cutoff
    days_silent = np.where(last == _INAT, np.nan, (ctx.now.value - last) / NS_PER_DAY)
    return _Outcome(
        silent,
        {"days_since_last_reading": days_silent, "limit_days": limit},
        np.where(last == _INAT, _INAT, last),
        last,
    )


def _low_days(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    n = ctx.n
    g, inwin = _window(ctx, _all_readings(frames), "adherence_window_days")
    day, _ = local_day_and_minute(g.time_ns[inwin], g.codes[inwin], g.patients, ctx.tz)
    days = distinct_days_per_group(g.codes[inwin], day, n)
    minimum = ctx.t("adherence_min_days")
    first, last = _span(g, inwin, n)
    return _Outcome(
        days < minimum,
        {
            "days_with_readings": days.astype(np.int64),
            "min_days": minimum,
            "window_days": ctx.t("adherence_window_days"),
        },
        first,
        last,
    )


def _flag_column(frame: pd.DataFrame, column: str) -> BoolArray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(frame[column].to_numpy(dtype=bool, na_value=False), dtype=bool)


def _irregular_pulse(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    bp = frames["bp"]
    assert bp is not None
    n = ctx.n
    g, inwin = _window(ctx, bp, "irregular_pulse_window_days")
    irregular = inwin & _flag_column(g.frame, "irregular_pulse")
    moved = irregular & _flag_column(g.frame, "body_movement")
    counted = irregular & ~moved
    count = group_count(g.codes[counted], n)
    minimum = ctx.t("irregular_pulse_min_readings")
    # Confirmed: two successive counted readings of a patient close enough to be one
    # session's reading and its repeat.
    rows = np.flatnonzero(counted)
    c, t = g.codes[rows], g.time_ns[rows]
    repeat_ns = ctx.t("irregular_pulse_repeat_minutes") * NS_PER_MINUTE
    pair = (c[1:] == c[:-1]) & ((t[1:] - t[:-1]) <= repeat_ns[c[1:]])
    confirmed = group_count(c[1:][pair], n)
    first, last = _span(g, counted, n)
    return _Outcome(
        (count >= minimum) & (confirmed > 0),
        {
            "n_irregular": count.astype(np.int64),
            "n_confirmed_repeats": confirmed.astype(np.int64),
            "n_irregular_with_movement": group_count(g.codes[moved], n).astype(np.int64),
            "n_readings": group_count(g.codes[inwin], n).astype(np.int64),
            "min_readings": minimum,
            "window_days": ctx.t("irregular_pulse_window_days"),
        },
        first,
        last,
    )


def _declining(ctx: _Context, frames: Mapping[str, pd.DataFrame | None]) -> _Outcome:
    """Days with readings in the recent span vs the span just before (same length)."""
    n = ctx.n
    span = ctx.t("adherence_trend_days")
    longest = 2.0 * float(np.nanmax(span)) if n else 28.0
    g = group_readings(
        _all_readings(frames),
        Period(ctx.now - pd.Timedelta(days=longest), ctx.now + pd.Timedelta(1)),
        ctx.patients,
    )
    span_ns = (span * NS_PER_DAY).astype(np.int64)[g.codes]
    recent = g.time_ns >= ctx.now.value - span_ns
    prior = ~recent & (g.time_ns >= ctx.now.value - 2 * span_ns)
    day, _ = local_day_and_minute(g.time_ns, g.codes, g.patients, ctx.tz)
    days_recent = distinct_days_per_group(g.codes[recent], day[recent], n)
    days_prior = distinct_days_per_group(g.codes[prior], day[prior], n)
    minimum = ctx.t("adherence_recent_min_days")
    decline = ctx.t("adherence_decline_pct")
    dropped = (days_prior > 0) & (days_recent <= days_prior * (1.0 - decline / 100.0))
    first, last = _span(g, recent | prior, n)
    return _Outcome(
        (days_recent < minimum) & dropped,
        {
            "days_with_readings_recent": days_recent.astype(np.int64),
            "days_with_readings_prior": days_prior.astype(np.int64),
            "span_days": span,
            "min_days": minimum,
            "decline_pct": decline,
        },
        first,
        last,
    )


_Evaluator = Callable[[_Context, Mapping[str, pd.DataFrame | None]], _Outcome]

_EVALUATORS: dict[str, _Evaluator] = {
    "urgent_low_glucose": lambda c, f: _urgent_glucose(c, f, low=True),
    "urgent_high_glucose": lambda c, f: _urgent_glucose(c, f, low=False),
    "urgent_bp_crisis": _urgent_bp,
    "cgm_tbr_over_target": lambda c, f: _cgm_window(c, f, "tbr"),
    "cgm_tbr54_over_target": lambda c, f: _cgm_window(c, f, "tbr54"),
    "cgm_tar_over_target": lambda c, f: _cgm_window(c, f, "tar"),
    "cgm_tar250_over_target": lambda c, f: _cgm_window(c, f, "tar250"),
    "cgm_tir_under_target": lambda c, f: _cgm_window(c, f, "tir"),
    "smbg_low_readings": lambda c, f: _smbg_window(c, f, low=True),
    "smbg_high_readings": lambda c, f: _smbg_window(c, f, low=False),
    "bp_home_average_above_target": _bp_window,
    "bp_irregular_pulse": _irregular_pulse,
    "trend_fasting_glucose_rising": lambda c, f: _trend(c, f, fasting=True),
    "trend_morning_systolic_rising": lambda c, f: _trend(c, f, fasting=False),
    "adherence_no_data": _no_data,
    "adherence_low_days": _low_days,
    "adherence_declining": _declining,
}

_NEEDS: dict[str, tuple[str, ...]] = {
    "urgent_low_glucose": ("cgm", "smbg"),
    "urgent_high_glucose": ("cgm", "smbg"),
    "urgent_bp_crisis": ("bp",),
    "cgm_tbr_over_target": ("cgm",),
    "cgm_tbr54_over_target": ("cgm",),
    "cgm_tar_over_target": ("cgm",),
    "cgm_tar250_over_target": ("cgm",),
    "cgm_tir_under_target": ("cgm",),
    "smbg_low_readings": ("smbg",),
    "smbg_high_readings": ("smbg",),
    "bp_home_average_above_target": ("bp",),
    "bp_irregular_pulse": ("bp",),
    "trend_fasting_glucose_rising": ("cgm", "smbg"),
    "trend_morning_systolic_rising": ("bp",),
    "adherence_no_data": ("cgm", "smbg", "bp"),
    "adherence_low_days": ("cgm", "smbg", "bp"),
    "adherence_declining": ("cgm", "smbg", "bp"),
}
