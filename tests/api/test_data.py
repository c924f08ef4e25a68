"""Readings (raw and bucketed), summaries, flags lifecycle, targets, panel, billing, audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from api_helpers import Auth, Clinic
from fastapi.testclient import TestClient


def _range(clinic: Clinic) -> dict[str, str]:
    return {
        "start": (clinic.end - timedelta(days=14)).isoformat(),
        "end": (clinic.end + timedelta(minutes=1)).isoformat(),
    }


def test_raw_glucose_paginates_with_totals_and_next(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    url = f"/api/v1/patients/{clinic.patient_a}/readings/glucose"
    params = {**_range(clinic), "source": "cgm", "limit": 1000}
    first = client.get(url, params=params, headers=auth(clinic.dr_lee))
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 14 * 288
    assert len(body["items"]) == 1000
    assert body["next"] is not None and "offset=1000" in body["next"]
    times = [i["time"] for i in body["items"]]
    assert times == sorted(times)
    second = client.get(body["next"], headers=auth(clinic.dr_lee)).json()
    assert second["offset"] == 1000
    assert second["items"][0]["time"] >= times[-1]
    smbg = client.get(
        url, params={**_range(clinic), "source": "smbg"}, headers=auth(clinic.user_a)
    ).json()
    assert smbg["total"] == 14 * 3
    assert smbg["items"][0]["skew_s"] == -93.0
    assert smbg["items"][0]["device_time"] is not None


def test_bucketed_glucose_uses_time_bucket(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    url = f"/api/v1/patients/{clinic.patient_a}/readings/glucose/buckets"
    r = client.get(
        url, params={**_range(clinic), "bucket": "1d", "source": "cgm"}, headers=auth(clinic.dr_lee)
    )
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert 14 <= len(items) <= 15
    assert sum(i["n"] for i in items) == 14 * 288
    assert all(i["min"] <= i["mean"] <= i["max"] for i in items)
    # Daily buckets start at local midnight in the patient's zone (New York).
    assert all(
        i["bucket"].endswith(("-05:00", "-04:00"))
        or "T05:00" in i["bucket"]
        or "T04:00" in i["bucket"]
        for i in items
    )
    hourly = client.get(
        url, params={**_range(clinic), "bucket": "1h", "limit": 10}, headers=auth(clinic.dr_lee)
    ).json()
    assert hourly["total"] >= 14 * 24
    assert len(hourly["items"]) == 10
    bp = client.get(
        f"/api/v1/patients/{clinic.patient_a}/readings/blood-pressure/buckets",
        params={**_range(clinic), "bucket": "1d"},
        headers=auth(clinic.dr_lee),
    ).json()
    assert sum(i["n"] for i in bp["items"]) == 20


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
            "start must be before end",
        ),
        ({"start": "2020-01-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}, "at most 366 days"),
        ({"start": "2024-01-01T00:00:00"}, "timezone"),
        ({"start": "yesterday"}, "datetime"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"bucket": "3m"}, "bucket"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(
    client: TestClient, auth: Auth, clinic: Clinic, params: dict[str, Any], message: str
) -> None:
    path = "glucose/buckets" if "bucket" in params else "glucose"
    r = client.get(
        f"/api/v1/patients/{clinic.patient_a}/readings/{path}",
        params=params,
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code in (400, 422), r.text
    assert message in r.json()["detail"]


def test_glucose_and_bp_summaries(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    g = client.get(
        f"/api/v1/patients/{clinic.patient_a}/glucose/summary",
        params=_range(clinic),
        headers=auth(clinic.user_a),
    )
    assert g.status_code == 200, g.text
    body = g.json()
    assert body["cgm"]["n_readings"] == 14 * 288
    assert body["cgm"]["gmi"] is not None and body["smbg"]["gmi"] is None
    assert body["cgm"]["hypo_events"] >= 1
    assert 0 < body["cgm"]["pct_70_180"] < 100
    assert body["smbg"]["n_readings"] == 14 * 3
    assert body["timezone"] == "America/New_York"
    agp = client.get(
        f"/api/v1/patients/{clinic.patient_a}/glucose/agp",
        params=_range(clinic),
        headers=auth(clinic.user_a),
    ).json()
    assert agp["source"] == "cgm"
    assert len(agp["bins"]) == 96
    assert all(b["p5"] <= b["p50"] <= b["p95"] for b in agp["bins"])
    assert len(agp["daily"]) >= 14
    bp = client.get(
        f"/api/v1/patients/{clinic.patient_a}/blood-pressure/summary",
        params=_range(clinic),
        headers=auth(clinic.dr_lee),
    ).json()
    assert bp["n_readings"] == 20
    assert bp["n_irregular_pulse"] == 2
    assert bp["stage"] == "stage_1"
    assert bp["target_systolic"] == 130.0


def test_flags_queue_and_lifecycle(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    lee = auth(clinic.dr_lee)
    queue = client.get("/api/v1/flags", headers=lee).json()
    ids = [f["id"] for f in queue["items"]]
    assert clinic.flags["c_adherence"] not in ids  # patient C is not on Dr Lee's panel
    severities = [f["severity"] for f in queue["items"]]
    order = ["urgent", "high", "medium", "low"]
    assert severities == sorted(severities, key=order.index)
    urgent = client.get("/api/v1/flags", params={"severity": "urgent"}, headers=lee).json()
    assert {f["id"] for f in urgent["items"]} == {clinic.flags["urgent_low_glucose"]}
    by_rule = client.get(
        "/api/v1/flags", params={"rule": "cgm_tbr_over_target"}, headers=lee
    ).json()
    assert by_rule["total"] == 1
    assert client.get("/api/v1/flags", params={"rule": "nope"}, headers=lee).status_code == 400

    fid = clinic.flags["cgm_tbr_over_target"]
    ack = client.post(f"/api/v1/flags/{fid}/acknowledge", json={"note": "called"}, headers=lee)
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == clinic.dr_lee
    again = client.post(f"/api/v1/flags/{fid}/acknowledge", json={}, headers=lee)
    assert again.status_code == 409
    assert "only an open flag" in again.json()["detail"]
    empty = client.post(f"/api/v1/flags/{fid}/resolve", json={"note": "  "}, headers=lee)
    assert empty.status_code == 422
    done = client.post(f"/api/v1/flags/{fid}/resolve", json={"note": "basal reduced"}, headers=lee)
    assert done.status_code == 200
    assert done.json()["resolve_note"] == "basal reduced"
    resolved = client.get("/api/v1/flags", params={"status": "resolved"}, headers=lee).json()
    assert fid in [f["id"] for f in resolved["items"]]
    # Dr Ray cannot see or act on Dr Lee's patients' flags.
    ray = auth(clinic.dr_ray)
    assert client.get(f"/api/v1/flags/{fid}", headers=ray).status_code == 404
    other = clinic.flags["bp_home_average_above_target"]
    r = client.post(f"/api/v1/flags/{other}/acknowledge", json={}, headers=ray)
    assert r.status_code == 404
    assert (
        client.post("/api/v1/flags/999999999/acknowledge", json={}, headers=lee).status_code == 404
    )


def test_targets_roundtrip_and_validation(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    url = f"/api/v1/patients/{clinic.patient_b}/targets"
    lee = auth(clinic.dr_lee)
    default = client.get(url, headers=auth(clinic.user_b)).json()
    assert default["category"] == "standard" and default["effective"]["tir_min_pct"] == 70.0
    put = client.put(
        url, json={"category": "older_high_risk", "overrides": {"bp_systolic": 140}}, headers=lee
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["effective"]["tir_min_pct"] == 50.0
    assert body["effective"]["bp_systolic"] == 140.0
    assert body["updated_by"] == clinic.dr_lee
    bad = client.put(url, json={"category": "standard", "overrides": {"bogus": 1}}, headers=lee)
    assert bad.status_code == 400 and "unknown target" in bad.json()["detail"]
    bad = client.put(
        url, json={"category": "standard", "overrides": {"window_days": 2.5}}, headers=lee
    )
    assert bad.status_code == 400
    bad = client.put(url, json={"category": "weird"}, headers=lee)
    assert bad.status_code == 422


def test_devices_with_sync_status(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    r = client.get(f"/api/v1/patients/{clinic.patient_a}/devices", headers=auth(clinic.user_a))
    devices = {d["id"]: d for d in r.json()["items"]}
    assert devices[clinic.device_cgm]["sync"]["state"] == "ok"
    assert devices[clinic.device_meter]["sync"]["state"] == "stale"
    assert devices[clinic.device_cuff]["battery_percent"] == 15
    assert devices[clinic.device_meter]["clock_skew_s"] == -93.0


def test_panel_is_in_triage_order(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    panel = client.get("/api/v1/panel", headers=auth(clinic.dr_lee)).json()
    order = [e["patient"]["id"] for e in panel["items"]]
    assert order[0] == clinic.patient_a  # the only one with an open urgent flag
    assert clinic.patient_b in order and clinic.patient_c not in order
    first = panel["items"][0]
    assert first["urgent_open_flags"] == 1
    assert first["glucose_source"] == "cgm"
    assert first["tbr_pct"] is not None


def test_billing_counts_transmitted_days_in_clinic_zone(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    start = (clinic.end - timedelta(days=20)).date()
    r = client.get(
        "/api/v1/billing/rpm",
        params={"period_start": start.isoformat(), "clinic_tz": "America/New_York"},
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code == 200, r.text
    rows = {row["patient_id"]: row for row in r.json()["rows"]}
    a = rows[clinic.patient_a]
    assert a["days_with_readings"] >= 14
    assert a["cpt_99454"] is False or a["days_with_readings"] >= 16
    assert rows[clinic.patient_b]["days_with_readings"] == 0
    assert rows[clinic.patient_b]["code"] is None
    assert clinic.patient_c not in rows
    bad = client.get(
        "/api/v1/billing/rpm",
        params={"period_start": start.isoformat(), "clinic_tz": "Mars/Olympus"},
        headers=auth(clinic.dr_lee),
    )
    assert bad.status_code == 400


def test_reads_and_flag_actions_are_audited_and_log_is_append_only(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    client.get(f"/api/v1/patients/{clinic.patient_a}/readings/glucose", headers=auth(clinic.user_a))
    client.get(f"/api/v1/patients/{clinic.patient_b}", headers=auth(clinic.user_a))
    fid = clinic.flags["bp_home_average_above_target"]
    client.post(
        f"/api/v1/flags/{fid}/acknowledge", json={"note": "audit me"}, headers=auth(clinic.dr_lee)
    )
    log = client.get(
        "/api/v1/audit",
        params={"patient_id": clinic.patient_a, "limit": 200},
        headers=auth(clinic.admin),
    ).json()
    actions = {(e["actor"], e["action"]) for e in log["items"]}
    assert (clinic.user_a, "readings.glucose") in actions
    assert (clinic.dr_lee, "flag.acknowledge") in actions
    entry = next(e for e in log["items"] if e["action"] == "flag.acknowledge")
    assert entry["role"] == "clinician" and entry["client_ip"] == "testclient"
    assert entry["resource"] == f"flag/{fid}"
    denied = client.get(
        "/api/v1/audit",
        params={"patient_id": clinic.patient_b, "action": "access.denied"},
        headers=auth(clinic.admin),
    ).json()
    assert any(e["actor"] == clinic.user_a for e in denied["items"])
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE audit_log SET actor = 'x' WHERE id = (SELECT max(id) FROM audit_log)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM audit_log")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("TRUNCATE audit_log")


def test_billing_rules_manual_entries_and_clinic_days(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    import uuid
    from datetime import UTC, datetime

    from ingest.patients import upsert_patient

    full = upsert_patient(db, f"api-{clinic.tag}-bill-full", "UTC", "Fay Full")
    part = upsert_patient(db, f"api-{clinic.tag}-bill-part", "UTC", "Pat Part")

    def glucose(pid: int, when: datetime, conditions: list[str], gateway: str | None) -> None:
        db.execute(
            "INSERT INTO glucose (time, reading_id, device_id, patient_id, source, mgdl,"
            " conditions, gateway_id) VALUES (%s, %s, 'bill-meter', %s, 'smbg', 100, %s, %s)",
            (when, uuid.uuid4(), pid, conditions, gateway),
        )

    day0 = datetime(2024, 3, 1, 15, 0, tzinfo=UTC)
    for d in range(16):
        glucose(full, day0 + timedelta(days=d), [], "gw-bill")
    for d in range(5):
        glucose(part, day0 + timedelta(days=d), [], "gw-bill")
    for d in range(5, 8):
        glucose(part, day0 + timedelta(days=d), ["manual_entry"], "gw-bill")  # typed in
    for d in range(8, 10):
        glucose(part, day0 + timedelta(days=d), [], None)  # not transmitted by a gateway
    glucose(part, day0 + timedelta(days=10), ["control_solution"], "gw-bill")
    # 03:30 UTC on 31 March is still 30 March in New York: inside the period there.
    glucose(part, datetime(2024, 3, 31, 3, 30, tzinfo=UTC), [], "gw-bill")

    def rows(tz: str) -> dict[int, Any]:
        r = client.get(
            "/api/v1/billing/rpm",
            params={"period_start": "2024-03-01", "clinic_tz": tz, "limit": 1000},
            headers=auth(clinic.admin),
        )
        assert r.status_code == 200, r.text
        assert r.json()["period_end"] == "2024-03-31"
        return {row["patient_id"]: row for row in r.json()["rows"]}

    ny = rows("America/New_York")
    assert ny[full]["days_with_readings"] == 16 and ny[full]["code"] == "99454"
    assert ny[part]["days_with_readings"] == 6 and ny[part]["code"] == "99445"
    assert ny[part]["reading_dates"][-1] == "2024-03-30"
    utc = rows("UTC")
    assert utc[part]["days_with_readings"] == 5  # 31 March is outside the UTC period
