"""Counts for ``homevitals status``: readings per kind, dead letters, devices, gateways."""

from __future__ import annotations

from typing import Any

import psycopg

from device_profiles.model import Kind
from ingest.custody import custody_counts


def ingest_counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        # (kind, readings, unattributed) per kind, from every readings table.
        per_kind = conn.execute(
            "SELECT CASE source WHEN 'cgm' THEN 'cgm' ELSE 'glucose' END,"
            " count(*), count(*) FILTER (WHERE patient_id IS NULL) FROM glucose GROUP BY 1"
            " UNION ALL SELECT 'blood_pressure', count(*),"
            " count(*) FILTER (WHERE patient_id IS NULL) FROM blood_pressure"
            " UNION ALL SELECT kind, count(*), count(*) FILTER (WHERE patient_id IS NULL)"
            " FROM body_readings GROUP BY kind"
        ).fetchall()
        dead = conn.execute(
            "SELECT count(*) FILTER (WHERE reprocessed_at IS NULL), count(*) FROM dead_letters"
        ).fetchone()
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()
        gateways = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'online') FROM gateways"
        ).fetchone()
        flags: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM flags GROUP BY status").fetchall()
        )
        custody = custody_counts(conn)
    # Every kind, zero included, so a consumer of --json sees the same keys every time.
    readings = {kind.value: 0 for kind in Kind}
    unattributed = {kind.value: 0 for kind in Kind}
    for kind, n, nobody in per_kind:
        readings[str(kind)] = readings.get(str(kind), 0) + int(n)
        unattributed[str(kind)] = unattributed.get(str(kind), 0) + int(nobody)
    return {
        "readings": readings,
        "readings_total": sum(readings.values()),
        "unattributed": sum(unattributed.values()),
        "unattributed_by_kind": unattributed,
        "dead_letters": {"open": int(dead[0]), "total": int(dead[1])} if dead else {},
        "devices": int(devices[0]) if devices else 0,
        "gateways": {"total": int(gateways[0]), "online": int(gateways[1])} if gateways else {},
        "flags": {str(k): int(v) for k, v in flags.items()},
        "custody": custody,
    }
