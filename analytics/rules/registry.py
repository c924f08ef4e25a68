"""The rules, collected from the family modules; everything else is derived from them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from analytics.rules import adherence, bp, glucose, trends
from analytics.rules.base import Frame, Rule, RuleKind
from analytics.targets import Targets

_KIND_ORDER = list(RuleKind)

# Urgent rules first, then window, trend and adherence rules (results come out in this
# order); within a kind, in the order of the families below.
RULES: tuple[Rule, ...] = tuple(
    sorted(
        (*glucose.RULES, *bp.RULES, *trends.RULES, *adherence.RULES),
        key=lambda rule: _KIND_ORDER.index(rule.kind),
    )
)
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}
if len(RULES_BY_ID) != len(RULES):
    _ids = [r.id for r in RULES]
    raise RuntimeError(f"rule ids declared twice: {sorted({i for i in _ids if _ids.count(i) > 1})}")


def needed_frames(rules: Iterable[Rule]) -> frozenset[Frame]:
    """The readings frames ``rules`` read."""
    return frozenset(f for rule in rules for f in rule.needs.frames)


def needed_history(rules: Iterable[Rule], targets: Targets | None = None) -> timedelta:
    """How far back ``rules`` look, with ``targets`` (default: the standard ones)."""
    t = targets or Targets()
    return max((rule.needs.history(t) for rule in rules), default=timedelta(0))
