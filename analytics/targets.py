"""Per-patient clinical targets: consensus defaults by category plus clinician overrides.

Glucose defaults from the International Consensus on Time in Range (Battelino et al.,
Diabetes Care 2019;42:1593, Table/Figure 3); BP target 130/80 (ACC/AHA 2017).  Targets
are data: the rules in :mod:`analytics.rules` read them and never hard-code numbers.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any


class TargetCategory(enum.StrEnum):
    STANDARD = "standard"  # type 1 / type 2 diabetes
    OLDER_HIGH_RISK = "older_high_risk"  # older or high-risk for hypoglycemia
    PREGNANCY = "pregnancy"  # type 1 diabetes in pregnancy


@dataclass(frozen=True, slots=True)
class Targets:
    """Thresholds for one patient.  Percentages are 0-100; ``None`` = no target.

    ``range_low``/``range_high`` define the target range whose share is compared to
    ``tir_min_pct`` (70-180, or 63-140 in pregnancy).  ``tbr_max_pct`` applies below
    ``range_low``, ``tbr54_max_pct`` below 54, ``tar_max_pct`` above ``range_high`` and
    ``tar250_max_pct`` above 250.
    """

    category: TargetCategory = TargetCategory.STANDARD
    range_low: float = 70.0
    range_high: float = 180.0
    tir_min_pct: float | None = 70.0
    tbr_max_pct: float | None = 4.0
    tbr54_max_pct: float | None = 1.0
    tar_max_pct: float | None = 25.0
    tar250_max_pct: float | None = 5.0
    cv_max_pct: float | None = 36.0
    # Window rules need enough data (consensus: 14 days, >= 70 % sensor wear).
    window_days: int = 14
    min_cgm_wear_pct: float = 70.0
    # SMBG population flag: >= 10 % of readings < 70 or >= 25 % > 180 over 14 days.
    smbg_low_max_pct: float = 10.0
    smbg_high_max_pct: float = 25.0
    smbg_min_readings: int = 14
    # Urgent thresholds (mg/dL, mmHg).
    urgent_low_mgdl: float = 54.0
    urgent_high_mgdl: float = 400.0
    crisis_systolic: float = 180.0
    crisis_diastolic: float = 120.0
    # Home BP target (average at or above it = not at goal).
    bp_systolic: float = 130.0
    bp_diastolic: float = 80.0
    bp_min_readings: int = 6
    # Trends: Mann-Kendall p below alpha and Theil-Sen slope at or above these per day.
    trend_days: int = 30
    trend_min_days: int = 10
    trend_alpha: float = 0.05
    fasting_slope_mgdl_per_day: float = 1.0
    morning_systolic_slope_mmhg_per_day: float = 0.5
    # A fasting rise flags only once it leaves the normal fasting range: the median of the
    # last ``trend_level_days`` daily values at or above 100 mg/dL (ADA: < 100 is normal).
    fasting_trend_min_mgdl: float = 100.0
    trend_level_days: int = 7
    # Irregular pulse flagged by the cuff (a prompt to check the rhythm, e.g. by ECG):
    # readings taken with body movement are not counted (movement mimics an irregular
    # pulse), and at least once the repeat reading of a session (within
    # ``irregular_pulse_repeat_minutes``) must be flagged too: single flags are often
    # ectopic beats (Microlife's AF detection likewise asks for 2 of 3 readings).
    irregular_pulse_window_days: int = 14
    irregular_pulse_min_readings: int = 3
    irregular_pulse_repeat_minutes: float = 10.0
    # Adherence.
    no_data_days: int = 3
    adherence_window_days: int = 30
    adherence_min_days: int = 16
    # Declining adherence: days with readings in the last ``adherence_trend_days`` below
    # the 16-in-30 pace (8 of 14) and at least ``adherence_decline_pct`` % fewer than in
    # the same span just before.
    adherence_trend_days: int = 14
    adherence_recent_min_days: int = 8
    adherence_decline_pct: float = 30.0

    def with_overrides(self, **overrides: Any) -> Targets:
        """A copy with clinician overrides; unknown names raise ``TypeError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown target fields {unknown}; known: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


_CATEGORY_DEFAULTS: dict[TargetCategory, dict[str, Any]] = {
    TargetCategory.STANDARD: {},
    # Older / high-risk: TIR > 50 %, TBR < 70 < 1 %, TAR > 250 < 10 %; no separate >180 or
    # <54 goal in the consensus (the <1 % <70 goal already covers <54).
    TargetCategory.OLDER_HIGH_RISK: {
        "tir_min_pct": 50.0,
        "tbr_max_pct": 1.0,
        "tbr54_max_pct": None,
        "tar_max_pct": None,
        "tar250_max_pct": 10.0,
    },
    # Pregnancy (type 1): TIR 63-140 > 70 %, < 63 < 4 %, < 54 < 1 %, > 140 < 25 %.
    TargetCategory.PREGNANCY: {
        "range_low": 63.0,
        "range_high": 140.0,
        "tir_min_pct": 70.0,
        "tbr_max_pct": 4.0,
        "tbr54_max_pct": 1.0,
        "tar_max_pct": 25.0,
        "tar250_max_pct": None,
    },
}


def default_targets(category: TargetCategory | str = TargetCategory.STANDARD) -> Targets:
    """Consensus default targets for a category."""
    cat = TargetCategory(category)
    return Targets(category=cat, **_CATEGORY_DEFAULTS[cat])
