"""Pure, vectorized metric computations (no database access).

Each function takes one long DataFrame of many patients' readings and returns one row
per patient; see docs/metrics.md for definitions and column contracts.
"""

from analytics.metrics._frame import MetricInputError, Period, TimeZones
from analytics.metrics.blood_pressure import BP_COLUMNS, BpStage, blood_pressure_metrics
from analytics.metrics.glucose import (
    GLUCOSE_COLUMNS,
    GlucoseSource,
    GlucoseSummary,
    agp_profile,
    glucose_metrics,
    summarize_glucose,
)
from analytics.metrics.trends import (
    MannKendall,
    daily_fasting_glucose,
    daily_morning_systolic,
    mann_kendall,
    tir_week_over_week,
    trend_per_patient,
)

__all__ = [
    "BP_COLUMNS",
    "GLUCOSE_COLUMNS",
    "BpStage",
    "GlucoseSource",
    "GlucoseSummary",
    "MannKendall",
    "MetricInputError",
    "Period",
    "TimeZones",
    "agp_profile",
    "blood_pressure_metrics",
    "daily_fasting_glucose",
    "daily_morning_systolic",
    "glucose_metrics",
    "mann_kendall",
    "summarize_glucose",
    "tir_week_over_week",
    "trend_per_patient",
]
