"""Readings by kind and time range: raw rows, or aggregated per TimescaleDB
``time_bucket`` (bucket boundaries in the patient's local time zone)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from psycopg.rows import dict_row
from pydantic import AwareDatetime

from api.core.db import count_rows
from api.core.errors import COMMON
from api.deps import PageDep, Pagination, PatientDep, PatientScope
from api.schemas import (
    BodyReadingOut,
    BpBucketOut,
    BpReadingOut,
    GlucoseBucketOut,
    GlucoseReadingOut,
    Page,
)

router = APIRouter(prefix="/patients/{patient_id}/readings", tags=["readings"], responses=COMMON)

MAX_RANGE = timedelta(days=366)
DEFAULT_RANGE = timedelta(days=14)
BUCKETS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "4h": timedelta(hours=4),
    "6h": timedelta(hours=6),
    "12h": timedelta(hours=12),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
}
Bucket = Literal["5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d", "7d"]
# Buckets start at local midnight/hour (%(tz)s is the patient's zone), not UTC.
BUCKET = "SELECT time_bucket(%(width)s, time, %(tz)s) AS bucket"


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    def audit_detail(self, **extra: Any) -> dict[str, Any]:
        """What an audited read over this range records, with ``extra``."""
        return {"start": self.start, "end": self.end, **extra}


def time_range(
    start: Annotated[
        AwareDatetime | None,
        Query(description="inclusive, ISO 8601 with offset; default end - 14 d"),
    ] = None,
    end: Annotated[
        AwareDatetime | None, Query(description="exclusive, ISO 8601 with offset; default now")
    ] = None,
) -> TimeRange:
    """A half-open ``[start, end)`` of at most 366 days."""
    try:
        stop = end or datetime.now(UTC)
        begin = start or stop - DEFAULT_RANGE
    except OverflowError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "time out of range") from exc
    if begin >= stop:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "start must be before end")
    if stop - begin > MAX_RANGE:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the time range may span at most 366 days")
    if begin.year < 1900 or stop.year > 2200:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "time out of range (1900-2200)")
    return TimeRange(begin, stop)


RangeDep = Annotated[TimeRange, Depends(time_range)]
BucketQuery = Annotated[Bucket, Query(description="bucket width")]


def _page(
    scope: PatientScope,
    span: TimeRange,
    page: Pagination,
    count_sql: str,
    rows_sql: str,
    **filters: Any,
) -> tuple[list[dict[str, Any]], int]:
    """One page of rows, by column name (``rows_sql`` names its columns as the response
    model's fields and leaves LIMIT/OFFSET to this), and the total ``count_sql`` counts.
    Both take ``%(pid)s``, ``%(start)s``, ``%(end)s`` from scope and span, and ``filters``."""
    params = {"pid": scope.patient_id, "start": span.start, "end": span.end, **filters}
    total = count_rows(scope.conn, count_sql.encode(), params)
    with scope.conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            (rows_sql + " LIMIT %(limit)s OFFSET %(offset)s").encode(),
            {**params, "limit": page.limit, "offset": page.offset},
        )
        return cur.fetchall(), total


def _tz(scope: PatientScope) -> str:
    row = scope.conn.execute(
        "SELECT timezone FROM patients WHERE id = %s", (scope.patient_id,)
    ).fetchone()
    return str(row[0]) if row else "UTC"


# glucose keeps its one original as two columns; shown in the wire's shape like the others.
GLUCOSE_ORIGINAL = (
    "CASE WHEN original_unit IS NULL THEN NULL ELSE jsonb_build_object('glucose',"
    " jsonb_build_array(original_value, original_unit)) END AS original"
)
GLUCOSE_WHERE = (
    " FROM glucose WHERE patient_id = %(pid)s AND time >= %(start)s AND time < %(end)s"
    " AND (%(source)s::text IS NULL OR source = %(source)s)"
)


@router.get(
    "/glucose",
    response_model=Page[GlucoseReadingOut],
    summary="Glucose readings (mg/dL), oldest first",
)
def glucose_readings(
    scope: PatientDep,
    span: RangeDep,
    page: PageDep,
    request: Request,
    source: Annotated[Literal["cgm", "smbg"] | None, Query()] = None,
) -> Page[GlucoseReadingOut]:
    rows, total = _page(
        scope,
        span,
        page,
        "SELECT count(*)" + GLUCOSE_WHERE,
        "SELECT time, reading_id, device_id, source, mgdl, conditions, device_time, skew_s,"
        " gateway_id, trend_mgdl_min, quality_pct, details, record_type, "
        + GLUCOSE_ORIGINAL
        + GLUCOSE_WHERE
        + " ORDER BY time, reading_id",
        source=source,
    )
    scope.audit(
        "readings.glucose",
        f"patient/{scope.patient_id}/readings/glucose",
        span.audit_detail(n=len(rows)),
    )
    return page.of([GlucoseReadingOut(**r) for r in rows], total, request)


@router.get(
    "/glucose/buckets",
    response_model=Page[GlucoseBucketOut],
    summary="Glucose aggregated per time bucket (TimescaleDB time_bucket, local time)",
)
def glucose_buckets(
    scope: PatientDep,
    span: RangeDep,
    page: PageDep,
    request: Request,
    bucket: BucketQuery = "1h",
    source: Annotated[Literal["cgm", "smbg"] | None, Query()] = None,
) -> Page[GlucoseBucketOut]:
    """HI/LO results without a number and control-solution tests are left out."""
    where = GLUCOSE_WHERE + " AND mgdl IS NOT NULL AND NOT ('control_solution' = ANY(conditions))"
    rows, total = _page(
        scope,
        span,
        page,
        f"SELECT count(*) FROM ({BUCKET}{where} GROUP BY bucket) g",
        f"{BUCKET}, count(*) AS n, avg(mgdl) AS mean, min(mgdl) AS min, max(mgdl) AS max"
        + where
        + " GROUP BY bucket ORDER BY bucket",
        source=source,
        width=BUCKETS[bucket],
        tz=_tz(scope),
    )
    scope.audit(
        "readings.glucose_buckets",
        f"patient/{scope.patient_id}/readings/glucose",
        span.audit_detail(bucket=bucket),
    )
    return page.of([GlucoseBucketOut(**r) for r in rows], total, request)


BP_WHERE = (
    " FROM blood_pressure WHERE patient_id = %(pid)s AND time >= %(start)s AND time < %(end)s"
)


@router.get(
    "/blood-pressure",
    response_model=Page[BpReadingOut],
    summary="Blood-pressure readings (mmHg, pulse /min), oldest first",
)
def bp_readings(
    scope: PatientDep, span: RangeDep, page: PageDep, request: Request
) -> Page[BpReadingOut]:
    rows, total = _page(
        scope,
        span,
        page,
        "SELECT count(*)" + BP_WHERE,
        "SELECT time, reading_id, device_id, systolic, diastolic, mean_arterial, pulse,"
        " conditions, device_time, skew_s, gateway_id, details, record_type, original"
        + BP_WHERE
        + " ORDER BY time, reading_id",
    )
    scope.audit(
        "readings.blood_pressure",
        f"patient/{scope.patient_id}/readings/blood-pressure",
        span.audit_detail(n=len(rows)),
    )
    return page.of([BpReadingOut(**r) for r in rows], total, request)


@router.get(
    "/blood-pressure/buckets",
    response_model=Page[BpBucketOut],
    summary="Blood pressure aggregated per time bucket (local time)",
)
def bp_buckets(
    scope: PatientDep,
    span: RangeDep,
    page: PageDep,
    request: Request,
    bucket: BucketQuery = "1d",
) -> Page[BpBucketOut]:
    rows, total = _page(
        scope,
        span,
        page,
        f"SELECT count(*) FROM ({BUCKET}{BP_WHERE} GROUP BY bucket) g",
        f"{BUCKET}, count(*) AS n, avg(systolic) AS systolic_mean,"
        " avg(diastolic) AS diastolic_mean, max(systolic) AS systolic_max,"
        " max(diastolic) AS diastolic_max, avg(pulse) AS pulse_mean"
        + BP_WHERE
        + " GROUP BY bucket ORDER BY bucket",
        width=BUCKETS[bucket],
        tz=_tz(scope),
    )
    scope.audit(
        "readings.blood_pressure_buckets",
        f"patient/{scope.patient_id}/readings/blood-pressure",
        span.audit_detail(bucket=bucket),
    )
    return page.of([BpBucketOut(**r) for r in rows], total, request)


BODY_WHERE = (
    " FROM body_readings WHERE patient_id = %(pid)s AND time >= %(start)s AND time < %(end)s"
    " AND (%(kind)s::text IS NULL OR kind = %(kind)s)"
)


@router.get(
    "/body",
    response_model=Page[BodyReadingOut],
    summary="Weight, SpO2, temperature readings, oldest first",
)
def body_readings(
    scope: PatientDep,
    span: RangeDep,
    page: PageDep,
    request: Request,
    kind: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> Page[BodyReadingOut]:
    rows, total = _page(
        scope,
        span,
        page,
        "SELECT count(*)" + BODY_WHERE,
        "SELECT time, reading_id, device_id, kind, components, conditions, device_time,"
        " skew_s, gateway_id, details, record_type, original"
        + BODY_WHERE
        + " ORDER BY time, reading_id",
        kind=kind,
    )
    scope.audit(
        "readings.body",
        f"patient/{scope.patient_id}/readings/body",
        span.audit_detail(n=len(rows)),
    )
    return page.of([BodyReadingOut(**r) for r in rows], total, request)
