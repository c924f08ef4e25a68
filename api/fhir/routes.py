"""FHIR R4 REST facade (read and search, JSON only): ``/fhir/metadata``, Patient, Device,
Observation, Flag.  Same bearer tokens and patient scope as the REST API, plus SMART
system clients within their scopes (``api.fhir.access``); every read of patient data is
audited (a client as ``client:<id>``, role ``system``); errors are OperationOutcome."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request, status
from psycopg.rows import dict_row

from api.core import audit
from api.core.config import ApiSettings
from api.core.db import count_rows
from api.core.principal import Principal
from api.deps import ConnDep, can_see
from api.fhir import body_vitals as bv
from api.fhir import observation_sources as obs_sources
from api.fhir import resources as fr
from api.fhir import search as fs
from api.fhir.access import (
    DeviceRead,
    DeviceSearch,
    FlagRead,
    FlagSearch,
    ObservationRead,
    ObservationSearch,
    PatientRead,
    PatientSearch,
)
from api.fhir.observation_sources import NOT_CONTROL
from api.smart.config import token_url

_JSON_SCHEMA = {
    "type": "object",
    "properties": {"resourceType": {"type": "string"}},
    "required": ["resourceType"],
}
_OUTCOME = {"content": {fr.FHIR_JSON: {"schema": _JSON_SCHEMA}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "FHIR resource", **_OUTCOME},
    400: {"description": "OperationOutcome", **_OUTCOME},
    401: {"description": "OperationOutcome", **_OUTCOME},
    403: {"description": "OperationOutcome", **_OUTCOME},
    404: {"description": "OperationOutcome", **_OUTCOME},
    422: {"description": "OperationOutcome", **_OUTCOME},
    503: {"description": "OperationOutcome", **_OUTCOME},
}

router = APIRouter(tags=["fhir"], responses=RESPONSES, default_response_class=fr.FhirResponse)

MAX_COUNT = 500
CountQ = Annotated[int, Query(alias="_count", ge=1, le=MAX_COUNT)]
OffsetQ = Annotated[int, Query(alias="_offset", ge=0, le=1_000_000)]
FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")


def _base(request: Request) -> str:
    """``[base]`` of FHIR: the configured public URL, never the request's Host header."""
    settings: ApiSettings = request.app.state.settings
    return settings.public_base_url + "/fhir"


def _fhir(content: dict[str, Any]) -> fr.FhirResponse:
    return fr.FhirResponse(content)


def _not_found(kind: str, fhir_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{kind}/{fhir_id} not found")


def _searchset(
    request: Request,
    search: fs.Search,
    resources: list[dict[str, Any]],
    total: int,
    offset: int,
    count: int,
) -> fr.FhirResponse:
    """The Bundle of one page of search results.  The self link lists exactly the
    parameters applied (R4 §3.1.1.4), the next link the same with the next ``_offset``."""
    base = _base(request)
    more = offset + count < total
    next_url = search.url(base, _offset=offset + count) if more else None
    return _fhir(fr.bundle(resources, base, total, search.url(base), next_url))


def _audit(
    conn: psycopg.Connection[Any],
    user: Principal,
    request: Request,
    action: str,
    patient_id: int | None,
    detail: dict[str, Any] | None = None,
) -> None:
    audit.write(
        conn,
        user,
        action,
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=request.url.path,
        detail=detail,
    )


def _denied(
    conn: psycopg.Connection[Any],
    user: Principal,
    request: Request,
    kind: str,
    fhir_id: str,
    patient_id: int | None,
    code: int = status.HTTP_404_NOT_FOUND,
    message: str | None = None,
) -> HTTPException:
    """A read refused: audited as ``access.denied`` (docs/api.md promises a row for every
    denial), answered 404 as if it did not exist, or 403 for a role that may never read
    the type."""
    audit.write(
        conn,
        user,
        "access.denied",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=request.url.path,
        status=code,
    )
    if code == status.HTTP_404_NOT_FOUND:
        return _not_found(kind, fhir_id)
    return HTTPException(code, message or f"you may not read {kind}")


def _search(
    conn: psycopg.Connection[Any], user: Principal, request: Request, resource: str
) -> tuple[fs.Search, list[int] | None]:
    """The accepted parameters and the patients the search covers (None: all)."""
    search = fs.parse(request, resource)
    return search, fs.patient_scope(conn, user, request, search, _base(request))


# Documented reference and chained parameters; read through ``api.fhir.search``, which
# also sees every repeat and refuses or drops unknown ones.
RefQ = Annotated[list[str] | None, Query(description="Patient reference; repeat = AND")]


@router.get("/metadata", summary="CapabilityStatement", response_class=fr.FhirResponse)
def metadata(request: Request) -> fr.FhirResponse:
    return _fhir(fr.capability_statement(_base(request), token_url(request)))


# --- Patient -----------------------------------------------------------------------------

PATIENT_SQL = (
    "SELECT id, external_id, mrn, given_name, family_name, birth_date, timezone FROM patients"
)


@router.get("/Patient/{fhir_id}", summary="Read a Patient")
def read_patient(
    fhir_id: str, user: PatientRead, conn: ConnDep, request: Request
) -> fr.FhirResponse:
    if not fhir_id.isdigit() or len(fhir_id) > 18:
        raise _not_found("Patient", fhir_id)
    if not can_see(conn, user, int(fhir_id)):
        raise _denied(conn, user, request, "Patient", fhir_id, int(fhir_id))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(PATIENT_SQL + " WHERE id = %s", (int(fhir_id),)).fetchone()
    if row is None:
        raise _not_found("Patient", fhir_id)
    _audit(conn, user, request, "fhir.patient.read", row["id"])
    return _fhir(fr.patient_resource(row))


@router.get("/Patient", summary="Search Patients (_id, identifier)")
def search_patients(
    user: PatientSearch,
    conn: ConnDep,
    request: Request,
    count: CountQ = 50,
    offset: OffsetQ = 0,
    id_: Annotated[list[str] | None, Query(alias="_id", description="repeat = AND")] = None,
    identifier: Annotated[list[str] | None, Query(description="[system|]value")] = None,
) -> fr.FhirResponse:
    search, ids = _search(conn, user, request, "Patient")
    clauses: list[str] = ["true"]
    params: list[Any] = []
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(ids)
    for _, value in search.values("_id"):  # each repeat narrows (AND), commas are OR
        wanted = [v for v in fs.split_or(value) if v.isdigit() and len(v) <= 18]
        if not all(fs.FHIR_ID.match(v) for v in fs.split_or(value)):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid _id {value!r}")
        clauses.append("id = ANY(%s)")
        params.append([int(v) for v in wanted])
    for _, value in search.values("identifier"):
        ors: list[str] = []
        for token in fs.split_or(value):
            system, code = fs.split_token(token)
            if system is None:
                ors.append("(mrn = %s OR external_id = %s)")
                params.extend([code, code])
            elif system == fr.MRN_SYSTEM:
                ors.append("mrn = %s")
                params.append(code)
            elif system == fr.EXTERNAL_ID_SYSTEM:
                ors.append("external_id = %s")
                params.append(code)
        clauses.append("(" + (" OR ".join(ors) or "false") + ")")
    where = " AND ".join(clauses)
    total = count_rows(conn, f"SELECT count(*) FROM patients WHERE {where}", params)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{PATIENT_SQL} WHERE {where} ORDER BY id LIMIT %s OFFSET %s",
            [*params, count, offset],
        ).fetchall()
    _audit(conn, user, request, "fhir.patient.search", None, {"patients": [r["id"] for r in rows]})
    resources = [fr.patient_resource(r) for r in rows]
    return _searchset(request, search, resources, total, offset, count)


# --- Device --------------------------------------------------------------------------------

DEVICE_SQL = (
    "SELECT d.id, d.profile, d.name, d.manufacturer, d.model, d.serial, d.battery_percent,"
    " d.clock_skew_s, d.last_sync, (SELECT b.patient_id FROM device_bindings b"
    " WHERE b.device_id = d.id AND upper_inf(b.valid)) AS patient_id FROM devices d"
)
GATEWAY_SQL = "SELECT id, patient_id, version FROM gateways"


@router.get("/Device/{fhir_id}", summary="Read a Device (measuring device or gateway)")
def read_device(fhir_id: str, user: DeviceRead, conn: ConnDep, request: Request) -> fr.FhirResponse:
    parsed = fr.parse_device_id(fhir_id) if FHIR_ID.match(fhir_id) else None
    if parsed is None:
        raise _not_found("Device", fhir_id)
    kind, match, value = parsed
    table_sql = DEVICE_SQL if kind == "device" else GATEWAY_SQL
    alias = "d.id" if kind == "device" else "id"
    cond = (
        f"{alias} = %s"
        if match == "exact"
        else f"left(encode(sha256(convert_to({alias}, 'UTF8')), 'hex'), 40) = %s"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{table_sql} WHERE {cond}", (value,)).fetchone()
    if row is None:
        raise _not_found("Device", fhir_id)
    patient = row.get("patient_id")
    if user.role != "admin" and (patient is None or not can_see(conn, user, int(patient))):
        raise _denied(conn, user, request, "Device", fhir_id, patient)
    _audit(conn, user, request, "fhir.device.read", patient)
    return _fhir(fr.device_resource(row) if kind == "device" else fr.gateway_resource(row))


@router.get("/Device", summary="Search Devices by patient (current bindings and gateways)")
def search_devices(
    user: DeviceSearch,
    conn: ConnDep,
    request: Request,
    patient: RefQ = None,
    patient_identifier: Annotated[
        list[str] | None, Query(alias="patient.identifier", description="chained, [system|]value")
    ] = None,
    count: CountQ = 50,
    offset: OffsetQ = 0,
) -> fr.FhirResponse:
    search, ids = _search(conn, user, request, "Device")
    where_d = "true" if ids is None else "d_pid = ANY(%(ids)s)"
    sql = (
        f"SELECT * FROM (SELECT 'device' AS kind, d.id AS key, b.patient_id AS d_pid"
        " FROM devices d JOIN device_bindings b ON b.device_id = d.id AND upper_inf(b.valid)"
        " UNION ALL SELECT 'gateway', g.id, g.patient_id FROM gateways g"
        f" WHERE g.patient_id IS NOT NULL) x WHERE {where_d}"
    )
    params = {"ids": ids}
    total = count_rows(conn, f"SELECT count(*) FROM ({sql}) y", params)
    keys = conn.execute(
        f"{sql} ORDER BY kind DESC, key LIMIT %(count)s OFFSET %(offset)s",
        {**params, "count": count, "offset": offset},
    ).fetchall()
    devices = [k[1] for k in keys if k[0] == "device"]
    gateways = [k[1] for k in keys if k[0] == "gateway"]
    out: list[dict[str, Any]] = []
    with conn.cursor(row_factory=dict_row) as cur:
        if devices:
            rows = cur.execute(DEVICE_SQL + " WHERE d.id = ANY(%s) ORDER BY d.id", (devices,))
            out.extend(fr.device_resource(r) for r in rows.fetchall())
        if gateways:
            rows = cur.execute(GATEWAY_SQL + " WHERE id = ANY(%s) ORDER BY id", (gateways,))
            out.extend(fr.gateway_resource(r) for r in rows.fetchall())
    pid = ids[0] if ids is not None and len(ids) == 1 else None
    _audit(conn, user, request, "fhir.device.search", pid, {"n": len(out)})
    return _searchset(request, search, out, total, offset, count)


# --- Observation ---------------------------------------------------------------------------

GLUCOSE_COLS = (
    "reading_id, time, device_id, patient_id, gateway_id, skew_s, device_time, conditions,"
    " source, mgdl, original_value, original_unit, details"
)
BP_COLS = (
    "reading_id, time, device_id, patient_id, gateway_id, skew_s, device_time, conditions,"
    " systolic, diastolic, mean_arterial, pulse, original"
)
BODY_COLS = (
    "reading_id, time, device_id, patient_id, gateway_id, skew_s, device_time, conditions,"
    " kind, components, details, original"
)
BODY_PREFIXES = tuple(bv.VITALS)


def _parse_fhir_date(raw: str) -> tuple[str, datetime, datetime]:
    """(prefix, lower, upper) of a FHIR date parameter; the value's own precision makes
    the range (a day, a month, a year, or an instant)."""
    prefix = raw[:2] if raw[:2] in ("eq", "ge", "le", "gt", "lt") else "eq"
    value = raw[2:] if raw[:2] == prefix else raw
    try:
        if re.fullmatch(r"\d{4}", value):
            low = datetime(int(value), 1, 1, tzinfo=UTC)
            return prefix, low, low.replace(year=low.year + 1)
        if re.fullmatch(r"\d{4}-\d{2}", value):
            low = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
            high = (low + timedelta(days=32)).replace(day=1)
            return prefix, low, high
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            low = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            return prefix, low, low + timedelta(days=1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid date parameter {raw!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return prefix, moment, moment + timedelta(microseconds=1)


def _date_sql(values: list[str] | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for raw in values or []:
        prefix, low, high = _parse_fhir_date(raw)
        if prefix == "eq":
            clauses.append("time >= %s AND time < %s")
            params.extend([low, high])
        elif prefix == "ge":
            clauses.append("time >= %s")
            params.append(low)
        elif prefix == "gt":
            clauses.append("time >= %s")
            params.append(high)
        elif prefix == "le":
            clauses.append("time < %s")
            params.append(high)
        else:  # lt
            clauses.append("time < %s")
            params.append(low)
    return (" AND ".join(clauses) or "true"), params


def _observation(kind: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """Observation ``kind`` of a reading row (None if that reading has no such one)."""
    if "components" in row:  # a body reading
        return bv.body_observation(kind, row)
    if kind == "glu":
        return fr.glucose_observation(row)
    if kind == "bp":
        return fr.bp_observation(row)
    if kind == "hr" and row.get("pulse") is not None:
        return fr.heart_rate_observation(row)
    return None


def _load(
    conn: psycopg.Connection[Any], keys: list[tuple[str, uuid.UUID, datetime]]
) -> list[dict[str, Any]]:
    glu = [k[1] for k in keys if k[0] == "glu"]
    bp = [k[1] for k in keys if k[0] in ("bp", "hr")]
    body = [k[1] for k in keys if k[0] in BODY_PREFIXES]  # "hr" may be an oximeter's
    rows: dict[uuid.UUID, dict[str, Any]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for cols, table, ids in (
            (GLUCOSE_COLS, "glucose", glu),
            (BP_COLS, "blood_pressure", bp),
            (BODY_COLS, "body_readings", body),
        ):
            if ids:
                for r in cur.execute(
                    f"SELECT {cols} FROM {table} WHERE reading_id = ANY(%s)", (ids,)
                ):
                    rows[r["reading_id"]] = r
    out: list[dict[str, Any]] = []
    for kind, reading_id, _ in keys:
        row = rows.get(reading_id)
        obs = None if row is None else _observation(kind, row)
        if obs is not None:
            out.append(obs)
    return out


@router.get(
    "/Observation",
    summary="Search Observations: patient, code, category, date (ge/le...), _count",
)
def search_observations(
    user: ObservationSearch,
    conn: ConnDep,
    request: Request,
    patient: RefQ = None,
    subject: RefQ = None,
    subject_patient: Annotated[list[str] | None, Query(alias="subject:Patient")] = None,
    patient_identifier: Annotated[
        list[str] | None, Query(alias="patient.identifier", description="chained, [system|]value")
    ] = None,
    code: Annotated[list[str] | None, Query(description="[system|]code; repeat = AND")] = None,
    category: Annotated[list[str] | None, Query(description="[system|]code; repeat = AND")] = None,
    date_: Annotated[list[str] | None, Query(alias="date", max_length=4)] = None,
    sort: Annotated[str, Query(alias="_sort", pattern=r"^-?date$")] = "date",
    count: CountQ = 100,
    offset: OffsetQ = 0,
) -> fr.FhirResponse:
    search, ids = _search(conn, user, request, "Observation")
    if ids is None:
        ids = [int(r[0]) for r in conn.execute("SELECT id FROM patients").fetchall()]
    date_where, date_params = _date_sql(date_)
    # Each repeat of code or category must match (AND); commas inside one are OR.
    sources = list(obs_sources.SOURCES)
    for value in code or []:
        sources = [s for s in sources if s in obs_sources.select(value, None)]
    for value in category or []:
        sources = [s for s in sources if s in obs_sources.select(None, value)]
    resources: list[dict[str, Any]] = []
    total = 0
    if sources and ids:
        union = obs_sources.union_sql(sources, date_where)
        params: list[Any] = []
        for _ in sources:
            params.extend([ids, *date_params])
        total = count_rows(conn, f"SELECT count(*) FROM ({union}) u", params)
        direction = "DESC" if sort.startswith("-") else "ASC"
        keys = conn.execute(
            f"{union} ORDER BY time {direction}, reading_id, kind LIMIT %s OFFSET %s",
            [*params, count, offset],
        ).fetchall()
        resources = _load(conn, [(k[0], k[1], k[2]) for k in keys])
    pid = ids[0] if len(ids) == 1 else None
    _audit(
        conn,
        user,
        request,
        "fhir.observation.search",
        pid,
        {"n": len(resources), "code": code, "category": category},
    )
    return _searchset(request, search, resources, total, offset, count)


@router.get("/Observation/{fhir_id}", summary="Read an Observation")
def read_observation(
    fhir_id: str, user: ObservationRead, conn: ConnDep, request: Request
) -> fr.FhirResponse:
    parsed = fr.parse_observation_id(fhir_id)
    if parsed is None:
        raise _not_found("Observation", fhir_id)
    kind, reading_id = parsed
    row: dict[str, Any] | None = None
    with conn.cursor(row_factory=dict_row) as cur:
        if kind in ("glu", "cts"):
            row = cur.execute(
                f"SELECT {GLUCOSE_COLS} FROM glucose WHERE reading_id = %s AND {NOT_CONTROL}",
                (reading_id,),
            ).fetchone()
        if row is None and kind in ("bp", "hr", "cts"):
            row = cur.execute(
                f"SELECT {BP_COLS} FROM blood_pressure WHERE reading_id = %s",
                (reading_id,),
            ).fetchone()
        if row is None and kind in (*BODY_PREFIXES, "cts"):
            row = cur.execute(
                f"SELECT {BODY_COLS} FROM body_readings WHERE reading_id = %s",
                (reading_id,),
            ).fetchone()
    if row is None:
        raise _not_found("Observation", fhir_id)
    if row["patient_id"] is None or not can_see(conn, user, int(row["patient_id"])):
        raise _denied(conn, user, request, "Observation", fhir_id, row["patient_id"])
    if kind == "cts":
        obs = fr.coincident_timestamp_observation(row) if row.get("skew_s") is not None else None
    else:
        obs = _observation(kind, row)
    if obs is None:
        raise _not_found("Observation", fhir_id)
    _audit(conn, user, request, "fhir.observation.read", int(row["patient_id"]))
    return _fhir(obs)


# --- Flag ------------------------------------------------------------------------------------

FLAG_SQL = (
    "SELECT id, patient_id, rule_id, severity, status, summary, opened_at, resolved_at FROM flags"
)


@router.get("/Flag", summary="Search Flags (review items) by patient, date, status")
def search_flags(
    user: FlagSearch,
    conn: ConnDep,
    request: Request,
    patient: RefQ = None,
    subject: RefQ = None,
    subject_patient: Annotated[list[str] | None, Query(alias="subject:Patient")] = None,
    patient_identifier: Annotated[
        list[str] | None, Query(alias="patient.identifier", description="chained, [system|]value")
    ] = None,
    date_: Annotated[list[str] | None, Query(alias="date", max_length=4)] = None,
    id_: Annotated[list[str] | None, Query(alias="_id", description="repeat = AND")] = None,
    status_: Annotated[
        list[str] | None,
        Query(alias="status", description="active | inactive; repeat = AND", max_length=4),
    ] = None,
    count: CountQ = 50,
    offset: OffsetQ = 0,
) -> fr.FhirResponse:
    if user.role == "patient":
        raise _denied(
            conn, user, request, "Flag", "", user.patient_id, 403, "flags are for clinicians"
        )
    search, ids = _search(conn, user, request, "Flag")
    date_where, date_params = _date_sql(date_)
    date_where = date_where.replace("time", "opened_at")
    clauses = [date_where]
    params: list[Any] = [*date_params]
    if ids is not None:
        clauses.append("patient_id = ANY(%s)")
        params.append(ids)
    for _, value in search.values("_id"):  # each repeat narrows (AND), commas are OR
        given = [fs.unescape(v).strip() for v in fs.split_or(value)]
        if not all(fs.FHIR_ID.match(v) for v in given):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid _id {value!r}")
        clauses.append("id = ANY(%s)")
        params.append([int(v) for v in given if v.isdigit() and len(v) <= 18])
    for value in status_ or []:
        wanted = set(fs.split_or(value))
        if not wanted <= {"active", "inactive"}:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "status must be active or inactive")
        if wanted == {"inactive"}:
            clauses.append("status = 'resolved'")
        elif wanted == {"active"}:
            clauses.append("status <> 'resolved'")
    where = " AND ".join(clauses)
    total = count_rows(conn, f"SELECT count(*) FROM flags WHERE {where}", params)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{FLAG_SQL} WHERE {where} ORDER BY opened_at DESC, id DESC LIMIT %s OFFSET %s",
            [*params, count, offset],
        ).fetchall()
    pid = ids[0] if ids is not None and len(ids) == 1 else None
    _audit(conn, user, request, "fhir.flag.search", pid, {"flags": [r["id"] for r in rows]})
    resources = [fr.flag_resource(r) for r in rows]
    return _searchset(request, search, resources, total, offset, count)


@router.get("/Flag/{fhir_id}", summary="Read a Flag")
def read_flag(fhir_id: str, user: FlagRead, conn: ConnDep, request: Request) -> fr.FhirResponse:
    if user.role == "patient":
        # Flags are clinicians' review items (docs/api.md): a role matter, so 403.
        raise _denied(
            conn, user, request, "Flag", fhir_id, user.patient_id, 403, "flags are for clinicians"
        )
    if not fhir_id.isdigit() or len(fhir_id) > 18:
        raise _not_found("Flag", fhir_id)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(FLAG_SQL + " WHERE id = %s", (int(fhir_id),)).fetchone()
    if row is None:
        raise _not_found("Flag", fhir_id)
    if not can_see(conn, user, int(row["patient_id"])):
        raise _denied(conn, user, request, "Flag", fhir_id, int(row["patient_id"]))
    _audit(conn, user, request, "fhir.flag.read", int(row["patient_id"]))
    return _fhir(fr.flag_resource(row))
