"""Generic glucose CSV: ``id,time,glucose`` (our own format, see docs/import.md).

Columns (header names case-insensitive, any order, comma/semicolon/tab separated):

- ``id``: the patient's external id (optional when ``--patient`` is given, then every
  row is that patient's; giving both is refused as ambiguous);
- ``time``: ISO 8601, either a local wall time without offset
  (``2024-01-31T13:45:00``, ``2024-01-31 13:45``), read in the patient's time zone, or a
  time with an offset or ``Z``, used as is;
- ``glucose``: a number, or ``HI``/``High`` / ``LO``/``Low`` for an out-of-range
  result;
- optional ``unit``: ``mg/dL`` (default) or ``mmol/L``;
- optional ``kind``: ``glucose`` (fingerstick, the default) or ``cgm``.  Fingerstick is
  the default because CGM-only metrics (GMI, time in range) must never be computed from
  fingerstick data by accident.

The import device of a patient is ``import:generic:<id>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from device_profiles.model import Kind
from ingest.importers import (
    UNIT_MGDL,
    UNIT_MMOLL,
    ImportDevice,
    ImportFileError,
    Parsed,
    blank_and_ragged,
    empty_rows,
    encoding_of,
    first_error,
    glucose_values,
    iso_text,
    read_table,
    reason,
    text,
    time_errors,
)

FORMAT = "generic"
PROFILE = "import-generic"
UNITS = {"mg/dl": UNIT_MGDL, "mgdl": UNIT_MGDL, "mmol/l": UNIT_MMOLL, "mmol": UNIT_MMOLL}
KINDS = {"glucose": Kind.GLUCOSE.value, "smbg": Kind.GLUCOSE.value, "cgm": Kind.CGM.value}
# A clock time followed by a zone designator: "...13:45:00Z", "...13:45+01:00".
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.I)


def device_of(patient: str) -> str:
    return f"import:generic:{patient}"


def parse(path: Path, patient: str | None) -> Parsed:
    encoding = encoding_of(path)
    table = read_table(path, encoding, 0)
    frame = table.frame
    names = {c.lower(): c for c in table.columns}
    missing = [c for c in ("time", "glucose") if c not in names]
    if missing:
        raise ImportFileError(f"generic CSV without column(s) {', '.join(missing)}")
    if "id" in names and patient:
        raise ImportFileError("the file has an 'id' column; --patient is only for files without")
    if "id" not in names and not patient:
        raise ImportFileError("generic CSV without an 'id' column: give --patient")
    rows = empty_rows(table)
    blank, bad_fields = blank_and_ragged(table)

    ids = text(frame, names["id"]) if "id" in names else pd.Series(patient, index=frame.index)
    rows["patient"] = ids
    rows["device"] = device_of("") + ids  # NaN stays NaN

    stamp = text(frame, names["time"])
    # Longer than "YYYY-MM-DDThh:mm:ss" first: the regex only runs on the few candidates.
    aware = pd.Series(False, index=frame.index)
    long = (stamp.str.len() > 19).fillna(False).astype(bool)
    aware[long] = stamp[long].str.contains(_OFFSET, na=False).astype(bool)
    local = pd.to_datetime(stamp.where(~aware), format="ISO8601", errors="coerce")
    utc = pd.to_datetime(stamp.where(aware), format="ISO8601", errors="coerce", utc=True)
    rows["local"] = local
    rows["utc"] = utc
    device_time = iso_text(local)
    rows["device_time"] = device_time.where(~aware, stamp)

    glucose = text(frame, names["glucose"])
    values = glucose_values(glucose)
    rows["value"] = values.value
    rows["condition"] = values.condition

    unit_text = text(frame, names.get("unit"))
    unit = unit_text.str.lower().map(UNITS)
    rows["unit"] = unit.where(unit_text.notna(), UNIT_MGDL)
    kind_text = text(frame, names.get("kind"))
    kind = kind_text.str.lower().map(KINDS)
    rows["kind"] = kind.where(kind_text.notna(), Kind.GLUCOSE.value)

    rows["error"] = first_error(
        bad_fields,
        reason(ids.isna(), "missing patient id"),
        *time_errors(stamp, local.notna() | utc.notna(), "ISO 8601"),
        reason(glucose.isna(), "missing glucose value"),
        values.error,
        reason(unit_text.notna() & unit.isna(), "invalid unit " + unit_text.map(repr)),
        reason(kind_text.notna() & kind.isna(), "invalid kind " + kind_text.map(repr)),
    )
    keep = ~blank
    devices = {
        device_of(p): ImportDevice(device_of(p), p, PROFILE)
        for p in np.unique(ids[keep & ids.notna()].to_numpy(dtype=object))
    }
    return Parsed(FORMAT, rows[keep], table.frame[keep], devices, "ISO8601")
