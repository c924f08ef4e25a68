"""Counts for ``homevitals status``: readings per kind, dead letters, devices, gateways."""

from __future__ import annotations

from typing import Any

import psycopg

from ingest.custody import custody_counts


def ingest_counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        glucose: dict[str, int] = dict(
            conn.execute("SELECT source, count(*) FROM glucose GROUP BY source").fetchall()
        )
        bp = conn.execute("SELECT count(*) FROM blood_pressure").fetchone()
        body: dict[str, int] = dict(
            conn.execute("SELECT kind, count(*) FROM body_readings GROUP BY kind").fetchall()
        )
        dead = conn.execute(
            "SELECT count(*) FILTER (WHERE reprocessed_at IS NULL), count(*) FROM dead_letters"
        ).fetchone()
        unattributed = conn.execute(
            "SELECT (SELECT count(*) FROM glucose WHERE patient_id IS NULL)"
            " + (SELECT count(*) FROM blood_pressure WHERE patient_id IS NULL)"
        ).fetchone()
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()
        gateways = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'online') FROM gateways"
        ).fetchone()
        flags: dict[str, int] = dict(
            conn.execute("SELECT status, count(*) FROM flags GROUP BY status").fetchall()
        )
        custody = custody_counts(conn)
    readings = {
        "glucose": int(glucose.get("smbg", 0)),
        "cgm": int(glucose.get("cgm", 0)),
        "blood_pressure": int(bp[0]) if bp else 0,
        **{str(k): int(v) for k, v in body.items()},
    }
    return {
        "readings": readings,
        "readings_total": sum(readings.values()),
        "unattributed": int(unattributed[0]) if unattributed else 0,
        "dead_letters": {"open": int(dead[0]), "total": int(dead[1])} if dead else {},
        "devices": int(devices[0]) if devices else 0,
        "gateways": {"total": int(gateways[0]), "online": int(gateways[1])} if gateways else {},
        "flags": {str(k): int(v) for k, v in flags.items()},
        "custody": custody,
    }
