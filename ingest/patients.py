"""Enrolment at the database level: patients, their gateways, their devices' bindings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest.registry import attribute_pending, bind_device
from readings import is_service_account


def upsert_patient(
    conn: psycopg.Connection[Any],
    external_id: str,
    timezone: str = "America/New_York",
    name: str | None = None,
    mrn: str | None = None,
    birth_date: object = None,
) -> int:
    given, _, family = (name or "").partition(" ")
    row = conn.execute(
        "INSERT INTO patients (external_id, timezone, given_name, family_name, mrn, birth_date)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (external_id) DO UPDATE SET timezone = EXCLUDED.timezone,"
        " given_name = coalesce(EXCLUDED.given_name, patients.given_name),"
        " family_name = coalesce(EXCLUDED.family_name, patients.family_name),"
        " mrn = coalesce(EXCLUDED.mrn, patients.mrn),"
        " birth_date = coalesce(EXCLUDED.birth_date, patients.birth_date)"
        " RETURNING id",
        (external_id, timezone, given or None, family or None, mrn, birth_date),
    ).fetchone()
    assert row is not None
    return int(row[0])


class GatewayAttachError(ValueError):
    """The hub cannot be attached to this patient (a reserved name, or another patient's)."""


def attach_gateway(conn: psycopg.Connection[Any], gateway_id: str, patient_id: int) -> list[str]:
    """Register ``gateway_id`` as ``patient_id``'s hub and bind the devices already paired on it.

    A hub already attached to another patient is refused, never moved: moving it would
    move every device on it into another chart (custody changes go through review).
    A service account's name is never a hub."""
    if is_service_account(gateway_id):
        raise GatewayAttachError(f"{gateway_id!r} is a reserved service-account name")
    held = conn.execute("SELECT patient_id FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
    if held is not None and held[0] is not None and held[0] != patient_id:
        raise GatewayAttachError(f"gateway {gateway_id!r} is attached to another patient")
    conn.execute(
        "INSERT INTO gateways (id, patient_id) VALUES (%s, %s)"
        " ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id",
        (gateway_id, patient_id),
    )
    devices = [
        str(r[0])
        for r in conn.execute("SELECT id FROM devices WHERE gateway_id = %s", (gateway_id,))
    ]
    now = datetime.now(UTC)
    for device in devices:
        bind_device(conn, device, patient_id, now)
    if devices:
        attribute_pending(conn, devices)
    return devices


def enroll_patient(
    url: str,
    external_id: str,
    gateways: list[str],
    timezone: str = "America/New_York",
    name: str | None = None,
) -> int:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        patient_id = upsert_patient(conn, external_id, timezone, name)
        for gateway in gateways:
            attach_gateway(conn, gateway, patient_id)
    return patient_id
