"""Getting readings into the database the real way for the analytics tests: wire payloads
through ``ingest.pipeline.process``, as the ingest service would receive them from a gateway
(so a test also sees what ingest validation makes of its data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from wire_helpers import wire_reading

from device_profiles.model import Component, Kind
from ingest.pipeline import Message, process
from ingest.registry import BindingCache
from ingest.writer import WriteResult
from readings import wire


def reading(
    device: str,
    kind: Kind,
    when: datetime,
    values: dict[Component, float],
    seq: int | None = None,
) -> wire.Reading:
    """A reading taken at ``when`` (UTC) by a device whose clock shows UTC."""
    return wire_reading(device, kind, when, values, seq=seq)


def pair(
    conn: psycopg.Connection[Any],
    cache: BindingCache,
    gateway: str,
    profiles: Mapping[str, str],
    at: datetime,
) -> None:
    """Report the devices of ``profiles`` (device id -> profile) paired on ``gateway`` at
    ``at``: ingest binds a device to the gateway's patient from then on."""
    paired = wire.EventsMessage(
        wire.SCHEMA_EVENT,
        gateway,
        [wire.DevicePaired(device=d, at=at, profile=p) for d, p in profiles.items()],
    )
    process(conn, [Message(wire.events_topic(gateway), wire.encode(paired))], cache)


def send(
    conn: psycopg.Connection[Any],
    cache: BindingCache,
    gateway: str,
    readings: Sequence[wire.Reading],
    *,
    sent_at: datetime | None = None,
    chunk: int | None = None,
) -> WriteResult:
    """``readings`` from ``gateway`` in batches of ``chunk`` (default: one batch), all
    processed in one call; ``sent_at`` defaults to now."""
    at = sent_at or datetime.now(UTC)
    step = chunk or max(1, len(readings))
    messages = [
        Message(
            wire.readings_topic(gateway),
            wire.encode(
                wire.ReadingsBatch(wire.SCHEMA_READINGS, gateway, at, list(readings[i : i + step]))
            ),
        )
        for i in range(0, len(readings), step)
    ]
    result, _ = process(conn, messages, cache)
    return result
