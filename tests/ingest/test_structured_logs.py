"""``homevitals --json-logs``: the ingest and analytics services log one JSON object per
line, with each event's numbers as fields a log shipper can index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mqtt_publish import publish_all
from waiting import wait_until

from device_profiles.model import Component, Kind
from readings import identity, wire

pytestmark = pytest.mark.services

GATEWAY = "gw-jsonlogs"
DEVICE = "meter-jsonlogs"


def cli_env(database_url: str, mqtt_url: str, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOMEVITALS_DATABASE_URL": database_url,
        "HOMEVITALS_MQTT_URL": mqtt_url,
        "HOMEVITALS_STATE_DIR": str(state),
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line must parse as one JSON object."""
    out = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)  # a plain-text line fails the test here
            assert isinstance(entry, dict), line
            assert {"ts", "level", "logger", "msg"} <= entry.keys(), line
            out.append(entry)
    return out


def readings(n: int) -> bytes:
    t0 = datetime(2026, 9, 1, 8, tzinfo=UTC)
    batch = []
    for seq in range(n):
        when = t0 + timedelta(hours=seq)
        local = when.replace(tzinfo=None).isoformat()
        batch.append(
            wire.Reading(
                id=identity.reading_id(DEVICE, Kind.GLUCOSE, local, seq),
                device=DEVICE,
                kind=Kind.GLUCOSE,
                time=when,
                values={Component.GLUCOSE: 100.0 + seq},
                device_time=local,
                seq=seq,
            )
        )
    return wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, GATEWAY, t0, batch))


def wait_for_line(path: Path, fragment: str, proc: subprocess.Popen[bytes]) -> None:
    def logged() -> bool:
        assert proc.poll() is None, path.read_text()
        return fragment in path.read_text()

    wait_until(logged, 30, what=path.read_text)


def progress_total(path: Path) -> int:
    return sum(
        e["readings"] for e in json_lines(path.read_text()) if e["msg"].startswith("stored ")
    )


def test_ingest_worker_logs_json_lines_with_fields(
    database_url: str, ingest_mqtt_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "ingest.log"
    argv = [
        sys.executable,
        "-m",
        "homevitals",
        "--json-logs",
        "--log-level",
        "debug",
        "ingest",
        "run",
        "--client-id",
        "hv-jsonlogs",
        "--group",
        "jsonlogs",
        "--progress-every",
        "0.5",
    ]
    with log_file.open("wb") as sink:
        proc = subprocess.Popen(
            argv,
            env=cli_env(database_url, ingest_mqtt_url, tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        wait_for_line(log_file, "subscribed as group", proc)
        paired = wire.EventsMessage(
            wire.SCHEMA_EVENT,
            GATEWAY,
            [
                wire.DevicePaired(
                    device=DEVICE, at=datetime(2026, 9, 1, tzinfo=UTC), profile="glucose-meter"
                )
            ],
        )
        publish_all(
            mqtt_url,
            [
                (wire.events_topic(GATEWAY), wire.encode(paired)),
                (wire.readings_topic(GATEWAY), readings(7)),
                (wire.readings_topic(GATEWAY), b'{"schema": '),
            ],
        )
        wait_for_line(log_file, "dead letters", proc)
        # the progress line after the commit
        wait_until(lambda: progress_total(log_file) >= 7, 30, what=log_file.read_text)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0, log_file.read_text()

    entries = json_lines(log_file.read_text())
    connected = next(e for e in entries if "subscribed as group" in e["msg"])
    assert connected["group"] == "jsonlogs"
    assert connected["logger"] == "homevitals.ingest"
    committed = [e for e in entries if e["msg"] == "batch committed"]
    assert sum(e["readings"] for e in committed) == 7
    assert all(e["level"] == "debug" and e["batch_ms"] >= 0 for e in committed)
    rejected = next(e for e in entries if "dead letters" in e["msg"] and e["level"] == "warning")
    assert rejected["dead_letters"] == 1
    progress = [e for e in entries if e["msg"].startswith("stored ")]
    assert sum(e["readings"] for e in progress) == 7
    assert all("readings_per_s" in e and "queue_depth" in e for e in progress)
    stopped = entries[-1]
    assert stopped["msg"].startswith("stopped at")
    assert (stopped["readings"], stopped["dead_letters"]) == (7, 1)


def test_analytics_pass_logs_its_report_as_fields(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "homevitals",
            "--json-logs",
            "--log-level",
            "INFO",
            "analytics",
            "run",
            "--once",
        ],
        env=cli_env(database_url, "mqtt://unused:1", tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    entries = json_lines(done.stderr)
    full_pass = next(e for e in entries if e["msg"].startswith("full pass"))
    assert full_pass["logger"] == "homevitals.analytics"
    assert {"patients", "raised", "updated", "cleared"} <= full_pass.keys()
    assert full_pass["patients"] >= 0
    # The human-readable result still goes to stdout.
    assert done.stdout.startswith(f"analytics: {full_pass['patients']} patient evaluations")


def test_plain_logs_stay_the_default(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "homevitals", "-v", "analytics", "run", "--once"],
        env=cli_env(database_url, "mqtt://unused:1", tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if "full pass" in x)
    assert " INFO homevitals.analytics: full pass" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
