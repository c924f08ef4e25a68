"""Who a simulated patient is: a frozen profile and its seeded random streams.

Every random draw of a patient comes from a named stream derived from the profile's seed
(``rng_for(seed, "glucose")``), so generating the blood pressure of a patient never shifts
its glucose, and adding a new generator never changes the output of the old ones.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np


class DiabetesType(enum.StrEnum):
    NONE = "none"
    TYPE1 = "type1"
    TYPE2 = "type2"


class GlycemicControl(enum.StrEnum):
    """How well the diabetes is controlled (ignored for non-diabetic patients)."""

    GOOD = "good"  # type 1: TIR 70-85 %, TBR < 4 %
    FAIR = "fair"  # TIR 50-70 %
    POOR = "poor"  # TIR < 50 %, long highs


class BpStage(enum.StrEnum):
    """ACC/AHA 2017 stage of the patient's *home* (out-of-office) blood pressure."""

    NORMAL = "normal"  # < 120 / < 80
    ELEVATED = "elevated"  # 120-129 / < 80
    STAGE1 = "stage1"  # 130-139 or 80-89
    STAGE2 = "stage2"  # >= 140 or >= 90


class BpPattern(enum.StrEnum):
    """How the office reading relates to the home readings.

    Home readings always follow ``BpStage``; the pattern only changes what a clinician
    would measure in the office (``simulators.patients.bp.office_bp``):

    - SUSTAINED: office about equal to home (+3/+2 mmHg).
    - WHITE_COAT: office hypertensive (about +20/+10 above home) while home readings are
      normal or elevated.  Home monitoring is what shows that no treatment is needed, so
      home-based rules must *not* fire for these patients.
    - MASKED: office normal (about 12/7 below home) while home readings are stage 1 or 2.
      Only home monitoring reveals the hypertension, so home-based rules *must* fire.
    """

    SUSTAINED = "sustained"
    WHITE_COAT = "white_coat"
    MASKED = "masked"


class Adherence(enum.StrEnum):
    """How regularly the patient measures (see ``simulators.patients.adherence``)."""

    GOOD = "good"  # ~95 % of days, few skipped slots
    DECLINING = "declining"  # from ~95 % of days to ~20 % by the end of the period
    SPORADIC = "sporadic"  # bursts of a few days on and off, ~50 % of days
    GAP = "gap"  # good, except ``gap_days`` consecutive days without any data


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """A simulated patient.  ``seed`` drives every random draw of the patient."""

    patient_id: str
    diabetes: DiabetesType = DiabetesType.TYPE2
    bp_stage: BpStage = BpStage.NORMAL
    timezone: str = "America/New_York"
    adherence: Adherence = Adherence.GOOD
    seed: int = 0
    control: GlycemicControl = GlycemicControl.FAIR
    bp_pattern: BpPattern = BpPattern.SUSTAINED
    smbg_per_day: int | None = None  # None: by diabetes type (type 1: 5, type 2: 3, none: 2)
    glucose_unit: str = "mg/dL"  # the meter's display unit: "mg/dL" or "mmol/L"
    clock_skew_s: int = 0  # device clock minus true local time, for all the patient's devices
    gap_start_day: int | None = None  # Adherence.GAP: first silent day (None: a third in)
    gap_days: int = 10
    irregular_pulse: bool = False  # episodes of an irregular rhythm the cuff flags
    nocturnal_dip: float = 0.12  # fractional night-time BP fall (dipper: 0.10-0.20)
    morning_surge: float = 8.0  # mmHg systolic above the daytime level just after waking

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.glucose_unit not in ("mg/dL", "mmol/L"):
            raise ValueError(f"glucose_unit must be 'mg/dL' or 'mmol/L', not {self.glucose_unit!r}")
        if self.smbg_per_day is not None and not 2 <= self.smbg_per_day <= 6:
            raise ValueError(f"smbg_per_day must be 2-6, not {self.smbg_per_day}")
        if self.bp_pattern is BpPattern.WHITE_COAT and self.bp_stage not in (
            BpStage.NORMAL,
            BpStage.ELEVATED,
        ):
            raise ValueError("a white-coat patient has normal or elevated home BP")
        if self.bp_pattern is BpPattern.MASKED and self.bp_stage not in (
            BpStage.STAGE1,
            BpStage.STAGE2,
        ):
            raise ValueError("a masked-hypertension patient has stage 1 or 2 home BP")
        if self.gap_days < 1:
            raise ValueError(f"gap_days must be >= 1, not {self.gap_days}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def checks_per_day(self) -> int:
        if self.smbg_per_day is not None:
            return self.smbg_per_day
        return {DiabetesType.TYPE1: 5, DiabetesType.TYPE2: 3, DiabetesType.NONE: 2}[self.diabetes]


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent, reproducible generator for one named stream of one patient."""
    return np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, zlib.crc32(stream.encode())])


US_TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)


def random_profile(patient_id: str, seed: int) -> PatientProfile:
    """A plausible remote-monitoring patient drawn from a fixed population mix."""
    rng = rng_for(seed, "profile")
    diabetes = DiabetesType(rng.choice(["type1", "type2", "none"], p=[0.2, 0.6, 0.2]))
    control = GlycemicControl(rng.choice(["good", "fair", "poor"], p=[0.35, 0.45, 0.2]))
    stage = BpStage(
        rng.choice(["normal", "elevated", "stage1", "stage2"], p=[0.2, 0.2, 0.35, 0.25])
    )
    pattern = BpPattern.SUSTAINED
    roll = rng.random()
    if roll < 0.1 and stage in (BpStage.NORMAL, BpStage.ELEVATED):
        pattern = BpPattern.WHITE_COAT
    elif roll < 0.1:
        pattern = BpPattern.MASKED
    adherence = Adherence(
        rng.choice(["good", "declining", "sporadic", "gap"], p=[0.6, 0.15, 0.15, 0.1])
    )
    skew = int(rng.integers(-600, 601)) if rng.random() < 0.2 else 0
    return PatientProfile(
        patient_id=patient_id,
        diabetes=diabetes,
        bp_stage=stage,
        timezone=str(rng.choice(US_TIMEZONES)),
        adherence=adherence,
        seed=seed,
        control=control,
        bp_pattern=pattern,
        glucose_unit="mmol/L" if rng.random() < 0.1 else "mg/dL",
        clock_skew_s=skew,
        irregular_pulse=bool(rng.random() < 0.08),
        nocturnal_dip=float(rng.uniform(0.04, 0.2)),
        morning_surge=float(rng.uniform(4.0, 14.0)),
    )
