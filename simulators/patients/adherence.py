"""Adherence: on which days a patient measures, and how many scheduled checks they skip.

- GOOD: each day measured with p = 0.95; 5 % of the remaining slots skipped.
- DECLINING: p falls linearly from 0.95 on the first day to 0.2 on the last; slot skips
  rise from 5 % to 40 %.
- SPORADIC: a two-state Markov chain (mean 3 days on, 3 days off, so about half the days),
  25 % of slots skipped on days on.
- GAP: GOOD, except ``gap_days`` consecutive days with nothing at all (no fingersticks,
  no cuff readings, the CGM not worn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from simulators.patients.profile import Adherence, PatientProfile


@dataclass(frozen=True, slots=True, eq=False)
class AdherencePlan:
    """Per-day plan: ``active[d]`` the patient measures on day d at all, ``keep[d]`` the
    probability that one scheduled check of that day is actually done."""

    active: NDArray[np.bool_]
    keep: NDArray[np.float64]

    def slot_mask(
        self, day_index: NDArray[np.int64], rng: np.random.Generator
    ) -> NDArray[np.bool_]:
        """Which scheduled slots (given by their day index) happen."""
        if day_index.size == 0:
            return np.zeros(0, dtype=bool)
        inside = (day_index >= 0) & (day_index < self.active.size)
        day = np.clip(day_index, 0, self.active.size - 1)
        draw = rng.random(day_index.size)
        return inside & self.active[day] & (draw < self.keep[day])


def gap_window(profile: PatientProfile, days: int) -> tuple[int, int] | None:
    """(first day, number of days) of the GAP pattern's silence, clipped to the period."""
    if profile.adherence is not Adherence.GAP:
        return None
    start = profile.gap_start_day if profile.gap_start_day is not None else days // 3
    start = max(0, min(start, days - 1))
    return start, min(profile.gap_days, days - start)


def plan_adherence(profile: PatientProfile, days: int, rng: np.random.Generator) -> AdherencePlan:
    pattern = profile.adherence
    frac = np.linspace(0.0, 1.0, days) if days > 1 else np.zeros(days)
    if pattern is Adherence.SPORADIC:
        active = np.zeros(days, dtype=bool)
        state = bool(rng.random() < 0.5)
        switches = rng.random(days)
        for d in range(days):
            active[d] = state
            if switches[d] < 1.0 / 3.0:  # mean run length 3 days
                state = not state
        keep = np.full(days, 0.75)
    elif pattern is Adherence.DECLINING:
        active = rng.random(days) < 0.95 - 0.75 * frac
        keep = 0.95 - 0.35 * frac
    else:
        active = rng.random(days) < 0.95
        keep = np.full(days, 0.95)
        window = gap_window(profile, days)
        if window is not None:
            active[window[0] : window[0] + window[1]] = False
    return AdherencePlan(active=active, keep=np.asarray(keep, dtype=np.float64))
