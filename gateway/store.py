"""The gateway's local state: one SQLite file (WAL, synchronous=FULL).

Holds the paired devices with their download cursors and error counters, the outbox
(``gateway/outbox.py``) and the daemon's last-seen status.  The outbox rows of a
download and the device cursor are written in one transaction, so a crash at any
point loses nothing: either both are on disk or neither is (then the records are
fetched again and get the same reading ids).

Several processes may open the file (the daemon, ``gateway pair``, ``gateway status``);
SQLite's WAL mode lets readers run beside the one writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    address TEXT PRIMARY KEY,           -- device id on the wire (BLE identity address)
    profile TEXT NOT NULL,
    name TEXT,
    manufacturer TEXT,
    model TEXT,
    serial TEXT,
    firmware TEXT,
    patient TEXT,
    paired_at TEXT NOT NULL,
    cursor INTEGER,                     -- highest sequence number committed (RACP devices)
    last_device_time TEXT,              -- newest device-reported time committed
    last_sync_at TEXT,
    last_sync_readings INTEGER,
    battery_percent INTEGER,
    skew_s REAL,
    last_error TEXT,
    session TEXT                        -- what the cursor belongs to (CGM: session start)
);
CREATE TABLE IF NOT EXISTS device_errors (
    address TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- malformed, timeout, disconnected, gatt, ...
    count INTEGER NOT NULL,
    last_at TEXT NOT NULL,
    last_detail TEXT,
    PRIMARY KEY (address, kind)
);
CREATE TABLE IF NOT EXISTS reported_records (  -- malformed records already in the outbox
    address TEXT NOT NULL,
    digest TEXT NOT NULL,               -- of characteristic uuid + raw bytes
    reported_at TEXT NOT NULL,
    PRIMARY KEY (address, digest)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                 -- reading | event
    payload BLOB NOT NULL,              -- one msgspec-encoded Reading or Event
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_stats (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO outbox_stats VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS outbox_ins AFTER INSERT ON outbox BEGIN
    UPDATE outbox_stats SET rows = rows + 1, bytes = bytes + length(NEW.payload);
END;
CREATE TRIGGER IF NOT EXISTS outbox_del AFTER DELETE ON outbox BEGIN
    UPDATE outbox_stats SET rows = rows - 1, bytes = bytes - length(OLD.payload);
END;
CREATE TABLE IF NOT EXISTS status (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
);
"""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


class GatewayDB:
    """One SQLite connection in autocommit mode; ``transaction()`` groups writes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Columns added after a state file was created (SQLite: ADD COLUMN only)."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(devices)")}
        if "session" not in columns:
            self.conn.execute("ALTER TABLE devices ADD COLUMN session TEXT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.conn.in_transaction:  # nested: the outer one commits
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True, slots=True)
class PairedDevice:
    address: str
    profile: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    patient: str | None = None
    paired_at: str = ""
    cursor: int | None = None
    last_device_time: str | None = None
    last_sync_at: str | None = None
    last_sync_readings: int | None = None
    battery_percent: int | None = None
    skew_s: float | None = None
    last_error: str | None = None
    # The cursor's scope: a CGM cursor (time offset) is only valid in the sensor session
    # it was taken in (``readings.decode.CgmSession.key``); None for other devices.
    session: str | None = None


_DEVICE_COLUMNS = (
    "address, profile, name, manufacturer, model, serial, firmware, patient, paired_at, "
    "cursor, last_device_time, last_sync_at, last_sync_readings, battery_percent, skew_s, "
    "last_error, session"
)


class DeviceStore:
    """Paired devices, their cursors and error counters."""

    def __init__(self, db: GatewayDB) -> None:
        self.db = db

    def add(self, device: PairedDevice) -> None:
        """Pair (or re-pair) a device; a re-pair keeps the cursor."""
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO devices (address, profile, name, manufacturer, model, serial, "
                "firmware, patient, paired_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (address) DO UPDATE SET profile = excluded.profile, "
                "name = excluded.name, manufacturer = excluded.manufacturer, "
                "model = excluded.model, serial = excluded.serial, "
                "firmware = excluded.firmware, patient = excluded.patient",
                (
                    device.address,
                    device.profile,
                    device.name,
                    device.manufacturer,
                    device.model,
                    device.serial,
                    device.firmware,
                    device.patient,
                    device.paired_at or _iso(utc_now()),
                ),
            )

    def remove(self, address: str) -> bool:
        with self.db.transaction() as conn:
            cur = conn.execute("DELETE FROM devices WHERE address = ?", (address,))
            conn.execute("DELETE FROM device_errors WHERE address = ?", (address,))
            conn.execute("DELETE FROM reported_records WHERE address = ?", (address,))
            return cur.rowcount > 0

    def get(self, address: str) -> PairedDevice | None:
        row = self.db.conn.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE address = ?", (address,)
        ).fetchone()
        return None if row is None else PairedDevice(*row)

    def all(self) -> list[PairedDevice]:
        rows = self.db.conn.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY address"
        ).fetchall()
        return [PairedDevice(*row) for row in rows]

    def advance(
        self,
        conn: sqlite3.Connection,
        address: str,
        *,
        cursor: int | None,
        last_device_time: str | None,
        session: str | None = None,
    ) -> None:
        """Move the download cursor forward (never back); call inside a transaction.

        With a ``session`` different from the stored one (a new CGM sensor session,
        whose time offsets restart at 0) the cursor and last device time are replaced,
        not compared.
        """
        conn.execute(
            "UPDATE devices SET "
            "cursor = CASE WHEN :session IS NOT NULL AND session IS NOT :session THEN :cursor "
            "WHEN :cursor IS NULL THEN cursor "
            "WHEN cursor IS NULL OR :cursor > cursor THEN :cursor ELSE cursor END, "
            "last_device_time = CASE "
            "WHEN :session IS NOT NULL AND session IS NOT :session THEN :time "
            "WHEN :time IS NULL THEN last_device_time "
            "WHEN last_device_time IS NULL OR :time > last_device_time THEN :time "
            "ELSE last_device_time END, "
            "session = COALESCE(:session, session) "
            "WHERE address = :address",
            {
                "cursor": cursor,
                "time": last_device_time,
                "session": session,
                "address": address,
            },
        )

    def record_sync(
        self,
        address: str,
        *,
        at: datetime,
        readings: int,
        battery_percent: int | None,
        skew_s: float | None,
        error: str | None,
        info: dict[str, str | None] | None = None,
    ) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE devices SET last_sync_at = ?, last_sync_readings = ?, "
                "battery_percent = COALESCE(?, battery_percent), "
                "skew_s = COALESCE(?, skew_s), last_error = ? WHERE address = ?",
                (_iso(at), readings, battery_percent, skew_s, error, address),
            )
            for column, value in (info or {}).items():
                if column in ("manufacturer", "model", "serial", "firmware") and value:
                    conn.execute(
                        f"UPDATE devices SET {column} = ? WHERE address = ?", (value, address)
                    )

    def count_error(self, address: str, kind: str, detail: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO device_errors (address, kind, count, last_at, last_detail) "
                "VALUES (?, ?, 1, ?, ?) ON CONFLICT (address, kind) DO UPDATE SET "
                "count = count + 1, last_at = excluded.last_at, "
                "last_detail = excluded.last_detail",
                (address, kind, _iso(utc_now()), detail[:500]),
            )

    def first_report(self, conn: sqlite3.Connection, address: str, digest: str) -> bool:
        """Remember that a malformed record was put in the outbox (inside the caller's
        transaction, the one that enqueues its event); False if it already was: a meter
        that sends it again (ignoring the RACP filter, or a newest record whose number
        cannot be read) is not reported twice."""
        cur = conn.execute(
            "INSERT OR IGNORE INTO reported_records (address, digest, reported_at) "
            "VALUES (?, ?, ?)",
            (address, digest, _iso(utc_now())),
        )
        return cur.rowcount == 1

    def errors(self, address: str) -> dict[str, int]:
        rows = self.db.conn.execute(
            "SELECT kind, count FROM device_errors WHERE address = ? ORDER BY kind", (address,)
        ).fetchall()
        return {str(kind): int(count) for kind, count in rows}


class StatusStore:
    """Key/JSON rows the daemon writes and ``gateway status`` reads."""

    def __init__(self, db: GatewayDB) -> None:
        self.db = db

    def put(self, key: str, value: object) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO status (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get(self, key: str) -> object:
        row = self.db.conn.execute("SELECT value FROM status WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])
