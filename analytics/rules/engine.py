"""Evaluation of the rules for many patients at once (vectorized per rule)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analytics.metrics._frame import TimeZones
from analytics.rules.base import (
    INAT,
    URGENT_HISTORY,
    Context,
    Frame,
    Outcome,
    Rule,
    Severity,
)
from analytics.rules.registry import RULES
from analytics.targets import Targets


@dataclass(frozen=True, slots=True)
class RuleResult:
    patient_id: str
    rule_id: str
    severity: Severity
    triggered: bool
    evidence: Mapping[str, Any] = field(default_factory=dict)
    evidence_from: pd.Timestamp | None = None  # first reading the result rests on
    evidence_to: pd.Timestamp | None = None  # last reading the result rests on


def evaluate(
    now: pd.Timestamp,
    *,
    cgm: pd.DataFrame | None = None,
    smbg: pd.DataFrame | None = None,
    bp: pd.DataFrame | None = None,
    targets: Targets | Mapping[str, Targets] | None = None,
    tz: TimeZones = "UTC",
    patients: Iterable[str] | None = None,
    urgent_since: pd.Timestamp | None = None,
    sensor_interval_min: float = 5.0,
    rules: Iterable[Rule] = RULES,
) -> list[RuleResult]:
    """Evaluate ``rules`` for every patient at ``now``.

    ``cgm``/``smbg`` follow the glucose column contract (``patient_id, time, mgdl``
    [+ HI/LO flags, ``meal``]); ``bp`` the blood-pressure one.  A rule none of whose
    frames (``rule.needs.frames``) is given is skipped.  ``targets`` is one
    :class:`Targets` for all or a mapping per patient (missing patients get
    ``Targets()``).  Urgent rules look at readings in ``[urgent_since, now]`` (default:
    the last 24 h).  Results are ordered by patient, then rule order.  Patients lacking
    enough data for a window or trend rule get ``triggered=False`` with
    ``evidence['insufficient_data'] = True``.
    """
    frames: dict[str, pd.DataFrame | None] = {Frame.CGM: cgm, Frame.SMBG: smbg, Frame.BP: bp}
    ids: set[str] = set(patients or [])
    for f in frames.values():
        if f is not None:
            ids.update(str(p) for p in pd.unique(f["patient_id"].to_numpy()))
    index = pd.Index(sorted(ids))
    if isinstance(targets, Targets) or targets is None:
        per_patient = [targets or Targets()] * len(index)
    else:
        per_patient = [targets.get(p, Targets()) for p in index]
    ctx = Context(
        now,
        index,
        per_patient,
        tz,
        urgent_since or now - URGENT_HISTORY,
        sensor_interval_min,
    )
    selected = list(rules)
    outcomes: dict[str, Outcome] = {}
    for rule in selected:
        if all(frames[k] is None for k in rule.needs.frames):
            continue
        outcomes[rule.id] = rule.evaluate(ctx, frames)
    results: list[RuleResult] = []
    for code, pid in enumerate(index):
        for rule in selected:
            oc = outcomes.get(rule.id)
            if oc is None:
                continue
            evidence = {k: _item(v, code) for k, v in oc.evidence.items()}
            results.append(
                RuleResult(
                    patient_id=str(pid),
                    rule_id=rule.id,
                    severity=rule.severity,
                    triggered=bool(oc.triggered[code]),
                    evidence=evidence,
                    evidence_from=_ts(oc.first_ns[code]),
                    evidence_to=_ts(oc.last_ns[code]),
                )
            )
    return results


def results_frame(results: Iterable[RuleResult]) -> pd.DataFrame:
    """Results as a flat DataFrame (one row per patient and rule)."""
    return pd.DataFrame(
        [
            {
                "patient_id": r.patient_id,
                "rule_id": r.rule_id,
                "severity": r.severity.value,
                "triggered": r.triggered,
                "evidence_from": r.evidence_from,
                "evidence_to": r.evidence_to,
                "evidence": dict(r.evidence),
            }
            for r in results
        ]
    )


def _item(v: Any, code: int) -> Any:
    if isinstance(v, np.ndarray):
        x = v[code]
        if isinstance(x, np.floating):
            f = float(x)
            return None if np.isnan(f) else f
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.bool_):
            return bool(x)
        return x
    return v


def _ts(ns: Any) -> pd.Timestamp | None:
    return None if int(ns) == INAT else pd.Timestamp(int(ns), tz="UTC")
