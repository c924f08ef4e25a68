"""A fingerstick's sample as the meter described it (Glucose Measurement Type-Sample
Location, GSS §3.104, kept by ingest in ``details``) on the FHIR Observation:

* sample location -> ``Observation.bodySite``, SNOMED CT body structures (the codes of
  the US Vital Signs IG's SpO2 body-location value set: finger 7569003, ear lobule
  48800003).  "Alternate site" names no one structure: text only.
* sample type -> a contained ``Specimen`` referenced from ``Observation.specimen``,
  typed by where the blood came from (SNOMED CT capillary 122554006, venous 122555007,
  arterial 122552005 blood specimen).  Whole blood vs plasma in the GSS type says what
  the result is calibrated to, not a different specimen, so it stays in the text;
  "undetermined" sources are text only.

Location "not available" and control-solution tests (never exposed) add nothing.
"""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
SPECIMEN_ID = "sample"

BODY_SITES: dict[str, dict[str, Any]] = {
    "finger": {
        "coding": [{"system": SNOMED, "code": "7569003", "display": "Finger structure"}],
        "text": "Finger",
    },
    "earlobe": {
        "coding": [{"system": SNOMED, "code": "48800003", "display": "Ear lobule structure"}],
        "text": "Earlobe",
    },
    "alternate_site_test": {"text": "Alternate site (not the fingertip)"},
}

SPECIMEN_SOURCES: dict[str, tuple[str, str]] = {
    "capillary": ("122554006", "Capillary blood specimen"),
    "venous": ("122555007", "Venous blood specimen"),
    "arterial": ("122552005", "Arterial blood specimen"),
}
# GSS types that are a patient's blood sample (not interstitial fluid or control solution).
BLOOD_TYPES = frozenset(
    f"{source}_{matrix}"
    for source in ("capillary", "venous", "arterial", "undetermined")
    for matrix in ("whole_blood", "plasma")
)


def body_site(details: dict[str, Any]) -> dict[str, Any] | None:
    location = details.get("sample_location")
    site = BODY_SITES.get(location) if isinstance(location, str) else None
    return None if site is None else {**site}


def specimen(details: dict[str, Any], patient_id: int) -> dict[str, Any] | None:
    """The contained Specimen of a fingerstick of blood, or None."""
    sample_type = details.get("sample_type")
    if not isinstance(sample_type, str) or sample_type not in BLOOD_TYPES:
        return None
    kind: dict[str, Any] = {"text": sample_type.replace("_", " ").capitalize()}
    coded = SPECIMEN_SOURCES.get(sample_type.split("_", 1)[0])
    if coded is not None:
        kind["coding"] = [{"system": SNOMED, "code": coded[0], "display": coded[1]}]
    return {
        "resourceType": "Specimen",
        "id": SPECIMEN_ID,
        "type": kind,
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def add_sample(obs: dict[str, Any], details: dict[str, Any] | None, patient_id: int) -> None:
    """Put a fingerstick's sample location and type on its Observation ``obs``."""
    if not details:
        return
    site = body_site(details)
    if site is not None:
        obs["bodySite"] = site
    sample = specimen(details, patient_id)
    if sample is not None:
        obs["contained"] = [sample]
        obs["specimen"] = {"reference": f"#{SPECIMEN_ID}"}
