"""Every reading kind declared once: its components (canonical UCUM unit, plausible
range, required or not), its record types, where it is stored, its FHIR coding and how
the dashboard shows it.  Data only; ingest's validation and COPY tables, the FHIR
mapping and the dashboard derive theirs from :data:`KINDS` (as Tidepool keeps one
folder per data type), and tests/test_kinds.py checks the declaration is whole.

Adding a kind: one :class:`KindSpec` here plus its parser in ``device_profiles``
(docs/ARCHITECTURE.md, "Adding a kind").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from device_profiles.model import MGDL_PER_MMOLL, Component, Condition, Kind


class RecordType(enum.StrEnum):
    """What kind of record of its kind a reading is (Tidepool's cbg/smbg subtypes;
    LibreView record types 0 historic, 1 scan, 2 strip)."""

    CGM = "cgm"  # a continuous sensor's periodic record (LibreView "historic")
    SCAN = "scan"  # a sensor value read on demand (LibreView record type 1)
    STRIP = "strip"  # a fingerstick blood test (LibreView record type 2)
    CONTROL = "control"  # a control-solution test (GLS type 10 / location 4)
    MANUAL = "manual"  # entered by hand, not measured by the device
    MEASURED = "measured"  # a device measurement of a kind without finer types


# Tables of the readings (ingest/migrations): two dedicated ones with a column per
# component, and one for every kind whose components go into a jsonb object.
GLUCOSE_TABLE: Final = "glucose"
BP_TABLE: Final = "blood_pressure"
BODY_TABLE: Final = "body_readings"

HI_LO: Final = frozenset({Condition.RESULT_ABOVE_RANGE, Condition.RESULT_BELOW_RANGE})

# FHIR observation-category codes (http://terminology.hl7.org/CodeSystem/observation-category).
VITAL_SIGNS: Final = ("vital-signs", "Vital Signs")
LABORATORY: Final = ("laboratory", "Laboratory")


@dataclass(frozen=True, slots=True)
class Coding:
    """A code of a code system (LOINC here, unless said otherwise) with its display."""

    code: str
    display: str


@dataclass(frozen=True, slots=True)
class FhirCode:
    """How a component is exchanged as FHIR: its own Observation (``prefix`` set) or a
    component of its kind's panel Observation (``prefix`` None)."""

    codings: tuple[Coding, ...]  # LOINC; every one goes on the Observation's ``code``
    unit: str  # ``valueQuantity.unit``, human-readable
    ucum: str  # ``valueQuantity.code``
    factor: float = 1.0  # stored canonical unit -> ``ucum`` (multiply)
    prefix: str | None = None  # Observation id prefix
    text: str = ""  # ``code.text`` of its own Observation
    # Used only for readings the device reported in this unit (the others use the
    # code of the same component without one).
    original_unit: str | None = None
    member_of: str | None = None  # prefix of the Observation it is a member of
    derived_from: tuple[str, ...] = ()  # prefixes of the Observations it is computed from


@dataclass(frozen=True, slots=True)
class Display:
    """How the dashboard shows a value: ``f"{value:.{decimals}f} {unit}"`` (no unit: the
    number alone)."""

    label: str
    unit: str
    decimals: int

    def format(self, value: float) -> str:
        number = f"{value:.{self.decimals}f}"
        return f"{number} {self.unit}" if self.unit else number


@dataclass(frozen=True, slots=True)
class ComponentSpec:
    component: Component
    unit: str  # canonical UCUM unit, the one stored
    plausible: tuple[float, float]  # inclusive, in ``unit``: outside it is no real reading
    required: bool = False
    column: str | None = None  # column of a dedicated table; None: the jsonb ``components``
    fhir: tuple[FhirCode, ...] = ()
    display: Display | None = None


@dataclass(frozen=True, slots=True)
class Panel:
    """The Observation a kind's panel components (and members) belong to."""

    prefix: str
    coding: Coding
    text: str


@dataclass(frozen=True, slots=True)
class KindSpec:
    kind: Kind
    components: tuple[ComponentSpec, ...]
    record_types: tuple[RecordType, ...]  # the first is the usual one (omitted on the wire)
    table: str
    category: tuple[str, str]  # FHIR observation-category (code, display)
    device: Coding  # MDC_DEV_SPEC_PROFILE_* (11073-104zz specialisation), MDC system
    label: str
    # Value of the glucose table's ``source`` column (Tidepool's smbg / cbg), for kinds
    # sharing a dedicated table.
    source: str | None = None
    # Conditions under which a reading may lack its required components (a meter's HI/LO).
    absent_when: frozenset[Condition] = frozenset()
    # Conditions of readings never exported as FHIR (a control-solution test).
    not_exported_when: frozenset[Condition] = frozenset()
    panel: Panel | None = None

    @property
    def usual_record_type(self) -> RecordType:
        return self.record_types[0]

    @property
    def required(self) -> tuple[Component, ...]:
        return tuple(c.component for c in self.components if c.required)

    def spec(self, component: Component) -> ComponentSpec:
        for c in self.components:
            if c.component is component:
                return c
        raise KeyError(f"{self.kind.value} has no component {component.value}")


_MGDL = "mg/dL"
_GLUCOSE_RANGE = (10.0, 1000.0)  # mg/dL; meters read 20-600, CGMs 40-400
_PULSE_RANGE = (20.0, 300.0)  # /min
_HEART_RATE = Coding("8867-4", "Heart rate")
_NOT_CONTROL = frozenset({Condition.CONTROL_SOLUTION})


def _pulse(member_of: str) -> ComponentSpec:
    return ComponentSpec(
        Component.PULSE,
        "/min",
        _PULSE_RANGE,
        column="pulse" if member_of == "bp" else None,
        fhir=(
            FhirCode(
                (_HEART_RATE,),
                "beats/minute",
                "/min",
                prefix="hr",
                text="Pulse rate",
                member_of=member_of,
            ),
        ),
        display=Display("Pulse", "/min", 0),
    )


KINDS: Final[Mapping[Kind, KindSpec]] = MappingProxyType(
    {
        spec.kind: spec
        for spec in (
            KindSpec(
                Kind.GLUCOSE,
                (
                    ComponentSpec(
                        Component.GLUCOSE,
                        _MGDL,
                        _GLUCOSE_RANGE,
                        required=True,
                        column="mgdl",
                        fhir=(
                            FhirCode(
                                (Coding("2339-0", "Glucose [Mass/volume] in Blood"),),
                                _MGDL,
                                _MGDL,
                                prefix="glu",
                                text="Glucose",
                            ),
                            # A meter set to mmol/L: its own value, the molar code.
                            FhirCode(
                                (Coding("15074-8", "Glucose [Moles/volume] in Blood"),),
                                "mmol/L",
                                "mmol/L",
                                factor=1 / MGDL_PER_MMOLL,
                                prefix="glu",
                                text="Glucose",
                                original_unit="mmol/L",
                            ),
                        ),
                        display=Display("Glucose", _MGDL, 0),
                    ),
                ),
                (RecordType.STRIP, RecordType.SCAN, RecordType.CONTROL, RecordType.MANUAL),
                GLUCOSE_TABLE,
                LABORATORY,
                Coding("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE"),
                "Fingerstick glucose",
                source="smbg",
                absent_when=HI_LO,
                not_exported_when=_NOT_CONTROL,
            ),
            KindSpec(
                Kind.CGM,
                (
                    ComponentSpec(
                        Component.GLUCOSE,
                        _MGDL,
                        _GLUCOSE_RANGE,
                        required=True,
                        column="mgdl",
                        fhir=(
                            FhirCode(
                                (Coding("99504-3", "Glucose [Mass/volume] in Interstitial fluid"),),
                                _MGDL,
                                _MGDL,
                                prefix="glu",
                                text="Glucose",
                            ),
                        ),
                        display=Display("Glucose", _MGDL, 0),
                    ),
                    ComponentSpec(
                        Component.CGM_TREND,
                        "mg/dL/min",
                        (-50.0, 50.0),
                        column="trend_mgdl_min",
                        display=Display("Trend", "mg/dL/min", 1),
                    ),
                    ComponentSpec(
                        Component.CGM_QUALITY,
                        "%",
                        (0.0, 100.0),
                        column="quality_pct",
                        display=Display("Quality", "%", 0),
                    ),
                ),
                (RecordType.CGM,),
                GLUCOSE_TABLE,
                LABORATORY,
                Coding("528409", "MDC_DEV_SPEC_PROFILE_CGM"),
                "CGM glucose",
                source="cgm",
                absent_when=HI_LO,
                not_exported_when=_NOT_CONTROL,
            ),
            KindSpec(
                Kind.BLOOD_PRESSURE,
                (
                    ComponentSpec(
                        Component.SYSTOLIC,
                        "mm[Hg]",
                        (40.0, 300.0),
                        required=True,
                        column="systolic",
                        fhir=(
                            FhirCode(
                                (Coding("8480-6", "Systolic blood pressure"),), "mmHg", "mm[Hg]"
                            ),
                        ),
                        display=Display("Systolic", "mmHg", 0),
                    ),
                    ComponentSpec(
                        Component.DIASTOLIC,
                        "mm[Hg]",
                        (20.0, 250.0),
                        required=True,
                        column="diastolic",
                        fhir=(
                            FhirCode(
                                (Coding("8462-4", "Diastolic blood pressure"),), "mmHg", "mm[Hg]"
                            ),
                        ),
                        display=Display("Diastolic", "mmHg", 0),
                    ),
                    ComponentSpec(
                        Component.MEAN_ARTERIAL,
                        "mm[Hg]",
                        (20.0, 280.0),
                        column="mean_arterial",
                        fhir=(
                            FhirCode((Coding("8478-0", "Mean blood pressure"),), "mmHg", "mm[Hg]"),
                        ),
                        display=Display("Mean arterial", "mmHg", 0),
                    ),
                    _pulse(member_of="bp"),
                ),
                (RecordType.MEASURED, RecordType.MANUAL),
                BP_TABLE,
                VITAL_SIGNS,
                Coding("528391", "MDC_DEV_SPEC_PROFILE_BPM"),
                "Blood pressure",
                panel=Panel(
                    "bp",
                    Coding("85354-9", "Blood pressure panel with all children optional"),
                    "Blood pressure",
                ),
            ),
            KindSpec(
                Kind.WEIGHT,
                (
                    ComponentSpec(
                        Component.WEIGHT,
                        "kg",
                        (0.5, 500.0),
                        required=True,
                        fhir=(
                            FhirCode(
                                (Coding("29463-7", "Body weight"),),
                                "kg",
                                "kg",
                                prefix="wt",
                                text="Body weight",
                            ),
                        ),
                        display=Display("Weight", "kg", 1),
                    ),
                    # Stored in m (the GSS canonical unit); the body-length units US Core
                    # binds (BodyLengthUnits) are cm or [in_i].
                    ComponentSpec(
                        Component.HEIGHT,
                        "m",
                        (0.3, 2.8),
                        fhir=(
                            FhirCode(
                                (Coding("8302-2", "Body height"),),
                                "cm",
                                "cm",
                                factor=100.0,
                                prefix="ht",
                                text="Body height",
                            ),
                        ),
                        display=Display("Height", "m", 2),
                    ),
                    # The scale computes BMI from this weight and the height entered on it.
                    ComponentSpec(
                        Component.BMI,
                        "kg/m2",
                        (5.0, 150.0),
                        fhir=(
                            FhirCode(
                                (Coding("39156-5", "Body mass index (BMI) [Ratio]"),),
                                "kg/m2",
                                "kg/m2",
                                prefix="bmi",
                                text="BMI",
                                derived_from=("wt", "ht"),
                            ),
                        ),
                        display=Display("BMI", "", 1),
                    ),
                ),
                (RecordType.MEASURED, RecordType.MANUAL),
                BODY_TABLE,
                VITAL_SIGNS,
                Coding("528399", "MDC_DEV_SPEC_PROFILE_SCALE"),
                "Weight",
            ),
            KindSpec(
                Kind.SPO2,
                (
                    # US Core Pulse Oximetry: both codings; its components are only for
                    # inhaled oxygen, so the pulse is a member Observation.
                    ComponentSpec(
                        Component.SPO2,
                        "%",
                        (40.0, 100.0),
                        required=True,
                        fhir=(
                            FhirCode(
                                (
                                    Coding(
                                        "59408-5",
                                        "Oxygen saturation in Arterial blood by Pulse oximetry",
                                    ),
                                    Coding("2708-6", "Oxygen saturation in Arterial blood"),
                                ),
                                "%",
                                "%",
                                prefix="spo2",
                                text="Oxygen saturation",
                            ),
                        ),
                        display=Display("SpO2", "%", 1),
                    ),
                    _pulse(member_of="spo2"),
                    ComponentSpec(
                        Component.PULSE_AMPLITUDE_INDEX,
                        "%",
                        (0.0, 100.0),
                        display=Display("Pulse amplitude index", "%", 1),
                    ),
                ),
                (RecordType.MEASURED, RecordType.MANUAL),
                BODY_TABLE,
                VITAL_SIGNS,
                Coding("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM"),
                "SpO2",
            ),
            KindSpec(
                Kind.TEMPERATURE,
                (
                    ComponentSpec(
                        Component.TEMPERATURE,
                        "Cel",
                        (25.0, 45.0),
                        required=True,
                        fhir=(
                            FhirCode(
                                (Coding("8310-5", "Body temperature"),),
                                "°C",
                                "Cel",
                                prefix="temp",
                                text="Body temperature",
                            ),
                        ),
                        display=Display("Temperature", "\u00b0C", 1),
                    ),
                ),
                (RecordType.MEASURED, RecordType.MANUAL),
                BODY_TABLE,
                VITAL_SIGNS,
                Coding("528392", "MDC_DEV_SPEC_PROFILE_TEMP"),
                "Temperature",
            ),
        )
    }
)


class InconsistentKinds(Exception):
    """The declaration contradicts itself (a component with two ranges or units)."""


def _plausible() -> dict[Component, tuple[float, float]]:
    seen: dict[Component, ComponentSpec] = {}
    for spec in KINDS.values():
        for c in spec.components:
            other = seen.setdefault(c.component, c)
            if (other.plausible, other.unit) != (c.plausible, c.unit):
                raise InconsistentKinds(
                    f"{c.component.value}: {c.plausible} {c.unit} in {spec.kind.value},"
                    f" {other.plausible} {other.unit} elsewhere"
                )
    return {c: seen[c].plausible for c in Component if c in seen}


# (low, high) inclusive per component, canonical units; in ``Component`` order.
PLAUSIBLE: Final[Mapping[Component, tuple[float, float]]] = MappingProxyType(_plausible())
# Components a reading of each kind must carry (``absent_when`` excepted).
REQUIRED: Final[Mapping[Kind, tuple[Component, ...]]] = MappingProxyType(
    {kind: KINDS[kind].required for kind in Kind}
)
# Components a reading of each kind may carry: anything else has no column to go to and
# would be dropped without a word (or, like the cuff pressure, is not a reading at all).
COMPONENTS_OF: Final[Mapping[Kind, frozenset[Component]]] = MappingProxyType(
    {kind: frozenset(c.component for c in KINDS[kind].components) for kind in Kind}
)
TABLE_OF_KIND: Final[Mapping[Kind, str]] = MappingProxyType(
    {kind: KINDS[kind].table for kind in Kind}
)
USUAL_RECORD_TYPE: Final[Mapping[Kind, RecordType]] = MappingProxyType(
    {kind: KINDS[kind].usual_record_type for kind in Kind}
)
# Record types a reading of each kind may carry (ingest rejects the others).
RECORD_TYPES_OF: Final[Mapping[Kind, frozenset[RecordType]]] = MappingProxyType(
    {kind: frozenset(KINDS[kind].record_types) for kind in Kind}
)
