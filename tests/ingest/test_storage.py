"""Edition detection and retention on the real TimescaleDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ingest.storage import apply_retention, detect_edition, enable_compression

pytestmark = pytest.mark.services


def test_edition_is_detected_and_compression_follows_it(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        edition = detect_edition(conn)
        setting = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()
        assert setting is not None
        assert edition.license == setting[0]
        assert enable_compression(conn) is edition.community


def test_retention_drops_only_old_chunks(database_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    recent = datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for when, rid in (
            (old, "00000000-0000-5000-8000-00000000a001"),
            (recent, "00000000-0000-5000-8000-00000000a002"),
        ):
            conn.execute(
                "INSERT INTO glucose (time, reading_id, device_id, source, mgdl) VALUES (%s, %s, 'ret-dev', 'smbg', 100)",
                (when, rid),
            )
        dropped = apply_retention(conn, timedelta(days=365))
        assert dropped["glucose"] >= 1
        left = conn.execute("SELECT time FROM glucose WHERE device_id = 'ret-dev'").fetchall()
    assert [row[0] for row in left] == [recent]
