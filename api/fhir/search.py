"""FHIR R4 search parameters (http://hl7.org/fhir/R4/search.html, §3.1.1): which ones a
resource supports, strict or lenient handling of the others, which patients a search is
about, and the Bundle's self link.

* **Unknown or unsupported parameters** (§3.1.1.4, "Handling Errors"): with
  ``Prefer: handling=strict`` the search fails with 400 and an OperationOutcome naming
  them; under lenient handling (the default) they are ignored *and* left out of the
  self link, which "SHALL" say what was actually searched, so a client can tell that
  ``subject:missing=true`` or a typo did nothing.  A modifier we do not implement makes
  the parameter unsupported (``subject:missing`` is not ``subject``).
* **AND and OR** (§3.1.1.1, "Composite search parameters... AND/OR"): a parameter given
  twice must match both (``patient=1&patient=2`` finds nothing); a comma inside one
  value is OR (``patient=1,2``).  Commas, ``|`` and ``$`` escaped with ``\\`` are literal.
* **Who the search is about**: ``patient`` and ``subject`` are references (§3.1.1.4.6):
  ``[id]``, ``Patient/[id]`` or ``[base]/Patient/[id]`` of this server; ``subject`` can
  also name other types, which match nothing here (every subject is a Patient);
  ``subject:Patient`` types it explicitly.  ``patient.identifier`` and
  ``subject:Patient.identifier`` are chained (§3.1.1.4.13) token searches on the
  Patient's identifier (§3.1.1.4.8: ``code``, ``system|code``, ``|code``, ``system|``).
  Every given form narrows the search; the result is always within the caller's scope,
  and patients asked for outside it are audited as ``access.denied``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import psycopg
from fastapi import HTTPException, Request, status

from api.core import audit
from api.core.principal import Principal
from api.deps import visible_patients
from api.fhir import resources as fr

# Parameters every search takes (paging), §3.1.1.5 / §3.1.1.5.9 (``_count``).
PAGING = frozenset({"_count", "_offset"})
# Reference parameters naming the patient, and identifier searches on it: chained
# (§3.1.1.4.13, ``patient.identifier``) or with the ``:identifier`` modifier
# (§3.1.1.4.9, ``subject:identifier=[system|]value``: "search by the identifier rather
# than the literal reference"; every reference this server emits is to its own
# Patient, so both resolve to that Patient's identifiers).
PATIENT_REFERENCE = frozenset({"patient", "patient:Patient"})
SUBJECT_REFERENCE = frozenset({"subject", "subject:Patient"})
PATIENT_CHAIN = frozenset(
    {"patient.identifier", "patient:Patient.identifier", "patient:identifier"}
)
SUBJECT_CHAIN = frozenset(
    {"subject.identifier", "subject:Patient.identifier", "subject:identifier"}
)
PATIENT_IDENTIFIER = PATIENT_CHAIN | SUBJECT_CHAIN
# R4 search parameters per resource (only those HomeVitals implements).  Device has no
# ``subject``: its search parameter for the patient is ``patient`` (Device.patient).
SUPPORTED: dict[str, frozenset[str]] = {
    "Patient": PAGING | {"_id", "identifier"},
    "Device": PAGING | PATIENT_REFERENCE | PATIENT_CHAIN,
    "Observation": PAGING
    | PATIENT_REFERENCE
    | SUBJECT_REFERENCE
    | PATIENT_IDENTIFIER
    | {"code", "category", "date", "_sort"},
    "Flag": PAGING
    | PATIENT_REFERENCE
    | SUBJECT_REFERENCE
    | PATIENT_IDENTIFIER
    | {"_id", "date", "status"},
}
# Unsupported parameters that would have narrowed the search to a patient (or to named
# resources, possibly another patient's) are refused with 400 even under lenient
# handling: ignoring them answers with more than was asked (``subject.name=...`` or
# ``_has:...`` gave the whole panel).  By the name before any modifier or chain.
NARROWING = frozenset({"patient", "subject", "_id", "_has", "_filter", "_query", "_list"})
INCLUDES = frozenset({"_include", "_revinclude"})
# On Patient every search parameter selects patients: only these result parameters may
# be ignored there.
PATIENT_HARMLESS = frozenset(
    {"_format", "_pretty", "_summary", "_elements", "_total", "_contained", "_containedType"}
)
MAX_REPEATS = 10
MAX_VALUE = 300
FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def split_or(value: str) -> list[str]:
    """The OR'ed values of one parameter (unescaped commas), escapes kept for the token
    split; ``unescape`` afterwards."""
    return _UNESCAPED_COMMA.split(value)


def unescape(value: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", value)


def split_token(value: str) -> tuple[str | None, str]:
    """(system, code) of a token: ``code`` -> (None, code); ``s|c`` -> (s, c); ``|c`` ->
    ("", c) meaning "no system"; an escaped ``\\|`` is part of the text."""
    parts = re.split(r"(?<!\\)\|", value, maxsplit=1)
    if len(parts) == 1:
        return None, unescape(parts[0])
    return unescape(parts[0]), unescape(parts[1])


def _prefers_strict(request: Request) -> bool:
    # RFC 7240 Prefer; FHIR R4 §3.1.1.4 uses handling=strict|lenient.
    for header in request.headers.getlist("prefer"):
        for pref in header.split(","):
            name, _, value = pref.strip().partition("=")
            if name.strip().lower() == "handling" and value.strip().strip('"') == "strict":
                return True
    return False


@dataclass(frozen=True, slots=True)
class Search:
    """The parameters of one search that are applied, in the order given."""

    resource: str
    params: tuple[tuple[str, str], ...]
    ignored: tuple[str, ...]

    def values(self, *names: str) -> list[tuple[str, str]]:
        return [(n, v) for n, v in self.params if n in names]

    def url(self, base: str, **override: int) -> str:
        """This search's URL under ``base`` (``[base]/[type]?...``), paging replaced by
        ``override`` (the next link)."""
        kept = [(n, v) for n, v in self.params if n not in override]
        kept += [(n, str(v)) for n, v in override.items()]
        query = urlencode(kept)
        return f"{base}/{self.resource}" + (f"?{query}" if query else "")


def _base_name(name: str) -> str:
    return re.split(r"[:.]", name, maxsplit=1)[0]


def _narrows(resource: str, name: str, value: str) -> bool:
    """Whether an unsupported parameter would have narrowed the search to a patient (or
    to named resources): refused, never ignored."""
    base = _base_name(name)
    if base in NARROWING or name.startswith("_has"):
        return True
    if base in INCLUDES:
        return re.search(r"patient|subject", value, re.IGNORECASE) is not None
    return resource == "Patient" and base not in PATIENT_HARMLESS


def parse(request: Request, resource: str) -> Search:
    """The accepted parameters of this search (400 for unknown ones under strict
    handling; ignored and dropped from the self link otherwise, except those that would
    have narrowed the search to a patient: 400 under either handling)."""
    supported = SUPPORTED[resource]
    items = request.query_params.multi_items()
    refused = sorted({n for n, v in items if n not in supported and _narrows(resource, n, v)})
    if refused:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"search parameter(s) {', '.join(refused)} not supported for {resource}; refused"
            " rather than ignored, since ignoring them would return more than was asked"
            f" (supported: {', '.join(sorted(supported))})",
        )
    unknown = sorted({name for name, _ in items if name not in supported})
    if unknown and _prefers_strict(request):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"unknown or unsupported search parameter(s) for {resource}: {', '.join(unknown)}"
            f" (supported: {', '.join(sorted(supported))}; Prefer: handling=strict)",
        )
    accepted = tuple((n, v) for n, v in items if n in supported)
    for name in {n for n, _ in accepted}:
        if sum(1 for n, _ in accepted if n == name) > MAX_REPEATS:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"{name} given more than {MAX_REPEATS} times"
            )
    for name, value in accepted:
        if len(value) > MAX_VALUE:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"{name} is longer than {MAX_VALUE} characters"
            )
    return Search(resource, accepted, tuple(unknown))


def _reference_ids(name: str, value: str, base: str) -> set[int]:
    """Patient ids one reference value names (§3.1.1.4.6)."""
    ref = unescape(value).strip()
    if not ref:
        # Refused rather than ignored: an empty patient (an EHR's unset variable) would
        # otherwise widen the search to every patient the caller may see.
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} has no value")
    if ref.startswith(("http://", "https://")):
        # An absolute reference names a resource on that server: only ours can match.
        if not ref.startswith(base + "/"):
            return set()
        ref = ref[len(base) + 1 :]
    kind, sep, ident = ref.rpartition("/")
    if not sep:
        kind, ident = "Patient", ref
    if kind != "Patient":
        if name.startswith("subject") and name != "subject:Patient" and kind and "/" not in kind:
            return set()  # a Group/Device/... subject: none of ours
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"invalid {name} reference {value!r}: not a Patient"
        )
    if not FHIR_ID.match(ident):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid {name} reference {value!r}")
    if not ident.isdigit() or len(ident) > 18:
        return set()  # a well-formed id that is not one of ours
    return {int(ident)}


def _identifier_ids(conn: psycopg.Connection[Any], name: str, value: str) -> set[int]:
    """Patient ids whose identifier matches one token value (§3.1.1.4.8)."""
    system, code = split_token(value)
    if not code and not system:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name} has no value")
    if system is None:
        sql, params = "mrn = %s OR external_id = %s", [code, code]
    elif system == fr.MRN_SYSTEM:
        sql, params = ("mrn = %s", [code]) if code else ("mrn IS NOT NULL", [])
    elif system == fr.EXTERNAL_ID_SYSTEM:
        sql, params = ("external_id = %s", [code]) if code else ("external_id IS NOT NULL", [])
    else:
        return set()  # "|code" (no system) or another system: none of our identifiers
    rows = conn.execute(f"SELECT id FROM patients WHERE {sql}", params).fetchall()
    return {int(r[0]) for r in rows}


def _named(
    conn: psycopg.Connection[Any], search: Search, name: str, value: str, base: str
) -> set[int] | None:
    """Patient ids one patient-naming parameter allows (OR over commas); None if the
    parameter names no patient."""
    if name in PATIENT_REFERENCE or name in SUBJECT_REFERENCE:
        return set().union(*(_reference_ids(name, v, base) for v in split_or(value)))
    if name in PATIENT_IDENTIFIER or (search.resource == "Patient" and name == "identifier"):
        return set().union(*(_identifier_ids(conn, name, v) for v in split_or(value)))
    if search.resource == "Patient" and name == "_id":
        return set().union(*(_reference_ids(name, v, base) for v in split_or(value)))
    return None


def patients_asked(
    conn: psycopg.Connection[Any], search: Search, base: str
) -> tuple[set[int] | None, set[int]]:
    """(the patients every patient-naming parameter allows: AND over parameters and
    repeats, OR over commas, None when the search names no patient; every patient any
    of them named)."""
    asked: set[int] | None = None
    named: set[int] = set()
    for name, value in search.params:
        ids = _named(conn, search, name, value, base)
        if ids is None:
            continue
        named |= ids
        asked = ids if asked is None else asked & ids
    return asked, named


# At most this many access.denied rows per search; the rest are counted in one more.
MAX_DENIAL_ROWS = 100


def patient_scope(
    conn: psycopg.Connection[Any],
    user: Principal,
    request: Request,
    search: Search,
    base: str,
) -> list[int] | None:
    """Patients the search covers: those asked for that the caller may see (or all the
    caller may see; None = all, for an admin).  Every patient a parameter names outside
    the caller's scope (``_id=2``, ``identifier=MRN``, ``_id=3,2``, ``patient=3&patient=2``
    alike) is left out, as if it did not exist, and audited as ``access.denied``."""
    visible = visible_patients(conn, user)
    asked, named = patients_asked(conn, search, base)
    if visible is not None:
        denied = sorted(named - set(visible))
        ip = audit.client_ip(request)
        for pid in denied[:MAX_DENIAL_ROWS]:
            audit.write(
                conn,
                user,
                "access.denied",
                ip=ip,
                patient_id=pid,
                resource=request.url.path,
                status=200,
                detail={"search": search.resource, "outside_scope": True},
            )
        if len(denied) > MAX_DENIAL_ROWS:
            audit.write(
                conn,
                user,
                "access.denied",
                ip=ip,
                resource=request.url.path,
                status=200,
                detail={
                    "search": search.resource,
                    "outside_scope": True,
                    "more_patients": len(denied) - MAX_DENIAL_ROWS,
                },
            )
    if asked is None:
        return visible
    if visible is None:
        existing = conn.execute(
            "SELECT id FROM patients WHERE id = ANY(%s)", (sorted(asked),)
        ).fetchall()
        return sorted(int(r[0]) for r in existing)
    return sorted(asked & set(visible))
