"""Adherence rules: they fire on *missing* data, so they read every kind of reading."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from analytics.metrics._frame import (
    NS_PER_DAY,
    Period,
    distinct_days_per_group,
    group_readings,
    local_day_and_minute,
)
from analytics.rules.base import (
    INAT,
    Context,
    Frame,
    Frames,
    Needs,
    Outcome,
    Rule,
    RuleKind,
    Severity,
    span,
    window,
)

_ANY = (Frame.CGM, Frame.SMBG, Frame.BP)


def _all_readings(frames: Frames) -> pd.DataFrame:
    parts = [f.loc[:, ["patient_id", "time"]] for f in frames.values() if f is not None]
    return pd.concat(parts, ignore_index=True)


def _no_data(ctx: Context, frames: Frames) -> Outcome:
    n = ctx.n
    g = group_readings(
        _all_readings(frames),
        Period(pd.Timestamp(0, tz="UTC"), ctx.now + pd.Timedelta(1)),
        ctx.patients,
    )
    _, last = span(g, np.ones(len(g.codes), dtype=bool), n)
    limit = ctx.t("no_data_days")
    cutoff = ctx.now.value - (limit * NS_PER_DAY).astype(np.int64)
    silent = last < cutoff
    days_silent = np.where(last == INAT, np.nan, (ctx.now.value - last) / NS_PER_DAY)
    return Outcome(
        silent,
        {"days_since_last_reading": days_silent, "limit_days": limit},
        np.where(last == INAT, INAT, last),
        last,
    )


def _low_days(ctx: Context, frames: Frames) -> Outcome:
    n = ctx.n
    g, inwin = window(ctx, _all_readings(frames), "adherence_window_days")
    day, _ = local_day_and_minute(g.time_ns[inwin], g.codes[inwin], g.patients, ctx.tz)
    days = distinct_days_per_group(g.codes[inwin], day, n)
    minimum = ctx.t("adherence_min_days")
    first, last = span(g, inwin, n)
    return Outcome(
        days < minimum,
        {
            "days_with_readings": days.astype(np.int64),
            "min_days": minimum,
            "window_days": ctx.t("adherence_window_days"),
        },
        first,
        last,
    )


def _declining(ctx: Context, frames: Frames) -> Outcome:
    """Days with readings in the recent span vs the span just before (same length)."""
    n = ctx.n
    trend_span = ctx.t("adherence_trend_days")
    longest = 2.0 * float(np.nanmax(trend_span)) if n else 28.0
    g = group_readings(
        _all_readings(frames),
        Period(ctx.now - pd.Timedelta(days=longest), ctx.now + pd.Timedelta(1)),
        ctx.patients,
    )
    span_ns = (trend_span * NS_PER_DAY).astype(np.int64)[g.codes]
    recent = g.time_ns >= ctx.now.value - span_ns
    prior = ~recent & (g.time_ns >= ctx.now.value - 2 * span_ns)
    day, _ = local_day_and_minute(g.time_ns, g.codes, g.patients, ctx.tz)
    days_recent = distinct_days_per_group(g.codes[recent], day[recent], n)
    days_prior = distinct_days_per_group(g.codes[prior], day[prior], n)
    minimum = ctx.t("adherence_recent_min_days")
    decline = ctx.t("adherence_decline_pct")
    dropped = (days_prior > 0) & (days_recent <= days_prior * (1.0 - decline / 100.0))
    first, last = span(g, recent | prior, n)
    return Outcome(
        (days_recent < minimum) & dropped,
        {
            "days_with_readings_recent": days_recent.astype(np.int64),
            "days_with_readings_prior": days_prior.astype(np.int64),
            "span_days": trend_span,
            "min_days": minimum,
            "decline_pct": decline,
        },
        first,
        last,
    )


RULES: tuple[Rule, ...] = (
    Rule(
        "adherence_no_data",
        Severity.MEDIUM,
        RuleKind.ADHERENCE,
        "No readings of any kind for the last 3 days.",
        Needs(_ANY, history=lambda t: timedelta(days=t.no_data_days)),
        _no_data,
    ),
    Rule(
        "adherence_low_days",
        Severity.LOW,
        RuleKind.ADHERENCE,
        "Fewer than 16 days with readings in the last 30 days.",
        Needs(_ANY, history=lambda t: timedelta(days=t.adherence_window_days)),
        _low_days,
    ),
    Rule(
        "adherence_declining",
        Severity.LOW,
        RuleKind.ADHERENCE,
        "Readings on fewer than 8 of the last 14 days, at least 30 % fewer days than in"
        " the 14 days before.",
        Needs(_ANY, history=lambda t: 2 * timedelta(days=t.adherence_trend_days)),
        _declining,
    ),
)
