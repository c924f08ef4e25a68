"""Named scenarios: a simulated patient with known injected events and a ground truth.

A scenario builds a patient, injects events (``simulators.patients.events``) and states
what analytics should find: the events with their time range and the rule id expected
to fire, the rules that must *not* fire, and bands for summary statistics (with the value
observed in the generated data, by the simple formulas below).  The ground truth saves as
JSON with UTC ISO-8601 times (``...Z``) so analytics runs can be scored.

Scenarios whose contract is statistical (e.g. ``stable_t1``: TIR 70-85 %) draw the patient
with derived seeds until the generated data meets the stated bands (deterministic; almost
always the first draw), so a stated band always holds.

Rule ids are the ids of the analytics rules expected to fire (``RULE_*`` below, the
``id`` of a rule in ``analytics.rules.RULES``; tests/analytics/test_scenarios_truth.py
checks that they agree).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from device_profiles.model import Kind, Measurement
from readings import Reading
from simulators.patients import (
    DEFAULT_START,
    Adherence,
    BpCrisis,
    BpPattern,
    BpStage,
    DataGap,
    DiabetesType,
    FastingRise,
    GlycemicControl,
    HypoEpisode,
    Injection,
    PatientData,
    PatientProfile,
    default_devices,
    office_bp,
    simulate,
)
from simulators.patients.series import utc_datetimes
from simulators.patients.timebase import DatetimeArray, to_datetime64

RULE_URGENT_LOW_GLUCOSE = "urgent_low_glucose"  # any glucose < 54 mg/dL
RULE_URGENT_BP_CRISIS = "urgent_bp_crisis"  # systolic > 180 and/or diastolic > 120
RULE_TREND_FASTING_GLUCOSE = "trend_fasting_glucose_rising"  # fasting glucose rising
RULE_ADHERENCE_NO_DATA = "adherence_no_data"  # days without any reading
RULE_ADHERENCE_DECLINING = "adherence_declining"  # measuring less and less often
RULE_BP_HOME_AVERAGE = "bp_home_average_above_target"  # home average >= 130/80 (stage 1+)
RULE_BP_IRREGULAR_PULSE = "bp_irregular_pulse"  # cuff flags an irregular pulse
# Former constant name, kept for existing callers.
RULE_TREND_BP_HOME_AVERAGE = RULE_BP_HOME_AVERAGE
ALL_RULES = (
    RULE_URGENT_LOW_GLUCOSE,
    RULE_URGENT_BP_CRISIS,
    RULE_TREND_FASTING_GLUCOSE,
    RULE_ADHERENCE_NO_DATA,
    RULE_ADHERENCE_DECLINING,
    RULE_BP_HOME_AVERAGE,
    RULE_BP_IRREGULAR_PULSE,
)


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class ExpectedEvent:
    """Something analytics must find: ``rule_id`` should fire within [start, end] (UTC)."""

    type: str
    rule_id: str
    start: datetime
    end: datetime
    kind: Kind | None = None  # None: every device of the patient
    device: str | None = None
    details: Mapping[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "rule_id": self.rule_id,
            "start": iso_z(self.start),
            "end": iso_z(self.end),
            "kind": None if self.kind is None else str(self.kind),
            "device": self.device,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExpectedEvent:
        return cls(
            type=raw["type"],
            rule_id=raw["rule_id"],
            start=_parse_z(raw["start"]),
            end=_parse_z(raw["end"]),
            kind=None if raw.get("kind") is None else Kind(raw["kind"]),
            device=raw.get("device"),
            details=dict(raw.get("details", {})),
        )


@dataclass(frozen=True, slots=True)
class StatBand:
    """A summary statistic over the whole period that must lie in [low, high]."""

    metric: str
    kind: Kind
    low: float | None
    high: float | None
    observed: float

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": str(self.kind),
            "low": self.low,
            "high": self.high,
            "observed": self.observed,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StatBand:
        return cls(raw["metric"], Kind(raw["kind"]), raw["low"], raw["high"], raw["observed"])


@dataclass(frozen=True, slots=True)
class GroundTruth:
    scenario: str
    description: str
    seed: int  # the scenario seed asked for
    patient: Mapping[str, Any]  # the profile (incl. the patient seed actually used)
    period_start: datetime
    period_end: datetime
    devices: Mapping[Kind, str]
    events: tuple[ExpectedEvent, ...]
    stats: tuple[StatBand, ...]
    absent_rules: tuple[str, ...]  # rules that must not fire for this patient
    counts: Mapping[Kind, int]  # readings generated per kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "homevitals.ground-truth/1",
            "scenario": self.scenario,
            "description": self.description,
            "seed": self.seed,
            "patient": dict(self.patient),
            "period": {"start": iso_z(self.period_start), "end": iso_z(self.period_end)},
            "devices": {str(k): v for k, v in self.devices.items()},
            "events": [e.to_dict() for e in self.events],
            "stats": [s.to_dict() for s in self.stats],
            "absent_rules": list(self.absent_rules),
            "counts": {str(k): v for k, v in self.counts.items()},
        }

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GroundTruth:
        return cls(
            scenario=raw["scenario"],
            description=raw["description"],
            seed=raw["seed"],
            patient=raw["patient"],
            period_start=_parse_z(raw["period"]["start"]),
            period_end=_parse_z(raw["period"]["end"]),
            devices={Kind(k): v for k, v in raw["devices"].items()},
            events=tuple(ExpectedEvent.from_dict(e) for e in raw["events"]),
            stats=tuple(StatBand.from_dict(s) for s in raw["stats"]),
            absent_rules=tuple(raw["absent_rules"]),
            counts={Kind(k): v for k, v in raw["counts"].items()},
        )

    def event(self, rule_id: str) -> ExpectedEvent:
        for e in self.events:
            if e.rule_id == rule_id:
                return e
        raise KeyError(f"no expected {rule_id} event in {self.scenario}")

    def stat(self, metric: str) -> StatBand:
        for s in self.stats:
            if s.metric == metric:
                return s
        raise KeyError(f"no {metric} band in {self.scenario}")


def load_ground_truth(path: Path) -> GroundTruth:
    return GroundTruth.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True, slots=True, eq=False)
class ScenarioResult:
    name: str
    data: PatientData
    truth: GroundTruth

    @property
    def devices(self) -> Mapping[Kind, str]:
        return self.truth.devices

    def readings(self) -> list[Reading]:
        """Wire readings of the scenario's devices, in time order."""
        return self.data.readings(self.devices)

    def measurements(self, kind: Kind) -> list[Measurement]:
        return self.data.measurements(kind)

    def save_ground_truth(self, path: Path) -> Path:
        return self.truth.save(path)


# --- statistics (deliberately simple formulas) --------------------------------------------


def glucose_stats(values: NDArray[np.float64]) -> dict[str, float]:
    """Consensus CGM metrics (Battelino 2019) of a glucose series in mg/dL."""
    if values.size == 0:
        return {}
    g = values
    mean = float(g.mean())
    return {
        "mean_glucose": mean,
        "tir_70_180_pct": float(((g >= 70) & (g <= 180)).mean() * 100),
        "tbr_70_pct": float((g < 70).mean() * 100),
        "tbr_54_pct": float((g < 54).mean() * 100),
        "tar_180_pct": float((g > 180).mean() * 100),
        "tar_250_pct": float((g > 250).mean() * 100),
        "cv_pct": float(g.std() / mean * 100),
        "gmi_pct": 3.31 + 0.02392 * mean,
    }


def fasting_slope(data: PatientData, since: datetime) -> float:
    """Least-squares slope (mg/dL per day) of fasting fingersticks from ``since``."""
    pick = (data.smbg.meal == "fasting") & (data.smbg.time >= to_datetime64(since))
    t = data.smbg.time[pick]
    if t.size < 3:
        return float("nan")
    x = (t - t[0]).astype("timedelta64[s]").astype(np.float64) / 86_400.0
    return float(np.polyfit(x, data.smbg.glucose[pick], 1)[0])


def days_with_data(data: PatientData, kinds: tuple[Kind, ...]) -> int:
    local: list[DatetimeArray] = []
    for kind in kinds:
        series = data.series(kind)
        local.append(series.device_time)
    return int(np.unique(np.concatenate(local).astype("datetime64[D]")).size) if local else 0


# --- scenario machinery -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draft:
    """What a scenario builder decides for one attempt."""

    profile: PatientProfile
    injections: tuple[Injection, ...]
    kinds: tuple[Kind, ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    default_days: int
    min_days: int
    draft: Callable[[int, int, date], _Draft]  # (days, patient seed, start) -> draft
    judge: Callable[[PatientData, _Draft, Mapping[Kind, str]], _Judgement]


@dataclass(frozen=True, slots=True)
class _Judgement:
    events: tuple[ExpectedEvent, ...]
    stats: tuple[StatBand, ...]
    absent_rules: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return all(s.contains(s.observed) for s in self.stats)


MAX_ATTEMPTS = 25


def _patient_seed(seed: int, attempt: int) -> int:
    if attempt == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _local_for(profile: PatientProfile, start: date, day: int, clock: time) -> datetime:
    """UTC of ``clock`` on local day ``day`` from ``start`` (``_local`` for a draft: no
    ``PatientData`` exists yet)."""
    zone = ZoneInfo(profile.timezone)
    return datetime.combine(start + timedelta(days=day), clock, zone).astimezone(UTC)


def _local(data: PatientData, day: int, clock: time) -> datetime:
    return _local_for(data.profile, data.start, day, clock)


def _middle_day(days: int) -> int:
    """The day of an injected one-off event: mid-period, day 1 at the earliest."""
    return min(days - 1, max(1, days // 2))


def _cgm_bands(
    data: PatientData, bands: Mapping[str, tuple[float | None, float | None]]
) -> list[StatBand]:
    stats = glucose_stats(data.cgm.glucose)
    return [StatBand(m, Kind.CGM, lo, hi, stats[m]) for m, (lo, hi) in bands.items()]


def _bp_bands(
    data: PatientData,
    sbp: tuple[float | None, float | None],
    dbp: tuple[float | None, float | None],
) -> list[StatBand]:
    return [
        StatBand("home_sbp_mean", Kind.BLOOD_PRESSURE, *sbp, float(data.bp.systolic.mean())),
        StatBand("home_dbp_mean", Kind.BLOOD_PRESSURE, *dbp, float(data.bp.diastolic.mean())),
    ]


def _others(*present: str) -> tuple[str, ...]:
    return tuple(r for r in ALL_RULES if r not in present)


def _uneventful(
    data: PatientData,
    cgm: Mapping[str, tuple[float | None, float | None]],
    sbp: tuple[float | None, float | None],
    dbp: tuple[float | None, float | None],
) -> _Judgement:
    """A patient nothing happens to: only bands to meet, and no rule may fire."""
    stats = [*_cgm_bands(data, cgm), *_bp_bands(data, sbp, dbp)]
    return _Judgement((), tuple(stats), ALL_RULES)


GLUCOSE_KIT = (Kind.GLUCOSE, Kind.CGM, Kind.BLOOD_PRESSURE)
T2_KIT = (Kind.GLUCOSE, Kind.BLOOD_PRESSURE)


# stable_t1 ------------------------------------------------------------------------------


def _stable_t1_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "stable-t1",
        diabetes=DiabetesType.TYPE1,
        control=GlycemicControl.GOOD,
        bp_stage=BpStage.NORMAL,
        seed=seed,
    )
    return _Draft(profile, (), GLUCOSE_KIT)


def _stable_t1_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    bands = {
        "tir_70_180_pct": (70.0, 85.0),
        "tbr_70_pct": (None, 4.0),
        "tbr_54_pct": (None, 0.0),
        "cv_pct": (None, 36.0),
    }
    return _uneventful(data, bands, (None, 120.0), (None, 80.0))


# severe_hypo ---------------------------------------------------------------------------


def _severe_hypo_at(days: int, start: date, profile: PatientProfile) -> datetime:
    return _local_for(profile, start, _middle_day(days), time(15, 40))


def _severe_hypo_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "severe-hypo", diabetes=DiabetesType.TYPE1, control=GlycemicControl.GOOD, seed=seed
    )
    at = _severe_hypo_at(days, start, profile)
    return _Draft(profile, (HypoEpisode(at, nadir=42.0),), GLUCOSE_KIT)


def _below_interval(
    time_: DatetimeArray, values: NDArray[np.float64], around: datetime, threshold: float
) -> tuple[datetime, datetime] | None:
    near = np.abs((time_ - to_datetime64(around)).astype(np.int64)) <= 2 * 3600
    low = near & (values < threshold)
    if not low.any():
        return None
    times = utc_datetimes(time_[low])
    return times[0], times[-1]


def _severe_hypo_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    hypo = draft.injections[0]
    assert isinstance(hypo, HypoEpisode)

    def seen_by(kind: Kind, start: datetime, end: datetime) -> ExpectedEvent:
        return ExpectedEvent(
            type="severe_hypoglycemia",
            rule_id=RULE_URGENT_LOW_GLUCOSE,
            start=start,
            end=end,
            kind=kind,
            device=devices[kind],
            details={"nadir_mg_dl": hypo.nadir, "threshold_mg_dl": 54.0, "at": iso_z(hypo.at)},
        )

    # The fingerstick is checked around the nadir; the CGM wherever it reads below 54.
    window = timedelta(minutes=15)
    events = [seen_by(Kind.GLUCOSE, hypo.at - window, hypo.at + window)]
    cgm_low = _below_interval(data.cgm.time, data.cgm.glucose, hypo.at, 54.0)
    if cgm_low is not None:
        events.append(seen_by(Kind.CGM, *cgm_low))
    bands = {"tbr_54_pct": (0.0, 1.0)}
    return _Judgement(
        tuple(events), tuple(_cgm_bands(data, bands)), _others(RULE_URGENT_LOW_GLUCOSE)
    )


# rising_fasting -------------------------------------------------------------------------

RISE_DAYS = 21
RISE_SLOPE = 3.0


def _rising_fasting_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "rising-fasting",
        diabetes=DiabetesType.TYPE2,
        control=GlycemicControl.GOOD,
        bp_stage=BpStage.ELEVATED,
        seed=seed,
    )
    rise = FastingRise(start_day=days - RISE_DAYS, days=RISE_DAYS, slope=RISE_SLOPE)
    return _Draft(profile, (rise,), T2_KIT)


def _rising_fasting_judge(
    data: PatientData, draft: _Draft, devices: Mapping[Kind, str]
) -> _Judgement:
    rise = draft.injections[0]
    assert isinstance(rise, FastingRise)
    since = _local(data, rise.start_day, time())
    slope = fasting_slope(data, since)
    event = ExpectedEvent(
        type="rising_fasting_glucose",
        rule_id=RULE_TREND_FASTING_GLUCOSE,
        start=since,
        end=data.period_end,
        kind=Kind.GLUCOSE,
        device=devices[Kind.GLUCOSE],
        details={
            "slope_mg_dl_per_day": rise.slope,
            "days": rise.days,
            "total_rise_mg_dl": rise.slope * rise.days,
        },
    )
    band = StatBand("fasting_slope_mg_dl_per_day", Kind.GLUCOSE, 2.0, 4.0, slope)
    return _Judgement((event,), (band,), (RULE_URGENT_LOW_GLUCOSE, RULE_URGENT_BP_CRISIS))


# hypertensive_crisis ----------------------------------------------------------------------


def _crisis_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "bp-crisis", diabetes=DiabetesType.NONE, bp_stage=BpStage.STAGE1, seed=seed
    )
    at = _local_for(profile, start, _middle_day(days), time(10, 20))
    return _Draft(profile, (BpCrisis(at, 194.0, 124.0),), (Kind.BLOOD_PRESSURE,))


def _crisis_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    crisis = draft.injections[0]
    assert isinstance(crisis, BpCrisis)
    event = ExpectedEvent(
        type="hypertensive_crisis",
        rule_id=RULE_URGENT_BP_CRISIS,
        start=crisis.at,
        end=crisis.at + timedelta(minutes=2),
        kind=Kind.BLOOD_PRESSURE,
        device=devices[Kind.BLOOD_PRESSURE],
        details={"systolic": crisis.systolic, "diastolic": crisis.diastolic, "readings": 2},
    )
    stats = _bp_bands(data, (128.0, 142.0), (80.0, 90.0))
    absent = (RULE_URGENT_LOW_GLUCOSE, RULE_TREND_FASTING_GLUCOSE, RULE_ADHERENCE_NO_DATA)
    return _Judgement((event,), tuple(stats), absent)


# data_gap -------------------------------------------------------------------------------

GAP_DAYS = 10


def _gap_start(days: int) -> int:
    return max(2, min(days // 3, days - GAP_DAYS - 2))


def _data_gap_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "data-gap",
        diabetes=DiabetesType.TYPE2,
        control=GlycemicControl.FAIR,
        bp_stage=BpStage.STAGE1,
        seed=seed,
    )
    return _Draft(profile, (DataGap(_gap_start(days), GAP_DAYS),), T2_KIT)


def _data_gap_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    gap = draft.injections[0]
    assert isinstance(gap, DataGap)
    start = _local(data, gap.start_day, time())
    end = _local(data, gap.start_day + gap.days, time())
    times = np.concatenate([data.smbg.time, data.bp.time])
    before = times[times < to_datetime64(start)]
    after = times[times >= to_datetime64(end)]
    details: dict[str, float | int | str] = {"gap_days": gap.days}
    if before.size:
        details["last_reading_before"] = iso_z(utc_datetimes(before.max(keepdims=True))[0])
    if after.size:
        details["first_reading_after"] = iso_z(utc_datetimes(after.min(keepdims=True))[0])
    event = ExpectedEvent(
        type="data_gap", rule_id=RULE_ADHERENCE_NO_DATA, start=start, end=end, details=details
    )
    observed = float(days_with_data(data, draft.kinds))
    band = StatBand("days_with_data", Kind.GLUCOSE, None, float(data.days - gap.days), observed)
    return _Judgement((event,), (band,), (RULE_URGENT_LOW_GLUCOSE, RULE_URGENT_BP_CRISIS))


# stage2_hypertension, masked, white coat --------------------------------------------------


def _home_average_event(
    data: PatientData, devices: Mapping[Kind, str], stage: str
) -> ExpectedEvent:
    return ExpectedEvent(
        type=f"hypertension_{stage}",
        rule_id=RULE_BP_HOME_AVERAGE,
        start=data.period_start,
        end=data.period_end,
        kind=Kind.BLOOD_PRESSURE,
        device=devices[Kind.BLOOD_PRESSURE],
        details={
            "stage": stage,
            "home_sbp_mean": round(float(data.bp.systolic.mean()), 1),
            "home_dbp_mean": round(float(data.bp.diastolic.mean()), 1),
        },
    )


@dataclass(frozen=True, slots=True)
class _HomeBp:
    """A cuff-only patient judged by home averages; these scenarios differ only in data."""

    profile_name: str
    stage: BpStage
    pattern: BpPattern
    sbp: tuple[float | None, float | None]  # band of the home systolic mean
    dbp: tuple[float | None, float | None]
    event_stage: str | None  # stage of the expected home-average event; None: no rule fires

    def draft(self, days: int, seed: int, start: date) -> _Draft:
        profile = PatientProfile(
            self.profile_name,
            diabetes=DiabetesType.NONE,
            bp_stage=self.stage,
            bp_pattern=self.pattern,
            seed=seed,
        )
        return _Draft(profile, (), (Kind.BLOOD_PRESSURE,))

    def judge(self, data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
        stats = tuple(_bp_bands(data, self.sbp, self.dbp))
        if self.event_stage is None:
            return _Judgement((), stats, ALL_RULES)
        event = _home_average_event(data, devices, self.event_stage)
        return _Judgement((event,), stats, _others(RULE_BP_HOME_AVERAGE))


_STAGE2 = _HomeBp(
    "stage2-htn", BpStage.STAGE2, BpPattern.SUSTAINED, (140.0, 178.0), (90.0, 118.0), "stage2"
)
_MASKED = _HomeBp(
    "masked-htn", BpStage.STAGE1, BpPattern.MASKED, (130.0, 139.9), (80.0, 89.9), "stage1"
)
_WHITE_COAT = _HomeBp(
    "white-coat", BpStage.NORMAL, BpPattern.WHITE_COAT, (None, 124.9), (None, 79.9), None
)


# nondiabetic_normal, declining_adherence, irregular_pulse ---------------------------------


def _normal_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "nondiabetic", diabetes=DiabetesType.NONE, bp_stage=BpStage.NORMAL, seed=seed
    )
    return _Draft(profile, (), GLUCOSE_KIT)


def _normal_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    bands = {
        "mean_glucose": (80.0, 120.0),
        "tir_70_180_pct": (95.0, 100.0),
        "tbr_54_pct": (0.0, 0.0),
    }
    return _uneventful(data, bands, (None, 124.9), (None, 79.9))


def _declining_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "declining",
        diabetes=DiabetesType.TYPE2,
        control=GlycemicControl.FAIR,
        bp_stage=BpStage.ELEVATED,
        adherence=Adherence.DECLINING,
        seed=seed,
    )
    return _Draft(profile, (), T2_KIT)


def _readings_per_day(data: PatientData, first: int, last: int) -> float:
    start, end = _local(data, first, time()), _local(data, last, time())
    t = np.concatenate([data.smbg.time, data.bp.time])
    inside = (t >= to_datetime64(start)) & (t < to_datetime64(end))
    return float(inside.sum()) / max(1, last - first)


def _declining_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    half = data.days // 2
    first = _readings_per_day(data, 0, half)
    second = _readings_per_day(data, half, data.days)
    event = ExpectedEvent(
        type="declining_adherence",
        rule_id=RULE_ADHERENCE_DECLINING,
        start=_local(data, half, time()),
        end=data.period_end,
        details={"readings_per_day_first_half": round(first, 2), "second_half": round(second, 2)},
    )
    ratio = StatBand("readings_per_day_ratio_second_first", Kind.GLUCOSE, None, 0.7, second / first)
    return _Judgement((event,), (ratio,), (RULE_URGENT_LOW_GLUCOSE, RULE_URGENT_BP_CRISIS))


def _irregular_draft(days: int, seed: int, start: date) -> _Draft:
    profile = PatientProfile(
        "irregular-pulse",
        diabetes=DiabetesType.NONE,
        bp_stage=BpStage.STAGE1,
        irregular_pulse=True,
        seed=seed,
    )
    return _Draft(profile, (), (Kind.BLOOD_PRESSURE,))


def _irregular_judge(data: PatientData, draft: _Draft, devices: Mapping[Kind, str]) -> _Judgement:
    flagged = data.bp.time[data.bp.irregular]
    times = utc_datetimes(flagged)
    events: tuple[ExpectedEvent, ...] = ()
    if times:
        events = (
            ExpectedEvent(
                type="irregular_pulse",
                rule_id=RULE_BP_IRREGULAR_PULSE,
                start=times[0],
                end=times[-1],
                kind=Kind.BLOOD_PRESSURE,
                device=devices[Kind.BLOOD_PRESSURE],
                details={"flagged_readings": len(times)},
            ),
        )
    band = StatBand("irregular_pulse_readings", Kind.BLOOD_PRESSURE, 3.0, None, float(len(times)))
    absent = (RULE_URGENT_LOW_GLUCOSE, RULE_URGENT_BP_CRISIS, RULE_ADHERENCE_NO_DATA)
    return _Judgement(events, (band,), absent)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "stable_t1",
            "Well-controlled type 1 (CGM + meter + cuff): TIR 70-85 %, TBR < 4 %, no events.",
            14,
            14,
            _stable_t1_draft,
            _stable_t1_judge,
        ),
        Scenario(
            "severe_hypo",
            "Type 1 with one severe hypoglycaemia (nadir 42 mg/dL, checked by fingerstick).",
            14,
            3,
            _severe_hypo_draft,
            _severe_hypo_judge,
        ),
        Scenario(
            "rising_fasting",
            "Type 2 whose fasting glucose rises 3 mg/dL a day over the last three weeks.",
            35,
            28,
            _rising_fasting_draft,
            _rising_fasting_judge,
        ),
        Scenario(
            "hypertensive_crisis",
            "Stage 1 hypertension with one crisis session (194/124, repeated a minute later).",
            14,
            3,
            _crisis_draft,
            _crisis_judge,
        ),
        Scenario(
            "data_gap",
            "Type 2 with hypertension who records nothing for ten consecutive days.",
            30,
            GAP_DAYS + 6,
            _data_gap_draft,
            _data_gap_judge,
        ),
        Scenario(
            "stage2_hypertension",
            "Sustained stage 2 hypertension: home average >= 140/90.",
            14,
            7,
            _STAGE2.draft,
            _STAGE2.judge,
        ),
        Scenario(
            "masked_hypertension",
            "Masked hypertension: office normal, home average stage 1 (130-139 / 80-89).",
            14,
            7,
            _MASKED.draft,
            _MASKED.judge,
        ),
        Scenario(
            "white_coat",
            "White-coat pattern: office hypertensive, home normal; no home rule may fire.",
            14,
            7,
            _WHITE_COAT.draft,
            _WHITE_COAT.judge,
        ),
        Scenario(
            "nondiabetic_normal",
            "Non-diabetic, normal BP: mean glucose 80-120 mg/dL, TIR > 95 %, no events.",
            14,
            3,
            _normal_draft,
            _normal_judge,
        ),
        Scenario(
            "declining_adherence",
            "Type 2 who measures less and less: second-half readings/day < 70 % of the first.",
            30,
            14,
            _declining_draft,
            _declining_judge,
        ),
        Scenario(
            "irregular_pulse",
            "Stage 1 hypertension with episodes of an irregular pulse flagged by the cuff.",
            30,
            14,
            _irregular_draft,
            _irregular_judge,
        ),
    )
}


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def _profile_dict(profile: PatientProfile) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in profile.__dataclass_fields__:
        value = getattr(profile, name)
        out[name] = str(value) if isinstance(value, str) else value
    sys_office, dia_office = office_bp(profile)
    out["office_bp_expected"] = [sys_office, dia_office]
    return out


def run_scenario(
    name: str,
    days: int | None = None,
    seed: int = 0,
    start: date = DEFAULT_START,
    devices: Mapping[Kind, str] | None = None,
) -> ScenarioResult:
    """Build scenario ``name`` over ``days`` local days from ``start`` (deterministic)."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    days = scenario.default_days if days is None else days
    if days < scenario.min_days:
        raise ValueError(f"scenario {name} needs at least {scenario.min_days} days, not {days}")
    last: tuple[PatientData, _Draft, _Judgement, dict[Kind, str]] | None = None
    for attempt in range(MAX_ATTEMPTS):
        draft = scenario.draft(days, _patient_seed(seed, attempt), start)
        pid = draft.profile.patient_id
        all_devices = {**default_devices(pid), **(devices or {})}
        kit = {k: all_devices[k] for k in draft.kinds}
        data = simulate(draft.profile, days, start, draft.injections)
        judgement = scenario.judge(data, draft, kit)
        last = (data, draft, judgement, kit)
        if judgement.accepted:
            break
    else:
        raise RuntimeError(f"scenario {name}: no draw met its bands in {MAX_ATTEMPTS} attempts")
    assert last is not None
    data, draft, judgement, kit = last
    truth = GroundTruth(
        scenario=name,
        description=scenario.description,
        seed=seed,
        patient=_profile_dict(draft.profile),
        period_start=data.period_start,
        period_end=data.period_end,
        devices=kit,
        events=judgement.events,
        stats=judgement.stats,
        absent_rules=judgement.absent_rules,
        counts={k: len(data.series(k)) for k in kit},
    )
    return ScenarioResult(name=name, data=data, truth=truth)


__all__ = [
    "ALL_RULES",
    "RULE_ADHERENCE_DECLINING",
    "RULE_ADHERENCE_NO_DATA",
    "RULE_BP_HOME_AVERAGE",
    "RULE_BP_IRREGULAR_PULSE",
    "RULE_TREND_BP_HOME_AVERAGE",
    "RULE_TREND_FASTING_GLUCOSE",
    "RULE_URGENT_BP_CRISIS",
    "RULE_URGENT_LOW_GLUCOSE",
    "SCENARIOS",
    "ExpectedEvent",
    "GroundTruth",
    "Scenario",
    "ScenarioResult",
    "StatBand",
    "glucose_stats",
    "load_ground_truth",
    "run_scenario",
    "scenario_names",
]
