"""The ingest wire contract, version 2: MQTT topics and payloads (docs/wire-format.md).

The one place that builds topics and encodes/decodes payloads; the gateway, the fleet
simulator and ingest all use it.  Payloads are JSON (msgspec: typed and fast).
A reading's ``id`` is the identity of its source record (``readings.identity``), so
the same record is stored once however often it is sent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from device_profiles.model import Component, Condition, Kind
from readings.identity import RecordType

# Defined in readings.identity; re-exported for callers that built ids through this
# module before identity had its own (``wire.reading_id``).
from readings.identity import reading_id as reading_id  # noqa: PLC0414 (explicit re-export)

TOPIC_ROOT = "homevitals/v1"
SCHEMA_READINGS: Final = "homevitals.readings/1"
SCHEMA_STATUS: Final = "homevitals.status/1"
SCHEMA_EVENT: Final = "homevitals.event/1"
# Version 2 of the readings and events messages carries a batch id; ingest answers each
# committed one with a receipt (docs/wire-format.md, "Receipts").  Version 1 stays
# accepted (a gateway not yet upgraded), it just gets no receipt.
SCHEMA_READINGS_V2: Final = "homevitals.readings/2"
SCHEMA_EVENT_V2: Final = "homevitals.event/2"
SCHEMA_RECEIPT: Final = "homevitals.receipt/1"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 1000

GatewayId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
# A GATT characteristic value is at most 512 bytes (Core Spec Vol 3 Part F §3.2.9).
MAX_ATTRIBUTE_BYTES = 512
MAX_MALFORMED_REASON = 500
CharacteristicUuid = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
RawHex = Annotated[
    str,
    msgspec.Meta(pattern=r"^(?:[0-9a-f]{2})*$", max_length=2 * MAX_ATTRIBUTE_BYTES),
]
U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
# A gateway's name for one batch it sent (e.g. a uuid4 hex); echoed in the receipt.
BatchId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Count = Annotated[int, msgspec.Meta(ge=0)]


def readings_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/gw/{gateway_id}/readings"


def status_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/gw/{gateway_id}/status"


def events_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/gw/{gateway_id}/events"


def receipts_topic(gateway_id: str) -> str:
    """Where ingest confirms a gateway's committed batches (only that gateway may read)."""
    return f"{TOPIC_ROOT}/gw/{gateway_id}/receipts"


def gateway_topic_filter(gateway_id: str) -> str:
    """Everything one gateway may publish to (its ACL pattern)."""
    return f"{TOPIC_ROOT}/gw/{gateway_id}/#"


READINGS_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/readings"
EVENTS_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/events"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/gw/+/status"


def shared(group: str, topic_filter: str) -> str:
    """MQTT 5 shared subscription: workers in one group split the messages."""
    return f"$share/{group}/{topic_filter}"


def gateway_of_topic(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT and parts[2] == "gw":
        return parts[3]
    return None


class Original(msgspec.Struct, frozen=True, array_like=True):
    """The device's own value and unit (provenance), e.g. [0.00105, "kg/L"]."""

    value: float | None
    unit: str


class Reading(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    id: str  # readings.identity.RecordKey(...).reading_id
    device: str  # device identity: BLE address or serial, as paired
    kind: Kind
    time: UtcTime  # UTC, corrected for clock skew and offset
    values: dict[Component, float]  # canonical units (see docs/wire-format.md)
    device_time: str | None = None  # as the device reported it (local, ISO, no zone)
    seq: int | None = None
    skew_s: float | None = None  # device clock minus gateway clock, when measured
    conditions: list[Condition] = []
    original: dict[Component, Original] = {}
    details: dict[str, int | float | str | bool | None] = {}
    # cgm / scan / strip / control / manual / measured; omitted (None) for the kind's
    # usual type (readings.identity.USUAL_RECORD_TYPE), so readings/1 messages sent
    # before the field existed stay valid and mean what they meant.
    record_type: RecordType | None = None


def _check_batch_id(schema: str, batch: str | None) -> None:
    """Version 2 messages name their batch; version 1 messages have no such field."""
    if schema.endswith("/2") and batch is None:
        raise ValueError(f"a {schema} message needs a batch id")
    if schema.endswith("/1") and batch is not None:
        raise ValueError(f"a {schema} message has no batch id (that is version 2)")


class ReadingsBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    schema: Literal["homevitals.readings/1", "homevitals.readings/2"]
    gateway: GatewayId
    sent_at: UtcTime
    readings: list[Reading]
    batch: BatchId | None = None  # version 2: ingest confirms it with a receipt

    def __post_init__(self) -> None:
        _check_batch_id(self.schema, self.batch)


class GatewayStatus(msgspec.Struct, frozen=True, omit_defaults=True):
    schema: Literal["homevitals.status/1"]
    gateway: str
    state: Literal["online", "offline"]
    at: datetime | None = None
    outbox_depth: int | None = None
    version: str | None = None


class DeviceEvent(msgspec.Struct, frozen=True, omit_defaults=True, tag_field="event"):
    """Base of the events a gateway reports (pairing, battery, sync)."""

    device: str
    at: UtcTime


class DevicePaired(DeviceEvent, frozen=True, tag="paired"):
    profile: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None


class DeviceUnpaired(DeviceEvent, frozen=True, tag="unpaired"):
    pass


class DeviceInventory(DeviceEvent, frozen=True, tag="inventory"):
    """A device the gateway holds as paired, reported at every daemon start: the server's
    device list heals itself if a pairing report was ever missed."""

    profile: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None


class DeviceSynced(DeviceEvent, frozen=True, tag="synced"):
    readings: int = 0
    battery_percent: int | None = None
    skew_s: float | None = None
    error: str | None = None


class DeviceRecordMalformed(DeviceEvent, frozen=True, tag="malformed"):
    """Bytes of a device record the gateway's parser rejected (a firmware bug, an unknown
    vendor quirk, an E2E-CRC failure), sent as received so nothing is lost: ingest keeps
    it as a dead letter; after a parser fix the record can be decoded from ``raw``.

    ``seq`` / ``time_offset_min``: the record's RACP number when it could still be read
    from its fixed position (Glucose Measurement bytes 1-2; CGM Measurement bytes 4-5).
    ``skew_s``, ``zone`` and ``cgm_session`` are what dating the record needs.
    """

    characteristic: CharacteristicUuid  # 128-bit, lowercase (e.g. 00002a18-0000-1000-...)
    raw: RawHex  # the value as received, lowercase hex
    reason: Annotated[str, msgspec.Meta(max_length=MAX_MALFORMED_REASON)]  # the parser's
    profile: str | None = None  # the gateway's device profile id
    seq: U16 | None = None
    time_offset_min: U16 | None = None
    skew_s: float | None = None  # device clock minus gateway clock, this session
    zone: str | None = None  # the gateway's IANA time zone (device clocks are local)
    cgm_session: str | None = None  # CGM Session Start Time the offset counts from (hex)


Event = DevicePaired | DeviceUnpaired | DeviceSynced | DeviceInventory | DeviceRecordMalformed


class EventsMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    schema: Literal["homevitals.event/1", "homevitals.event/2"]
    gateway: str
    events: list[Event]
    batch: BatchId | None = None  # version 2: ingest confirms it with a receipt

    def __post_init__(self) -> None:
        _check_batch_id(self.schema, self.batch)


class BatchReceipt(msgspec.Struct, frozen=True):
    """What became of one batch, counted in its items (readings or events): ``stored``
    committed now, ``duplicate`` committed before (a re-send), ``dead_lettered`` kept as
    dead letters (also committed: nothing of the batch waits on the gateway any more)."""

    batch: BatchId
    stored: Count = 0
    duplicate: Count = 0
    dead_lettered: Count = 0


class Receipt(msgspec.Struct, frozen=True):
    """Ingest -> gateway, on ``receipts_topic(gateway)`` after the COMMIT holding the
    batches: the gateway deletes a batch's outbox rows only on its receipt."""

    schema: Literal["homevitals.receipt/1"]
    gateway: GatewayId
    at: UtcTime
    batches: list[BatchReceipt]


class _BatchRef(msgspec.Struct, frozen=True):
    """The envelope of a version-2 message, read even when the rest breaks the contract
    (so a message dead-lettered whole is still confirmed to its gateway)."""

    schema: str
    gateway: str
    batch: BatchId | None = None


_encoder = msgspec.json.Encoder()
_batch_decoder = msgspec.json.Decoder(ReadingsBatch)
_events_decoder = msgspec.json.Decoder(EventsMessage)
_status_decoder = msgspec.json.Decoder(GatewayStatus)
_receipt_decoder = msgspec.json.Decoder(Receipt)
_ref_decoder = msgspec.json.Decoder(_BatchRef)
_reading_decoder = msgspec.json.Decoder(Reading)


class WireError(ValueError):
    """A payload that does not follow the contract; ``reason`` goes to the dead letters."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def encode(message: ReadingsBatch | EventsMessage | GatewayStatus | Receipt) -> bytes:
    return _encoder.encode(message)


def _check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError(f"oversized payload: {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")


def decode_batch(payload: bytes) -> ReadingsBatch:
    _check_size(payload)
    try:
        batch = _batch_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError(f"invalid readings payload: {exc}") from exc
    if len(batch.readings) > MAX_READINGS_PER_MESSAGE:
        raise WireError(f"too many readings: {len(batch.readings)} > {MAX_READINGS_PER_MESSAGE}")
    return batch


def decode_events(payload: bytes) -> EventsMessage:
    _check_size(payload)
    try:
        return _events_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError(f"invalid events payload: {exc}") from exc


def decode_status(payload: bytes) -> GatewayStatus:
    _check_size(payload)
    try:
        return _status_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError(f"invalid status payload: {exc}") from exc


def decode_receipt(payload: bytes) -> Receipt:
    _check_size(payload)
    try:
        return _receipt_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise WireError(f"invalid receipt payload: {exc}") from exc


def batch_ref(payload: bytes) -> str | None:
    """The batch id of a version-2 message, if its JSON envelope can be read at all."""
    try:
        ref = _ref_decoder.decode(payload)
    except msgspec.DecodeError:
        return salvage_batch_id(payload)
    return ref.batch if ref.schema.endswith("/2") else None


# JSON has no NaN or Infinity; Python's json (and JavaScript's JSON.stringify of some
# libraries) writes them anyway as bare tokens.  Such a message is not thrown away
# whole: its readings without them are kept, those with them are dead-lettered one by
# one (``salvage_batch``).  So is a message whose envelope is sound but some reading
# breaks the contract (a kind, condition or field this ingest does not know yet, a
# string for a number): one bad reading must not take its batch down.
_NON_FINITE_TOKENS = (b"NaN", b"Infinity")


@dataclass(frozen=True, slots=True)
class SalvagedReading:
    """A reading of a salvaged message that cannot be stored, as its own dead letter."""

    index: int
    device: str | None
    payload: bytes  # a one-reading message, tokens as sent (replayable)
    reason: str


@dataclass(frozen=True, slots=True)
class Salvaged:
    batch: ReadingsBatch  # the envelope and the readings that decode
    rejected: list[SalvagedReading]


def _non_finite_path(value: object, path: str) -> tuple[str, float] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_finite_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _lenient_object(payload: bytes) -> dict[str, object] | None:
    """The payload as a JSON object, NaN/Infinity tokens allowed (only on the path of a
    message the strict decoder refused)."""
    try:
        obj = json.loads(payload)  # accepts NaN, Infinity, -Infinity
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def salvage_batch_id(payload: bytes) -> str | None:
    obj = _lenient_object(payload)
    if obj is None or not str(obj.get("schema", "")).endswith("/2"):
        return None
    batch = obj.get("batch")
    return batch if isinstance(batch, str) and len(batch) <= 64 else None


def salvage_batch(payload: bytes) -> Salvaged | None:
    """A readings message the strict decoder refused, read reading by reading: its
    envelope and good readings, plus each reading holding a NaN/Infinity token or
    otherwise breaking the contract (``invalid reading: <why>``) apart with the reason.
    None when the message is not recoverable: not a JSON object (tokens allowed), no
    readings list, an envelope that breaks the contract, too many readings (then it is
    dead-lettered whole, as before)."""
    _check_size(payload)
    obj = _lenient_object(payload)
    if obj is None or not isinstance(obj.get("readings"), list):
        return None
    raw_readings: list[object] = obj["readings"]  # type: ignore[assignment]
    envelope = {key: value for key, value in obj.items() if key != "readings"}
    if _non_finite_path(envelope, "") is not None:
        return None
    try:
        batch = _batch_decoder.decode(_encoder.encode({**envelope, "readings": []}))
    except msgspec.DecodeError:
        return None
    if len(raw_readings) > MAX_READINGS_PER_MESSAGE:
        return None
    good: list[Reading] = []
    rejected: list[SalvagedReading] = []
    for i, raw in enumerate(raw_readings):
        device = raw.get("device") if isinstance(raw, dict) else None
        found = _non_finite_path(raw, "")
        if found is None:
            try:
                good.append(_reading_decoder.decode(_encoder.encode(raw)))
                continue
            except (msgspec.DecodeError, msgspec.EncodeError, TypeError) as exc:
                reason = f"invalid reading: {exc}"
        else:
            path, value = found
            token = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            reason = f"non-finite number {token} in {path} (JSON has no NaN/Infinity)"
        single = {**envelope, "readings": [raw]}
        single.pop("batch", None)
        single["schema"] = SCHEMA_READINGS
        rejected.append(
            SalvagedReading(
                i,
                device if isinstance(device, str) else None,
                json.dumps(single).encode(),
                reason[:MAX_MALFORMED_REASON],
            )
        )
    return Salvaged(msgspec.structs.replace(batch, readings=good), rejected)


# The published contract's version: bumped with a new message schema (docs/wire-format.md).
CONTRACT_VERSION = "2"
SCHEMA_ID = f"https://homevitals.org/schemas/wire/v{CONTRACT_VERSION}.json"


def json_schema() -> dict[str, object]:
    """JSON Schema of the four payloads, published as readings/wire_schema.json.

    The file is the contract; this generator (the locked msgspec) writes it with
    ``python -m readings.wire_schema --write``, run by scripts/lock.sh, so a generator
    upgrade arrives as a reviewed diff of the file.
    """
    _, components = msgspec.json.schema_components(
        (ReadingsBatch, EventsMessage, GatewayStatus, Receipt)
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"HomeVitals MQTT wire contract v{CONTRACT_VERSION}",
        "$defs": components,
        "oneOf": [
            {"$ref": "#/$defs/ReadingsBatch"},
            {"$ref": "#/$defs/EventsMessage"},
            {"$ref": "#/$defs/GatewayStatus"},
            {"$ref": "#/$defs/Receipt"},
        ],
    }
