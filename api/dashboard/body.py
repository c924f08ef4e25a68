"""Weight, SpO2 and temperature for the patient page, read from ``body_readings``.

Every value is taken in SQL through ``_number``: NULL unless the jsonb component is a
number inside ingest's plausible range.  Rows written outside the ingest path (imports,
hand fixes, null where a device sent NaN) then drop out instead of breaking the page, and
aggregates run in the database so a pulse oximeter in continuous mode costs one row each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from device_profiles.model import Component, Kind
from readings import PLAUSIBLE

SPO2_LOW = 90.0  # % - the usual threshold for home oximetry follow-up

_WHERE = (
    " FROM body_readings WHERE patient_id = %(pid)s AND kind = %(kind)s"
    " AND time >= %(start)s AND time < %(end)s"
)


@dataclass(frozen=True)
class Point:
    time: datetime
    value: float


@dataclass(frozen=True)
class Weight:
    first: Point
    latest: Point
    bmi: float | None  # of the latest weighing only: an older BMI would not match it
    daily: list[tuple[date, float]]  # mean kg per local day


@dataclass(frozen=True)
class Spo2:
    latest: Point
    lowest: float
    below_low: int
    n: int


@dataclass(frozen=True)
class Temperature:
    latest: Point
    highest: float


@dataclass(frozen=True)
class BodyVitals:
    weight: Weight | None
    spo2: Spo2 | None
    temperature: Temperature | None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _number(component: Component) -> str:
    # Constants only (enum value and the declared float bounds), never request input.
    lo, hi = PLAUSIBLE[component]
    key = f"components->'{component.value}'"
    return (
        f"CASE WHEN jsonb_typeof({key}) = 'number' AND ({key})::numeric BETWEEN {lo} AND {hi}"
        f" THEN ({key})::float8 END"
    )


def _latest(
    conn: psycopg.Connection[Any],
    params: dict[str, Any],
    component: Component,
    also: Component | None = None,
) -> tuple[Any, ...] | None:
    """(time, value, value of ``also``) of the newest reading with a usable ``component``."""
    other = "NULL" if also is None else _number(also)
    return conn.execute(
        f"SELECT time, v, w FROM (SELECT time, {_number(component)} AS v, {other} AS w"
        f"{_WHERE}) r WHERE v IS NOT NULL ORDER BY time DESC LIMIT 1",
        params,
    ).fetchone()


def _weight(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Weight | None:
    latest = _latest(conn, params, Component.WEIGHT, Component.BMI)
    if latest is None:
        return None
    first = conn.execute(
        f"SELECT time, v FROM (SELECT time, {_number(Component.WEIGHT)} AS v{_WHERE}) r"
        " WHERE v IS NOT NULL ORDER BY time LIMIT 1",
        params,
    ).fetchone()
    assert first is not None  # the latest one exists
    daily = conn.execute(
        "SELECT (time AT TIME ZONE %(tz)s)::date AS day, avg(v)"
        f" FROM (SELECT time, {_number(Component.WEIGHT)} AS v{_WHERE}) r"
        " WHERE v IS NOT NULL GROUP BY day ORDER BY day",
        params,
    ).fetchall()
    return Weight(
        first=Point(first[0], float(first[1])),
        latest=Point(latest[0], float(latest[1])),
        bmi=None if latest[2] is None else float(latest[2]),
        daily=[(d, float(v)) for d, v in daily],
    )


def _spo2(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Spo2 | None:
    latest = _latest(conn, params, Component.SPO2)
    if latest is None:
        return None
    row = conn.execute(
        "SELECT min(v), count(*) FILTER (WHERE v < %(low)s), count(v)"
        f" FROM (SELECT {_number(Component.SPO2)} AS v{_WHERE}) r",
        {**params, "low": SPO2_LOW},
    ).fetchone()
    assert row is not None
    return Spo2(Point(latest[0], float(latest[1])), float(row[0]), int(row[1]), int(row[2]))


def _temperature(conn: psycopg.Connection[Any], params: dict[str, Any]) -> Temperature | None:
    latest = _latest(conn, params, Component.TEMPERATURE)
    if latest is None:
        return None
    row = conn.execute(
        f"SELECT max(v) FROM (SELECT {_number(Component.TEMPERATURE)} AS v{_WHERE}) r", params
    ).fetchone()
    assert row is not None
    return Temperature(Point(latest[0], float(latest[1])), float(row[0]))


def body_vitals(
    conn: psycopg.Connection[Any], patient_id: int, start: datetime, end: datetime, tz: str
) -> BodyVitals:
    """The patient's weight, SpO2 and temperature in [start, end); None where absent."""
    base = {"pid": patient_id, "start": start, "end": end, "tz": zone(tz).key}
    return BodyVitals(
        weight=_weight(conn, {**base, "kind": Kind.WEIGHT.value}),
        spo2=_spo2(conn, {**base, "kind": Kind.SPO2.value}),
        temperature=_temperature(conn, {**base, "kind": Kind.TEMPERATURE.value}),
    )
