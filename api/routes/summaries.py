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
from api.deps import PatientDep
from api.routes.readings import RangeDep

router = APIRouter(prefix="/patients/{patient_id}", tags=["summaries"], responses=COMMON)


@router.get(
    "/glucose/summary",
    response_model=GlucoseSummaryResult,
    summary="Glucose metrics over a period (default: last 14 days), CGM and SMBG separately",
)
def get_glucose_summary(scope: PatientDep, span: RangeDep) -> GlucoseSummaryResult:
    result = glucose_summary(scope.conn, scope.patient_id, span.start, span.end)
    scope.audit(
        "summary.glucose",
        f"patient/{scope.patient_id}/glucose/summary",
        {"start": span.start, "end": span.end},
    )
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
    scope.audit(
        "summary.agp",
        f"patient/{scope.patient_id}/glucose/agp",
        {"start": span.start, "end": span.end},
    )
    return result


@router.get(
    "/blood-pressure/summary",
    response_model=BpSummaryResult,
    summary="Home blood-pressure metrics and ACC/AHA stage over a period (default 14 days)",
)
def get_bp_summary(scope: PatientDep, span: RangeDep) -> BpSummaryResult:
    result = bp_summary(scope.conn, scope.patient_id, span.start, span.end)
    scope.audit(
        "summary.blood_pressure",
        f"patient/{scope.patient_id}/blood-pressure/summary",
        {"start": span.start, "end": span.end},
    )
    return result
