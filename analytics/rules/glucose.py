"""Glucose rules: urgent lows and highs (CGM or fingerstick), CGM time in ranges against
the consensus targets, and the share of low or high fingerstick readings."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import numpy as np
import pandas as pd

from analytics.metrics._frame import BoolArray, FloatArray, group_count, group_readings, safe_div
from analytics.metrics.glucose import VERY_HIGH, VERY_LOW, range_values
from analytics.rules.base import (
    URGENT_HISTORY,
    Context,
    Frame,
    Frames,
    Needs,
    Outcome,
    Rule,
    RuleKind,
    Severity,
    given,
    present,
    span,
    urgent_period,
    window,
)


def _urgent_glucose(ctx: Context, frames: Frames, low: bool) -> Outcome:
    n = ctx.n
    parts = present(frames, Frame.CGM, Frame.SMBG)
    cols = ["patient_id", "time", "mgdl", "result_above_range", "result_below_range"]
    frame = pd.concat([p.reindex(columns=cols) for p in parts], ignore_index=True)
    g = group_readings(frame, urgent_period(ctx), ctx.patients)
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
    first, last = span(g, hit, n)
    key = "min_mgdl" if low else "max_mgdl"
    return Outcome(
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


def _cgm_window(ctx: Context, frames: Frames, which: str) -> Outcome:
    cgm = given(frames, Frame.CGM)
    n = ctx.n
    g, inwin = window(ctx, cgm, "window_days")
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
    first, last = span(g, usable, n)
    return Outcome(
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


def _smbg_window(ctx: Context, frames: Frames, low: bool) -> Outcome:
    smbg = given(frames, Frame.SMBG)
    n = ctx.n
    g, inwin = window(ctx, smbg, "window_days")
    v = range_values(g.frame)
    usable = inwin & ~np.isnan(v)
    c = g.codes
    count = group_count(c[usable], n)
    mask = usable & ((v < 70.0) if low else (v > 180.0))
    metric = 100.0 * safe_div(group_count(c[mask], n), count)
    target = ctx.t("smbg_low_max_pct" if low else "smbg_high_max_pct")
    enough = count >= ctx.t("smbg_min_readings")
    first, last = span(g, usable, n)
    return Outcome(
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


_URGENT = Needs((Frame.CGM, Frame.SMBG), history=lambda t: URGENT_HISTORY)
_CGM = Needs((Frame.CGM,), history=lambda t: timedelta(days=t.window_days))
_SMBG = Needs((Frame.SMBG,), history=lambda t: timedelta(days=t.window_days))

RULES: tuple[Rule, ...] = (
    Rule(
        "urgent_low_glucose",
        Severity.URGENT,
        RuleKind.URGENT,
        "A glucose reading below the urgent-low threshold (54 mg/dL) or a LO result.",
        _URGENT,
        partial(_urgent_glucose, low=True),
    ),
    Rule(
        "urgent_high_glucose",
        Severity.URGENT,
        RuleKind.URGENT,
        "A glucose reading above the urgent-high threshold (400 mg/dL) or a HI result.",
        _URGENT,
        partial(_urgent_glucose, low=False),
    ),
    Rule(
        "cgm_tbr_over_target",
        Severity.HIGH,
        RuleKind.WINDOW,
        "CGM time below range (<70, <63 in pregnancy) above target.",
        _CGM,
        partial(_cgm_window, which="tbr"),
    ),
    Rule(
        "cgm_tbr54_over_target",
        Severity.HIGH,
        RuleKind.WINDOW,
        "CGM time below 54 mg/dL above target.",
        _CGM,
        partial(_cgm_window, which="tbr54"),
    ),
    Rule(
        "cgm_tar_over_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "CGM time above range (>180, >140 in pregnancy) above target.",
        _CGM,
        partial(_cgm_window, which="tar"),
    ),
    Rule(
        "cgm_tar250_over_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "CGM time above 250 mg/dL above target.",
        _CGM,
        partial(_cgm_window, which="tar250"),
    ),
    Rule(
        "cgm_tir_under_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "CGM time in range below target.",
        _CGM,
        partial(_cgm_window, which="tir"),
    ),
    Rule(
        "smbg_low_readings",
        Severity.HIGH,
        RuleKind.WINDOW,
        "At least 10 % of fingerstick readings below 70 mg/dL over the window.",
        _SMBG,
        partial(_smbg_window, low=True),
    ),
    Rule(
        "smbg_high_readings",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "At least 25 % of fingerstick readings above 180 mg/dL over the window.",
        _SMBG,
        partial(_smbg_window, low=False),
    ),
)
