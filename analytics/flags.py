"""The review queue: flags raised by rules, and their lifecycle.

open -> acknowledged -> resolved, with the clinician and a note at each step.  One
unresolved flag per patient and rule: a rule that fires again updates that flag's
evidence instead of adding another.  When the condition clears the flag says so
(``condition_active`` false, ``cleared_at``) but stays for review.  Nothing here
deletes a flag; every change is also written to ``flag_events``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import class_row

from analytics.rules import RULES_BY_ID, RuleResult

SYSTEM_ACTOR = "analytics"


class FlagStatus(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class FlagTransitionError(ValueError):
    """A lifecycle step that is not allowed from the flag's current status."""


class FlagNotFoundError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Flag:
    id: int
    patient_id: int
    rule_id: str
    severity: str
    status: str
    summary: str
    evidence: dict[str, Any]
    evidence_from: datetime | None
    evidence_to: datetime | None
    condition_active: bool
    cleared_at: datetime | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledge_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolve_note: str | None


FLAG_COLUMNS = ", ".join(Flag.__dataclass_fields__)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def _summary(result: RuleResult) -> str:
    rule = RULES_BY_ID[result.rule_id]
    return rule.description


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    raised: int
    updated: int
    cleared: int


def sync_results(conn: psycopg.Connection[Any], results: Iterable[RuleResult]) -> SyncOutcome:
    """Apply rule results to the queue (in the caller's transaction)."""
    raised = updated = cleared = 0
    for result in results:
        patient = int(result.patient_id)
        current = conn.execute(
            "SELECT id, condition_active FROM flags"
            " WHERE patient_id = %s AND rule_id = %s AND status <> 'resolved' FOR UPDATE",
            (patient, result.rule_id),
        ).fetchone()
        evidence = _json(dict(result.evidence))
        start = None if result.evidence_from is None else result.evidence_from.to_pydatetime()
        end = None if result.evidence_to is None else result.evidence_to.to_pydatetime()
        if result.triggered and current is None:
            row = conn.execute(
                "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence,"
                " evidence_from, evidence_to) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    patient,
                    result.rule_id,
                    result.severity.value,
                    _summary(result),
                    evidence,
                    start,
                    end,
                ),
            ).fetchone()
            assert row is not None
            _event(conn, int(row[0]), SYSTEM_ACTOR, "raised", None, evidence)
            raised += 1
        elif result.triggered and current is not None:
            conn.execute(
                "UPDATE flags SET evidence = %s, evidence_from = least(evidence_from, %s),"
                " evidence_to = greatest(evidence_to, %s), condition_active = true,"
                " cleared_at = NULL, updated_at = now() WHERE id = %s",
                (evidence, start, end, current[0]),
            )
            _event(conn, int(current[0]), SYSTEM_ACTOR, "updated", None, evidence)
            updated += 1
        elif (
            not result.triggered
            and current is not None
            and current[1]
            and not result.evidence.get("insufficient_data", False)
        ):
            conn.execute(
                "UPDATE flags SET condition_active = false, cleared_at = now(), updated_at = now()"
                " WHERE id = %s",
                (current[0],),
            )
            _event(conn, int(current[0]), SYSTEM_ACTOR, "cleared", None, evidence)
            cleared += 1
    return SyncOutcome(raised, updated, cleared)


def _event(
    conn: psycopg.Connection[Any],
    flag_id: int,
    actor: str,
    action: str,
    note: str | None,
    evidence: str | None,
) -> None:
    conn.execute(
        "INSERT INTO flag_events (flag_id, actor, action, note, evidence) VALUES (%s, %s, %s, %s, %s)",
        (flag_id, actor, action, note, evidence),
    )


def get_flag(conn: psycopg.Connection[Any], flag_id: int) -> Flag:
    with conn.cursor(row_factory=class_row(Flag)) as cur:
        flag = cur.execute(f"SELECT {FLAG_COLUMNS} FROM flags WHERE id = %s", (flag_id,)).fetchone()
    if flag is None:
        raise FlagNotFoundError(f"flag {flag_id} does not exist")
    return flag


def acknowledge(
    conn: psycopg.Connection[Any], flag_id: int, clinician: str, note: str | None = None
) -> Flag:
    with conn.transaction():
        flag = get_flag(conn, flag_id)
        if flag.status != FlagStatus.OPEN:
            raise FlagTransitionError(
                f"flag {flag_id} is {flag.status}; only an open flag can be acknowledged"
            )
        conn.execute(
            "UPDATE flags SET status = 'acknowledged', acknowledged_by = %s, acknowledged_at = now(),"
            " acknowledge_note = %s, updated_at = now() WHERE id = %s",
            (clinician, note, flag_id),
        )
        _event(conn, flag_id, clinician, "acknowledged", note, None)
    return get_flag(conn, flag_id)


def resolve(conn: psycopg.Connection[Any], flag_id: int, clinician: str, note: str) -> Flag:
    if not note.strip():
        raise FlagTransitionError("resolving a flag needs a note")
    with conn.transaction():
        flag = get_flag(conn, flag_id)
        if flag.status == FlagStatus.RESOLVED:
            raise FlagTransitionError(f"flag {flag_id} is already resolved")
        conn.execute(
            "UPDATE flags SET status = 'resolved', resolved_by = %s, resolved_at = now(),"
            " resolve_note = %s, updated_at = now(),"
            " acknowledged_by = coalesce(acknowledged_by, %s),"
            " acknowledged_at = coalesce(acknowledged_at, now()) WHERE id = %s",
            (clinician, note, clinician, flag_id),
        )
        _event(conn, flag_id, clinician, "resolved", note, None)
    return get_flag(conn, flag_id)


def list_flags(
    conn: psycopg.Connection[Any],
    *,
    patients: Iterable[int] | None = None,
    statuses: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    rules: Iterable[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Flag]:
    """Flags ordered for triage: severity, then newest first."""
    clauses, params = ["true"], []
    for column, values in (
        ("patient_id", patients),
        ("status", statuses),
        ("severity", severities),
        ("rule_id", rules),
    ):
        if values is not None:
            clauses.append(f"{column} = ANY(%s)")
            params.append(list(values))
    query = (
        f"SELECT {FLAG_COLUMNS} FROM flags WHERE {' AND '.join(clauses)}"
        " ORDER BY array_position(ARRAY['urgent','high','medium','low'], severity),"
        " opened_at DESC, id DESC LIMIT %s OFFSET %s"
    )
    with conn.cursor(row_factory=class_row(Flag)) as cur:
        return cur.execute(query, [*params, limit, offset]).fetchall()
