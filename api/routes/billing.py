"""RPM billing: days with transmitted readings per 30-day period and CPT eligibility."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, HTTPException, Query, Request, status

from analytics.summary import BillingReport, billing_report
from api.core import audit
from api.core.errors import COMMON
from api.deps import ConnDep, PageDep, SettingsDep, StaffUser, visible_patients
from api.schemas import TimeZoneName

router = APIRouter(prefix="/billing", tags=["billing"], responses=COMMON)


class BillingPage(BillingReport):
    total: int
    limit: int
    offset: int
    next: str | None = None


@router.get(
    "/rpm",
    response_model=BillingPage,
    summary="CPT 99454 (>= 16 days) / 99445 (2-15 days) eligibility for a 30-day period",
)
def rpm_report(
    user: StaffUser,
    conn: ConnDep,
    settings: SettingsDep,
    page: PageDep,
    request: Request,
    period_start: Annotated[date, Query(description="first day of the 30-day period")],
    clinic_tz: Annotated[TimeZoneName | None, Query(description="default: the clinic's")] = None,
) -> BillingPage:
    """Days are counted in the clinic's time zone; only readings transmitted by a device
    through a gateway count (manual entries and control-solution tests do not)."""
    tz = clinic_tz or settings.clinic_timezone
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown time zone {tz!r}") from exc
    if not date(1971, 1, 1) <= period_start <= date(2199, 1, 1):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "period_start out of range")
    ids = visible_patients(conn, user)
    if ids is None:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM patients ORDER BY id").fetchall()]
    total = len(ids)
    chunk = ids[page.offset : page.offset + page.limit]
    report = billing_report(conn, chunk, period_start, tz)
    audit.write(
        conn,
        user,
        "billing.rpm",
        ip=audit.client_ip(request),
        resource="billing/rpm",
        detail={"period_start": period_start, "patients": chunk},
    )
    return BillingPage(
        **report.model_dump(),
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )
