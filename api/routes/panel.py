"""The clinician's panel in triage order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Request

from analytics.summary import panel_stats
from api.core import audit
from api.core.errors import COMMON
from api.deps import ConnDep, PageDep, StaffUser, visible_patients
from api.routes.patients import fetch_patients
from api.schemas import Page, PanelEntry

router = APIRouter(prefix="/panel", tags=["panel"], responses=COMMON)

SEVERITY_RANK = {"urgent": 0, "high": 1, "medium": 2, "low": 3}


def triage_panel(
    conn: psycopg.Connection[Any], patient_ids: list[int] | None, now: datetime | None = None
) -> list[PanelEntry]:
    """Every visible patient, ordered: open urgent flags first, then the worst open
    severity, then the highest time below range, then the lowest time in range (CGM over
    the last 14 days, fingersticks when the patient has no CGM)."""
    if patient_ids is None:
        patient_ids = [int(r[0]) for r in conn.execute("SELECT id FROM patients").fetchall()]
    if not patient_ids:
        return []
    patients = fetch_patients(conn, patient_ids)
    flags = {
        int(r[0]): (int(r[1]), int(r[2]), r[3])
        for r in conn.execute(
            "SELECT patient_id, count(*), count(*) FILTER (WHERE severity = 'urgent'),"
            " (array_agg(severity ORDER BY array_position("
            "ARRAY['urgent','high','medium','low'], severity)))[1]"
            " FROM flags WHERE status = 'open' AND patient_id = ANY(%s) GROUP BY patient_id",
            (patient_ids,),
        ).fetchall()
    }
    stats = panel_stats(conn, patient_ids, now or datetime.now(UTC))
    entries: list[PanelEntry] = []
    for pid in patient_ids:
        if pid not in patients:
            continue
        n_open, n_urgent, worst = flags.get(pid, (0, 0, None))
        s = stats[pid]
        use_cgm = s.cgm_pct_70_180 is not None
        entries.append(
            PanelEntry(
                patient=patients[pid],
                open_flags=n_open,
                urgent_open_flags=n_urgent,
                worst_open_severity=worst,
                tir_pct=s.cgm_pct_70_180 if use_cgm else s.smbg_pct_70_180,
                tbr_pct=s.cgm_pct_below_70 if use_cgm else s.smbg_pct_below_70,
                glucose_source="cgm"
                if use_cgm
                else ("smbg" if s.smbg_pct_70_180 is not None else None),
                last_reading=s.last_reading,
            )
        )

    def key(e: PanelEntry) -> tuple[Any, ...]:
        return (
            -e.urgent_open_flags,
            SEVERITY_RANK.get(e.worst_open_severity or "", 9),
            -(e.tbr_pct if e.tbr_pct is not None else -1.0),
            e.tir_pct if e.tir_pct is not None else 101.0,
            (e.patient.family_name or "").casefold(),
            e.patient.id,
        )

    return sorted(entries, key=key)


@router.get("", response_model=Page[PanelEntry], summary="My panel, in triage order")
def get_panel(user: StaffUser, conn: ConnDep, page: PageDep, request: Request) -> Page[PanelEntry]:
    """Clinicians: their panel; admins: every patient."""
    entries = triage_panel(conn, visible_patients(conn, user))
    chunk = entries[page.offset : page.offset + page.limit]
    audit.write(
        conn,
        user,
        "panel.read",
        ip=audit.client_ip(request),
        resource="panel",
        detail={"patients": [e.patient.id for e in chunk]},
    )
    return page.of(chunk, len(entries), request)
