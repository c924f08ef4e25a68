"""Where each searchable Observation comes from: its id prefix, table, SQL condition,
category and LOINC codes, so an Observation search (``code``, ``category``) becomes one
``UNION ALL`` over exactly the tables and rows that can match."""

from __future__ import annotations

from dataclasses import dataclass

from api.fhir import body_vitals as bv
from api.fhir import resources as fr
from device_profiles.model import Kind
from readings import BODY_TABLE, KINDS, ComponentSpec, KindSpec


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # Observation id prefix
    table: str
    where: str
    category: str  # observation-category code
    codes: tuple[str, ...]  # every LOINC code on the Observation's ``code``


def _excluded(spec: KindSpec) -> list[str]:
    # Constants of the declaration only (condition names), never request input.
    return [f"NOT ('{c.value}' = ANY(conditions))" for c in sorted(spec.not_exported_when)]


NOT_CONTROL = " AND ".join(_excluded(KINDS[Kind.GLUCOSE]))


def _dedicated(spec: KindSpec) -> list[Source]:
    """The Observations of a kind with a dedicated table: its panel, and each component
    with a code of its own (the glucose value by the unit the meter reported, a pulse)."""
    shared = sum(1 for other in KINDS.values() if other.table == spec.table) > 1
    kind_where = [f"source = '{spec.source}'"] if shared else []
    category = spec.category[0]
    out: list[Source] = []
    if spec.panel is not None:
        where = " AND ".join([*kind_where, *_excluded(spec)]) or "true"
        out.append(
            Source(spec.panel.prefix, spec.table, where, category, (spec.panel.coding.code,))
        )
    for c in spec.components:
        out += _own(spec, c, kind_where, category)
    return out


def _own(spec: KindSpec, c: ComponentSpec, kind_where: list[str], category: str) -> list[Source]:
    units = [f.original_unit for f in c.fhir if f.original_unit is not None]
    out = []
    for fhir in c.fhir:
        if fhir.prefix is None:
            continue
        where = list(kind_where)
        if fhir.original_unit is not None:
            where.append(f"original_unit = '{fhir.original_unit}'")
        elif units:  # the codes of the other units take those readings
            where += [f"original_unit IS DISTINCT FROM '{u}'" for u in units]
        if not c.required:
            where.append(f"{c.column} IS NOT NULL")
        where += _excluded(spec)
        codes = tuple(k.code for k in fhir.codings)
        out.append(Source(fhir.prefix, spec.table, " AND ".join(where), category, codes))
    return out


def _body(prefix: str) -> Source:
    vital = bv.VITALS[prefix]
    codes = tuple(code for code, _ in vital.codings)
    return Source(prefix, BODY_TABLE, bv.sql_condition(prefix), vital.category[0], codes)


SOURCES: tuple[Source, ...] = tuple(
    source
    for spec in KINDS.values()
    for source in (
        [_body(p) for p, v in bv.VITALS.items() if v.kind == spec.kind.value]
        if spec.table == BODY_TABLE
        else _dedicated(spec)
    )
)


def _tokens(param: str | None, system: str) -> set[str] | None:
    """Codes of a token parameter (``[system|]code``, comma = or); None when absent.
    A token with another system matches nothing here."""
    if param is None:
        return None
    wanted: set[str] = set()
    for token in param.split(","):
        sys_, sep, value = token.strip().rpartition("|")
        if not sep or sys_ == system:
            wanted.add(value)
    return wanted


def select(code: str | None, category: str | None) -> list[Source]:
    codes = _tokens(code, fr.LOINC)
    categories = _tokens(category, fr.OBS_CATEGORY)
    return [
        s
        for s in SOURCES
        if (codes is None or not codes.isdisjoint(s.codes))
        and (categories is None or s.category in categories)
    ]


def union_sql(sources: list[Source], date_where: str) -> str:
    """SELECT (kind, reading_id, time) over the sources; each part takes the patient ids
    and then the date parameters."""
    return " UNION ALL ".join(
        f"SELECT '{s.kind}'::text AS kind, reading_id, time FROM {s.table}"
        f" WHERE patient_id = ANY(%s) AND {s.where} AND {date_where}"
        for s in sources
    )
