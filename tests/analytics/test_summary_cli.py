"""``homevitals analytics summary --json`` as a user runs it, checked against numbers worked
out by hand (and with ``statistics``) from the few readings this test ingests."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from analytics_helpers import pair, reading, send

from device_profiles.model import Component, Kind
from ingest.patients import enroll_patient
from ingest.registry import BindingCache

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]
FROM = datetime(2025, 6, 1, tzinfo=UTC)
TO = datetime(2025, 6, 8, tzinfo=UTC)  # 7 days, half-open

# Fingersticks at 12:00 UTC (08:00 in New York) on five days, plus one just before the
# period and one exactly at its (exclusive) end: neither may count.
SMBG = [(FROM + timedelta(days=d, hours=12), v) for d, v in enumerate([60, 100, 150, 200, 300])]
SMBG_OUTSIDE = [(FROM - timedelta(minutes=1), 40.0), (TO, 400.0)]
# One hour of CGM every 5 minutes on 3 June from 10:00 UTC.
CGM_VALUES = [50, 52, 60, 80, 100, 120, 140, 160, 190, 200, 260, 270]
CGM = [(FROM + timedelta(days=2, hours=10, minutes=5 * i), v) for i, v in enumerate(CGM_VALUES)]
# Cuff readings at 13:00 UTC (09:00 local, morning) on four days.
BP = [
    (FROM + timedelta(days=d + 1, hours=13), s, di)
    for d, (s, di) in enumerate([(120, 80), (130, 85), (150, 95), (190, 100)])
]


@pytest.fixture()
def patient(database_url: str) -> str:
    tag = f"an-cli-{uuid.uuid4().hex[:8]}"
    gateway, external_id = f"gw-{tag}", f"pt-{tag}"
    enroll_patient(database_url, external_id, [gateway], "America/New_York")
    devices = {
        Kind.GLUCOSE: f"{tag}-meter",
        Kind.CGM: f"{tag}-cgm",
        Kind.BLOOD_PRESSURE: f"{tag}-bp",
    }
    readings = [
        *(
            reading(devices[Kind.GLUCOSE], Kind.GLUCOSE, t, {Component.GLUCOSE: v})
            for t, v in [*SMBG, *SMBG_OUTSIDE]
        ),
        *(reading(devices[Kind.CGM], Kind.CGM, t, {Component.GLUCOSE: v}) for t, v in CGM),
        *(
            reading(
                devices[Kind.BLOOD_PRESSURE],
                Kind.BLOOD_PRESSURE,
                t,
                {Component.SYSTOLIC: s, Component.DIASTOLIC: d, Component.PULSE: 70.0},
            )
            for t, s, d in BP
        ),
    ]
    with psycopg.connect(database_url, autocommit=True) as conn:
        cache = BindingCache()
        pair(conn, cache, gateway, {d: str(k) for k, d in devices.items()}, FROM)
        result = send(conn, cache, gateway, readings)
    assert result.inserted == {"glucose": 19, "blood_pressure": 4}, result
    return external_id


def summary(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOMEVITALS_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "homevitals", "analytics", "summary", *args],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_summary_json_matches_hand_computed_metrics(database_url: str, patient: str) -> None:
    done = summary(
        database_url,
        "--patient",
        patient,
        "--from",
        FROM.isoformat(),
        "--to",
        TO.isoformat(),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["patient"] == patient
    approx = pytest.approx

    smbg = report["glucose"]["smbg"]
    values = [float(v) for _, v in SMBG]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    assert (smbg["n_readings"], smbg["days_with_readings"]) == (5, 5)
    assert smbg["mean"] == approx(162.0) == approx(mean)
    assert smbg["sd"] == approx(sd)
    assert smbg["cv"] == approx(100 * sd / mean)
    assert smbg["readings_per_day"] == approx(5 / 7)
    # 60 | 100, 150 | 200, 300: one of five low, two in range, two high (one > 250)
    assert (smbg["pct_below_70"], smbg["pct_70_180"], smbg["pct_above_180"]) == (20.0, 40.0, 40.0)
    assert (smbg["pct_above_250"], smbg["pct_below_54"]) == (20.0, 0.0)
    assert (smbg["hypo_events"], smbg["hypo_events_54"]) == (1, 0)
    assert smbg["gmi"] is None and smbg["mage"] is None  # no GMI from fingersticks
    assert smbg["gri"] == approx(2.4 * 20 + 1.6 * 20 + 0.8 * 20)  # 96: zone E

    cgm = report["glucose"]["cgm"]
    mean = sum(CGM_VALUES) / 12
    assert cgm["n_readings"] == 12 and cgm["mean"] == approx(mean)
    assert cgm["gmi"] == approx(3.31 + 0.02392 * mean)
    # < 54: 50, 52 | 54-69: 60 | 70-180: five | 181-250: 190, 200 | > 250: 260, 270
    pct = {k: cgm[k] * 12 / 100 for k in ("pct_below_54", "pct_54_69", "pct_70_180")}
    pct |= {k: cgm[k] * 12 / 100 for k in ("pct_181_250", "pct_above_250")}
    assert pct == approx(
        {"pct_below_54": 2, "pct_54_69": 1, "pct_70_180": 5, "pct_181_250": 2, "pct_above_250": 2}
    )
    # GRI = 3.0 VLow + 2.4 Low + 1.6 VHigh + 0.8 High (percentages) = 110, capped at 100
    raw_gri = 3.0 * 200 / 12 + 2.4 * 100 / 12 + 1.6 * 200 / 12 + 0.8 * 200 / 12
    assert raw_gri == approx(110.0) and cgm["gri"] == 100.0 and cgm["gri_zone"] == "E"
    # < 70 for 10:00-10:10 = 15 min with the sensor interval: one event; < 54 only 10 min.
    assert (cgm["hypo_events"], cgm["hypo_events_54"]) == (1, 0)
    assert cgm["percent_expected"] == approx(100 * 12 / (7 * 288))

    bp = report["blood_pressure"]
    assert bp["n_readings"] == 4 and bp["days_with_readings"] == 4
    assert (bp["mean_systolic"], bp["mean_diastolic"]) == (147.5, 90.0)
    assert (bp["max_systolic"], bp["max_diastolic"]) == (190.0, 100.0)
    assert bp["morning_n"] == 4 and bp["evening_n"] == 0
    assert bp["n_crisis"] == 1 and bp["stage"] == "crisis"  # 190 > 180
    assert bp["sd_systolic"] == approx(statistics.stdev([120, 130, 150, 190]))


def test_summary_period_and_unknown_patient(database_url: str, patient: str) -> None:
    # Only the last two days: the 200 and 300 fingersticks, no CGM, the 190/100 reading.
    start = (FROM + timedelta(days=3)).isoformat()
    done = summary(
        database_url, "--patient", patient, "--from", start, "--to", TO.isoformat(), "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["glucose"]["smbg"]["mean"] == 250.0
    assert report["glucose"]["cgm"]["n_readings"] == 0 and report["glucose"]["cgm"]["mean"] is None
    assert report["blood_pressure"]["n_readings"] == 2
    assert report["blood_pressure"]["mean_systolic"] == 170.0

    missing = summary(database_url, "--patient", "pt-nobody-" + uuid.uuid4().hex, "--json")
    assert missing.returncode == 1 and "no patient" in missing.stderr
