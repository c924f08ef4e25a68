"""Decoded wire batches -> validated rows per table, ready for COPY.

Readings of many messages are flattened into parallel lists (no object per reading);
validation runs as numpy masks over whole columns, and Python touches each reading only
to pull its values out once and to build its COPY row.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
import numpy as np
import orjson

from device_profiles.model import Component, Condition, Kind
from ingest.validation import COMPONENTS_OF, EARLIEST, FUTURE_TOLERANCE, PLAUSIBLE, REQUIRED
from readings import (
    BODY_TABLE,
    BP_TABLE,
    GLUCOSE_TABLE,
    KINDS,
    RECORD_TYPES_OF,
    TABLE_OF_KIND,
    USUAL_RECORD_TYPE,
    InconsistentKinds,
    Original,
    Reading,
    RecordType,
    id_bytes,
    source_key_text,
    source_key_texts,
)

# Reading ids are written as binary uuid: only the canonical text form is accepted.
_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Binary COPY wraps out-of-range integers silently (2**40 was stored as 0): the ranges of
# the integer columns are checked here. ``sequence`` is int4; a BP user id is a uint8
# (Blood Pressure Service 1.1, 3.1: 0xFF = unknown user) in an int2 column.
SEQUENCE_RANGE = (0, 2**31 - 1)
USER_ID_RANGE = (0, 255)
# Reading ids arrive as UUID text and go out as the 16 bytes of binary COPY's uuid field,
# converted for a whole batch at once (``uuid_bytes``); declared ``bytea`` so psycopg
# copies them in C instead of calling a Python dumper per row.
UUID_AS_BYTES = "bytea"
# Likewise jsonb fields prepared by ``details_jsonb`` / ``original_jsonb``.
JSONB_AS_BYTES = "bytea"


@dataclass(slots=True)
class Origin:
    """The message a run of readings came from (for dead letters and gateway columns)."""

    topic: str
    gateway: str | None  # None: not from a gateway (bulk import)
    # The payload holds a JSON ``\u0000`` escape: its text fields are checked one by one
    # (PostgreSQL text cannot hold NUL); a raw bytes search keeps the usual case free.
    may_hold_nul: bool = False


@dataclass(slots=True)
class Flat:
    """Readings of many messages, flattened: parallel lists, no object per reading."""

    readings: list[Reading] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # index into ``origins``
    position: list[int] = field(default_factory=list)  # index within its message
    origins: list[Origin] = field(default_factory=list)

    def add(self, origin: Origin, readings: list[Reading]) -> None:
        k = len(self.origins)
        self.origins.append(origin)
        self.readings.extend(readings)
        self.origin.extend([k] * len(readings))
        self.position.extend(range(len(readings)))

    def gateway(self, i: int) -> str | None:
        return self.origins[self.origin[i]].gateway


@dataclass(slots=True)
class Rejected:
    topic: str
    gateway: str | None
    device: str | None
    payload: bytes
    reason: str
    index: int | None = None


@dataclass(slots=True)
class Split:
    """Valid readings (indices into ``flat``) grouped by table, plus the rejects."""

    flat: Flat
    by_table: dict[str, list[int]] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)


_single_encoder = msgspec.json.Encoder()


def reading_payload(gateway: str | None, reading: Reading) -> bytes:
    """A one-reading batch: what a per-reading dead letter keeps, replayable as is."""
    return _single_encoder.encode(
        {
            "schema": "homevitals.readings/1",
            "gateway": gateway,
            "sent_at": datetime.now(UTC),
            "readings": [reading],
        }
    )


BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


def validate(flat: Flat, known_devices: set[str], now: datetime) -> Split:
    """Check every reading: one pass to columns, then vector checks per column."""
    split = Split(flat)
    readings = flat.readings
    n = len(readings)
    if n == 0:
        return split
    reasons: list[str | None] = [None] * n

    def reject(mask: BoolArray, why: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask):
            if reasons[i] is None:
                reasons[i] = why(int(i))

    # Fields the database would refuse (or, for integers, store wrapped): one cheap pass
    # flags the odd readings, and only those get a closer look for the reason.
    isfinite = math.isfinite
    odd = ~_canonical_uuids([r.id for r in readings]) | np.fromiter(
        (
            (r.seq is not None and not SEQUENCE_RANGE[0] <= r.seq <= SEQUENCE_RANGE[1])
            or (r.skew_s is not None and not isfinite(r.skew_s))
            or ("user_id" in r.details and not _user_id_ok(r.details["user_id"]))
            or (r.record_type is not None and r.record_type not in RECORD_TYPES_OF[r.kind])
            for r in readings
        ),
        bool,
        n,
    )
    for k in np.flatnonzero(odd):
        reasons[k] = _field_problem(readings[k])
    if any(o.may_hold_nul for o in flat.origins):
        suspect = np.fromiter(
            (flat.origins[k].may_hold_nul for k in flat.origin), bool, n
        ) & np.fromiter((_holds_nul(r) for r in readings), bool, n)
        reject(suspect, partial(_same, "a text field holds a NUL character (\\u0000)"))
    times = np.fromiter((r.time.timestamp() for r in readings), np.float64, n)
    reject(times < EARLIEST.timestamp(), lambda i: "time before 2000-01-01: device clock unset")
    reject(
        times > (now + FUTURE_TOLERANCE).timestamp(),
        lambda i: f"time {readings[i].time.isoformat()} is in the future",
    )
    kinds = np.fromiter((KIND_CODE[r.kind] for r in readings), np.int8, n)
    # Columns of the components actually present (usually one or four per reading).
    where: dict[Component, list[int]] = {}
    values: dict[Component, list[float]] = {}
    for i, r in enumerate(readings):
        for component, value in r.values.items():
            where.setdefault(component, []).append(i)
            values.setdefault(component, []).append(value)
    present: dict[Component, BoolArray] = {}
    for component, idx in where.items():
        rows = np.asarray(idx)
        column = np.asarray(values[component], dtype=np.float64)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        present[component] = mask
        foreign = ~np.isin(kinds[rows], _KIND_CODES_WITH[component])
        if foreign.any():
            reject(
                np.isin(np.arange(n), rows[foreign]),
                partial(_foreign_component, readings, component),
            )
        low, high = PLAUSIBLE.get(component, (np.nan, np.nan))
        bad = ~((column >= low) & (column <= high))  # NaN is bad too
        if bad.any():
            full = np.full(n, np.nan)
            full[rows] = column
            reject(
                np.isin(np.arange(n), rows[bad]),
                partial(_implausible, component.value, full, low, high),
            )
    # Readings allowed to lack their required values (a meter's HI/LO), per condition set.
    no_value_ok: dict[frozenset[Condition], BoolArray] = {}
    for kind, required in REQUIRED.items():
        of_kind = kinds == KIND_CODE[kind]
        absent_when = KINDS[kind].absent_when
        for component in required:
            has = present.get(component, np.zeros(n, dtype=bool))
            missing = of_kind & ~has
            if absent_when:
                if absent_when not in no_value_ok:
                    no_value_ok[absent_when] = np.fromiter(
                        (
                            bool(r.conditions) and not absent_when.isdisjoint(r.conditions)
                            for r in readings
                        ),
                        bool,
                        n,
                    )
                missing &= ~no_value_ok[absent_when]
            reject(missing, partial(_same, f"{kind.value} reading without {component.value}"))
    unknown = np.fromiter((r.device not in known_devices for r in readings), bool, n)
    reject(
        unknown,
        lambda i: f"unknown device {readings[i].device!r} (not paired on any gateway)",
    )
    for i in range(n):
        reason = reasons[i]
        if reason is None:
            split.by_table.setdefault(TABLE_OF_KIND[readings[i].kind], []).append(i)
        else:
            origin = flat.origins[flat.origin[i]]
            split.rejected.append(
                Rejected(
                    origin.topic,
                    origin.gateway,
                    readings[i].device,
                    reading_payload(origin.gateway, readings[i]),
                    reason,
                    flat.position[i],
                )
            )
    return split


KIND_CODE: dict[Kind, int] = {kind: code for code, kind in enumerate(Kind)}
_KIND_CODES_WITH: dict[Component, list[int]] = {
    component: [KIND_CODE[k] for k, allowed in COMPONENTS_OF.items() if component in allowed]
    for component in Component
}


def _implausible(
    name: str, column: np.ndarray[Any, np.dtype[np.float64]], low: float, high: float, i: int
) -> str:
    return f"implausible {name} {column[i]:g} (allowed {low:g}..{high:g})"


def _foreign_component(readings: list[Reading], component: Component, i: int) -> str:
    return f"{readings[i].kind.value} reading with {component.value} (not one of its components)"


def _same(reason: str, i: int) -> str:
    return reason


# Every hex digit -> "h", "-" stays, anything else -> "x": a canonical id becomes _SHAPE.
_CLASSES = bytes(
    ord("h") if chr(c) in "0123456789abcdefABCDEF" else c if c == ord("-") else ord("x")
    for c in range(256)
)
_SHAPE = b"hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh"


def _canonical_uuids(ids: list[str]) -> BoolArray:
    """Which ids are canonical UUID text (8-4-4-4-12 hex digits).  The usual batch (all
    36-character ASCII) is checked in C: one ``translate`` of the joined bytes and one
    comparison; rows are looked at one by one only when something is off."""
    n = len(ids)
    lengths = np.fromiter(map(len, ids), np.int64, n)
    joined = "".join(ids)
    if not (joined.isascii() and bool(np.all(lengths == 36))):
        return np.fromiter((_UUID_TEXT.fullmatch(i) is not None for i in ids), bool, n)
    shapes = joined.encode("ascii").translate(_CLASSES)
    if shapes == _SHAPE * n:
        return np.ones(n, dtype=bool)
    rows = np.frombuffer(shapes, dtype=np.uint8).reshape(n, 36)
    ok: BoolArray = np.all(rows == np.frombuffer(_SHAPE, dtype=np.uint8), axis=1)
    return ok


def _field_problem(r: Reading) -> str:
    if _UUID_TEXT.fullmatch(r.id) is None:
        return f"reading id {r.id[:64]!r} is not a UUID"
    low, high = SEQUENCE_RANGE
    if r.seq is not None and not low <= r.seq <= high:
        return f"sequence number {r.seq} is out of range ({low}..{high})"
    if r.skew_s is not None and not math.isfinite(r.skew_s):
        return f"clock skew {r.skew_s} is not a finite number"
    if r.record_type is not None and r.record_type not in RECORD_TYPES_OF[r.kind]:
        allowed = ", ".join(sorted(RECORD_TYPES_OF[r.kind]))
        return f"record type {r.record_type.value!r} is not one of {r.kind.value}'s ({allowed})"
    low, high = USER_ID_RANGE
    return f"user id {r.details.get('user_id')!r} is not an integer {low}..{high}"


def _user_id_ok(value: object) -> bool:
    if value is None:
        return True
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and USER_ID_RANGE[0] <= value <= USER_ID_RANGE[1]
    )


def _holds_nul(r: Reading) -> bool:
    texts = [r.id, r.device, r.device_time or ""]
    texts += [o.unit for o in r.original.values()]
    texts += [k for k in r.details]
    texts += [v for v in r.details.values() if isinstance(v, str)]
    return any("\x00" in t for t in texts)


FORGED_ID_REASON = "reading id does not match its source record"
_VERSION_MASK = np.full(16, 0xFF, dtype=np.uint8)
_VERSION_BITS = np.zeros(16, dtype=np.uint8)
_VERSION_MASK[6], _VERSION_BITS[6] = 0x0F, 0x50  # version nibble 5
_VERSION_MASK[8], _VERSION_BITS[8] = 0x3F, 0x80  # RFC 4122 variant


def refuse_forged_ids(split: Split) -> int:
    """Dead-letter (in ``split``) every reading from a hub whose ``id`` is not the
    identity of the source record its own fields name (``readings.identity``): the id
    is a public recipe, so without this a hub could store a reading of its own device
    under the id of another device's next record, which would then be taken for a
    duplicate and dropped.  Returns how many.

    One SHA-256 per reading, the ids compared as one byte array; a reading that does not
    match gets a second, lenient look (the older forms of the same device's key)."""
    flat = split.flat
    readings = flat.readings
    hubs = [o.gateway is not None for o in flat.origins]
    origin = flat.origin
    if all(hubs):
        located = [i for idx in split.by_table.values() for i in idx]
    else:
        located = [i for idx in split.by_table.values() for i in idx if hubs[origin[i]]]
    if not located:
        return 0
    sha = hashlib.sha256
    text = source_key_text
    digests = b"".join([sha(text(readings[i]).encode()).digest() for i in located])
    expected = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)[:, :16]
    expected = (expected & _VERSION_MASK) | _VERSION_BITS
    claimed = np.frombuffer(b"".join(uuid_bytes([readings[i].id for i in located])), np.uint8)
    differ = np.flatnonzero(np.any(expected != claimed.reshape(-1, 16), axis=1))
    if differ.size == 0:
        return 0
    forged: set[int] = set()
    for k in differ.tolist():
        r = readings[located[k]]
        claim = uuid_bytes([r.id])[0]
        if not any(id_bytes(t) == claim for t in source_key_texts(r)):
            forged.add(located[k])
    if not forged:
        return 0
    for table in list(split.by_table):
        kept = [i for i in split.by_table[table] if i not in forged]
        if kept:
            split.by_table[table] = kept
        else:
            del split.by_table[table]
    for i in sorted(forged):
        o = flat.origins[origin[i]]
        split.rejected.append(
            Rejected(
                o.topic,
                o.gateway,
                readings[i].device,
                reading_payload(o.gateway, readings[i]),
                FORGED_ID_REASON,
                flat.position[i],
            )
        )
    return len(forged)


def uuid_bytes(ids: list[str]) -> list[bytes]:
    """Canonical UUID texts (``validate`` checked them) -> 16 bytes each, in one pass."""
    raw = bytes.fromhex("".join(ids).replace("-", ""))
    return [raw[k : k + 16] for k in range(0, len(raw), 16)]


def details_jsonb(details: dict[str, Any]) -> bytes | None:
    """A reading's details as a binary-COPY jsonb field (version byte 1, then the JSON
    text), so psycopg copies bytes in C; None for the usual empty dict.  (A ``str`` given
    to psycopg's jsonb dumper would be stored as a JSON *string*, not an object.)"""
    return b"\x01" + orjson.dumps(details) if details else None


def original_jsonb(original: dict[Component, Original]) -> bytes | None:
    """The device's own values and units as a binary-COPY jsonb field,
    ``{component: [value, unit]}`` (the wire's form); None when the reading has none."""
    if not original:
        return None
    return b"\x01" + orjson.dumps({c.value: [o.value, o.unit] for c, o in original.items()})


def glucose_rows(flat: Flat, idx: list[int], patients: list[int | None]) -> list[tuple[Any, ...]]:
    # The hottest loop of ingest (one tuple per reading): names bound locally, trend and
    # quality looked up only when a reading has more than its glucose value.
    out: list[tuple[Any, ...]] = []
    append = out.append
    readings = flat.readings
    gateways = [o.gateway for o in flat.origins]
    origin = flat.origin
    ids = uuid_bytes([readings[i].id for i in idx])
    glucose, trend, quality = Component.GLUCOSE, Component.CGM_TREND, Component.CGM_QUALITY
    source = _GLUCOSE_SOURCE
    usual = _USUAL  # a plain dict: the fastest lookup in this loop
    dumps = orjson.dumps
    for i, patient, rid in zip(idx, patients, ids, strict=True):
        r = readings[i]
        values = r.values
        original = r.original.get(glucose) if r.original else None
        extra = len(values) > 1
        append(
            (
                r.time,
                rid,
                r.device,
                patient,
                source[r.kind],
                values.get(glucose),
                r.conditions,
                r.seq,
                r.device_time,
                r.skew_s,
                None if original is None else original.value,
                None if original is None else original.unit,
                gateways[origin[i]],
                values.get(trend) if extra else None,
                values.get(quality) if extra else None,
                b"\x01" + dumps(r.details) if r.details else None,  # see details_jsonb
                usual[r.kind] if r.record_type is None else r.record_type,
            )
        )
    return out


def bp_rows(flat: Flat, idx: list[int], patients: list[int | None]) -> list[tuple[Any, ...]]:
    out = []
    readings = flat.readings
    ids = uuid_bytes([readings[i].id for i in idx])
    for i, patient, rid in zip(idx, patients, ids, strict=True):
        r = readings[i]
        values = r.values
        original = r.original.get(Component.SYSTOLIC) if r.original else None
        out.append(
            (
                r.time,
                rid,
                r.device,
                patient,
                *[values[c] if needed else values.get(c) for c, needed in _BP_COMPONENTS],
                r.conditions,
                r.device_time,
                r.skew_s,
                None if original is None else original.unit,
                r.details.get("user_id"),  # ``validate`` let only None or 0..255 through
                flat.gateway(i),
                details_jsonb(r.details),
                USUAL_RECORD_TYPE[r.kind] if r.record_type is None else r.record_type,
                original_jsonb(r.original),
            )
        )
    return out


def body_rows(flat: Flat, idx: list[int], patients: list[int | None]) -> list[tuple[Any, ...]]:
    out = []
    readings = flat.readings
    ids = uuid_bytes([readings[i].id for i in idx])
    for i, patient, rid in zip(idx, patients, ids, strict=True):
        r = readings[i]
        out.append(
            (
                r.time,
                rid,
                r.device,
                patient,
                r.kind.value,
                b"\x01" + orjson.dumps({c.value: v for c, v in r.values.items()}),
                r.conditions,
                r.device_time,
                r.skew_s,
                flat.gateway(i),
                details_jsonb(r.details),
                USUAL_RECORD_TYPE[r.kind] if r.record_type is None else r.record_type,
                original_jsonb(r.original),
            )
        )
    return out


RowBuilder = Callable[[Flat, list[int], list[int | None]], list[tuple[Any, ...]]]


@dataclass(frozen=True, slots=True)
class CopyTable:
    """One readings table as the writer COPYs it: its fields (column, binary COPY type)
    in the order of the tuples ``rows`` builds."""

    name: str
    fields: tuple[tuple[str, str], ...]
    rows: RowBuilder

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.fields)

    @property
    def types(self) -> list[str]:
        return [copy_type for _, copy_type in self.fields]


# Every readings row starts with these (the writer's identity claim reads the first two).
_HEAD = (
    ("time", "timestamptz"),
    ("reading_id", UUID_AS_BYTES),
    ("device_id", "text"),
    ("patient_id", "int8"),
)
_USUAL: dict[Kind, RecordType] = dict(USUAL_RECORD_TYPE)
_GLUCOSE_SOURCE: dict[Kind, str] = {
    kind: spec.source for kind, spec in KINDS.items() if spec.table == GLUCOSE_TABLE and spec.source
}
# (component, required) of the cuff's columns, in declaration (= column) order.
_BP_COMPONENTS: tuple[tuple[Component, bool], ...] = tuple(
    (c.component, c.required) for c in KINDS[Kind.BLOOD_PRESSURE].components
)

COPY_TABLES: dict[str, CopyTable] = {
    GLUCOSE_TABLE: CopyTable(
        GLUCOSE_TABLE,
        (
            *_HEAD,
            ("source", "text"),
            ("mgdl", "float8"),
            ("conditions", "text[]"),
            ("sequence", "int4"),
            ("device_time", "text"),
            ("skew_s", "float8"),
            ("original_value", "float8"),
            ("original_unit", "text"),
            ("gateway_id", "text"),
            ("trend_mgdl_min", "float8"),
            ("quality_pct", "float8"),
            ("details", JSONB_AS_BYTES),
            ("record_type", "text"),
        ),
        glucose_rows,
    ),
    BP_TABLE: CopyTable(
        BP_TABLE,
        (
            *_HEAD,
            *((str(c.column), "float8") for c in KINDS[Kind.BLOOD_PRESSURE].components),
            ("conditions", "text[]"),
            ("device_time", "text"),
            ("skew_s", "float8"),
            ("original_unit", "text"),
            ("user_id", "int2"),
            ("gateway_id", "text"),
            ("details", JSONB_AS_BYTES),
            ("record_type", "text"),
            ("original", JSONB_AS_BYTES),
        ),
        bp_rows,
    ),
    BODY_TABLE: CopyTable(
        BODY_TABLE,
        (
            *_HEAD,
            ("kind", "text"),
            ("components", JSONB_AS_BYTES),  # {component: value} of every declared component
            ("conditions", "text[]"),
            ("device_time", "text"),
            ("skew_s", "float8"),
            ("gateway_id", "text"),
            ("details", JSONB_AS_BYTES),
            ("record_type", "text"),
            ("original", JSONB_AS_BYTES),
        ),
        body_rows,
    ),
}


def _check_storage() -> None:
    """Every kind's table is one of these, and every component it declares has a column
    there (or goes into the body table's ``components``)."""
    for spec in KINDS.values():
        table = COPY_TABLES.get(spec.table)
        if table is None:
            raise InconsistentKinds(f"{spec.kind.value}: no COPY table {spec.table!r}")
        for c in spec.components:
            column = "components" if c.column is None else c.column
            if column not in table.columns or (c.column is None) != (table.name == BODY_TABLE):
                raise InconsistentKinds(
                    f"{spec.kind.value}.{c.component.value}: no column {column!r} in {table.name}"
                )


_check_storage()
