"""The patient page's weight, SpO2 and temperature section: exact numbers from readings
sent through the real ingest path (``ingest.pipeline.process``), the page's period, absent
without readings, the usual 404 outside the panel, the page's audit row, odd rows."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_helpers import Clinic
from test_dashboard import _login
from wire_helpers import send_through_ingest, wire_reading

from api.bootstrap import add_to_panel
from device_profiles.model import Component, Kind
from ingest.patients import attach_gateway, upsert_patient

BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Sent:
    patient_id: int
    times: dict[str, datetime]


def _send(
    db: psycopg.Connection[Any],
    clinic: Clinic,
    name: str,
    readings: dict[str, tuple[str, Kind, datetime, dict[Component, float]]],
) -> Sent:
    """A new patient on Dr Lee's panel whose devices send ``readings`` (name -> device
    profile, kind, time, values) through the ingest pipeline."""
    tag = uuid.uuid4().hex[:6]
    pid = upsert_patient(db, f"dash-body-{tag}", "Europe/Berlin", name)
    add_to_panel(db, clinic.dr_lee, pid)
    gw = f"gw-dash-body-{tag}"
    attach_gateway(db, gw, pid)
    now = datetime.now(UTC).replace(microsecond=0)
    profiles = {profile for profile, *_ in readings.values()}
    result = send_through_ingest(
        db,
        gw,
        {f"{p}-{tag}": p for p in sorted(profiles)},
        now - timedelta(days=30),
        [
            wire_reading(f"{p}-{tag}", kind, t, v, skew_s=-3.0)
            for p, kind, t, v in readings.values()
        ],
        now,
    )
    assert result.inserted == {"body_readings": len(readings)}, result
    return Sent(pid, {key: t for key, (_, _, t, _) in readings.items()})


@pytest.fixture(scope="module")
def vera(db: psycopg.Connection[Any], clinic: Clinic) -> Sent:
    now = datetime.now(UTC).replace(microsecond=0)
    weight, spo2, temp = Kind.WEIGHT, Kind.SPO2, Kind.TEMPERATURE
    return _send(
        db,
        clinic,
        "Vera Vital",
        {
            "w1": ("weight", weight, now - timedelta(days=10), {Component.WEIGHT: 82.4}),
            "w2": ("weight", weight, now - timedelta(days=5), {Component.WEIGHT: 81.6}),
            "w3": (
                "weight",
                weight,
                now - timedelta(days=1),
                {Component.WEIGHT: 80.9, Component.HEIGHT: 1.8, Component.BMI: 25.0},
            ),
            "s1": ("pulse_oximeter", spo2, now - timedelta(days=9), {Component.SPO2: 97.0}),
            "s2": (
                "pulse_oximeter",
                spo2,
                now - timedelta(days=4),
                {Component.SPO2: 88.0, Component.PULSE: 71.0},
            ),
            "s3": ("pulse_oximeter", spo2, now - timedelta(hours=20), {Component.SPO2: 95.0}),
            "t1": ("thermometer", temp, now - timedelta(days=3), {Component.TEMPERATURE: 38.1}),
            "t2": ("thermometer", temp, now - timedelta(days=2), {Component.TEMPERATURE: 36.9}),
        },
    )


def _day(sent: Sent, name: str) -> str:
    return sent.times[name].astimezone(BERLIN).date().isoformat()


def _stat(label: str, value: str) -> str:
    return f'<div class="stat"><b>{value}</b>{label}</div>'


def _section(page: str) -> str:
    found = re.search(r'<section id="body-vitals">.*?</section>', page)
    assert found is not None, "no weight/SpO2 section"
    return found.group(0)


def test_weight_spo2_and_temperature_numbers(app: object, clinic: Clinic, vera: Sent) -> None:
    page = _login(app, clinic.dr_lee).get(f"/dashboard/patients/{vera.patient_id}")
    assert page.status_code == 200
    section = _section(page.text)
    assert "<h2>Weight and SpO2</h2>" in section
    assert _stat(f"latest weight, {_day(vera, 'w3')}", "80.9 kg (178.4 lb)") in section
    assert _stat(f"change since {_day(vera, 'w1')}", "\u22121.5 kg (\u22121.8 %)") in section
    assert _stat("BMI", "25.0") in section
    chart = re.search(r'<svg id="weight-chart".*?</svg>', section)
    assert chart is not None and chart.group(0).count("<circle") == 3
    assert "<polyline" in chart.group(0) and "<script" not in page.text
    assert _stat(f"latest SpO2, {_day(vera, 's3')}", "95 %") in section
    assert _stat("lowest", "88 %") in section
    assert _stat("readings below 90 %", "1") in section
    assert _stat("readings", "3") in section
    assert _stat(f"latest temperature, {_day(vera, 't2')}", "36.9 \u00b0C") in section
    assert _stat("highest", "38.1 \u00b0C") in section
    assert "nan" not in section.lower()


def test_the_page_period_applies(app: object, clinic: Clinic, vera: Sent) -> None:
    page = _login(app, clinic.dr_lee).get(f"/dashboard/patients/{vera.patient_id}?days=7")
    section = _section(page.text)
    assert _stat(f"change since {_day(vera, 'w2')}", "\u22120.7 kg (\u22120.9 %)") in section
    assert _stat("lowest", "88 %") in section and _stat("readings", "2") in section
    page = _login(app, clinic.dr_lee).get(f"/dashboard/patients/{vera.patient_id}?days=1")
    section = _section(page.text)
    assert "change since" not in section  # one weighing: no change to show
    assert _stat("readings below 90 %", "0") in section and "Temperature" not in section


def test_absent_without_readings(app: object, clinic: Clinic) -> None:
    page = _login(app, clinic.dr_lee).get(f"/dashboard/patients/{clinic.patient_b}")
    assert page.status_code == 200
    assert 'id="body-vitals"' not in page.text and "Weight and SpO2" not in page.text


def test_outside_the_panel_is_404(app: object, clinic: Clinic, vera: Sent) -> None:
    page = _login(app, clinic.dr_ray).get(f"/dashboard/patients/{vera.patient_id}")
    assert page.status_code == 404
    assert "80.9" not in page.text and 'id="body-vitals"' not in page.text


def test_the_page_audit_row_covers_the_read(
    app: object, clinic: Clinic, vera: Sent, db: psycopg.Connection[Any]
) -> None:
    since = db.execute("SELECT clock_timestamp()").fetchone()
    assert since is not None
    _login(app, clinic.dr_lee).get(f"/dashboard/patients/{vera.patient_id}?days=30")
    rows = db.execute(
        "SELECT actor, resource, detail FROM audit_log WHERE action = 'dashboard.patient'"
        " AND patient_id = %s AND at >= %s",
        (vera.patient_id, since[0]),
    ).fetchall()
    assert rows == [(clinic.dr_lee, f"/dashboard/patients/{vera.patient_id}", {"days": 30})]


def test_odd_rows_show_nothing_odd(
    app: object, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    # A weight without height through ingest, then rows as an import or a hand fix could
    # leave them: null (a device's NaN), text, out of range, huge, no component at all.
    sent = _send(
        db,
        clinic,
        "Odd Data",
        {"w": ("weight", Kind.WEIGHT, now - timedelta(days=2), {Component.WEIGHT: 70.0})},
    )
    odd = [
        ("weight", '{"weight": null, "bmi": "NaN"}'),
        ("weight", '{"weight": "heavy"}'),
        ("weight", '{"weight": 1e400, "bmi": 1e400}'),
        ("weight", '{"height": 1.7}'),
        ("spo2", '{"spo2": null, "pulse": 60}'),
        ("spo2", '{"spo2": -5}'),
        ("temperature", '{"temperature": [36.6]}'),
    ]
    for i, (kind, components) in enumerate(odd):
        db.execute(
            "INSERT INTO body_readings (time, reading_id, device_id, patient_id, kind, components)"
            " VALUES (%s, %s, 'odd-device', %s, %s, %s::jsonb)",
            (now - timedelta(hours=i + 1), uuid.uuid4(), sent.patient_id, kind, components),
        )
    # Many readings: an oximeter in continuous mode, one a second for two hours.
    db.execute(
        "INSERT INTO body_readings (time, reading_id, device_id, patient_id, kind, components)"
        " SELECT %s - s * interval '1 second', gen_random_uuid(), 'odd-oxi', %s, 'spo2',"
        " jsonb_build_object('spo2', 90 + s %% 8) FROM generate_series(1, 7200) s",
        (now - timedelta(days=1), sent.patient_id),
    )
    page = _login(app, clinic.dr_lee).get(f"/dashboard/patients/{sent.patient_id}")
    assert page.status_code == 200
    section = _section(page.text)
    assert _stat(f"latest weight, {_day(sent, 'w')}", "70.0 kg (154.3 lb)") in section
    assert "BMI" not in section and "change since" not in section
    assert _stat("lowest", "90 %") in section
    assert _stat("readings below 90 %", "0") in section
    assert _stat("readings", "7200") in section
    assert "Temperature" not in section
    for bad in ("nan", "inf", "None", "heavy", "1e+400"):
        assert bad not in section
