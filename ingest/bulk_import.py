"""Bulk import of historical glucose exports through the ingest write path.

``import_file`` parses a file (``ingest.importers``: generic CSV, Dexcom Clarity,
LibreView), resolves or creates the patient(s), registers one import "device" per
source (``import:<format>:<serial>``, no gateway) bound to its patient from -infinity,
builds wire ``Reading``s and, in chunks of ``CHUNK_ROWS`` rows with one transaction per
chunk, runs the same ``columns.validate`` and ``writer.write_split`` as MQTT ingest:
valid readings are COPYed (or inserted on conflict when some are already stored), the
rest go to ``dead_letters`` with their reasons.

Properties (docs/import.md):

- Idempotent: a reading's identity is ``readings.RecordKey.export_row(device, kind,
  record type, local time text, ordinal)``, its time the local time read in the
  patient's zone, so importing the same file again stores nothing and reports the rows
  as duplicates.  The record type is part of it: a LibreView scan and a strip test in
  one minute with one value are two readings.  LibreView times have minute resolution:
  the exported value is part of the identity (``VALUE_KEYED_FORMATS``), so records of
  one minute do not depend on the order an export lists them in, and rows stored under
  the older order-based ids are met by content (``meet_stored``).  For the other
  formats, rows with the same device, kind, record type and local time but different
  values get distinct identities by their order of appearance; identical rows are one
  reading.
  Rows that were dead-lettered by an earlier import of the same file (same topic, device,
  line and reason, not yet re-processed) are not dead-lettered again.
- Local times: read in the patient's ``patients.timezone`` with the gateway's DST policy
  (``fold=0``, docs/gateway.md): a time in the repeated fall-back hour is the first
  occurrence (summer time); a time in the skipped spring-forward hour uses the offset
  before the jump.  ``device_time`` keeps the export's wall time.
- Imported readings have no ``gateway_id``: they were not transmitted through a
  gateway, so they never count as transmitted days for RPM billing
  (analytics.summary.BILLING_QUERY) and carry no gateway in FHIR.
"""

from __future__ import annotations

import gc
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import orjson
import pandas as pd
import psycopg
from tqdm import tqdm

from device_profiles.model import MGDL_PER_MMOLL, Component, Condition, Kind
from ingest.columns import Flat, Origin, Rejected, validate
from ingest.importers import (
    EXTRA_PREFIX,
    UNIT_MMOLL,
    ImportDevice,
    ImportFileError,
    Parsed,
    dexcom,
    generic,
    libreview,
)
from ingest.patients import upsert_patient
from ingest.registry import BindingCache, bind_device
from ingest.writer import write_split
from readings import USUAL_RECORD_TYPE, Original, Reading, RecordKey, RecordType

__all__ = [
    "CHUNK_ROWS",
    "FORMATS",
    "ImportFileError",
    "build_chunk",
    "import_file",
    "parse_file",
    "prepare",
]

CHUNK_ROWS: Final = 20_000
FORMATS: Final[dict[str, Callable[[Path, str | None], Parsed]]] = {
    "generic": generic.parse,
    "dexcom": dexcom.parse,
    "libreview": libreview.parse,
}
# NULL gateway is what "not transmitted through a gateway" means for the readings tables
# (billing counts only ``gateway_id IS NOT NULL``).  See the module docstring.
NO_GATEWAY: Final = None
_KINDS: Final = {kind.value: kind for kind in Kind}
_CONDITIONS: Final = {
    c.value: [c] for c in (Condition.RESULT_ABOVE_RANGE, Condition.RESULT_BELOW_RANGE)
}


def parse_file(path: str | Path, fmt: str, patient: str | None) -> Parsed:
    """The file as rows (no database access)."""
    source = Path(path)
    if fmt not in FORMATS:
        raise ImportFileError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if not source.is_file():
        raise ImportFileError(f"no such file: {source}")
    return FORMATS[fmt](source, patient)


@dataclass(slots=True)
class Prepared:
    """Parsed rows plus what the database side decided: UTC times and identities."""

    parsed: Parsed
    utc: pd.Series  # datetime64[UTC], NaT where the row is skipped or in error
    ordinal: pd.Series  # int: tells apart rows of one source, type and minute (RecordKey)
    dst_adjusted: int  # local times that were ambiguous or nonexistent (fold=0 applied)
    # The exported value as identity text (``RecordKey.export_row(value=...)``) for a
    # format whose times have minute resolution (VALUE_KEYED_FORMATS); else None.
    value_key: pd.Series | None = None


def _localize(local: pd.Series, zone: str) -> tuple[pd.Series, int]:
    """Naive wall times in ``zone`` -> UTC, vectorized; the rare ambiguous or
    nonexistent ones one by one with ``fold=0`` (the gateway's policy)."""
    aware = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(UTC)
    odd = aware.isna() & local.notna()
    if odd.any():
        tz = ZoneInfo(zone)
        aware = aware.astype(object)
        for i in odd[odd].index:
            wall = local[i].to_pydatetime()
            aware[i] = pd.Timestamp(wall.replace(tzinfo=tz, fold=0).astimezone(UTC))
        aware = pd.to_datetime(aware, utc=True)
    return aware, int(odd.sum())


def prepare(parsed: Parsed, zones: Mapping[str, str]) -> Prepared:
    """UTC times (each patient's zone) and reading identities of the readable rows."""
    rows = parsed.rows
    readable = rows["error"].isna() & rows["skip"].isna()
    utc = rows["utc"].copy()
    zone = rows["patient"].map(zones)
    local = readable & rows["local"].notna()
    adjusted = 0
    for name, index in rows[local].groupby(zone[local]).groups.items():
        try:
            converted, odd = _localize(rows.loc[index, "local"], str(name))
        except (KeyError, ValueError) as exc:
            raise ImportFileError(f"invalid time zone {name!r}: {exc}") from exc
        utc[index] = converted
        adjusted += odd
    ordinal = pd.Series(0, index=rows.index, dtype=np.int64)
    if parsed.fmt in VALUE_KEYED_FORMATS:
        keys = value_keys(rows["value"], rows["unit"], rows["condition"])
        return Prepared(parsed, utc.where(readable), ordinal, adjusted, keys)
    same = ["device", "kind", "record_type", "device_time"]
    clash = readable & rows[same].duplicated(keep=False)
    if clash.any():
        # Same device, kind and local time: distinct values get distinct identities by
        # order of appearance, identical rows stay one reading.
        sub = rows[clash]  # few rows: plain Python is fine here
        group = pd.Series(
            [repr(t) for t in zip(*(sub[c] for c in same), strict=True)], index=sub.index
        )
        key = group + pd.Series(
            [repr(t) for t in zip(sub["value"], sub["unit"], sub["condition"], strict=True)],
            index=sub.index,
        )
        first = ~key.duplicated()
        order = first.groupby(group).cumsum() - 1
        ordinal[sub.index] = key.map(dict(zip(key[first], order[first], strict=True)))
    return Prepared(parsed, utc.where(readable), ordinal, adjusted)


# Formats whose times have only minute resolution: several records of one source and
# type can share a minute, and an export lists them in no stable order, so the exported
# value is part of their identity (red team A4; docs/import.md, "Idempotency").
VALUE_KEYED_FORMATS: Final = frozenset({libreview.FORMAT})


def value_keys(value: pd.Series, unit: pd.Series, condition: pd.Series) -> pd.Series:
    """The exported value as identity text: ``130 mg/dL``, ``7.2 mmol/L`` (the number
    as exported, shortest form), or the condition when the export gave no number."""
    return pd.Series(
        [
            (cond or "") if isinstance(v, float) and math.isnan(v) else f"{v:g} {u}"
            for v, u, cond in zip(value.tolist(), unit.tolist(), condition.tolist(), strict=True)
        ],
        index=value.index,
        dtype=object,
    )


def meet_stored(conn: psycopg.Connection[Any], readings: list[Reading]) -> list[Reading]:
    """``readings`` with the id of a row already stored for the same record: same import
    device, record type, local minute and exported value (and unit).  Rows imported
    before the value was part of the identity carry ids by file order (``#n``); meeting
    them by content means a later export stores nothing twice and no id of a stored row
    changes.  One query per chunk (device index, a time window around the chunk)."""
    if not readings:
        return readings
    devices = sorted({r.device for r in readings})
    times = sorted({r.device_time for r in readings if r.device_time is not None})
    first = min(r.time for r in readings) - _ZONE_SLACK
    last = max(r.time for r in readings) + _ZONE_SLACK
    rows = conn.execute(
        "SELECT reading_id::text, device_id, device_time,"
        " coalesce(record_type, CASE source WHEN 'cgm' THEN 'cgm' ELSE 'strip' END),"
        " original_value, original_unit FROM glucose"
        " WHERE device_id = ANY(%s) AND device_time = ANY(%s) AND time BETWEEN %s AND %s"
        " ORDER BY received_at DESC, reading_id DESC",
        (devices, times, first, last),
    ).fetchall()
    if not rows:
        return readings
    # Later rows overwrite earlier ones: the first received (then the smallest id) wins.
    stored = {(d, t, rt, v, u): str(rid) for rid, d, t, rt, v, u in rows}
    out = []
    for r in readings:
        original = r.original.get(Component.GLUCOSE)
        key = (
            r.device,
            r.device_time,
            (r.record_type or USUAL_RECORD_TYPE[r.kind]).value,
            None if original is None else original.value,
            None if original is None else original.unit,
        )
        rid = stored.get(key)
        out.append(r if rid is None or rid == r.id else msgspec.structs.replace(r, id=rid))
    return out


# A patient's zone may have changed between two imports: the same local time is then
# up to 26 h apart in UTC (UTC-12 .. UTC+14).
_ZONE_SLACK: Final = timedelta(hours=27)


@dataclass(slots=True)
class Chunk:
    readings: list[Reading]
    lines: list[int]  # file line of each reading
    rejected: list[Rejected]  # rows that could not become readings
    skipped: Counter[str]


def _row_payload(parsed: Parsed, position: int, line: int) -> bytes:
    """What a dead letter of a row keeps: its fields by header name, and any extra ones."""
    fields: dict[str, str | None] = {}
    extra: list[str] = []
    for name, value in parsed.raw.iloc[position].items():
        text = None if pd.isna(value) else str(value)
        if str(name).startswith(EXTRA_PREFIX):
            if text is not None:
                extra.append(text)
        else:
            fields[str(name)] = text
    body: dict[str, Any] = {"format": parsed.fmt, "line": line, "fields": fields}
    if extra:
        body["extra_fields"] = extra
    return orjson.dumps(body)


def build_chunk(prepared: Prepared, start: int, stop: int, topic: str) -> Chunk:
    """Rows ``start:stop`` as wire readings, parse-level rejects and skip counts."""
    parsed = prepared.parsed
    rows = parsed.rows.iloc[start:stop]
    chunk = Chunk([], [], [], Counter())
    times = prepared.utc.iloc[start:stop].dt.to_pydatetime().tolist()
    columns = zip(
        rows["line"].tolist(),
        rows["skip"].tolist(),
        rows["error"].tolist(),
        rows["device"].tolist(),
        rows["kind"].tolist(),
        rows["record_type"].tolist(),
        times,
        rows["device_time"].tolist(),
        prepared.ordinal.iloc[start:stop].tolist(),
        (
            [None] * (stop - start)
            if prepared.value_key is None
            else prepared.value_key.iloc[start:stop].tolist()
        ),
        rows["value"].tolist(),
        rows["unit"].tolist(),
        rows["condition"].tolist(),
        strict=True,
    )
    for offset, (
        line,
        skip,
        error,
        device,
        kind_text,
        record_text,
        when,
        local,
        ordinal,
        value_key,
        value,
        unit,
        cond,
    ) in enumerate(columns):
        if isinstance(skip, str):
            chunk.skipped[skip] += 1
            continue
        if isinstance(error, str):
            payload = _row_payload(parsed, start + offset, line)
            chunk.rejected.append(Rejected(topic, None, device, payload, error, line))
            continue
        number = None if math.isnan(value) else float(value)
        mgdl = None if number is None else number * (MGDL_PER_MMOLL if unit == UNIT_MMOLL else 1.0)
        kind = _KINDS[kind_text]
        record_type = RecordType(record_text) if isinstance(record_text, str) else None
        chunk.readings.append(
            Reading(
                id=RecordKey.export_row(
                    device, kind, record_type, local, ordinal, value_key
                ).reading_id,
                device=device,
                kind=kind,
                record_type=record_type,
                time=when,
                values={} if cond or mgdl is None else {Component.GLUCOSE: mgdl},
                device_time=local,
                conditions=_CONDITIONS[cond] if cond else [],
                original={Component.GLUCOSE: Original(number, unit)},
            )
        )
        chunk.lines.append(line)
    return chunk


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a chunk's readings are built: they hold no cycles, and the
    collections that tens of thousands of new objects trigger cost half the build time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reason_key(reason: str) -> str:
    """A dead-letter reason without its particulars, for the report's counts."""
    if reason.endswith("is in the future"):
        return "time in the future"
    if reason.startswith("time before"):
        return "time before 2000-01-01"
    return re.split(r"\s+(?=['\"(\d])", reason, maxsplit=1)[0]


def _patients(
    conn: psycopg.Connection[Any], external_ids: list[str], timezone: str | None
) -> tuple[dict[str, tuple[int, str]], list[str], list[str]]:
    """id and time zone of each patient, creating the missing ones; plus warnings."""
    found: dict[str, tuple[int, str]] = {
        str(ext): (int(pid), str(tz))
        for ext, pid, tz in conn.execute(
            "SELECT external_id, id, timezone FROM patients WHERE external_id = ANY(%s)",
            (external_ids,),
        )
    }
    created: list[str] = []
    warnings: list[str] = []
    for ext in external_ids:
        if ext in found:
            if timezone is not None and found[ext][1] != timezone:
                warnings.append(
                    f"patient {ext} exists with time zone {found[ext][1]}; used it, not {timezone}"
                )
            continue
        pid = upsert_patient(conn, ext) if timezone is None else upsert_patient(conn, ext, timezone)
        tz = conn.execute("SELECT timezone FROM patients WHERE id = %s", (pid,)).fetchone()
        assert tz is not None
        found[ext] = (pid, str(tz[0]))
        created.append(ext)
    for ext, (_, tz) in found.items():
        try:
            ZoneInfo(tz)
        except (KeyError, ValueError) as exc:
            raise ImportFileError(f"patient {ext} has an invalid time zone {tz!r}") from exc
    return found, created, warnings


def _register(conn: psycopg.Connection[Any], device: ImportDevice, patient_id: int) -> None:
    """The import source in ``devices`` (no gateway), bound to its patient from -infinity.

    A source already bound to another patient is refused: its readings would carry the
    same identities, so the import would store nothing for this patient.
    """
    conn.execute(
        "INSERT INTO devices (id, profile, manufacturer, model, serial)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET profile = EXCLUDED.profile,"
        " manufacturer = coalesce(EXCLUDED.manufacturer, devices.manufacturer),"
        " model = coalesce(EXCLUDED.model, devices.model),"
        " serial = coalesce(EXCLUDED.serial, devices.serial)",
        (device.id, device.profile, device.manufacturer, device.model, device.serial),
    )
    bindings = conn.execute(
        "SELECT patient_id, upper_inf(valid) FROM device_bindings WHERE device_id = %s",
        (device.id,),
    ).fetchall()
    if not bindings:
        bind_device(conn, device.id, patient_id, datetime.now(UTC))  # first: from -infinity
        return
    if any(int(p) != patient_id for p, _ in bindings) or not any(o for _, o in bindings):
        owners = sorted({int(p) for p, _ in bindings})
        raise ImportFileError(
            f"source {device.id} is (or was) bound to patient id(s) {owners}, not only to"
            f" patient {device.patient} (id {patient_id}); refusing to import it"
        )


def _recorded(conn: psycopg.Connection[Any], topic: str) -> set[tuple[str | None, int | None, str]]:
    rows = conn.execute(
        "SELECT device_id, reading_index, reason FROM dead_letters"
        " WHERE topic = %s AND reprocessed_at IS NULL",
        (topic,),
    ).fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def import_file(
    database_url: str,
    path: str | Path,
    fmt: str,
    patient: str | None,
    *,
    timezone: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = True,
) -> dict[str, Any]:
    """Import one export file; returns the report (JSON-serializable).

    ``patient``: the patient's external id (required for vendor exports; for the generic
    CSV only when it has no ``id`` column).  ``timezone``: for patients this import
    creates (default: the database default); an existing patient's zone always wins.
    """
    started = time.perf_counter()
    source = Path(path)
    parsed = parse_file(source, fmt, patient)
    topic = f"import/{fmt}/{source.name}"
    report: dict[str, Any] = {"file": str(source), "format": fmt}
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            external = sorted({d.patient for d in parsed.devices.values()})
            patients, created, warnings = _patients(conn, external, timezone)
            for device in parsed.devices.values():
                _register(conn, device, patients[device.patient][0])
        cache = BindingCache()
        cache.refresh(conn, force=True)
        prepared = prepare(parsed, {ext: tz for ext, (_, tz) in patients.items()})
        recorded = _recorded(conn, topic)
        known = set(parsed.devices)
        now = datetime.now(UTC)
        stored = duplicates = written = 0
        dead: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        total = len(parsed.rows)
        with tqdm(
            total=total,
            unit="row",
            unit_scale=True,
            desc=f"import {source.name}",
            disable=None if progress else True,
        ) as bar:
            for start in range(0, total, chunk_rows):
                stop = min(start + chunk_rows, total)
                with _gc_paused():
                    chunk = build_chunk(prepared, start, stop, topic)
                skipped.update(chunk.skipped)
                if prepared.value_key is not None:
                    chunk.readings = meet_stored(conn, chunk.readings)
                flat = Flat()
                flat.add(Origin(topic, NO_GATEWAY), chunk.readings)
                split = validate(flat, known, now)
                for r in split.rejected:
                    r.index = chunk.lines[r.index] if r.index is not None else None
                rejected = [*split.rejected, *chunk.rejected]
                dead.update(reason_key(r.reason) for r in rejected)
                split.rejected = [
                    r for r in split.rejected if (r.device, r.index, r.reason) not in recorded
                ]
                fresh = [r for r in chunk.rejected if (r.device, r.index, r.reason) not in recorded]
                with conn.transaction():
                    result = write_split(conn, split, cache, fresh)
                stored += sum(result.inserted.values())
                duplicates += sum(result.duplicates.values())
                written += result.dead_letters
                bar.update(stop - start)
    elapsed = time.perf_counter() - started
    valid_times = prepared.utc.dropna()
    report.update(
        {
            "patients": external,
            "patients_created": created,
            "timezones": sorted({tz for _, tz in patients.values()}),
            "devices": sorted(parsed.devices),
            "timestamp_format": parsed.timestamp_format,
            "rows_read": total,
            "readings_stored": stored,
            "duplicates_skipped": duplicates,
            "rows_skipped": sum(skipped.values()),
            "skipped_by_reason": dict(sorted(skipped.items())),
            "dead_lettered": sum(dead.values()),
            "dead_lettered_by_reason": dict(sorted(dead.items())),
            "dead_letters_written": written,
            "dst_adjusted": prepared.dst_adjusted,
            "first_time": valid_times.min().isoformat() if len(valid_times) else None,
            "last_time": valid_times.max().isoformat() if len(valid_times) else None,
            "warnings": [*parsed.warnings, *warnings],
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(total / elapsed) if elapsed > 0 else None,
        }
    )
    return report
