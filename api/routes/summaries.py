"""Glucose summary (CGM and SMBG), AGP and home blood-pressure summary of one patient."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from analytics.summary import (
    AgpResult,
    BpSummaryResult,
    GlucoseSummaryResult,
    agp,
    bp_summary,
    glucose_summary,
)
from api.core.errors import COMMON
from api.deps import PatientDep, PatientScope
from api.routes.readings import RangeDep, TimeRange

router = APIRouter(prefix="/patients/{patient_id}", tags=["summaries"], responses=COMMON)


def _audit_read(scope: PatientScope, span: TimeRange, action: str, path: str) -> None:
    """Audit a read of the patient's ``path`` over ``span``; called once the summary is
    computed, so a request that fails is not recorded as a read."""
    scope.audit(action, f"patient/{scope.patient_id}/{path}", span.audit_detail())


@router.get(
    "/glucose/summary",
    response_model=GlucoseSummaryResult,
    summary="Glucose metrics over a period (default: last 14 days), CGM and SMBG separately",
)
def get_glucose_summary(scope: PatientDep, span: RangeDep) -> GlucoseSummaryResult:
    result = glucose_summary(scope.conn, scope.patient_id, span.start, span.end)
    _audit_read(scope, span, "summary.glucose", "glucose/summary")
    return result


@router.get(
    "/glucose/agp",
    response_model=AgpResult,
    summary="Ambulatory glucose profile: percentiles by local time of day, and daily glucose",
)
def get_agp(
    scope: PatientDep,
    span: RangeDep,
    bin_minutes: Annotated[
        Literal[5, 10, 15, 20, 30, 60], Query(description="time-of-day bin width, minutes")
    ] = 15,
) -> AgpResult:
    result = agp(scope.conn, scope.patient_id, span.start, span.end, bin_minutes)
    _audit_read(scope, span, "summary.agp", "glucose/agp")
    return result


@router.get(
    "/blood-pressure/summary",
    response_model=BpSummaryResult,
    summary="Home blood-pressure metrics and ACC/AHA stage over a period (default 14 days)",
)
def get_bp_summary(scope: PatientDep, span: RangeDep) -> BpSummaryResult:
    result = bp_summary(scope.conn, scope.patient_id, span.start, span.end)
    _audit_read(scope, span, "summary.blood_pressure", "blood-pressure/summary")
    return result
