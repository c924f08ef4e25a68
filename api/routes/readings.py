"""Readings by kind and time range: raw rows, or aggregated per TimescaleDB
``time_bucket`` (bucket boundaries in the patient's local time zone)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import AwareDatetime

from api.core.errors import COMMON
from api.deps import PageDep, Pagination, PatientDep
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


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime


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
    conn: psycopg.Connection[Any],
    count_sql: str,
    rows_sql: str,
    params: dict[str, Any],
    page: Pagination,
) -> tuple[list[tuple[Any, ...]], int]:
    row = conn.execute(count_sql.encode(), params).fetchone()
    total = int(row[0]) if row else 0
    rows = conn.execute(rows_sql.encode(), {**params, "limit": page.limit, "offset": page.offset})
    return rows.fetchall(), total


def _tz(scope: Any) -> str:
    row = scope.conn.execute(
        "SELECT timezone FROM patients WHERE id = %s", (scope.patient_id,)
    ).fetchone()
    return str(row[0]) if row else "UTC"


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
    params = {"pid": scope.patient_id, "start": span.start, "end": span.end, "source": source}
    rows, total = _page(
        scope.conn,
        "SELECT count(*)" + GLUCOSE_WHERE,
        "SELECT time, reading_id, device_id, source, mgdl, conditions, device_time, skew_s,"
        " gateway_id"
        + GLUCOSE_WHERE
        + " ORDER BY time, reading_id LIMIT %(limit)s OFFSET %(offset)s",
        params,
        page,
    )
    scope.audit(
        "readings.glucose",
        f"patient/{scope.patient_id}/readings/glucose",
        {"start": span.start, "end": span.end, "n": len(rows)},
    )
    items = [
        GlucoseReadingOut(
            time=r[0],
            reading_id=r[1],
            device_id=r[2],
            source=r[3],
            mgdl=r[4],
            conditions=list(r[5]),
            device_time=r[6],
            skew_s=r[7],
            gateway_id=r[8],
        )
        for r in rows
    ]
    return Page[GlucoseReadingOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )


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
    params = {
        "pid": scope.patient_id,
        "start": span.start,
        "end": span.end,
        "source": source,
        "width": BUCKETS[bucket],
        "tz": _tz(scope),
    }
    grouped = "SELECT time_bucket(%(width)s, time, %(tz)s) AS b" + where + " GROUP BY b"
    rows, total = _page(
        scope.conn,
        f"SELECT count(*) FROM ({grouped}) g",
        "SELECT time_bucket(%(width)s, time, %(tz)s) AS b, count(*), avg(mgdl), min(mgdl),"
        " max(mgdl)" + where + " GROUP BY b ORDER BY b LIMIT %(limit)s OFFSET %(offset)s",
        params,
        page,
    )
    scope.audit(
        "readings.glucose_buckets",
        f"patient/{scope.patient_id}/readings/glucose",
        {"start": span.start, "end": span.end, "bucket": bucket},
    )
    items = [GlucoseBucketOut(bucket=r[0], n=r[1], mean=r[2], min=r[3], max=r[4]) for r in rows]
    return Page[GlucoseBucketOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )


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
    params = {"pid": scope.patient_id, "start": span.start, "end": span.end}
    rows, total = _page(
        scope.conn,
        "SELECT count(*)" + BP_WHERE,
        "SELECT time, reading_id, device_id, systolic, diastolic, mean_arterial, pulse,"
        " conditions, device_time, skew_s, gateway_id"
        + BP_WHERE
        + " ORDER BY time, reading_id LIMIT %(limit)s OFFSET %(offset)s",
        params,
        page,
    )
    scope.audit(
        "readings.blood_pressure",
        f"patient/{scope.patient_id}/readings/blood-pressure",
        {"start": span.start, "end": span.end, "n": len(rows)},
    )
    items = [
        BpReadingOut(
            time=r[0],
            reading_id=r[1],
            device_id=r[2],
            systolic=r[3],
            diastolic=r[4],
            mean_arterial=r[5],
            pulse=r[6],
            conditions=list(r[7]),
            device_time=r[8],
            skew_s=r[9],
            gateway_id=r[10],
        )
        for r in rows
    ]
    return Page[BpReadingOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )


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
    params = {
        "pid": scope.patient_id,
        "start": span.start,
        "end": span.end,
        "width": BUCKETS[bucket],
        "tz": _tz(scope),
    }
    grouped = "SELECT time_bucket(%(width)s, time, %(tz)s) AS b" + BP_WHERE + " GROUP BY b"
    rows, total = _page(
        scope.conn,
        f"SELECT count(*) FROM ({grouped}) g",
        "SELECT time_bucket(%(width)s, time, %(tz)s) AS b, count(*), avg(systolic),"
        " avg(diastolic), max(systolic), max(diastolic), avg(pulse)"
        + BP_WHERE
        + " GROUP BY b ORDER BY b LIMIT %(limit)s OFFSET %(offset)s",
        params,
        page,
    )
    scope.audit(
        "readings.blood_pressure_buckets",
        f"patient/{scope.patient_id}/readings/blood-pressure",
        {"start": span.start, "end": span.end, "bucket": bucket},
    )
    items = [
        BpBucketOut(
            bucket=r[0],
            n=r[1],
            systolic_mean=r[2],
            diastolic_mean=r[3],
            systolic_max=r[4],
            diastolic_max=r[5],
            pulse_mean=r[6],
        )
        for r in rows
    ]
    return Page[BpBucketOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )


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
    params = {"pid": scope.patient_id, "start": span.start, "end": span.end, "kind": kind}
    rows, total = _page(
        scope.conn,
        "SELECT count(*)" + BODY_WHERE,
        "SELECT time, reading_id, device_id, kind, components, conditions, device_time, skew_s,"
        " gateway_id" + BODY_WHERE + " ORDER BY time, reading_id LIMIT %(limit)s OFFSET %(offset)s",
        params,
        page,
    )
    scope.audit(
        "readings.body",
        f"patient/{scope.patient_id}/readings/body",
        {"start": span.start, "end": span.end, "n": len(rows)},
    )
    items = [
        BodyReadingOut(
            time=r[0],
            reading_id=r[1],
            device_id=r[2],
            kind=r[3],
            components=r[4],
            conditions=list(r[5]),
            device_time=r[6],
            skew_s=r[7],
            gateway_id=r[8],
        )
        for r in rows
    ]
    return Page[BodyReadingOut](
        items=items,
        total=total,
        limit=page.limit,
        offset=page.offset,
        next=page.next_url(request, total),
    )
