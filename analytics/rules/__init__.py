"""Review rules, one declaration each, and their pure, vectorized evaluation.

A rule (:class:`Rule`) carries its id, severity, kind, description, what it reads
(:class:`Needs`: frames and history) and its ``evaluate``; the rules live in one module
per family (``glucose``, ``bp``, ``trends``, ``adherence``) and :data:`RULES`,
:data:`RULES_BY_ID` and what the runner loads (:func:`needed_frames`,
:func:`needed_history`) are derived from them.  :func:`evaluate` computes, for every
patient and every applicable rule, a :class:`RuleResult` with the evidence it rests on
(metric values, the thresholds from the patient's :class:`~analytics.targets.Targets`,
and the time range of the readings used).  No database access: the caller passes
readings frames covering at least :func:`needed_history` (30 days by default) and
persists the triggered results.  Thresholds are documented in docs/metrics.md.
"""

from analytics.rules.base import Frame, Needs, Rule, RuleKind, Severity
from analytics.rules.engine import RuleResult, evaluate, results_frame
from analytics.rules.registry import RULES, RULES_BY_ID, needed_frames, needed_history

__all__ = [
    "RULES",
    "RULES_BY_ID",
    "Frame",
    "Needs",
    "Rule",
    "RuleKind",
    "RuleResult",
    "Severity",
    "evaluate",
    "needed_frames",
    "needed_history",
    "results_frame",
]
