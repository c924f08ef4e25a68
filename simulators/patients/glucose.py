"""Glucose: a small physiological model, a CGM sensor model and a fingerstick schedule.

Blood glucose on a 5-minute grid is ``G = basal(t) + x(t)``:

- ``basal`` holds the patient's fasting level, a dawn phenomenon (a rise from about 04:00
  to 07:00 local that lasts until breakfast and fades by 11:00), slow day-to-day drift
  and, when injected, a fasting trend.
- ``x`` is a first-order (leaky) integrator ``x[k] = (1 - a) x[k-1] + u[k]`` of the
  inputs: carbohydrate appearance after meals (gamma-shaped, peaking 40-55 min after
  eating), meal insulin for type 1 (slower, peaking at 75 min, dosed with a lognormal
  carb-counting error), exercise uptake and process noise.  The leak ``a`` is the
  patient's glucose clearance: fast for non-diabetic people (tau 35 min), slow for type 2
  (2.5 h) and type 1 (4 h, basal and correction insulin only).  Being linear, the whole
  series is one ``lfilter`` call.
- Background hypoglycaemic episodes (type 1) are smooth dips to 58-66 mg/dL followed by a
  treatment rebound.  The background is then softly bounded to 64-340 mg/dL (non-diabetic
  72-175) so that urgent thresholds are crossed only by injected events.

The CGM reads interstitial glucose: a first-order lag (tau 7 min) of blood glucose, a
per-sensor calibration gain/offset, AR(1) noise (sd 4 mg/dL), 10-day sensor sessions with
a 2-hour warm-up without data, and short signal-loss gaps.  The meter samples capillary
blood with ISO 15197-like error (sd max(4 mg/dL, 4.5 %), truncated at 2 sd).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from numpy.typing import NDArray
from scipy import signal

from device_profiles.model import MGDL_PER_MMOLL
from simulators.patients.adherence import AdherencePlan
from simulators.patients.events import FastingRise, HypoEpisode
from simulators.patients.profile import DiabetesType, GlycemicControl, PatientProfile
from simulators.patients.series import (
    CGM_RANGE_MGDL,
    METER_RANGE_MGDL,
    METER_RANGE_MMOLL,
    RANGE_HIGH,
    RANGE_LOW,
    RANGE_OK,
    CgmSeries,
    SmbgSeries,
    TrueGlucose,
)
from simulators.patients.timebase import (
    STEP_S,
    STEPS_PER_DAY,
    DatetimeArray,
    grid,
    hour_of_day,
    local_midnight_utc,
    local_to_utc,
    to_datetime64,
    utc_to_local,
)

MEALS = ("breakfast", "lunch", "dinner", "snack")
_MEAL_CLOCK_H = {"breakfast": 7.25, "lunch": 12.5, "dinner": 18.75, "snack": 21.5}
_MEAL_CLOCK_SD_MIN = {"breakfast": 30.0, "lunch": 35.0, "dinner": 40.0, "snack": 30.0}
_MEAL_CARBS_G = {"breakfast": (45.0, 12.0), "lunch": (60.0, 15.0), "dinner": (70.0, 18.0)}
SNACK_PROBABILITY = 0.3
# Soft bounds of the diabetic background: with the sensor and meter errors bounded below,
# no background reading reaches the urgent-low threshold (54 mg/dL).
BACKGROUND_FLOOR = 64.0
BACKGROUND_CEILING = 340.0
# Fingerstick slots in the order a patient adds them as they check more often.
SMBG_SLOTS = (
    "fasting",
    "preprandial_dinner",
    "bedtime",
    "preprandial_lunch",
    "postprandial_dinner",
    "postprandial_breakfast",
)


@dataclass(frozen=True, slots=True)
class GlucoseParams:
    basal: float  # fasting level, mg/dL
    dawn: float  # dawn-phenomenon rise, mg/dL
    tau_min: float  # clearance time constant
    carb_gain: float  # mg/dL per gram of carbohydrate before clearance
    carb_peak_min: float
    insulin_peak_min: float | None  # meal insulin (type 1); None: none
    bolus_log_sd: float  # carb-counting error of the meal bolus
    bolus_log_bias: float  # < 0: meals tend to be under-dosed (post-meal highs)
    noise_sd: float  # per-step process noise, mg/dL
    day_sd: float  # day-to-day drift of the basal level
    hypo_per_day: float  # background episodes (type 1)
    exercise_per_week: float
    exercise_drop: float  # mg/dL
    floor: float
    ceiling: float


def glucose_params(profile: PatientProfile, rng: np.random.Generator) -> GlucoseParams:
    kind, control = profile.diabetes, profile.control
    if kind is DiabetesType.NONE:
        return GlucoseParams(
            basal=float(rng.uniform(84, 94)),
            dawn=4.0,
            tau_min=35.0,
            carb_gain=2.1,
            carb_peak_min=40.0,
            insulin_peak_min=None,
            bolus_log_sd=0.0,
            bolus_log_bias=0.0,
            noise_sd=1.1,
            day_sd=3.0,
            hypo_per_day=0.0,
            exercise_per_week=2.5,
            exercise_drop=10.0,
            floor=72.0,
            ceiling=175.0,
        )
    if kind is DiabetesType.TYPE2:
        basal = {GlycemicControl.GOOD: 112.0, GlycemicControl.FAIR: 128.0}.get(control, 150.0)
        return GlucoseParams(
            basal=basal + float(rng.uniform(-8, 8)),
            dawn=float(rng.uniform(12, 22)),
            tau_min=150.0,
            carb_gain={GlycemicControl.GOOD: 1.6, GlycemicControl.FAIR: 2.2}.get(control, 2.4),
            carb_peak_min=55.0,
            insulin_peak_min=None,
            bolus_log_sd=0.0,
            bolus_log_bias=0.0,
            noise_sd=1.6,
            day_sd=9.0,
            hypo_per_day=0.0,
            exercise_per_week=2.0,
            exercise_drop=20.0,
            floor=BACKGROUND_FLOOR,
            ceiling=BACKGROUND_CEILING,
        )
    basal = {GlycemicControl.GOOD: 134.0, GlycemicControl.FAIR: 150.0}.get(control, 185.0)
    return GlucoseParams(
        basal=basal + float(rng.uniform(-3, 3)),
        dawn=float(rng.uniform(15, 25)),
        tau_min=240.0,
        carb_gain=5.5,
        carb_peak_min=45.0,
        insulin_peak_min=75.0,
        bolus_log_sd={GlycemicControl.GOOD: 0.3, GlycemicControl.FAIR: 0.4}.get(control, 0.5),
        noise_sd={GlycemicControl.GOOD: 1.8, GlycemicControl.FAIR: 2.4}.get(control, 3.0),
        day_sd={GlycemicControl.GOOD: 10.0, GlycemicControl.FAIR: 14.0}.get(control, 18.0),
        bolus_log_bias=-0.12,
        hypo_per_day={GlycemicControl.GOOD: 0.15, GlycemicControl.FAIR: 0.3}.get(control, 0.4),
        exercise_per_week=2.5,
        exercise_drop=25.0,
        floor=BACKGROUND_FLOOR,
        ceiling=BACKGROUND_CEILING,
    )


@dataclass(frozen=True, slots=True, eq=False)
class MealPlan:
    """Meals of the period (and the warm-up day before it), by local clock."""

    day: NDArray[np.int64]  # day index in the period (-1: warm-up)
    name: NDArray[np.str_]
    local_time: DatetimeArray
    time: DatetimeArray  # UTC
    carbs: NDArray[np.float64]  # grams

    def of(self, name: str) -> tuple[NDArray[np.int64], DatetimeArray]:
        """Day index and local time of every meal called ``name``."""
        pick = self.name == name
        return self.day[pick], self.local_time[pick]


def plan_meals(
    profile: PatientProfile, start: date, days: int, rng: np.random.Generator
) -> MealPlan:
    day_idx: list[int] = []
    names: list[str] = []
    minutes: list[float] = []
    carbs: list[float] = []
    for d in range(-1, days + 1):
        weekend = (start + timedelta(days=d)).weekday() >= 5
        for meal in MEALS:
            if meal == "snack" and rng.random() >= SNACK_PROBABILITY:
                continue
            clock = _MEAL_CLOCK_H[meal] * 60 + (60.0 if weekend and meal == "breakfast" else 0.0)
            offset = float(np.clip(rng.normal(0.0, _MEAL_CLOCK_SD_MIN[meal]), -75, 75))
            mean, sd = _MEAL_CARBS_G.get(meal, (20.0, 6.0))
            day_idx.append(d)
            names.append(meal)
            minutes.append(clock + offset)
            carbs.append(max(5.0, float(rng.normal(mean, sd))))
    base = np.datetime64(start, "s")
    local = (
        base
        + np.asarray(day_idx, dtype=np.int64) * np.timedelta64(86_400, "s")
        + (np.asarray(minutes) * 60).astype(np.int64) * np.timedelta64(1, "s")
    )
    return MealPlan(
        day=np.asarray(day_idx, dtype=np.int64),
        name=np.asarray(names),
        local_time=local,
        time=local_to_utc(local, profile.timezone),
        carbs=np.asarray(carbs, dtype=np.float64),
    )


def first_order(
    u: NDArray[np.float64], pole: float, start: float | None = None
) -> NDArray[np.float64]:
    """``y[k] = pole * y[k-1] + u[k]`` (one ``lfilter`` call); ``start``: the steady
    state ``y[-1]`` for a constant input ``start * (1 - pole)`` (no start-up transient)."""
    if start is None:
        y = signal.lfilter([1.0], [1.0, -pole], u)
    else:
        y, _ = signal.lfilter([1.0], [1.0, -pole], u, zi=[pole * start])
    return np.asarray(y, dtype=np.float64)


def _gamma_kernel(peak_min: float, hours: float = 8.0) -> NDArray[np.float64]:
    t = (np.arange(int(hours * 60 / 5)) + 0.5) * 5.0
    k = t * np.exp(-t / peak_min)
    return np.asarray(k / k.sum(), dtype=np.float64)


def _impulses(
    grid0: np.datetime64, n: int, times: DatetimeArray, amounts: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Amounts placed on the grid at ``times``, split linearly between neighbouring steps."""
    out = np.zeros(n + 1)
    pos = (times - grid0).astype("timedelta64[s]").astype(np.float64) / STEP_S
    inside = (pos >= 0) & (pos < n - 1)
    pos, amounts = pos[inside], amounts[inside]
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    np.add.at(out, lo, amounts * (1 - frac))
    np.add.at(out, lo + 1, amounts * frac)
    return out[:n]


def _convolve(impulses: NDArray[np.float64], kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.convolve(impulses, kernel)[: impulses.size]


def _counter_regulation(g: NDArray[np.float64]) -> NDArray[np.float64]:
    """Glucagon and adrenaline slow a fall: below about 95 mg/dL only half of a downward
    deviation shows (smoothly, so the series stays differentiable)."""
    knee, w = 95.0, 6.0
    return np.asarray(g + 0.5 * w * np.logaddexp(0.0, (knee - g) / w), dtype=np.float64)


def _soft_bounds(g: NDArray[np.float64], floor: float, ceiling: float) -> NDArray[np.float64]:
    w = 4.0
    g = floor + w * np.logaddexp(0.0, (g - floor) / w)
    return np.asarray(ceiling - w * np.logaddexp(0.0, (ceiling - g) / w), dtype=np.float64)


def hypo_dip(minutes: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Shape of an episode around its nadir (minutes from it): the dip (1 at the nadir,
    falling over 60 min, held 5 min, recovering over 30 min once treated) and the treatment
    rebound (a bump peaking about 50 min after the nadir)."""
    m = minutes
    dip = np.zeros_like(m)
    fall = (m >= -60) & (m < 0)
    dip[fall] = 0.5 * (1 + np.cos(np.pi * m[fall] / 60))
    dip[(m >= 0) & (m <= 5)] = 1.0
    rise = (m > 5) & (m < 35)
    dip[rise] = 0.5 * (1 + np.cos(np.pi * (m[rise] - 5) / 30))
    rebound = np.where((m > 20) & (m < 140), np.sin(np.pi * (m - 20) / 120) ** 2, 0.0)
    return dip, rebound


def _apply_dip(
    time: DatetimeArray, g: NDArray[np.float64], at: np.datetime64, nadir: float, rebound: float
) -> NDArray[np.float64]:
    minutes = (time - at).astype("timedelta64[s]").astype(np.float64) / 60.0
    x = time.astype(np.int64).astype(np.float64)
    level = float(np.interp(float(at.astype(np.int64)), x, g))
    dip, bump = hypo_dip(minutes)
    return np.asarray(g - max(0.0, level - nadir) * dip + rebound * bump, dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class GlucoseDay:
    """The true glucose of a period plus what the fingerstick schedule needs."""

    truth: TrueGlucose
    meals: MealPlan
    background_hypos: DatetimeArray  # UTC nadir times of the background episodes


def simulate_glucose(
    profile: PatientProfile,
    start: date,
    days: int,
    rng: np.random.Generator,
    *,
    rises: tuple[FastingRise, ...] = (),
    hypos: tuple[HypoEpisode, ...] = (),
) -> GlucoseDay:
    p = glucose_params(profile, rng)
    meals = plan_meals(profile, start, days, rng)
    warm = STEPS_PER_DAY
    n = warm + days * STEPS_PER_DAY
    start_utc = local_midnight_utc(start, profile.timezone)
    time = grid(start_utc - timedelta(days=1), n)
    grid0 = time[0]
    local = utc_to_local(time, profile.timezone)
    hours = hour_of_day(local)

    # Basal level: fasting value, dawn phenomenon, daily drift, injected fasting trends.
    # Dawn phenomenon: up from 04:00 to 07:00, held until breakfast, gone by 11:00.
    dawn = np.select(
        [
            (hours > 4.0) & (hours < 7.0),
            (hours >= 7.0) & (hours < 8.5),
            (hours >= 8.5) & (hours < 11.0),
        ],
        [np.sin(np.pi * (hours - 4.0) / 6.0) ** 2, 1.0, np.cos(np.pi * (hours - 8.5) / 5.0) ** 2],
        0.0,
    )
    day_pos = (time - grid0).astype("timedelta64[s]").astype(np.float64) / 86_400.0
    knots = np.arange(-1, days + 3, dtype=np.float64)
    drift = np.interp(day_pos - 1.0, knots, rng.normal(0.0, p.day_sd, knots.size))
    basal = p.basal + p.dawn * dawn + drift
    for rise in rises:
        ramp = np.clip(day_pos - 1.0 - rise.start_day, 0.0, float(rise.days))
        basal = basal + rise.slope * ramp

    # Inputs of the leaky integrator.
    carbs = _impulses(grid0, n, meals.time, meals.carbs)
    u = p.carb_gain * _convolve(carbs, _gamma_kernel(p.carb_peak_min))
    if p.insulin_peak_min is not None:
        error = np.exp(rng.normal(p.bolus_log_bias, p.bolus_log_sd, meals.carbs.size))
        bolus_time = meals.time - np.timedelta64(10, "m")
        bolus = _impulses(grid0, n, bolus_time, meals.carbs * error)
        u = u - p.carb_gain * _convolve(bolus, _gamma_kernel(p.insulin_peak_min))
    ex_days = np.flatnonzero(rng.random(days + 1) < p.exercise_per_week / 7.0)
    ex_local = (
        np.datetime64(start, "s")
        + ex_days.astype(np.int64) * np.timedelta64(86_400, "s")
        + (17.5 * 3600 + rng.normal(0.0, 3600.0, ex_days.size)).astype(np.int64)
        * np.timedelta64(1, "s")
    )
    drops = p.exercise_drop * rng.uniform(0.6, 1.4, ex_days.size)
    ex = _impulses(grid0, n, local_to_utc(ex_local, profile.timezone), drops)
    u = u - _convolve(ex, _gamma_kernel(40.0, hours=3.0))
    u = u + rng.normal(0.0, p.noise_sd, n)
    leak = STEP_S / 60.0 / p.tau_min
    x = first_order(u, 1.0 - leak)
    g = _counter_regulation(np.asarray(basal + x, dtype=np.float64))

    # Background hypoglycaemia (type 1), treated and followed by a rebound.
    n_hypo = int(rng.poisson(p.hypo_per_day * days))
    hypo_steps = np.sort(rng.integers(warm, n, n_hypo))
    hypo_times = time[hypo_steps]
    for at in hypo_times:
        g = _apply_dip(time, g, at, float(rng.uniform(58, 66)), float(rng.uniform(10, 30)))
    g = _soft_bounds(g, p.floor, p.ceiling)

    # Injected episodes bypass the bounds: they are what the ground truth is about.
    for hypo in hypos:
        g = _apply_dip(time, g, to_datetime64(hypo.at), hypo.nadir, 25.0)
    g = np.maximum(g, 10.0)

    truth = TrueGlucose(time=time[warm:], local_time=local[warm:], glucose=g[warm:])
    return GlucoseDay(truth=truth, meals=meals, background_hypos=hypo_times)


def _local_day_index(local: DatetimeArray, start: date) -> NDArray[np.int64]:
    return (local.astype("datetime64[D]") - np.datetime64(start, "D")).astype(np.int64)


def sample_cgm(
    profile: PatientProfile,
    truth: TrueGlucose,
    start: date,
    plan: AdherencePlan,
    rng: np.random.Generator,
) -> CgmSeries:
    n = len(truth)
    g = truth.glucose
    a = float(np.exp(-5.0 / 7.0))
    isf = first_order(g * (1 - a), a, start=g[0])
    session_steps = 10 * STEPS_PER_DAY
    shift = int(rng.integers(0, session_steps))
    pos = np.arange(n, dtype=np.int64) + shift
    session = pos // session_steps
    n_sessions = int(session[-1]) + 1 if n else 0
    gain = rng.normal(1.0, 0.03, n_sessions)[session]
    offset = rng.normal(0.0, 3.0, n_sessions)[session]
    phi = 0.8
    noise = first_order(rng.normal(0.0, 4.0 * np.sqrt(1 - phi**2), n), phi)
    error = gain * isf + offset + noise - isf
    bound = np.maximum(8.0, 0.1 * isf)
    sensor = np.rint(isf + np.clip(error, -bound, bound))
    trend = np.zeros(n)
    trend[3:] = (sensor[3:] - sensor[:-3]) / 15.0
    trend = np.asarray(np.round(np.clip(trend, -8.0, 8.0), 1), dtype=np.float64)

    keep = plan.active[np.clip(_local_day_index(truth.local_time, start), 0, plan.active.size - 1)]
    keep &= (pos % session_steps) >= 24  # 2-hour warm-up of every new sensor
    starts = np.flatnonzero(rng.random(n) < 0.002)  # signal loss, ~8 readings each
    for s, length in zip(starts, rng.geometric(1 / 8.0, starts.size), strict=True):
        keep[s : s + int(length)] = False

    lo, hi = CGM_RANGE_MGDL
    flag = np.where(sensor < lo, RANGE_LOW, np.where(sensor > hi, RANGE_HIGH, RANGE_OK))
    value = np.clip(sensor, lo, hi)
    skew = np.timedelta64(profile.clock_skew_s, "s")
    offset_min = (pos % session_steps) * 5
    # A session's start time is fixed on the device: take it from the session's first step.
    first_step_of_session = np.maximum(0, session * session_steps - shift)
    session_start_local = (
        truth.local_time[first_step_of_session]
        - offset_min[first_step_of_session] * np.timedelta64(60, "s")
        + skew
    )
    device_time = session_start_local + offset_min * np.timedelta64(60, "s")
    return CgmSeries(
        time=truth.time[keep],
        device_time=device_time[keep],
        session_start=session_start_local[keep],
        time_offset=offset_min[keep].astype(np.int64),
        glucose=value[keep].astype(np.float64),
        trend=trend[keep],
        flag=flag[keep].astype(np.int8),
        true_glucose=g[keep],
        skew_s=profile.clock_skew_s,
    )


def _slot_times(
    slot: str, meals: MealPlan, days: int, start: date, rng: np.random.Generator
) -> tuple[NDArray[np.int64], DatetimeArray, str]:
    """Day index, local time and meal context of one fingerstick slot on every day."""
    minute = np.timedelta64(60, "s")
    if slot == "bedtime":
        day = np.arange(days, dtype=np.int64)
        clock = (22.5 * 60 + np.clip(rng.normal(0, 25, days), -60, 60)).astype(np.int64)
        local = np.datetime64(start, "s") + day * np.timedelta64(86_400, "s") + clock * minute
        return day, local, "bedtime"
    context, _, meal = slot.partition("_")
    if slot == "fasting":
        context, meal = "fasting", "breakfast"
    day, meal_local = meals.of(meal)
    inside = (day >= 0) & (day < days)
    day, meal_local = day[inside], meal_local[inside]
    if context == "fasting":
        lead = -rng.uniform(10, 30, day.size)
    elif context == "preprandial":
        lead = -rng.uniform(5, 20, day.size)
    else:
        lead = rng.uniform(110, 130, day.size)
    return day, meal_local + (lead * 60).astype(np.int64) * np.timedelta64(1, "s"), context


def sample_smbg(
    profile: PatientProfile,
    gday: GlucoseDay,
    start: date,
    days: int,
    plan: AdherencePlan,
    rng: np.random.Generator,
    *,
    hypos: tuple[HypoEpisode, ...] = (),
) -> SmbgSeries:
    local_parts: list[DatetimeArray] = []
    contexts: list[NDArray[np.str_]] = []
    for slot in SMBG_SLOTS[: profile.checks_per_day]:
        day, local, context = _slot_times(slot, gday.meals, days, start, rng)
        done = plan.slot_mask(day, rng)
        local_parts.append(local[done])
        contexts.append(np.full(int(done.sum()), context))
    utc_parts = [local_to_utc(np.concatenate(local_parts), profile.timezone)]

    # Symptomatic checks: background lows while awake (half the time), injected episodes.
    bg = gday.background_hypos
    bg_local = utc_to_local(bg, profile.timezone)
    awake = (hour_of_day(bg_local) > 7) & (hour_of_day(bg_local) < 23)
    bg_day = _local_day_index(bg_local, start)
    checked = awake & (rng.random(bg.size) < 0.5) & plan.slot_mask(bg_day, rng)
    utc_parts.append(
        bg[checked] + rng.integers(0, 600, int(checked.sum())) * np.timedelta64(1, "s")
    )
    contexts.append(np.full(int(checked.sum()), "casual"))
    for hypo in hypos:
        if not hypo.symptomatic:
            continue
        at = to_datetime64(hypo.at)
        first = at + np.timedelta64(int(rng.integers(0, 120)), "s")
        utc_parts.append(
            np.asarray([first, first + np.timedelta64(15, "m")], dtype="datetime64[s]")
        )
        contexts.append(np.asarray(["casual", "casual"]))

    time = np.concatenate(utc_parts).astype("datetime64[s]")
    context_all = np.concatenate(contexts)
    order = np.argsort(time, kind="stable")
    time, context_all = time[order], context_all[order]
    end = gday.truth.time[-1] + np.timedelta64(STEP_S, "s")
    inside = (time >= gday.truth.time[0]) & (time < end)
    time, context_all = time[inside], context_all[inside]

    blood = gday.truth.at(time)
    sd = np.maximum(4.0, 0.045 * blood)
    measured = blood + sd * np.clip(rng.standard_normal(time.size), -2.0, 2.0)
    if profile.glucose_unit == "mmol/L":
        lo, hi = METER_RANGE_MMOLL
        shown = np.round(measured / MGDL_PER_MMOLL, 1)
        flag = np.where(shown < lo, RANGE_LOW, np.where(shown > hi, RANGE_HIGH, RANGE_OK))
        shown = np.clip(shown, lo, hi)
        value = shown * MGDL_PER_MMOLL
        original, unit = shown, "mmol/L"
    else:
        lo, hi = METER_RANGE_MGDL
        shown = np.rint(measured)
        flag = np.where(shown < lo, RANGE_LOW, np.where(shown > hi, RANGE_HIGH, RANGE_OK))
        value = np.clip(shown, lo, hi)
        original, unit = value, "mg/dL"
    first_seq = int(rng.integers(1, 3000))
    sequence = (first_seq + np.arange(time.size, dtype=np.int64)) % 65536
    device_time = utc_to_local(time, profile.timezone) + np.timedelta64(profile.clock_skew_s, "s")
    return SmbgSeries(
        time=time,
        device_time=device_time,
        glucose=value.astype(np.float64),
        original=original.astype(np.float64),
        original_unit=unit,
        flag=flag.astype(np.int8),
        sequence=sequence,
        meal=context_all,
        true_glucose=blood,
        skew_s=profile.clock_skew_s,
    )
