"""Blood pressure: a circadian level, a home measurement schedule and a cuff model.

The level follows the patient's home stage (daytime means 114/73 normal, 124/75 elevated,
134/84 stage 1, 150/95 stage 2, jittered per patient) with

- a nocturnal dip: ``nocturnal_dip`` (fraction, 0.10-0.20 for a "dipper") lower while
  asleep (23:30-06:00 local, half-hour ramps);
- a morning surge: ``morning_surge`` mmHg systolic (60 % of it diastolic) on waking,
  peaking near 07:45 and gone by 09:15, so readings before the morning medication run
  higher than the evening ones;
- about 3/2 mmHg lower evening readings, day-to-day drift, and session and reading noise.

Home schedule (ESH/AHA home BP monitoring): a morning session (about 06:45, an hour later at
weekends) and an evening session (about 20:30), each two readings a minute apart; the
second reading of a pair is on average 2/1 mmHg lower.  Adherence decides which sessions
happen.  The cuff flags body movement (1.5 % of readings) and, during episodes of an
irregular rhythm (``PatientProfile.irregular_pulse``), an irregular pulse.

White-coat and masked patterns do not change the home readings (see ``BpPattern``);
``office_bp`` gives what the office would measure.  Background readings stay below
178/118 so only an injected ``BpCrisis`` crosses the crisis threshold (> 180 / > 120).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

from simulators.patients.adherence import AdherencePlan
from simulators.patients.events import BpCrisis
from simulators.patients.profile import BpPattern, BpStage, PatientProfile
from simulators.patients.series import (
    CUFF_PRESSURE_RANGE,
    CUFF_PULSE_RANGE,
    RANGE_HIGH,
    RANGE_LOW,
    RANGE_OK,
    BpSeries,
)
from simulators.patients.timebase import (
    DatetimeArray,
    hour_of_day,
    local_to_utc,
    to_datetime64,
    utc_to_local,
)

STAGE_MEANS: dict[BpStage, tuple[float, float]] = {
    BpStage.NORMAL: (114.0, 73.0),
    BpStage.ELEVATED: (124.0, 75.0),
    BpStage.STAGE1: (134.0, 84.0),
    BpStage.STAGE2: (150.0, 95.0),
}
_STAGE_JITTER: dict[BpStage, tuple[float, float]] = {
    BpStage.NORMAL: (3.0, 2.0),
    BpStage.ELEVATED: (2.0, 1.5),
    BpStage.STAGE1: (2.0, 1.5),
    BpStage.STAGE2: (3.0, 2.0),
}
BACKGROUND_MAX = (178.0, 118.0)
_OFFICE_DELTA: dict[BpPattern, tuple[float, float]] = {
    BpPattern.SUSTAINED: (3.0, 2.0),
    BpPattern.WHITE_COAT: (22.0, 11.0),
    BpPattern.MASKED: (-12.0, -7.0),
}


@dataclass(frozen=True, slots=True)
class BpParams:
    systolic: float  # daytime home mean
    diastolic: float
    pulse: float


def bp_params(profile: PatientProfile, rng: np.random.Generator) -> BpParams:
    sys_mean, dia_mean = STAGE_MEANS[profile.bp_stage]
    js, jd = _STAGE_JITTER[profile.bp_stage]
    return BpParams(
        systolic=sys_mean + float(rng.uniform(-js, js)),
        diastolic=dia_mean + float(rng.uniform(-jd, jd)),
        pulse=float(rng.uniform(62, 80)),
    )


def office_bp(profile: PatientProfile) -> tuple[float, float]:
    """Expected office systolic/diastolic mean for the patient's stage and pattern."""
    sys_mean, dia_mean = STAGE_MEANS[profile.bp_stage]
    ds, dd = _OFFICE_DELTA[profile.bp_pattern]
    return sys_mean + ds, dia_mean + dd


def circadian(
    profile: PatientProfile, hours: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Multiplicative night factor and additive morning-surge mmHg (systolic) by local hour."""
    night = np.clip((hours - 23.0) / 0.5, 0.0, 1.0) + np.clip((6.5 - hours) / 0.5, 0.0, 1.0)
    night = np.clip(night, 0.0, 1.0)
    factor = 1.0 - profile.nocturnal_dip * night
    surge_window = (hours > 6.25) & (hours < 9.25)
    surge = np.where(surge_window, np.sin(np.pi * (hours - 6.25) / 3.0) ** 2, 0.0)
    evening = np.where((hours > 19.0) & (hours < 23.0), 1.0, 0.0)
    return factor, profile.morning_surge * surge - 3.0 * evening


def ambulatory_bp(
    profile: PatientProfile, params: BpParams, local_time: DatetimeArray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Noise-free systolic/diastolic level at the given local times (an ABPM-like curve)."""
    factor, surge = circadian(profile, hour_of_day(local_time))
    return params.systolic * factor + surge, params.diastolic * factor + 0.6 * surge


def _truncated(rng: np.random.Generator, sd: float, n: int) -> NDArray[np.float64]:
    return np.asarray(sd * np.clip(rng.standard_normal(n), -2.5, 2.5), dtype=np.float64)


def _irregular_days(
    profile: PatientProfile, days: int, rng: np.random.Generator
) -> NDArray[np.bool_]:
    episode = np.zeros(days, dtype=bool)
    if not profile.irregular_pulse or days == 0:
        return episode
    for _ in range(max(1, int(rng.poisson(days / 12.0)))):
        first = int(rng.integers(0, days))
        episode[first : first + int(rng.integers(1, 5))] = True
    return episode


def sample_home_bp(
    profile: PatientProfile,
    start: date,
    days: int,
    plan: AdherencePlan,
    rng: np.random.Generator,
    *,
    crises: tuple[BpCrisis, ...] = (),
) -> BpSeries:
    params = bp_params(profile, rng)
    day = np.arange(days, dtype=np.int64)
    weekend = ((np.datetime64(start, "D") + day).astype("datetime64[D]").view("int64") - 4) % 7 >= 5
    morning = 6.75 * 60 + 60.0 * weekend + np.clip(rng.normal(0, 30, days), -75, 75)
    evening = 20.5 * 60 + np.clip(rng.normal(0, 40, days), -90, 90)
    session_day = np.concatenate([day, day])
    session_min = np.concatenate([morning, evening])
    session_name = np.concatenate([np.full(days, "morning"), np.full(days, "evening")])
    done = plan.slot_mask(session_day, rng)
    session_day, session_min, session_name = (
        session_day[done],
        session_min[done],
        session_name[done],
    )
    local0 = (
        np.datetime64(start, "s")
        + session_day * np.timedelta64(86_400, "s")
        + (session_min * 60).astype(np.int64) * np.timedelta64(1, "s")
    )
    utc0 = local_to_utc(local0, profile.timezone)
    m = utc0.size

    drift_s = rng.normal(0.0, 4.0, days + 1)
    drift_d = rng.normal(0.0, 3.0, days + 1)
    level_s, level_d = ambulatory_bp(profile, params, local0)
    under_s = level_s + drift_s[session_day] + _truncated(rng, 6.0, m)
    under_d = level_d + drift_d[session_day] + _truncated(rng, 4.0, m)
    pulse0 = params.pulse + 4.0 * (session_name == "morning") + _truncated(rng, 5.0, m)
    episode = _irregular_days(profile, days, rng)[session_day]

    gap = np.timedelta64(1, "s") * rng.integers(60, 76, m)
    time = np.concatenate([utc0, utc0 + gap])
    sys = np.concatenate([under_s, under_s - 2.0]) + _truncated(rng, 3.0, 2 * m)
    dia = np.concatenate([under_d, under_d - 1.0]) + _truncated(rng, 2.0, 2 * m)
    pulse = np.concatenate([pulse0, pulse0 - 1.0]) + _truncated(rng, 2.0, 2 * m)
    irregular_ep = np.concatenate([episode, episode])
    pulse = pulse + irregular_ep * rng.normal(15.0, 10.0, 2 * m)
    names = np.concatenate([session_name, session_name])
    sys = np.clip(sys, 85.0, BACKGROUND_MAX[0])
    dia = np.clip(np.minimum(dia, sys - 20.0), 45.0, BACKGROUND_MAX[1])

    for crisis in crises:
        at = to_datetime64(crisis.at)
        second = at + np.timedelta64(int(rng.integers(60, 76)), "s")
        time = np.concatenate([time, np.asarray([at, second], dtype="datetime64[s]")])
        sys = np.concatenate([sys, [crisis.systolic, crisis.systolic - float(rng.uniform(2, 6))]])
        dia = np.concatenate([dia, [crisis.diastolic, crisis.diastolic - float(rng.uniform(1, 3))]])
        pulse = np.concatenate([pulse, rng.normal(92.0, 4.0, 2)])
        irregular_ep = np.concatenate([irregular_ep, [False, False]])
        names = np.concatenate([names, ["extra", "extra"]])

    order = np.argsort(time, kind="stable")
    time = time[order].astype("datetime64[s]")
    sys, dia, pulse = np.rint(sys[order]), np.rint(dia[order]), np.rint(pulse[order])
    irregular_ep, names = irregular_ep[order], names[order]
    n = time.size
    irregular = np.where(irregular_ep, rng.random(n) < 0.85, rng.random(n) < 0.01)
    movement = rng.random(n) < 0.015
    lo, hi = CUFF_PRESSURE_RANGE
    sys, dia = np.clip(sys, lo, hi), np.clip(dia, lo, hi)
    plo, phi = CUFF_PULSE_RANGE
    pulse_flag = np.where(pulse < plo, RANGE_LOW, np.where(pulse > phi, RANGE_HIGH, RANGE_OK))
    pulse = np.clip(pulse, plo, phi)
    device_time = utc_to_local(time, profile.timezone) + np.timedelta64(profile.clock_skew_s, "s")
    return BpSeries(
        time=time,
        device_time=device_time,
        systolic=sys,
        diastolic=dia,
        mean_arterial=np.rint(dia + (sys - dia) / 3.0),
        pulse=pulse,
        irregular=irregular,
        movement=movement,
        pulse_flag=pulse_flag.astype(np.int8),
        session=names,
        skew_s=profile.clock_skew_s,
    )
