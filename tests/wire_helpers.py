"""Readings as a gateway sends them, for tests in every folder (``tests/`` is on the
import path through its conftest)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from device_profiles.model import Component, Kind
from ingest.pipeline import Message, process
from ingest.registry import BindingCache
from ingest.writer import WriteResult
from readings import identity, wire

Details = dict[str, int | float | str | bool | None]


def wire_reading(
    device: str,
    kind: Kind,
    when: datetime,
    values: dict[Component, float],
    *,
    seq: int | None = None,
    skew_s: float | None = None,
    details: Details | None = None,
) -> wire.Reading:
    """A reading taken at ``when`` (UTC) by a device whose clock shows UTC."""
    local = when.replace(tzinfo=None).isoformat()
    return wire.Reading(
        id=identity.reading_id(device, kind, local, seq),
        device=device,
        kind=kind,
        time=when,
        values=values,
        device_time=local,
        seq=seq,
        skew_s=skew_s,
        details=details or {},
    )


def send_through_ingest(
    conn: psycopg.Connection[Any],
    gateway: str,
    paired: Mapping[str, str],
    paired_at: datetime,
    readings: Sequence[wire.Reading],
    sent_at: datetime,
) -> WriteResult:
    """Pair ``paired`` (device -> profile id) on ``gateway``, then send ``readings``,
    through the real ingest pipeline (validation, attribution, COPY)."""
    events = wire.EventsMessage(
        wire.SCHEMA_EVENT,
        gateway,
        [wire.DevicePaired(device=d, at=paired_at, profile=p) for d, p in paired.items()],
    )
    batch = wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, sent_at, list(readings))
    messages = [
        Message(wire.events_topic(gateway), wire.encode(events)),
        Message(wire.readings_topic(gateway), wire.encode(batch)),
    ]
    result, _ = process(conn, messages, BindingCache())
    return result
