"""Blood-pressure rules: a crisis reading, the home average against the patient's target,
and an irregular pulse confirmed by a session's repeat reading."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.metrics._frame import NS_PER_MINUTE, group_count, group_mean_sd, group_readings
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
    flag_column,
    given,
    span,
    urgent_period,
    window,
)


def _urgent_bp(ctx: Context, frames: Frames) -> Outcome:
    bp = given(frames, Frame.BP)
    n = ctx.n
    g = group_readings(bp, urgent_period(ctx), ctx.patients)
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
    first, last = span(g, hit, n)
    return Outcome(
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


def _bp_window(ctx: Context, frames: Frames) -> Outcome:
    bp = given(frames, Frame.BP)
    n = ctx.n
    g, inwin = window(ctx, bp, "window_days")
    s = g.frame["systolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    d = g.frame["diastolic"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = inwin & ~np.isnan(s) & ~np.isnan(d)
    count, mean_s, _ = group_mean_sd(g.codes, np.where(ok, s, np.nan), n)
    _, mean_d, _ = group_mean_sd(g.codes, np.where(ok, d, np.nan), n)
    ts, td = ctx.t("bp_systolic"), ctx.t("bp_diastolic")
    enough = count >= ctx.t("bp_min_readings")
    first, last = span(g, ok, n)
    with np.errstate(invalid="ignore"):
        above = (mean_s >= ts) | (mean_d >= td)
    return Outcome(
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


def _irregular_pulse(ctx: Context, frames: Frames) -> Outcome:
    bp = given(frames, Frame.BP)
    n = ctx.n
    g, inwin = window(ctx, bp, "irregular_pulse_window_days")
    irregular = inwin & flag_column(g.frame, "irregular_pulse")
    moved = irregular & flag_column(g.frame, "body_movement")
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
    first, last = span(g, counted, n)
    return Outcome(
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


RULES: tuple[Rule, ...] = (
    Rule(
        "urgent_bp_crisis",
        Severity.URGENT,
        RuleKind.URGENT,
        "A blood-pressure reading above 180 systolic or 120 diastolic.",
        Needs((Frame.BP,), history=lambda t: URGENT_HISTORY),
        _urgent_bp,
    ),
    Rule(
        "bp_home_average_above_target",
        Severity.MEDIUM,
        RuleKind.WINDOW,
        "Home blood-pressure average at or above the patient's target.",
        Needs((Frame.BP,), history=lambda t: timedelta(days=t.window_days)),
        _bp_window,
    ),
    Rule(
        "bp_irregular_pulse",
        Severity.LOW,
        RuleKind.WINDOW,
        "At least 3 home blood-pressure readings flagged with an irregular pulse in 14 days,"
        " once on both readings of a session (body movement excluded): review the rhythm.",
        Needs((Frame.BP,), history=lambda t: timedelta(days=t.irregular_pulse_window_days)),
        _irregular_pulse,
    ),
)
