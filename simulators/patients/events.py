"""Events a scenario injects into a patient's otherwise unremarkable data.

The background generators keep glucose within 62-340 mg/dL (type 1/2) and home BP below
178/118 mmHg, so every reading beyond the urgent thresholds (< 54 mg/dL, > 180/120 mmHg)
comes from an injected event and the ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware (UTC)")


@dataclass(frozen=True, slots=True)
class HypoEpisode:
    """Blood glucose falls to ``nadir`` mg/dL at ``at``, then is treated and recovers.

    A symptomatic patient checks with the meter at the nadir (meal context "casual") and
    re-checks 15 minutes after taking 15 g of fast carbohydrate (the "rule of 15").
    """

    at: datetime
    nadir: float = 45.0
    symptomatic: bool = True

    def __post_init__(self) -> None:
        _require_aware(self.at)


@dataclass(frozen=True, slots=True)
class FastingRise:
    """The basal (fasting) glucose rises by ``slope`` mg/dL a day for ``days`` days from
    day ``start_day`` of the period, then stays at the new level."""

    start_day: int
    days: int = 21
    slope: float = 3.0


@dataclass(frozen=True, slots=True)
class BpCrisis:
    """A home measurement session at ``at`` reading ``systolic``/``diastolic`` mmHg; the
    patient repeats the measurement a minute later and it stays in the crisis range."""

    at: datetime
    systolic: float = 194.0
    diastolic: float = 124.0

    def __post_init__(self) -> None:
        _require_aware(self.at)
        if self.systolic <= 180 and self.diastolic <= 120:
            raise ValueError("a crisis reading is > 180 systolic and/or > 120 diastolic")


@dataclass(frozen=True, slots=True)
class DataGap:
    """No data at all from day ``start_day`` for ``days`` days (devices unused)."""

    start_day: int
    days: int = 10


Injection = HypoEpisode | FastingRise | BpCrisis | DataGap
