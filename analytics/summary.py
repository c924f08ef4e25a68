"""Per-patient summaries for people and the EHR: glucose (CGM and SMBG), AGP, home BP,
the clinician panel's triage numbers and the RPM billing report.

Thin, typed wrappers over :mod:`analytics.metrics` that read from the database through
:mod:`analytics.store`.  Every result is a pydantic model, so the API returns it as is
and the CLI prints ``result.model_dump(mode="json")``.  Numbers that cannot be computed
(NaN in the metric frames) are ``None`` here: JSON has no NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import psycopg
from pydantic import BaseModel, ConfigDict, Field

from analytics.metrics import (
    GLUCOSE_COLUMNS,
    GlucoseSource,
    Period,
    agp_profile,
    blood_pressure_metrics,
    glucose_metrics,
)
from analytics.metrics.blood_pressure import BP_COLUMNS
from analytics.runner import patient_targets
from analytics.store import bp_frame, glucose_frame, patient_timezones
from analytics.store import glucose_frames as store_glucose_frames
from analytics.targets import Targets

# CPT 99454 (device supply with daily recordings) needs >= 16 days with transmitted
# readings in a 30-day period; 99445 (added for 2026) covers 2-15 days.
BILLING_PERIOD_DAYS = 30
CPT_99454_MIN_DAYS = 16
CPT_99445_MIN_DAYS = 2
# A reading entered by hand (not transmitted by the device) carries this condition.
MANUAL_ENTRY = "manual_entry"
CONTROL_SOLUTION = "control_solution"


class PatientNotFoundError(LookupError):
    """No patient with that id."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class GlucoseStats(_Model):
    """One source's metrics (see docs/metrics.md).  Percentages 0-100, glucose mg/dL."""

    source: GlucoseSource
    n_readings: int
    n_numeric: int
    n_hi: int
    n_lo: int
    days_with_readings: int
    readings_per_day: float | None
    percent_expected: float | None = Field(description="CGM wear %, None for SMBG")
    first_time: datetime | None
    last_time: datetime | None
    mean: float | None
    sd: float | None
    cv: float | None
    gmi: float | None = Field(description="GMI %, CGM only")
    pct_below_54: float | None
    pct_54_69: float | None
    pct_below_70: float | None
    pct_70_180: float | None
    pct_181_250: float | None
    pct_above_180: float | None
    pct_above_250: float | None
    pct_below_63: float | None
    pct_63_140: float | None
    pct_above_140: float | None
    hypo_events: int
    hypo_events_54: int
    gri: float | None
    gri_zone: str | None
    j_index: float | None
    lbgi: float | None
    hbgi: float | None
    mage: float | None
    conga: float | None
    modd: float | None


class GlucoseSummaryResult(_Model):
    patient_id: int
    start: datetime
    end: datetime
    timezone: str
    cgm: GlucoseStats
    smbg: GlucoseStats


class AgpBin(_Model):
    minute: int = Field(description="start of the time-of-day bin, minutes after local midnight")
    n: int
    p5: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p95: float | None


class DailyGlucose(_Model):
    date: date
    n: int
    mean: float | None
    min: float | None
    max: float | None
    pct_70_180: float | None


class AgpResult(_Model):
    patient_id: int
    start: datetime
    end: datetime
    timezone: str
    source: GlucoseSource = Field(description="CGM when the patient has CGM data, else SMBG")
    bin_minutes: int
    n_readings: int
    bins: list[AgpBin]
    daily: list[DailyGlucose]


class BpSummaryResult(_Model):
    patient_id: int
    start: datetime
    end: datetime
    timezone: str
    n_readings: int
    days_with_readings: int
    first_time: datetime | None
    last_time: datetime | None
    mean_systolic: float | None
    mean_diastolic: float | None
    morning_n: int
    morning_systolic: float | None
    morning_diastolic: float | None
    evening_n: int
    evening_systolic: float | None
    evening_diastolic: float | None
    stage: str | None
    n_crisis: int
    max_systolic: float | None
    max_diastolic: float | None
    target_systolic: float | None
    target_diastolic: float | None
    pct_above_target: float | None
    mean_pulse: float | None
    n_irregular_pulse: int
    n_body_movement: int
    sd_systolic: float | None
    cv_systolic: float | None
    arv_systolic: float | None
    sd_diastolic: float | None
    arv_diastolic: float | None


class BillingRow(_Model):
    patient_id: int
    external_id: str
    days_with_readings: int
    reading_dates: list[date]
    cpt_99454: bool
    cpt_99445: bool
    code: Literal["99454", "99445"] | None


class BillingReport(_Model):
    period_start: date
    period_end: date = Field(description="exclusive")
    clinic_timezone: str
    rows: list[BillingRow]


class PanelStats(_Model):
    """Triage numbers for one patient over the recent window."""

    patient_id: int
    cgm_pct_70_180: float | None
    cgm_pct_below_70: float | None
    smbg_pct_70_180: float | None
    smbg_pct_below_70: float | None
    last_reading: datetime | None


# --------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """numpy/pandas scalars to plain Python; NaN/NaT to None."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value, tz="UTC").to_pydatetime()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if value is pd.NaT:
        return None
    return value


def _row(frame: pd.DataFrame, key: str, columns: Sequence[str]) -> dict[str, Any]:
    row = frame.loc[key]
    return {c: _clean(row[c]) for c in columns}


def _timezone(conn: psycopg.Connection[Any], patient_id: int) -> str:
    zones = patient_timezones(conn, [patient_id])
    if str(patient_id) not in zones:
        raise PatientNotFoundError(f"patient {patient_id} does not exist")
    return zones[str(patient_id)]


def _period(start: datetime, end: datetime) -> Period:
    return Period(pd.Timestamp(start), pd.Timestamp(end))


def _targets(conn: psycopg.Connection[Any], patient_id: int) -> Targets:
    return patient_targets(conn, [patient_id])[str(patient_id)]


def glucose_frames(
    conn: psycopg.Connection[Any], patient_id: int, start: datetime, end: datetime
) -> dict[GlucoseSource, pd.DataFrame]:
    """One patient's CGM and SMBG frames (the analytics.metrics glucose column contract)."""
    frames = store_glucose_frames(conn, [patient_id], start, end)
    return {source: frames[source.value] for source in GlucoseSource}


def glucose_summary(
    conn: psycopg.Connection[Any], patient_id: int, start: datetime, end: datetime
) -> GlucoseSummaryResult:
    """CGM and SMBG metrics of one patient over ``[start, end)`` (tz-aware)."""
    tz = _timezone(conn, patient_id)
    period = _period(start, end)
    key = str(patient_id)
    stats: dict[str, GlucoseStats] = {}
    frames = glucose_frames(conn, patient_id, start, end)
    for source in (GlucoseSource.CGM, GlucoseSource.SMBG):
        frame = frames[source]
        metrics = glucose_metrics(frame, period, source=source, tz=tz, patients=[key])
        stats[source.value] = GlucoseStats(source=source, **_row(metrics, key, GLUCOSE_COLUMNS))
    return GlucoseSummaryResult(
        patient_id=patient_id,
        start=start,
        end=end,
        timezone=tz,
        cgm=stats["cgm"],
        smbg=stats["smbg"],
    )


def agp(
    conn: psycopg.Connection[Any],
    patient_id: int,
    start: datetime,
    end: datetime,
    bin_minutes: int = 15,
) -> AgpResult:
    """AGP percentile curves by local time of day, and per-day glucose.

    CGM readings when the patient has any in the period, otherwise fingersticks.
    """
    tz = _timezone(conn, patient_id)
    period = _period(start, end)
    key = str(patient_id)
    frames = glucose_frames(conn, patient_id, start, end)
    source = GlucoseSource.CGM
    if frames[source]["mgdl"].notna().sum() == 0:
        source = GlucoseSource.SMBG
    frame = frames[source]
    profile = agp_profile(frame, period, tz=tz, bin_minutes=bin_minutes, patients=[key])
    bins = [
        AgpBin(
            minute=int(minute),
            n=int(n),
            p5=_clean(p5),
            p25=_clean(p25),
            p50=_clean(p50),
            p75=_clean(p75),
            p95=_clean(p95),
        )
        for minute, n, p5, p25, p50, p75, p95 in zip(
            profile["bin_start_min"].tolist(),
            profile["n"].tolist(),
            profile["p5"].tolist(),
            profile["p25"].tolist(),
            profile["p50"].tolist(),
            profile["p75"].tolist(),
            profile["p95"].tolist(),
            strict=True,
        )
    ]
    return AgpResult(
        patient_id=patient_id,
        start=start,
        end=end,
        timezone=tz,
        source=source,
        bin_minutes=bin_minutes,
        n_readings=int(frame["mgdl"].notna().sum()),
        bins=bins,
        daily=_daily(frame, tz),
    )


def _daily(frame: pd.DataFrame, tz: str) -> list[DailyGlucose]:
    numeric = frame.loc[frame["mgdl"].notna(), ["time", "mgdl"]]
    if numeric.empty:
        return []
    local_day = numeric["time"].dt.tz_convert(ZoneInfo(tz)).dt.date
    grouped = numeric.groupby(local_day)["mgdl"]
    in_range = numeric["mgdl"].between(70.0, 180.0).groupby(local_day).mean() * 100.0
    stats = grouped.agg(["count", "mean", "min", "max"])
    pct = dict(zip(in_range.index.tolist(), in_range.tolist(), strict=True))
    return [
        DailyGlucose(
            date=day,
            n=int(count),
            mean=_clean(mean),
            min=_clean(low),
            max=_clean(high),
            pct_70_180=_clean(pct.get(day)),
        )
        for day, count, mean, low, high in zip(
            stats.index.tolist(),
            stats["count"].tolist(),
            stats["mean"].tolist(),
            stats["min"].tolist(),
            stats["max"].tolist(),
            strict=True,
        )
    ]


def bp_summary(
    conn: psycopg.Connection[Any], patient_id: int, start: datetime, end: datetime
) -> BpSummaryResult:
    """Home blood-pressure metrics over ``[start, end)`` against the patient's BP target."""
    tz = _timezone(conn, patient_id)
    targets = _targets(conn, patient_id)
    key = str(patient_id)
    frame = bp_frame(conn, [patient_id], start, end)
    metrics = blood_pressure_metrics(
        frame,
        _period(start, end),
        tz=tz,
        target=(targets.bp_systolic, targets.bp_diastolic),
        patients=[key],
    )
    values = _row(metrics, key, BP_COLUMNS)
    return BpSummaryResult(patient_id=patient_id, start=start, end=end, timezone=tz, **values)


def panel_stats(
    conn: psycopg.Connection[Any], patient_ids: Sequence[int], end: datetime, days: int = 14
) -> dict[int, PanelStats]:
    """TIR/TBR over the last ``days`` for many patients at once (clinician triage)."""
    if not patient_ids:
        return {}
    start = end - timedelta(days=days)
    period = _period(start, end)
    keys = [str(p) for p in patient_ids]
    tz = patient_timezones(conn, patient_ids)
    by_source: dict[str, pd.DataFrame] = {}
    for source in (GlucoseSource.CGM, GlucoseSource.SMBG):
        frame = glucose_frame(conn, patient_ids, start, end, source.value)
        by_source[source.value] = glucose_metrics(
            frame, period, source=source, tz=tz, patients=keys, variability=False
        )
    rows = conn.execute(
        "SELECT p.id, greatest("
        " (SELECT max(time) FROM glucose g WHERE g.patient_id = p.id AND g.time < %(end)s),"
        " (SELECT max(time) FROM blood_pressure b WHERE b.patient_id = p.id AND b.time < %(end)s))"
        " FROM patients p WHERE p.id = ANY(%(ids)s)",
        {"ids": list(patient_ids), "end": end},
    ).fetchall()
    last = {int(r[0]): r[1] for r in rows}
    cgm, smbg = by_source["cgm"], by_source["smbg"]
    return {
        p: PanelStats(
            patient_id=p,
            cgm_pct_70_180=_clean(cgm.loc[str(p), "pct_70_180"]),
            cgm_pct_below_70=_clean(cgm.loc[str(p), "pct_below_70"]),
            smbg_pct_70_180=_clean(smbg.loc[str(p), "pct_70_180"]),
            smbg_pct_below_70=_clean(smbg.loc[str(p), "pct_below_70"]),
            last_reading=last.get(p),
        )
        for p in patient_ids
    }


BILLING_QUERY = """
WITH transmitted AS (
    SELECT patient_id, time FROM glucose
     WHERE patient_id = ANY(%(ids)s) AND time >= %(start)s AND time < %(end)s
       AND gateway_id IS NOT NULL
       AND NOT (%(manual)s = ANY(conditions)) AND NOT (%(control)s = ANY(conditions))
    UNION ALL
    SELECT patient_id, time FROM blood_pressure
     WHERE patient_id = ANY(%(ids)s) AND time >= %(start)s AND time < %(end)s
       AND gateway_id IS NOT NULL AND NOT (%(manual)s = ANY(conditions))
    UNION ALL
    SELECT patient_id, time FROM body_readings
     WHERE patient_id = ANY(%(ids)s) AND time >= %(start)s AND time < %(end)s
       AND gateway_id IS NOT NULL AND NOT (%(manual)s = ANY(conditions))
)
SELECT patient_id, array_agg(DISTINCT (time AT TIME ZONE %(tz)s)::date)
FROM transmitted GROUP BY patient_id
"""


def billing_report(
    conn: psycopg.Connection[Any],
    patient_ids: Sequence[int],
    period_start: date,
    clinic_tz: str,
) -> BillingReport:
    """Days with transmitted readings per patient in the 30-day period starting at local
    midnight of ``period_start`` in the clinic's time zone, and CPT eligibility.

    "Transmitted" = arrived through a gateway (``gateway_id`` set) and not a manual entry;
    control-solution tests are not patient readings and do not count either.
    """
    zone = ZoneInfo(clinic_tz)
    period_end = period_start + timedelta(days=BILLING_PERIOD_DAYS)
    start = datetime.combine(period_start, datetime.min.time(), zone)
    end = datetime.combine(period_end, datetime.min.time(), zone)
    ids = list(patient_ids)
    externals = dict(
        conn.execute(
            "SELECT id, external_id FROM patients WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
    )
    days: dict[int, list[date]] = {}
    for patient, dates in conn.execute(
        BILLING_QUERY,
        {
            "ids": ids,
            "start": start,
            "end": end,
            "tz": clinic_tz,
            "manual": MANUAL_ENTRY,
            "control": CONTROL_SOLUTION,
        },
    ):
        days[int(patient)] = sorted(dates)
    rows: list[BillingRow] = []
    for patient in sorted(externals):
        dates = days.get(int(patient), [])
        n = len(dates)
        full = n >= CPT_99454_MIN_DAYS
        partial = CPT_99445_MIN_DAYS <= n < CPT_99454_MIN_DAYS
        code: Literal["99454", "99445"] | None = "99454" if full else "99445" if partial else None
        rows.append(
            BillingRow(
                patient_id=int(patient),
                external_id=str(externals[patient]),
                days_with_readings=n,
                reading_dates=dates,
                cpt_99454=full,
                cpt_99445=partial,
                code=code,
            )
        )
    return BillingReport(
        period_start=period_start, period_end=period_end, clinic_timezone=clinic_tz, rows=rows
    )
