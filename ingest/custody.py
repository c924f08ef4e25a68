"""Device custody: a device belongs to one patient at a time, through one hub.

The one place that decides who may change a device's hub or patient, and whose readings
of it are accepted (issue #14: a patient's own hub could take over, or write for,
another household's device, because a ``paired`` event rebound on sight and readings
were attributed from the binding alone).

- The custodian is ``devices.gateway_id``: the hub the device is paired with (NULL: no
  hub — released by its hub's unpair, or a bulk-import source).  Its patient is the open
  ``device_bindings`` row.
- A hub's ``paired``/``inventory`` event for a device nobody holds takes custody (a first
  pairing binds it to the hub's patient, as enrolment always did).  From the custodian
  it confirms.  From another hub — or binding it to another patient than its own — it is
  *held*: a ``custody_requests`` row, a ``device_custody`` flag for the clinician, a
  timeline row, a log line; never applied.  :func:`ingest.custody_review.decide` (a
  clinician, through ``api/routes/custody.py``) approves — the device moves at a time, readings before it
  stay with the old patient — or rejects.
- ``unpaired`` from the custodian releases the device (binding closed at the event's
  time); from any other hub it is refused and recorded.
- A reading is accepted only from the device's custodian (:func:`refuse_foreign`, after
  validation), and only if the patient it is attributed to (the binding at its time) is
  the hub's own or none: a hub cannot backdate readings of a device it was handed (or
  given by a clinician) into the previous patient's chart.  The rest are dead-lettered
  with the reason, logged and put on the device's timeline.  Readings not from a hub
  (bulk import) carry their own authority, and the bulk-import namespace (``import:``)
  is no hub's: pairing or readings of such a device from a hub are refused.

Every decision is a ``device_events`` row (append-only: the device's timeline and the
audit of ingest-side decisions); the API adds its ``audit_log`` rows for people's.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

# ``registry`` imports this module for its event dispatch; both only use each other's
# names at call time, so the import cycle is harmless (the module object, not a name).
from ingest import registry
from ingest.columns import Rejected, Split, reading_payload
from readings import (
    SCHEMA_EVENT,
    DeviceInventory,
    DevicePaired,
    DeviceUnpaired,
    EventsMessage,
    Reading,
    encode,
)

if TYPE_CHECKING:
    from ingest.registry import BindingCache

log = logging.getLogger("homevitals.ingest")

# Dead letters of readings refused for custody start with this (``homevitals status``
# counts the open ones; ``deadletters reprocess`` re-checks them after a move).
CUSTODY_PREFIX = "custody: "
# The review-queue flag raised on the device's patient while a move is held.
CUSTODY_RULE = "device_custody"
INGEST_ACTOR = "ingest"
_MISSING = object()  # a device the cache does not know: refused until it does


class Verdict(enum.Enum):
    TAKE = "take"  # nobody else holds it: the hub takes custody (binds if it can)
    CONFIRM = "confirm"  # the custodian says so again: device details only
    HOLD = "hold"  # held elsewhere: a clinician decides


def pairing_verdict(
    gateway: str,
    hub_patient: int | None,
    custodian: str | None,
    owner: int | None,
    *,
    inventory: bool,
) -> Verdict:
    """What a hub's ``paired``/``inventory`` event may do to a known device.

    ``custodian`` is the hub holding it, ``owner`` the patient it is bound to now,
    ``hub_patient`` the asking hub's patient.  Deny by default: anything that would move
    the device to another hub or another patient is held."""
    if custodian is not None and custodian != gateway:
        return Verdict.HOLD
    if custodian == gateway:
        if owner is None and hub_patient is not None:
            return Verdict.TAKE  # its hub was enrolled since: bind as enrolment would
        if owner is None or hub_patient is None or owner == hub_patient or inventory:
            # An inventory confirms, it never re-assigns (a clinician may have given
            # the device to another patient on the same hub).
            return Verdict.CONFIRM
        return Verdict.HOLD
    # No hub holds it: free (never bound, or released), or an import source's device.
    if owner is None or owner == hub_patient:
        return Verdict.TAKE
    return Verdict.HOLD


def record(
    conn: psycopg.Connection[Any],
    device: str,
    action: str,
    at: datetime,
    *,
    gateway: str | None,
    actor: str = INGEST_ACTOR,
    detail: dict[str, Any] | None = None,
) -> None:
    """One row on the device's timeline (``device_events``); a decision ingest takes on
    its own (a hub's pairing taken, held or refused, readings refused, custody released)
    also goes on the hash-chained audit log, as the API's decisions do: who (the hub),
    from where (its broker topic), what and why.  The API audits its own moves."""
    conn.execute(
        "INSERT INTO device_events (device_id, at, gateway_id, actor, action, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (device, at, gateway, actor, action, _json(detail or {})),
    )
    if actor == INGEST_ACTOR:
        denied = action.endswith((".refused", ".held"))
        conn.execute(
            "INSERT INTO audit_log (actor, role, action, patient_id, resource, client_ip,"
            " status, detail) VALUES (%s, 'gateway', %s, %s, %s, %s, %s, %s)",
            (
                gateway or INGEST_ACTOR,
                action,
                owner_of(conn, device),
                f"device/{device}",
                f"mqtt:{gateway}" if gateway else None,
                403 if denied else 200,
                _json({**(detail or {}), "device_time": at.isoformat()}),
            ),
        )


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def hub_patient_of(conn: psycopg.Connection[Any], gateway: str) -> int | None:
    row = conn.execute("SELECT patient_id FROM gateways WHERE id = %s", (gateway,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def owner_of(conn: psycopg.Connection[Any], device: str) -> int | None:
    row = conn.execute(
        "SELECT patient_id FROM device_bindings WHERE device_id = %s AND upper_inf(valid)",
        (device,),
    ).fetchone()
    return None if row is None else int(row[0])


def _device_info(event: DevicePaired | DeviceInventory) -> dict[str, str | None]:
    return {
        "profile": event.profile,
        "name": event.name,
        "manufacturer": event.manufacturer,
        "model": event.model,
        "serial": event.serial,
    }


UPDATE_DEVICE = (
    "UPDATE devices SET gateway_id = %(gateway)s, profile = %(profile)s,"
    " name = coalesce(%(name)s, name), manufacturer = coalesce(%(manufacturer)s, manufacturer),"
    " model = coalesce(%(model)s, model), serial = coalesce(%(serial)s, serial)"
    " WHERE id = %(device)s"
)


def apply_pairing(
    conn: psycopg.Connection[Any], gateway: str, event: DevicePaired | DeviceInventory
) -> list[str]:
    """A hub's ``paired``/``inventory`` event; returns the devices whose custody or
    binding changed (their parked readings are worth another try)."""
    device = event.device
    info = _device_info(event)
    kind = "inventory" if isinstance(event, DeviceInventory) else "paired"
    # Insert-or-lock: two workers pairing the same new device from two hubs serialise
    # here, and the second sees the first's custody.
    created = conn.execute(
        "INSERT INTO devices (id, gateway_id, profile, name, manufacturer, model, serial)"
        " VALUES (%(device)s, %(gateway)s, %(profile)s, %(name)s, %(manufacturer)s,"
        " %(model)s, %(serial)s) ON CONFLICT (id) DO NOTHING RETURNING id",
        {"device": device, "gateway": gateway, **info},
    ).fetchone()
    hub_patient = hub_patient_of(conn, gateway)
    if created is not None:
        verdict = Verdict.TAKE
        custodian: str | None = None
        owner: int | None = None
    else:
        row = conn.execute(
            "SELECT gateway_id FROM devices WHERE id = %s FOR UPDATE", (device,)
        ).fetchone()
        assert row is not None  # it conflicted, and devices are never deleted
        custodian = None if row[0] is None else str(row[0])
        owner = owner_of(conn, device)
        verdict = pairing_verdict(
            gateway, hub_patient, custodian, owner, inventory=kind == "inventory"
        )
    if verdict is Verdict.HOLD:
        _hold(conn, gateway, event, kind, custodian, owner, hub_patient)
        return []
    conn.execute(UPDATE_DEVICE, {"device": device, "gateway": gateway, **info})
    if verdict is Verdict.CONFIRM:
        return []
    bind = hub_patient is not None and owner is None
    if bind:
        assert hub_patient is not None
        # Not before its last binding ended (a hub's clock may lag the unpair's): the
        # bindings of a device never overlap.
        ended = conn.execute(
            "SELECT max(upper(valid)) FROM device_bindings WHERE device_id = %s", (device,)
        ).fetchone()
        at = event.at if ended is None or ended[0] is None else max(event.at, ended[0])
        registry.bind_device(conn, device, hub_patient, at)
    record(
        conn,
        device,
        "custody.taken",
        event.at,
        gateway=gateway,
        detail={
            "event": kind,
            "patient": hub_patient if bind else owner,
            "first": created is not None,
        },
    )
    return [device]


def _hold(
    conn: psycopg.Connection[Any],
    gateway: str,
    event: DevicePaired | DeviceInventory,
    kind: str,
    custodian: str | None,
    owner: int | None,
    hub_patient: int | None,
) -> None:
    device = event.device
    row = conn.execute(
        "INSERT INTO custody_requests (device_id, from_gateway, from_patient, to_gateway,"
        " to_patient, event, requested_at, device_info) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (device_id, to_gateway) WHERE status = 'pending' DO NOTHING RETURNING id",
        (
            device,
            custodian,
            owner,
            gateway,
            hub_patient,
            kind,
            event.at,
            _json(_device_info(event)),
        ),
    ).fetchone()
    if row is None:
        return  # already waiting for a clinician (a redelivery, or the hub retrying)
    request = int(row[0])
    detail = {
        "request": request,
        "event": kind,
        "custodian": custodian,
        "patient": owner,
        "requested_for": hub_patient,
    }
    record(conn, device, "custody.held", event.at, gateway=gateway, detail=detail)
    holder = f"hub {custodian!r}" if custodian is not None else "no hub"
    summary = (
        f"Hub {gateway!r} asked to pair device {device!r} (held by {holder}"
        f"{'' if owner is None else f', patient {owner}'}): approve or reject the move"
    )
    _raise_flag(conn, owner if owner is not None else hub_patient, summary, request)
    log.warning(
        "custody: %s pairing of device %r from hub %r held for review (request %d; %s)",
        kind,
        device,
        gateway,
        request,
        f"in the custody of hub {custodian!r}"
        if custodian not in (None, gateway)
        else f"bound to patient {owner}",
        extra={"device": device, "gateway": gateway, "custodian": custodian, "request": request},
    )


def _raise_flag(
    conn: psycopg.Connection[Any], patient: int | None, summary: str, request: int
) -> None:
    """The review-queue flag on the patient whose device it is (one unresolved flag per
    patient and rule: a second held request adds to its evidence)."""
    if patient is None:
        return  # no patient on either side: the operator sees it in `homevitals status`
    row = conn.execute(
        "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence)"
        " VALUES (%s, %s, 'high', %s, %s)"
        " ON CONFLICT (patient_id, rule_id) WHERE status <> 'resolved' DO UPDATE SET"
        # ``->`` binds no tighter than ``||``: the parentheses make it append the request
        # ids (without them the array was concatenated with the object, and ``->`` of
        # that array gave NULL: a NOT NULL violation that lost the whole events message).
        " evidence = jsonb_set(coalesce(flags.evidence, '{}'::jsonb), '{requests}',"
        " coalesce(flags.evidence->'requests', '[]'::jsonb)"
        " || (EXCLUDED.evidence->'requests')),"
        " summary = EXCLUDED.summary, condition_active = true, cleared_at = NULL,"
        " updated_at = now()"
        " RETURNING id, xmax = 0",
        (patient, CUSTODY_RULE, summary, _json({"requests": [request]})),
    ).fetchone()
    assert row is not None
    conn.execute(
        "INSERT INTO flag_events (flag_id, actor, action, evidence) VALUES (%s, %s, %s, %s)",
        (row[0], INGEST_ACTOR, "raised" if row[1] else "updated", _json({"request": request})),
    )


def apply_unpair(conn: psycopg.Connection[Any], gateway: str, event: DeviceUnpaired) -> list[str]:
    """Only the custodian releases a device; from anyone else it is refused (recorded)."""
    device = event.device
    row = conn.execute(
        "SELECT gateway_id FROM devices WHERE id = %s FOR UPDATE", (device,)
    ).fetchone()
    if row is None:
        return []  # never paired: nothing to release
    custodian = None if row[0] is None else str(row[0])
    if custodian != gateway:
        record(
            conn,
            device,
            "unpair.refused",
            event.at,
            gateway=gateway,
            detail={"custodian": custodian},
        )
        log.warning(
            "custody: unpair of device %r from hub %r refused (its custodian is %r)",
            device,
            gateway,
            custodian,
            extra={"device": device, "gateway": gateway, "custodian": custodian},
        )
        return []
    owner = owner_of(conn, device)
    # Not later than now: a post-dated unpair would keep the binding open (and the hub's
    # readings accepted) until a time of the hub's choosing.
    at = min(event.at, datetime.now(UTC))
    close_binding(conn, device, at)
    end_custody(conn, device, gateway, at)
    record(conn, device, "custody.released", at, gateway=gateway, detail={"patient": owner})
    return [device]


def end_custody(
    conn: psycopg.Connection[Any], device: str, former: str | None, at: datetime
) -> None:
    """``former`` no longer holds ``device`` from ``at`` (its readings measured before
    ``at`` remain acceptable: :func:`refuse_foreign`)."""
    conn.execute(
        "UPDATE devices SET gateway_id = NULL, former_gateway_id = %s, custody_ended_at = %s"
        " WHERE id = %s",
        (former, at, device),
    )


def close_binding(conn: psycopg.Connection[Any], device: str, at: datetime) -> None:
    """End the device's open binding at ``at`` (at its start if ``at`` is earlier: a
    hub's clock may lag, and a range cannot end before it begins)."""
    conn.execute(
        "UPDATE device_bindings SET valid = tstzrange(lower(valid),"
        " CASE WHEN lower(valid) IS NULL OR lower(valid) < %s THEN %s ELSE lower(valid) END,"
        " '[)') WHERE device_id = %s AND upper_inf(valid)",
        (at, at, device),
    )


# --- readings -------------------------------------------------------------------------

# What the screen says of a hub's reading (the device's custodian, the patients its
# bindings name, the import namespace), per device and hub.
_OK = 0  # the hub's device, every binding its patient's: nothing to look at per reading
_DATED = 1  # the hub's device, once another patient's: the binding at its time decides
_FOREIGN = 2  # not the hub's device (maybe measured before the hub lost it)
_CHART = 3  # would land in another patient's chart
_RESERVED = 4  # a bulk-import source: no hub's
IMPORT_NAMESPACE = "import:"


def reserved_device(device: str) -> bool:
    """A device id of the bulk-import namespace (``import:<format>:<serial>``,
    ``ingest.bulk_import``): no hub may pair it or send its readings, or it could take a
    patient's import source before the import (whose readings would then be refused)."""
    return device[: len(IMPORT_NAMESPACE)].lower() == IMPORT_NAMESPACE


def reserved_reason(device: str) -> str:
    return (
        f"{CUSTODY_PREFIX}device {device!r} is in the bulk-import namespace"
        f" ({IMPORT_NAMESPACE!r}): no hub may pair it or send its readings"
    )


def chart_reason(device: str, hub: str) -> str:
    return (
        f"{CUSTODY_PREFIX}measured before hub {hub}'s custody of device {device!r} began:"
        " it would land in another patient's chart"
    )


def refuse_reserved_pairing(
    conn: psycopg.Connection[Any], topic: str, gateway: str, event: DevicePaired | DeviceInventory
) -> Rejected | None:
    """A hub's pairing of an import source: never applied; a dead letter of its own (the
    events message's other events apply), the device's timeline, a WARNING.  None if it
    is parked already (a redelivery)."""
    payload = encode(EventsMessage(SCHEMA_EVENT, gateway, [event]))
    reason = reserved_reason(event.device)
    if registry.already_dead_lettered(conn, event.device, reason, payload):
        return None
    kind = "inventory" if isinstance(event, DeviceInventory) else "paired"
    record(conn, event.device, "pairing.refused", event.at, gateway=gateway, detail={"event": kind})
    log.warning(
        "custody: %s of device %r from hub %r refused: a bulk-import source",
        kind,
        event.device,
        gateway,
        extra={"device": event.device, "gateway": gateway},
    )
    return Rejected(topic, gateway, event.device, payload, reason)


def _verdict(cache: BindingCache, device: str, hub: str) -> int:
    if reserved_device(device):
        return _RESERVED
    if cache.custodians.get(device, _MISSING) != hub:
        return _FOREIGN
    mine = cache.hub_patients.get(hub)
    if all(b.patient_id == mine for b in cache.bindings_of(device)):
        return _OK  # no binding, or only the hub's patient's: its own chart or none
    return _DATED


def _screen(split: Split, cache: BindingCache) -> dict[str, list[tuple[int, int]]]:
    """Per table, the hub readings to refuse or to look at closer, with why: one memo
    lookup per reading (per device and hub: custodian, patients bound, namespace), and
    the binding at the reading's time only for a device once bound to someone else.
    Readings not from a hub (bulk import) carry their own authority."""
    flat = split.flat
    hubs = [o.gateway for o in flat.origins]
    origin = flat.origin
    readings = flat.readings
    memo: dict[tuple[str, str], int] = {}
    patient_at = cache.patient_at
    hub_patients = cache.hub_patients
    found: dict[str, list[tuple[int, int]]] = {}
    for table, located in split.by_table.items():
        bad: list[tuple[int, int]] = []
        for i in located:
            hub = hubs[origin[i]]
            if hub is None:
                continue
            r = readings[i]
            key = (r.device, hub)
            verdict = memo.get(key)
            if verdict is None:
                verdict = memo[key] = _verdict(cache, r.device, hub)
            if verdict == _OK:
                continue
            if verdict == _DATED:
                patient = patient_at(r.device, r.time)
                if patient is None or patient == hub_patients.get(hub):
                    continue
                verdict = _CHART
            bad.append((i, verdict))
        if bad:
            found[table] = bad
    return found


def refuse_foreign(conn: psycopg.Connection[Any], split: Split, cache: BindingCache) -> int:
    """Dead-letter (in ``split``) what a hub may not write; returns how many:

    - readings of a device another hub holds (or none), but for the former custodian's
      own, measured before it lost the device;
    - readings that would land in another patient's chart: the binding at their time is
      not the hub's patient's (measured before the hub's custody began: a device handed
      over, or moved by a clinician);
    - readings of a bulk-import source.

    The cache says who holds what; a refusal is confirmed against the database first (a
    clinician's move or a hub's enrolment may be newer than the cache), and a stale
    cache is reloaded so attribution uses the database's view too."""
    suspects = _screen(split, cache)
    if not suspects:
        return 0
    flat = split.flat
    readings = flat.readings
    looked = [(i, flat.gateway(i)) for bad in suspects.values() for i, v in bad if v != _RESERVED]
    devices = sorted({readings[i].device for i, _ in looked})
    hubs = sorted({str(h) for _, h in looked})
    rows = conn.execute(
        "SELECT id, gateway_id, former_gateway_id, custody_ended_at FROM devices"
        " WHERE id = ANY(%s)",
        (devices,),
    ).fetchall()
    current = {str(d): None if g is None else str(g) for d, g, _, _ in rows}
    former = {str(d): (f, ended) for d, _, f, ended in rows if f is not None and ended}
    if any(
        cache.custodians.get(d, _MISSING) != current.get(d, _MISSING) for d in devices
    ) or cache.stale_for(conn, devices, hubs):
        cache.refresh(conn, force=True)
        cache.custodians.update(current)  # this transaction's view, whatever the refresh saw
        suspects = _screen(split, cache)
    refused: Counter[tuple[str, str, int]] = Counter()
    for table, bad in suspects.items():
        drop: set[int] = set()
        for i, screened in bad:
            verdict = screened
            r = readings[i]
            hub = flat.gateway(i)
            assert hub is not None
            if verdict == _FOREIGN and _before_release(former, r, hub):
                # The former custodian's own reading: into its patient's chart only.
                patient = cache.patient_at(r.device, r.time)
                if patient is None or patient == cache.hub_patients.get(hub):
                    continue
                verdict = _CHART
            if verdict == _RESERVED:
                reason = reserved_reason(r.device)
            elif verdict == _CHART:
                reason = chart_reason(r.device, hub)
            else:
                reason = custody_reason(r.device, cache.custodians.get(r.device), hub)
            origin = flat.origins[flat.origin[i]]
            split.rejected.append(
                Rejected(
                    origin.topic,
                    hub,
                    r.device,
                    reading_payload(hub, r),
                    reason,
                    flat.position[i],
                )
            )
            drop.add(i)
            refused[(r.device, hub, verdict)] += 1
        if drop:
            split.by_table[table] = [i for i in split.by_table[table] if i not in drop]
            if not split.by_table[table]:
                del split.by_table[table]
    now = datetime.now(UTC)
    for (device, hub, verdict), n in sorted(refused.items()):
        custodian = cache.custodians.get(device)
        why = {_RESERVED: "import source", _CHART: "before custody"}.get(verdict, "custody")
        record(
            conn,
            device,
            "readings.refused",
            now,
            gateway=hub,
            detail={"readings": n, "custodian": custodian, "why": why},
        )
        log.warning(
            "custody: %d readings of device %r from hub %r dead-lettered (%s; custodian: %r)",
            n,
            device,
            hub,
            why,
            custodian,
            extra={
                "device": device,
                "gateway": hub,
                "custodian": custodian,
                "refused": n,
                "why": why,
            },
        )
    return sum(refused.values())


def _before_release(
    former: dict[str, tuple[str, datetime]], reading: Reading, hub: str | None
) -> bool:
    last = former.get(reading.device)
    return last is not None and last[0] == hub and reading.time < last[1]


def custody_reason(device: str, custodian: str | None, hub: str) -> str:
    if custodian is None:
        return f"{CUSTODY_PREFIX}device {device!r} is in no hub's custody (unpaired), not {hub!r}'s"
    return f"{CUSTODY_PREFIX}device {device!r} is in the custody of hub {custodian!r}, not {hub!r}"


def custody_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """For ``homevitals status``: moves waiting for a clinician, refused readings open."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM custody_requests WHERE status = 'pending'),"
        " (SELECT count(*) FROM dead_letters WHERE reprocessed_at IS NULL"
        " AND starts_with(reason, %s))",
        (CUSTODY_PREFIX,),
    ).fetchone()
    assert row is not None
    return {"held": int(row[0]), "refused_readings": int(row[1])}
