"""What every rule is made of: its declaration (:class:`Rule`, :class:`Needs`), the
context it is evaluated in and the vectorized outcome it returns, plus the helpers the
rule families share.  No database access."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from analytics.metrics._frame import (
    NS_PER_DAY,
    BoolArray,
    FloatArray,
    Grouped,
    Period,
    TimeZones,
    group_readings,
)
from analytics.targets import Targets


class Severity(enum.StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RuleKind(enum.StrEnum):
    URGENT = "urgent"
    WINDOW = "window"
    TREND = "trend"
    ADHERENCE = "adherence"


class Frame(enum.StrEnum):
    """The readings frames a rule can read (the column contracts of ``analytics.store``)."""

    CGM = "cgm"
    SMBG = "smbg"
    BP = "bp"


Frames = Mapping[str, pd.DataFrame | None]  # Frame -> readings (None: not loaded)

# Urgent rules look at the readings of the last day (``evaluate(urgent_since=...)``).
URGENT_HISTORY = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a rule reads: ``frames`` (evaluated when at least one is given) and how far
    back, for a patient's targets (``history``)."""

    frames: tuple[Frame, ...]
    history: Callable[[Targets], timedelta] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Vectorized outcome of one rule for all patients (arrays indexed by patient code)."""

    triggered: BoolArray
    evidence: dict[str, Any]  # name -> per-patient array or scalar
    first_ns: Any  # int64 array, iNaT = none
    last_ns: Any


@dataclass(frozen=True, slots=True)
class Context:
    now: pd.Timestamp
    patients: pd.Index
    targets: list[Targets]
    tz: TimeZones
    urgent_since: pd.Timestamp
    sensor_interval_min: float

    def t(self, name: str) -> FloatArray:
        """Target ``name`` per patient (NaN where None)."""
        return np.array(
            [np.nan if getattr(t, name) is None else float(getattr(t, name)) for t in self.targets],
            dtype=np.float64,
        )

    @property
    def n(self) -> int:
        return len(self.patients)


Evaluator = Callable[[Context, Frames], Outcome]


@dataclass(frozen=True, slots=True)
class Rule:
    """One review rule: what it is, what it reads and how it is computed, declared once."""

    id: str
    severity: Severity
    kind: RuleKind
    description: str
    needs: Needs = field(compare=False)
    evaluate: Evaluator = field(repr=False, compare=False)


INAT = np.iinfo(np.int64).min


def span(g: Grouped, mask: BoolArray, n: int) -> tuple[Any, Any]:
    """First and last instant of the masked rows per patient (iNaT where none)."""
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, INAT, dtype=np.int64)
    np.minimum.at(first, g.codes[mask], g.time_ns[mask])
    np.maximum.at(last, g.codes[mask], g.time_ns[mask])
    first[first == np.iinfo(np.int64).max] = INAT
    return first, last


def window(ctx: Context, frame: pd.DataFrame, days_field: str) -> tuple[Grouped, BoolArray]:
    """Rows within each patient's own window ``(now - days, now]``."""
    days = ctx.t(days_field)
    longest = float(np.nanmax(days)) if len(days) else 1.0
    g = group_readings(
        frame,
        Period(ctx.now - pd.Timedelta(days=longest), ctx.now + pd.Timedelta(1)),
        ctx.patients,
    )
    cutoff = ctx.now.value - (days * NS_PER_DAY).astype(np.int64)
    return g, g.time_ns >= cutoff[g.codes]


def urgent_period(ctx: Context) -> Period:
    return Period(ctx.urgent_since, ctx.now + pd.Timedelta(1))


def given(frames: Frames, which: Frame) -> pd.DataFrame:
    """The ``which`` frame of a rule that needs it alone (``evaluate`` checked it is given)."""
    f = frames[which]
    assert f is not None
    return f


def present(frames: Frames, *which: Frame) -> list[pd.DataFrame]:
    """The given frames among ``which``, in that order."""
    return [f for k in which if (f := frames[k]) is not None]


def flag_column(frame: pd.DataFrame, column: str) -> BoolArray:
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return np.asarray(frame[column].to_numpy(dtype=bool, na_value=False), dtype=bool)
