"""Dexcom Clarity CSV export ("Export" in Clarity, patient or clinic account).

Dexcom publishes no specification of this file; the layout relied on here is the one
shown in public exports and parsers:

- University of Michigan Depression Center, "What are the differences between patient
  and provider CGM exports?" (https://teamdynamix.umich.edu/TDClient/210/DepressionCenter/
  Questions/Details/100073): a real G7 export, header ``Index, Timestamp
  (YYYY-MM-DDThh:mm:ss), Event Type, Event Subtype, Patient Info, Device Info, Source
  Device ID, Glucose Value (mg/dL), Insulin Value (u), Carb Value (grams), Duration
  (hh:mm:ss), Glucose Rate of Change (mg/dL/min), Transmitter Time (Long Integer),
  Transmitter ID``, then untimed rows (``FirstName``, ``LastName``, ``Device``, ``Alert``
  settings) before the timed ones.
- thetahealth/mirobody-gen, docs (device formats, "Clarity CSV"), measured over about a
  dozen public exports 2016-2025: UTF-8 with a BOM; every field quoted in recent
  exports; EGV and Calibration rows have 14 fields, other rows 13 (no Transmitter ID);
  timestamps are local wall time without offset; mmol/L exports rename the column
  ``Glucose Value (mmol/L)`` and print one decimal; out-of-range EGVs read ``Low`` /
  ``High`` instead of a number.

Mapping: ``EGV`` rows are CGM readings (kind ``cgm``), ``Calibration`` rows are the
fingerstick values entered to calibrate (kind ``glucose``); every other event (insulin,
carbs, exercise, health, alerts, patient and device info) is skipped.  ``Low`` /
``High`` become the HI/LO conditions without a value.  The import device is
``import:dexcom:<Transmitter ID>`` (falling back to the Source Device ID): G6
transmitters outlive sensors, G7 ones change with every sensor, so a G7 file yields one
device per sensor.
"""

from __future__ import annotations

from pathlib import Path

from device_profiles.model import Kind
from ingest.importers import (
    HIGH_WORDS,
    LOW_WORDS,
    ImportDevice,
    ImportFileError,
    Parsed,
    blank_and_ragged,
    device_token,
    empty_rows,
    first_error,
    glucose_values,
    iso_text,
    pick_format,
    read_export,
    text,
    time_errors,
    unit_of,
)

FORMAT = "dexcom"
PROFILE = "import-dexcom"
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M")
EVENT_KIND = {"egv": Kind.CGM, "calibration": Kind.GLUCOSE}


def is_header(fields: list[str]) -> bool:
    return "Event Type" in fields and any(f.startswith("Timestamp") for f in fields)


def parse(path: Path, patient: str | None) -> Parsed:
    if not patient:
        raise ImportFileError("a Dexcom Clarity export names no patient id: give --patient")
    table = read_export(
        path,
        is_header,
        "not a Dexcom Clarity export: no header line with 'Timestamp (...)' and 'Event Type'",
    )
    columns = table.columns
    time_column = next(c for c in columns if c.startswith("Timestamp"))
    value_column = next((c for c in columns if c.startswith("Glucose Value")), None)
    if value_column is None:
        raise ImportFileError("Dexcom export without a 'Glucose Value (...)' column")
    unit = unit_of(value_column)
    frame = table.frame
    rows = empty_rows(table)
    rows["patient"] = patient
    rows["unit"] = unit

    blank, bad_fields = blank_and_ragged(table)
    event = text(frame, "Event Type")
    kind = event.str.lower().map(EVENT_KIND)
    reading = kind.notna() & ~blank
    rows["kind"] = kind.map(lambda k: k.value if isinstance(k, Kind) else None)
    rows.loc[~reading, "skip"] = "event type " + event[~reading].fillna("(none)")

    stamp = text(frame, time_column)
    fmt, local, _ = pick_format(stamp.where(reading), TIMESTAMP_FORMATS)
    rows["local"] = local
    rows["device_time"] = iso_text(local)
    # Out of range, the value reads Low/High; accept the word in the subtype as well.
    value_text = text(frame, value_column)
    subtype = text(frame, "Event Subtype")
    word = subtype.str.lower().isin(LOW_WORDS | HIGH_WORDS).fillna(False).astype(bool)
    values = glucose_values(value_text.where(value_text.notna() | ~word, subtype))
    rows["value"] = values.value
    rows["condition"] = values.condition

    transmitter = text(frame, "Transmitter ID")
    source = text(frame, "Source Device ID")
    token = transmitter.where(transmitter.notna(), source)
    rows["device"] = token.map(lambda t: f"import:dexcom:{device_token(t, 'unknown')}")

    error = first_error(bad_fields, *time_errors(stamp, local.notna(), fmt), values.error)
    rows["error"] = error.where(reading, None)

    devices = {
        device: ImportDevice(device, patient, PROFILE, "Dexcom", None, device.split(":", 2)[2])
        for device in rows.loc[reading, "device"].unique()
    }
    return Parsed(FORMAT, rows[~blank], table.frame[~blank], devices, fmt)
