"""The durable outbox: ordering, batching, the disk bound, and SIGKILL safety."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gw_helpers import make_reading

from gateway.config import OutboxLimits
from gateway.outbox import Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice
from readings import DeviceSynced

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEVICE = "00:00:00:AA:AA:AA"


def _db(tmp_path: Path) -> GatewayDB:
    return GatewayDB(tmp_path / "gw.sqlite3")


def test_batches_are_ordered_and_split_by_kind(tmp_path: Path) -> None:
    db = _db(tmp_path)
    outbox = Outbox(db)
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, s) for s in range(1, 451)])
    from datetime import UTC, datetime

    outbox.enqueue_event(DeviceSynced(device=DEVICE, at=datetime.now(UTC), readings=450))
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, 451)])

    seen: list[tuple[str, int]] = []
    after = 0
    while (batch := outbox.next_batch(after, max_readings=200)) is not None:
        seen.append((batch.kind, len(batch.row_ids)))
        after = batch.last_id
    assert seen == [
        ("reading", 200),
        ("reading", 200),
        ("reading", 50),
        ("event", 1),
        ("reading", 1),
    ]
    assert outbox.depth() == 452

    first = outbox.next_batch(0)
    assert first is not None
    assert [r.seq for r in first.readings] == list(range(1, 201))
    outbox.delete(first.row_ids)
    assert outbox.depth() == 252
    stats = outbox.stats()
    assert stats.rows == 252 and stats.bytes > 0


def test_cursor_and_rows_commit_together(tmp_path: Path) -> None:
    db = _db(tmp_path)
    devices = DeviceStore(db)
    outbox = Outbox(db)
    devices.add(PairedDevice(address=DEVICE, profile="test"))
    with pytest.raises(RuntimeError), db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, 1)])
        devices.advance(conn, DEVICE, cursor=1, last_device_time="2026-01-01T08:01:00")
        raise RuntimeError("crash before commit")
    device = devices.get(DEVICE)
    assert device is not None and device.cursor is None and outbox.depth() == 0
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, 1)])
        devices.advance(conn, DEVICE, cursor=1, last_device_time="2026-01-01T08:01:00")
    device = devices.get(DEVICE)
    assert device is not None and device.cursor == 1 and outbox.depth() == 1


def test_bound_drops_oldest_and_warns_at_80_percent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _db(tmp_path)
    outbox = Outbox(db, OutboxLimits(max_rows=100, max_bytes=10**9))
    caplog.set_level(logging.WARNING, logger="gateway.outbox")
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, s) for s in range(1, 80)])
    assert not caplog.records
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, 80)])
    assert any("80% of its bound" in r.getMessage() for r in caplog.records)
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, s) for s in range(81, 131)])
    assert outbox.depth() == 100
    assert any("dropped the 30 oldest" in r.getMessage() for r in caplog.records)
    batch = outbox.next_batch(0)
    assert batch is not None and batch.readings[0].seq == 31


def test_byte_bound(tmp_path: Path) -> None:
    db = _db(tmp_path)
    outbox = Outbox(db, OutboxLimits(max_rows=10**6, max_bytes=10**9))
    with db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, 1)])
    size = outbox.stats().bytes
    bounded = Outbox(db, OutboxLimits(max_rows=10**6, max_bytes=size * 10 + 5))
    with db.transaction() as conn:
        bounded.enqueue_readings(conn, [make_reading(DEVICE, s) for s in range(2, 31)])
    assert bounded.stats().bytes <= size * 10 + 5
    batch = bounded.next_batch(0)
    assert batch is not None and batch.readings[-1].seq == 30


@pytest.mark.slow
def test_sigkill_never_loses_or_duplicates(tmp_path: Path) -> None:
    """Kill a writer with SIGKILL at random moments; every record is there exactly once."""
    db_path = tmp_path / "gw.sqlite3"
    total = 30_000
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{HERE}:{HERE.parent}"}  # gw_helpers, waiting
    kills = 0
    for _ in range(200):
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "outbox_writer.py"), str(db_path), str(total)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line == "ready":
            time.sleep(rng.uniform(0.0, 0.1))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait()
        if "done" in (proc.stdout.read() or "") or line == "done":
            break
    else:
        pytest.fail("writer never finished")
    assert kills >= 5, kills

    db = GatewayDB(db_path)
    device = DeviceStore(db).get(DEVICE)
    assert device is not None and device.cursor == total
    outbox = Outbox(db)
    in_outbox: list[int] = []
    after = 0
    while (batch := outbox.next_batch(after, max_readings=500)) is not None:
        in_outbox.extend(r.seq or 0 for r in batch.readings)
        after = batch.last_id
    acked_file = Path(str(db_path) + ".acked")
    acked = [int(x) for x in acked_file.read_text().split()] if acked_file.exists() else []
    # "Acked" rows were deleted before the ack was written down, so a kill between the
    # two can lose a line of the log (not a reading): count rows, not log lines.
    assert len(in_outbox) == len(set(in_outbox)), "duplicate rows in the outbox"
    assert in_outbox == sorted(in_outbox), "outbox out of order"
    assert not set(in_outbox) & set(acked)
    missing = set(range(1, total + 1)) - set(in_outbox) - set(acked)
    # The only rows not accounted for are ones deleted just before a kill interrupted
    # the acked-log write; those were "published" and so are not lost either.
    assert len(missing) <= kills * 20
    assert in_outbox[0] == min(set(range(1, total + 1)) - set(acked) - missing)
