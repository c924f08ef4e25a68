"""Reading identity: the natural key of the source record, defined once.

A reading's ``id`` names the record the *device* (or the vendor export) holds, so the
same record is one reading however often and by whichever route it arrives: re-sent
after a lost PUBACK, re-fetched after a clock-skew change, re-downloaded in full after
the gateway lost its state, imported again from a file.  Every producer builds it here
(``readings.decode`` on the gateway and in ``homevitals deadletters redecode``, bulk
import, the simulators) and the database enforces one row per id
(ingest/migrations/0008_reading_identity.sql).

The key (:class:`RecordKey`) holds what the source says about the record, and nothing
the gateway computes or corrects (skew-corrected UTC, time zone):

- ``device``: the device identity as paired (BLE address or serial), or an import source;
- ``kind`` and ``record_type`` (:class:`RecordType`): a LibreView strip test and a scan
  in the same minute with the same value are two records (issue #13);
- the device's own record key: the Glucose Measurement sequence number (GLS 1.0.1
  §3.106.1) with the record's base time as the device reported it; for a CGM record
  the session-local time (CGM Session Start Time + Time Offset) with the Time Offset
  (CGMS 1.0.1 §3.2.1.3: the offset numbers the records of a session); for devices
  without a record number (blood pressure, weight), the device-reported local time text;
  for a record with neither (a cuff that keeps no time), the receive time of the gateway
  session and the record's position in that session (:meth:`RecordKey.received`);
- ``user``: the User ID of a multi-user device (BLS 1.1 §3.1.1.5, WSS 1.0 §3.1.1.4),
  so two users of one cuff measuring in the same second are two readings.

The id is a name-based UUID: SHA-256 over the UTF-8 key text, its first 16 bytes with the
version nibble set to 5 and the RFC 4122 variant bits (so it is *not* an RFC 4122
version-5 UUID, which would hash with SHA-1 and a namespace; the layout is kept as it
was when ids were first issued, so stored ids never change).  The key text is the
fields joined by U+001F (unit separator):

    hv-id-1 | device | kind | device_time | seq [| type=<record type>] [| user=<user>]

``type=`` is appended only when the record type is not its kind's usual one
(:data:`USUAL_RECORD_TYPE`) and ``user=`` only when the device names a user: every id
issued before these fields existed (version ``hv-id-1``) is unchanged, so gateways in
the field, their outboxes and the rows already stored keep their identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from device_profiles.model import Kind
from readings.kinds import RECORD_TYPES_OF, USUAL_RECORD_TYPE, RecordType

if TYPE_CHECKING:
    from readings.wire import Reading

# The recipe's version: part of the hashed text; bumped only if the recipe changes in a
# way that changes ids (it never has: new fields are appended only when set).
IDENTITY_VERSION: Final = "hv-id-1"
SEPARATOR: Final = "\x1f"


# Usual and allowed record types per kind: declared with the kind (readings/kinds.py).
__all__ = [
    "IDENTITY_VERSION",
    "RECORD_TYPES_OF",
    "USUAL_RECORD_TYPE",
    "RecordKey",
    "RecordType",
    "id_bytes",
    "key_text",
    "reading_id",
    "record_type_of",
    "source_key_text",
    "source_key_texts",
    "wire_record_type",
]


def record_type_of(kind: Kind, record_type: RecordType | None) -> RecordType:
    """The record type of a reading: its own, or its kind's usual one when it names none
    (a ``homevitals.readings/1`` message from before the field existed)."""
    return USUAL_RECORD_TYPE[kind] if record_type is None else record_type


def wire_record_type(kind: Kind, record_type: RecordType) -> RecordType | None:
    """What a reading carries on the wire: None for its kind's usual type (omitted)."""
    return None if record_type is USUAL_RECORD_TYPE[kind] else record_type


@dataclass(frozen=True, slots=True)
class RecordKey:
    """The natural key of one source record; ``reading_id`` is its UUID."""

    device: str
    kind: Kind
    record_type: RecordType | None = None  # None: the kind's usual type
    device_time: str = ""  # device-reported local time text (see the constructors)
    sequence: int | None = None  # the device's record number (or CGM time offset)
    user: int | None = None  # User ID of a multi-user device; None: no user or unknown

    @classmethod
    def cgm(cls, device: str, session_start: datetime, offset_minutes: int) -> RecordKey:
        """A CGM record: its sensor session (the Session Start Time as the sensor
        reports it, local) and Time Offset.  Two sessions can share a wall time, never
        with the same offset."""
        local = (session_start + timedelta(minutes=offset_minutes)).replace(tzinfo=None)
        return cls(device, Kind.CGM, None, local.isoformat(), offset_minutes)

    @classmethod
    def received(
        cls,
        device: str,
        kind: Kind,
        received_at: datetime,
        record_type: RecordType | None = None,
        user: int | None = None,
        position: int | None = None,
    ) -> RecordKey:
        """A record with neither device time nor record number: where and when the
        gateway received it is all that tells it apart (a re-fetch is a new reading).

        ``received_at`` is the receive time of the *session* (the download), ``position``
        the record's place in that session's indication order (1, 2, ...): a cuff that
        holds five undated measurements indicates them in one session, and they are five
        records (``gw:<session time>#<position>``).  Without a position (a malformed
        record decoded later from its own event) the text is ``gw:<receive time>``."""
        text = f"gw:{received_at.isoformat()}"
        if position is not None:
            text += f"#{position}"
        return cls(device, kind, record_type, text, None, user)

    @classmethod
    def export_row(
        cls,
        device: str,
        kind: Kind,
        record_type: RecordType | None,
        device_time: str,
        ordinal: int = 0,
        value: str | None = None,
    ) -> RecordKey:
        """A row of a vendor export: its local time text; rows of one source, type and
        time with different values are told apart by their order (``ordinal``), or, for
        a source whose times have only minute resolution (LibreView), by the exported
        ``value`` itself (``<time>#v=<value>``): two records of one source, type, minute
        and value are the same record, whatever order an export lists them in."""
        if value is not None:
            text = f"{device_time}#v={value}"
        else:
            text = device_time if ordinal == 0 else f"{device_time}#{ordinal}"
        return cls(device, kind, record_type, text)

    def text(self) -> str:
        """The hashed key text (see the module docstring)."""
        return key_text(
            self.device, self.kind, self.device_time, self.sequence, self.record_type, self.user
        )

    @property
    def reading_id(self) -> str:
        return _uuid_text(hashlib.sha256(self.text().encode()).digest())


def key_text(
    device: str,
    kind: Kind,
    device_time: str,
    sequence: int | None,
    record_type: RecordType | None = None,
    user: int | None = None,
) -> str:
    """The recipe: the hashed key text of these fields (see the module docstring)."""
    fields = [
        IDENTITY_VERSION,
        device,
        kind,  # a StrEnum: joins as its value
        device_time,
        "" if sequence is None else str(sequence),
    ]
    if record_type is not None and record_type is not USUAL_RECORD_TYPE[kind]:
        fields.append("type=" + record_type)
    if user is not None:
        fields.append(f"user={user}")
    return SEPARATOR.join(fields)


def _int_field(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _received_key(reading: Reading) -> str:
    """The key of a record with neither device time nor number: what the gateway made it
    of (``details.gw_key``: ``gw:<session time>#<position>``), else ``gw:<time>``.  Any
    text a hub puts there still names a record of that same device only."""
    sent = reading.details.get("gw_key") if reading.details else None
    if isinstance(sent, str) and sent.startswith("gw:"):
        return sent
    return f"gw:{reading.time.isoformat()}"


def source_key_text(reading: Reading) -> str:
    """The key text of the source record a wire reading says it is, from the reading's
    own fields, as every producer fills them from its :class:`RecordKey`
    (``readings.decode.to_reading``, the simulators):

    - the device time as sent; none: ``""`` when the record has a number, else the
      gateway's receive time, which is then the reading's ``time``
      (:meth:`RecordKey.received`);
    - the number: ``seq``; a CGM record dated by its session (device time, no ``seq``)
      is numbered by its Time Offset, ``details.time_offset_min`` (:meth:`RecordKey.cgm`);
    - the record type (omitted: the kind's usual one) and the device user,
      ``details.user_id``.

    Ingest checks a hub's reading ids against it (``ingest.columns.refuse_forged_ids``):
    a reading cannot claim the id of another device's record."""
    device_time = reading.device_time
    sequence = reading.seq
    details = reading.details
    if details:
        kind = reading.kind
        if kind is Kind.CGM and sequence is None and device_time is not None:
            offset = _int_field(details.get("time_offset_min"))
            if offset is not None:
                return key_text(reading.device, kind, device_time, offset)
        user = _int_field(details.get("user_id"))
    else:
        user = None
    if device_time is None:
        device_time = "" if sequence is not None else _received_key(reading)
    return key_text(reading.device, reading.kind, device_time, sequence, reading.record_type, user)


def source_key_texts(reading: Reading) -> list[str]:
    """:func:`source_key_text`, and the other readings of the same fields, all of the
    same device and kind: a CGM record numbered otherwise, and the key as issued before
    record type and user were part of it (``hv-id-1`` without them: gateways older than
    those fields).  None of them can name another device's record."""
    first = source_key_text(reading)
    device_time = reading.device_time
    sequence = reading.seq
    if device_time is None:
        device_time = "" if sequence is not None else _received_key(reading)
    user = _int_field(reading.details.get("user_id")) if reading.details else None
    texts = [
        first,
        key_text(reading.device, reading.kind, device_time, sequence, reading.record_type, user),
        key_text(reading.device, reading.kind, device_time, sequence),
    ]
    return list(dict.fromkeys(texts))


def id_bytes(text: str) -> bytes:
    """The 16 bytes of the id of a key text (version and variant bits set)."""
    b = bytearray(hashlib.sha256(text.encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    return bytes(b)


def _uuid_text(digest: bytes) -> str:
    """The first 16 bytes of ``digest`` as UUID text, version nibble 5 and the RFC 4122
    variant set: what ``str(uuid.UUID(bytes=digest[:16], version=5))`` gives, in a third
    of the time (bulk import builds one per row)."""
    b = bytearray(digest[:16])
    b[6] = (b[6] & 0x0F) | 0x50
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reading_id(
    device_id: str,
    kind: Kind | str,
    device_time: str,
    sequence: int | None,
    *,
    record_type: RecordType | None = None,
    user: int | None = None,
) -> str:
    """``RecordKey(...).reading_id`` from its fields, for callers holding them loose."""
    return RecordKey(device_id, Kind(kind), record_type, device_time, sequence, user).reading_id
