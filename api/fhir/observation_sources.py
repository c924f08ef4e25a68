"""Where each searchable Observation comes from: its id prefix, table, SQL condition,
category and LOINC codes, so an Observation search (``code``, ``category``) becomes one
``UNION ALL`` over exactly the tables and rows that can match."""

from __future__ import annotations

from dataclasses import dataclass

from api.fhir import body_vitals as bv
from api.fhir import resources as fr

NOT_CONTROL = "NOT ('control_solution' = ANY(conditions))"


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # Observation id prefix
    table: str
    where: str
    category: str  # observation-category code
    codes: tuple[str, ...]  # every LOINC code on the Observation's ``code``


def _body(prefix: str) -> Source:
    vital = bv.VITALS[prefix]
    codes = tuple(code for code, _ in vital.codings)
    return Source(prefix, "body_readings", bv.sql_condition(prefix), "vital-signs", codes)


SOURCES: tuple[Source, ...] = (
    Source(
        "glu",
        "glucose",
        f"source = 'smbg' AND original_unit IS DISTINCT FROM 'mmol/L' AND {NOT_CONTROL}",
        "laboratory",
        (fr.GLUCOSE_MASS_BLOOD,),
    ),
    Source(
        "glu",
        "glucose",
        f"source = 'smbg' AND original_unit = 'mmol/L' AND {NOT_CONTROL}",
        "laboratory",
        (fr.GLUCOSE_MOLES_BLOOD,),
    ),
    Source("glu", "glucose", f"source = 'cgm' AND {NOT_CONTROL}", "laboratory", (fr.GLUCOSE_CGM,)),
    Source("bp", "blood_pressure", "true", "vital-signs", (fr.BP_PANEL,)),
    Source("hr", "blood_pressure", "pulse IS NOT NULL", "vital-signs", (fr.HEART_RATE,)),
    *(_body(prefix) for prefix in bv.VITALS),
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
