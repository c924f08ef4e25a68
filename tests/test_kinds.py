"""The kinds' declaration (readings/kinds.py) is whole and consistent: every kind once,
every component with a unit, a range, a place to be stored and a display, LOINC codes
with a valid check digit, FHIR categories from the R4 value set."""

from __future__ import annotations

import math
import re

import pytest

from api.fhir import body_vitals, observation_sources
from api.fhir import resources as fr
from device_profiles.model import Component, Kind
from ingest.columns import COPY_TABLES
from readings import BODY_TABLE, KINDS, PLAUSIBLE, FhirCode, KindSpec

# http://hl7.org/fhir/R4/valueset-observation-category.html: code -> display.
OBSERVATION_CATEGORIES = {
    "social-history": "Social History",
    "vital-signs": "Vital Signs",
    "imaging": "Imaging",
    "laboratory": "Laboratory",
    "procedure": "Procedure",
    "survey": "Survey",
    "exam": "Exam",
    "therapy": "Therapy",
    "activity": "Activity",
}
# Not a reading: the live cuff pressure while inflating (device_profiles.model).
NOT_A_READING = {Component.CUFF_PRESSURE}
LOINC_CODE = re.compile(r"(\d{1,7})-(\d)")


def loinc_check_digit(digits: str) -> int:
    """LOINC's mod 10 check digit, as the LOINC Users' Guide (appendix "Calculating Mod
    10 check digits") spells it: the digits at odd positions from the right, read right
    to left, form a number that is doubled; the even-position digits, read the same
    way, are put in front of it; the check digit brings the sum of all those digits up
    to the next multiple of ten."""
    rev = digits[::-1]
    doubled = str(int(rev[0::2]) * 2)
    total = sum(int(d) for d in rev[1::2] + doubled)
    return (10 - total % 10) % 10


@pytest.mark.parametrize(
    ("code", "check"),
    [("12345", 5), ("2339", 0), ("8867", 4), ("85354", 9), ("59408", 5), ("99504", 3)],
)
def test_the_check_digit_oracle(code: str, check: int) -> None:
    # 12345-5 is the users' guide's worked example; the others are printed LOINC codes.
    assert loinc_check_digit(code) == check


def _fhir_codes() -> list[tuple[KindSpec, Component | None, FhirCode | None]]:
    return [
        (spec, c.component, fhir)
        for spec in KINDS.values()
        for c in spec.components
        for fhir in c.fhir
    ]


def test_every_kind_is_declared_once() -> None:
    assert list(KINDS) == list(Kind)
    for kind, spec in KINDS.items():
        assert spec.kind is kind


def test_every_component_has_a_unit_a_range_and_a_display() -> None:
    for spec in KINDS.values():
        components = [c.component for c in spec.components]
        assert len(components) == len(set(components)), spec.kind
        assert spec.required, f"{spec.kind} requires nothing"
        for c in spec.components:
            assert c.unit.strip(), c
            low, high = c.plausible
            assert math.isfinite(low) and math.isfinite(high) and low < high, c
            assert PLAUSIBLE[c.component] == c.plausible
            assert c.display is not None and c.display.label and c.display.decimals >= 0, c


def test_every_measured_component_belongs_to_a_kind() -> None:
    declared = {c.component for spec in KINDS.values() for c in spec.components}
    assert declared == set(Component) - NOT_A_READING


def test_every_component_is_stored_somewhere() -> None:
    for spec in KINDS.values():
        table = COPY_TABLES[spec.table]
        for c in spec.components:
            if spec.table == BODY_TABLE:
                assert c.column is None and "components" in table.columns, c
            else:
                assert c.column in table.columns, (spec.kind, c.component)
        # Kinds sharing a dedicated table are told apart by its ``source`` column.
        sharing = [k for k in KINDS.values() if k.table == spec.table]
        if spec.table != BODY_TABLE and len(sharing) > 1:
            assert spec.source and "source" in table.columns
            assert len({k.source for k in sharing}) == len(sharing)


def test_every_copy_table_has_a_type_per_column() -> None:
    for name, table in COPY_TABLES.items():
        assert table.name == name
        assert len(table.columns) == len(set(table.columns)) == len(table.types)
        assert table.columns[:2] == ("time", "reading_id")  # the writer's identity claim


def test_record_types() -> None:
    for spec in KINDS.values():
        assert spec.record_types and len(set(spec.record_types)) == len(spec.record_types)


def test_loinc_codes_are_well_formed() -> None:
    codings = [k for _, _, fhir in _fhir_codes() if fhir for k in fhir.codings]
    codings += [spec.panel.coding for spec in KINDS.values() if spec.panel is not None]
    assert codings
    for coding in codings:
        match = LOINC_CODE.fullmatch(coding.code)
        assert match is not None, coding
        assert loinc_check_digit(match[1]) == int(match[2]), coding
        assert coding.display.strip(), coding


def test_fhir_categories_and_devices() -> None:
    for spec in KINDS.values():
        code, display = spec.category
        assert OBSERVATION_CATEGORIES.get(code) == display, spec.kind
        assert spec.device.code.isdigit(), spec.kind
        assert spec.device.display.startswith("MDC_DEV_SPEC_PROFILE_"), spec.kind


def test_fhir_codes_are_usable() -> None:
    own: dict[str, tuple[str, ...]] = {}
    for spec, _, fhir in _fhir_codes():
        assert fhir is not None and fhir.codings and fhir.unit and fhir.ucum
        assert fhir.factor > 0
        prefixes = {f.prefix for c in spec.components for f in c.fhir} | {
            spec.panel.prefix if spec.panel else None
        }
        if fhir.prefix is None:
            assert spec.panel is not None, f"{spec.kind}: a panel component without a panel"
            continue
        assert fhir.text
        assert fr.parse_observation_id(f"{fhir.prefix}-{'0' * 32}") is not None
        # One prefix means one Observation shape (the cuff's and the oximeter's pulse).
        codes = tuple(k.code for k in fhir.codings)
        if fhir.original_unit is None:
            assert own.setdefault(fhir.prefix, codes) == codes or fhir.prefix == "glu"
        assert fhir.member_of is None or fhir.member_of in prefixes
        assert set(fhir.derived_from) <= prefixes


def test_every_fhir_observation_is_searchable() -> None:
    """Each declared Observation code is found by an Observation search on it."""
    for spec, _, fhir in _fhir_codes():
        if fhir is None or fhir.prefix is None:
            continue
        for coding in fhir.codings:
            found = observation_sources.select(coding.code, spec.category[0])
            assert any(s.kind == fhir.prefix and s.table == spec.table for s in found), coding
    assert set(body_vitals.PRIMARY) == {
        k.value for k, spec in KINDS.items() if spec.table == BODY_TABLE
    }
