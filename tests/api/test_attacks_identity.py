"""Attacks of GitHub issue #14 (right patient, right person), API side, written as the
attacker would run them: a patient's own account and hub, a clinician of another clinic,
an EHR searching one patient, forged headers.  Each was run against the code before its
fix and seen succeeding; the counts are in the commit that fixed it and in the report
(docs/api.md "Attacks this suite replays").

Every test asserts the refusal *and* the audit row the refusal leaves.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from api_helpers import PASSWORD, Auth, Clinic, ProvisionRecorder
from fastapi.testclient import TestClient

from api.bootstrap import add_to_panel, create_user
from ingest.patients import attach_gateway, upsert_patient
from ingest.registry import bind_device

SERVICE_ACCOUNTS = ("homevitals-admin", "homevitals-ingest", "homevitals-api")


def _gateway_code(client: TestClient, auth: Auth, username: str, patient_id: int) -> str:
    r = client.post(f"/api/v1/patients/{patient_id}/gateway-code", headers=auth(username))
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


def _audit_rows(db: psycopg.Connection[Any], since_id: int, action: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, status, patient_id, resource, detail, client_ip FROM audit_log"
        " WHERE id > %s AND action = %s ORDER BY id",
        (since_id, action),
    ).fetchall()


def _last_audit_id(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


# --- 1. a patient's hub takes over a broker service account ------------------------------


@pytest.mark.parametrize("account", SERVICE_ACCOUNTS)
def test_hub_cannot_enrol_as_a_service_account(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    db: psycopg.Connection[Any],
    provisioned: ProvisionRecorder,
    account: str,
) -> None:
    """Before: 201, and the broker account's password was replaced by one the patient
    holds (read/write on homevitals/#).  After: 400 naming the reserved prefix, nothing
    provisioned, the code not consumed, the refusal audited."""
    code = _gateway_code(client, auth, clinic.user_a, clinic.patient_a)
    mark = _last_audit_id(db)
    r = client.post(
        "/api/v1/gateways/enroll", json={"enrollment_code": code, "gateway_id": account}
    )
    assert r.status_code == 400, r.text
    assert "reserved" in r.json()["detail"]
    assert account not in [name for name, _ in provisioned.calls]
    refused = _audit_rows(db, mark, "gateway.enroll")
    assert [(row[1], row[4]["gateway_id"]) for row in refused] == [(400, account)]
    # The code is still good for a proper hub id.
    ok = client.post("/api/v1/gateways/enroll", json={"enrollment_code": code})
    assert ok.status_code == 201, ok.text
    assert not ok.json()["gateway_id"].startswith("homevitals-")
    client.app.state.register_throttle.reset(db, "enroll|testclient")  # type: ignore[attr-defined]


def test_gateway_token_refuses_service_account_names(client: TestClient) -> None:
    r = client.post(
        "/api/v1/gateways/token", json={"gateway_id": "homevitals-admin", "secret": "x" * 20}
    )
    assert r.status_code in (401, 422)


def test_hub_cannot_take_over_a_gateway_it_does_not_own(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    db: psycopg.Connection[Any],
    provisioned: ProvisionRecorder,
) -> None:
    """A hub ingest has seen (it has broker credentials from the operator) but no patient
    owns: before, any patient's code re-keyed it and took its devices; after, 409."""
    hub = f"gw-seen-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO gateways (id, last_seen) VALUES (%s, now())", (hub,))
    code = _gateway_code(client, auth, clinic.user_a, clinic.patient_a)
    mark = _last_audit_id(db)
    r = client.post("/api/v1/gateways/enroll", json={"enrollment_code": code, "gateway_id": hub})
    assert r.status_code == 409, r.text
    assert hub not in [name for name, _ in provisioned.calls]
    assert [row[1] for row in _audit_rows(db, mark, "gateway.enroll")] == [409]
    client.app.state.register_throttle.reset(db, "enroll|testclient")  # type: ignore[attr-defined]


def test_local_broker_refuses_to_provision_service_accounts(tmp_path: Any) -> None:
    """The broker side refuses too (the provisioner ``homevitals api run`` hands the API),
    whatever the API checked."""
    from homevitals.services.mosquitto import LocalMosquitto, ReservedAccountError

    broker = LocalMosquitto(tmp_path, 1)
    for account in (*SERVICE_ACCOUNTS, "HomeVitals-Admin"):
        with pytest.raises(ReservedAccountError):
            broker.provision_gateway_account(account, "secret-of-the-attacker")
    assert not broker.passwd.exists()


def _connects(port: int, username: str, password: str) -> bool:
    """Does the real broker accept these credentials (CONNACK success within 5 s)?"""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    try:
        client.connect("127.0.0.1", port, keepalive=5)
        for _ in range(100):
            client.loop(timeout=0.05)
            if client.is_connected():
                return True
        return False
    finally:
        client.disconnect()


def test_real_broker_keeps_its_admin_account(
    api_settings: Any, local_mosquitto: Any, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """The whole path with the local broker's own provisioner (as ``homevitals api run``
    wires it): the admin account keeps its password, a proper hub gets working
    credentials."""
    from api.main import create_app
    from homevitals.services.mosquitto import ADMIN_USER

    app = create_app(api_settings, provision_gateway=local_mosquitto.provision_gateway_account)
    admin_password = local_mosquitto.password_for(ADMIN_USER)
    with TestClient(app, base_url="https://testserver") as c:
        code = _gateway_code(c, Auth(c), clinic.user_a, clinic.patient_a)
        taken = c.post(
            "/api/v1/gateways/enroll", json={"enrollment_code": code, "gateway_id": ADMIN_USER}
        )
        assert taken.status_code == 400
        hub = c.post("/api/v1/gateways/enroll", json={"enrollment_code": code})
        assert hub.status_code == 201, hub.text
        c.app.state.register_throttle.reset(db, "enroll|testclient")  # type: ignore[attr-defined]
    assert _connects(local_mosquitto.port, ADMIN_USER, admin_password)
    creds = hub.json()
    # The broker reloads its password file on SIGHUP, asynchronously: a few tries.
    assert any(
        _connects(local_mosquitto.port, creds["mqtt_username"], creds["mqtt_password"])
        for _ in range(3)
    )


# --- 4. a clinician takes a device from another clinic's patient --------------------------


def test_clinician_cannot_take_another_clinics_device(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Dr Ray's patient C wears a cuff; Dr Lee (A, B only) assigns it to patient A.
    Before: 200 and C's next reading was filed under A.  After: 404 (as for a patient
    outside the caller's scope), binding unchanged, audited as access.denied."""
    device = f"cuff-c-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, 'bp-cuff')", (device,))
    bind_device(db, device, clinic.patient_c, datetime.now(UTC) - timedelta(days=3))
    mark = _last_audit_id(db)
    r = client.post(
        f"/api/v1/patients/{clinic.patient_a}/devices",
        json={"device_id": device, "reason": "taking it"},
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code == 404, r.text
    owner = db.execute(
        "SELECT patient_id FROM device_bindings WHERE device_id = %s AND upper_inf(valid)",
        (device,),
    ).fetchone()
    assert owner == (clinic.patient_c,)
    denied = _audit_rows(db, mark, "access.denied")
    assert len(denied) == 1 and denied[0][3] == f"device/{device}"


def test_device_move_needs_a_reason_and_is_audited_with_who_where_why(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    device = f"loaner-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, 'bp-cuff')", (device,))
    bind_device(db, device, clinic.patient_b, datetime.now(UTC) - timedelta(days=3))
    lee = auth(clinic.dr_lee)
    url = f"/api/v1/patients/{clinic.patient_a}/devices"
    assert client.post(url, json={"device_id": device}, headers=lee).status_code == 422
    assert (
        client.post(url, json={"device_id": device, "reason": "   "}, headers=lee).status_code
        == 422
    )
    mark = _last_audit_id(db)
    r = client.post(url, json={"device_id": device, "reason": "loaner swapped"}, headers=lee)
    assert r.status_code == 200, r.text
    rows = db.execute(
        "SELECT actor, action, patient_id, client_ip, detail FROM audit_log"
        " WHERE id > %s AND resource = %s ORDER BY id",
        (mark, f"device/{device}"),
    ).fetchall()
    assert {(row[1], row[2]) for row in rows} == {
        ("device.assign", clinic.patient_a),
        ("device.release", clinic.patient_b),
    }
    for actor, _, _, ip, detail in rows:
        assert actor == clinic.dr_lee and ip
        assert detail["reason"] == "loaner swapped"
        assert (detail["from_patient"], detail["to_patient"]) == (
            clinic.patient_b,
            clinic.patient_a,
        )
    # The device's own custody timeline shows the move too, with who and why.
    timeline = client.get(f"/api/v1/custody/devices/{device}/events", headers=lee).json()
    assert timeline[0]["action"] == "clinician.move"
    assert timeline[0]["actor"] == clinic.dr_lee
    assert timeline[0]["detail"]["reason"] == "loaner swapped"


# --- 5. FHIR search ignores subject / patient.identifier ---------------------------------


@pytest.fixture(scope="module")
def two_patients(db: psycopg.Connection[Any], clinic: Clinic) -> dict[str, Any]:
    """Dr Eve's panel: patient X with one BP reading and one flag, and patient A with
    thousands of readings and several flags (Dr Lee's panel stays as other tests
    expect it)."""
    tag = uuid.uuid4().hex[:6]
    mrn = f"MRNX{tag}".upper()
    pid = upsert_patient(db, f"atk-{tag}", "UTC", "Xena Xu", mrn, datetime(1970, 1, 1).date())
    eve = f"eve-{tag}"
    create_user(db, eve, PASSWORD, "clinician")
    add_to_panel(db, eve, pid)
    add_to_panel(db, eve, clinic.patient_a)
    dev = f"cuff-x-{tag}"
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, 'bp-cuff')", (dev,))
    bind_device(db, dev, pid, datetime.now(UTC) - timedelta(days=5))
    db.execute(
        "INSERT INTO blood_pressure (time, reading_id, device_id, patient_id, systolic,"
        " diastolic, mean_arterial, pulse, conditions) VALUES (%s, %s, %s, %s, 120, 80, 93,"
        " NULL, '{}')",
        (datetime.now(UTC) - timedelta(days=1), uuid.uuid4(), dev, pid),
    )
    db.execute(
        "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence)"
        " VALUES (%s, 'adherence_no_data', 'low', 'x', '{}')",
        (pid,),
    )
    return {"pid": pid, "mrn": mrn, "external": f"atk-{tag}", "clinician": eve}


def _subjects(bundle: dict[str, Any]) -> list[str]:
    out = []
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        ref = (res.get("subject") or res.get("patient") or {}).get("reference")
        out.append(ref)
    return out


@pytest.mark.parametrize("resource", ["Observation", "Flag"])
@pytest.mark.parametrize(
    "form",
    [
        "patient={pid}",
        "patient=Patient/{pid}",
        "subject=Patient/{pid}",
        "subject={pid}",
        "subject:Patient={pid}",
        "patient.identifier=urn:homevitals:mrn|{mrn}",
        "patient.identifier={mrn}",
        "subject:Patient.identifier=urn:homevitals:patient|{external}",
        "patient={pid}&patient={pid}",
        "patient={pid}&subject=Patient/{pid}",
    ],
)
def test_fhir_search_returns_only_the_asked_patient(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    two_patients: dict[str, Any],
    resource: str,
    form: str,
) -> None:
    """Before: subject, subject:Patient and patient.identifier were ignored, so Dr Lee's
    EHR asking for X got every patient on the panel (A's 4000+ observations)."""
    query = form.format(**two_patients)
    r = client.get(f"/fhir/{resource}?{query}&_count=500", headers=auth(two_patients["clinician"]))
    assert r.status_code == 200, r.text
    bundle = r.json()
    subjects = _subjects(bundle)
    assert subjects, f"{resource}?{query} found nothing for the asked patient"
    assert set(subjects) == {f"Patient/{two_patients['pid']}"}, query
    assert bundle["total"] == len(subjects)


@pytest.mark.parametrize("resource", ["Observation", "Flag", "Device"])
def test_repeated_patient_is_and_not_last_wins(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    two_patients: dict[str, Any],
    resource: str,
) -> None:
    """``patient=X&patient=A`` asks for resources whose patient is X *and* A: none
    (FHIR R4 §3.1.1.1).  Before: last wins, A's resources came back."""
    r = client.get(
        f"/fhir/{resource}?patient={two_patients['pid']}&patient={clinic.patient_a}",
        headers=auth(two_patients["clinician"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 0
    # A comma is OR: both patients' resources.
    lee = auth(two_patients["clinician"])

    def total(query: str) -> int:
        found: int = client.get(f"/fhir/{resource}?{query}", headers=lee).json()["total"]
        return found

    x, a = two_patients["pid"], clinic.patient_a
    assert total(f"patient={x},{a}") == total(f"patient={x}") + total(f"patient={a}") > 0


def test_device_search_by_patient_identifier(
    client: TestClient, auth: Auth, clinic: Clinic, two_patients: dict[str, Any]
) -> None:
    r = client.get(
        f"/fhir/Device?patient.identifier=urn:homevitals:mrn|{two_patients['mrn']}",
        headers=auth(two_patients["clinician"]),
    )
    assert r.status_code == 200
    assert set(_subjects(r.json())) == {f"Patient/{two_patients['pid']}"}


def test_unknown_search_parameters_strict_and_lenient(
    client: TestClient, auth: Auth, clinic: Clinic, two_patients: dict[str, Any]
) -> None:
    """Unknown parameters: 400 OperationOutcome under ``Prefer: handling=strict``; under
    lenient handling (the default) ignored *and* left out of the self link (R4 §3.1.1.4),
    so the Bundle says what was actually searched."""
    lee = auth(two_patients["clinician"])
    url = f"/fhir/Observation?patient={two_patients['pid']}&foo=1"
    strict = client.get(url, headers={**lee, "Prefer": "handling=strict"})
    assert strict.status_code == 400
    body = strict.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "foo" in body["issue"][0]["diagnostics"]
    lenient = client.get(url, headers=lee)
    assert lenient.status_code == 200
    self_link = next(x["url"] for x in lenient.json()["link"] if x["relation"] == "self")
    assert "foo" not in self_link and "missing" not in self_link
    assert f"patient={two_patients['pid']}" in self_link
    # A patient filter the server cannot apply (``subject:missing``) is refused under
    # either handling: ignoring it would answer with more than was asked.
    narrowing = client.get(url + "&subject:missing=true", headers=lee)
    assert narrowing.status_code == 400 and "subject:missing" in narrowing.text
    # An empty patient (an unset variable in the EHR) is refused, never "all patients".
    for empty in ("patient=", "subject=", "patient.identifier="):
        assert client.get(f"/fhir/Observation?{empty}", headers=lee).status_code == 400


def test_search_for_a_patient_outside_scope_is_empty_and_audited(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    mark = _last_audit_id(db)
    r = client.get(
        f"/fhir/Observation?subject=Patient/{clinic.patient_c}", headers=auth(clinic.dr_lee)
    )
    assert r.status_code == 200 and r.json()["total"] == 0
    denied = _audit_rows(db, mark, "access.denied")
    assert [row[2] for row in denied] == [clinic.patient_c]


# --- 6. denials not audited ---------------------------------------------------------------


def test_every_denial_leaves_an_access_denied_row(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: FHIR reads by id outside the caller's scope answered 404 without a row."""
    obs = db.execute(
        "SELECT reading_id FROM blood_pressure WHERE patient_id = %s LIMIT 1", (clinic.patient_a,)
    ).fetchone()
    assert obs is not None
    from api.fhir.resources import device_fhir_id

    ray, bob = auth(clinic.dr_ray), auth(clinic.user_b)
    attempts = [
        (ray, f"/fhir/Patient/{clinic.patient_a}", 404),
        (ray, f"/fhir/Observation/bp-{obs[0]}", 404),
        (ray, f"/fhir/Device/{device_fhir_id(clinic.device_cuff)}", 404),
        (ray, f"/fhir/Flag/{clinic.flags['urgent_low_glucose']}", 404),
        (bob, f"/fhir/Patient/{clinic.patient_a}", 404),
        (bob, f"/fhir/Flag/{clinic.flags['urgent_low_glucose']}", 403),
        (bob, "/fhir/Flag", 403),
        (ray, f"/api/v1/patients/{clinic.patient_a}", 404),
        (bob, "/api/v1/flags", 403),
        (bob, f"/api/v1/flags/{clinic.flags['urgent_low_glucose']}", 403),
        (ray, f"/api/v1/flags/{clinic.flags['urgent_low_glucose']}", 404),
    ]
    mark = _last_audit_id(db)
    for headers, url, expected in attempts:
        r = client.get(url, headers=headers)
        assert r.status_code == expected, (url, r.status_code, r.text)
    denied = _audit_rows(db, mark, "access.denied")
    assert len(denied) == len(attempts), [row[3] for row in denied]


def test_denial_sweep_over_every_patient_route(
    app: Any, client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Every GET route of /api/v1 naming a patient, asked by a clinician of another
    clinic and by another patient (404 each), and every staff or admin route asked by a
    patient (403 each): one ``access.denied`` row per refusal."""
    patient_routes = sorted(
        path.replace("{patient_id}", str(clinic.patient_a))
        for path, operations in app.openapi()["paths"].items()
        if "get" in operations
        and path.startswith("/api/v1/patients/{patient_id}")
        and path.count("{") == 1
    )
    assert len(patient_routes) >= 10
    staff_routes = [
        "/api/v1/panel",
        "/api/v1/flags",
        "/api/v1/users",
        "/api/v1/audit",
        f"/api/v1/users/{1}/panel",
        "/api/v1/billing/rpm?period_start=2026-01-01",
    ]
    attempts = [(clinic.dr_ray, url, 404) for url in patient_routes]
    attempts += [(clinic.user_b, url, 404) for url in patient_routes]
    attempts += [(clinic.user_b, url, 403) for url in staff_routes]
    mark = _last_audit_id(db)
    for who, url, expected in attempts:
        r = client.get(url, headers=auth(who))
        assert r.status_code == expected, (who, url, r.status_code, r.text)
    denied = _audit_rows(db, mark, "access.denied")
    assert len(denied) == len(attempts)


def test_admin_user_list_is_audited(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    mark = _last_audit_id(db)
    assert client.get("/api/v1/users", headers=auth(clinic.admin)).status_code == 200
    assert len(_audit_rows(db, mark, "user.list")) == 1


def test_cli_add_user_is_audited(
    database_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from homevitals.cli import cli

    monkeypatch.setenv("HOMEVITALS_DATABASE_URL", database_url)
    mark = _last_audit_id(db)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(
        cli,
        ["api", "add-user", name, "--role", "clinician", "--password", "x" * 12],
    )
    assert result.exit_code == 0, result.output
    rows = _audit_rows(db, mark, "user.create")
    assert len(rows) == 1 and rows[0][0].startswith("cli:")
    assert rows[0][4]["username"] == name


def test_cli_patients_add_refuses_service_accounts_and_other_patients_hubs(
    database_url: str, db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``homevitals patients add P --gateway <hub of another patient>`` moved the
    hub and every device on it into P's chart, with no audit row; a service account's
    name became a hub."""
    from click.testing import CliRunner

    from homevitals.cli import cli

    monkeypatch.setenv("HOMEVITALS_DATABASE_URL", database_url)
    tag = uuid.uuid4().hex[:6]
    owner = upsert_patient(db, f"own-{tag}", "UTC", "Olga Owner", None, None)
    hub = f"gw-own-{tag}"
    attach_gateway(db, hub, owner)
    mark = _last_audit_id(db)
    runner = CliRunner()
    for gateway in (hub, "homevitals-admin", "HomeVitals-Ingest"):
        result = runner.invoke(cli, ["patients", "add", f"thief-{tag}", "--gateway", gateway])
        assert result.exit_code == 2, result.output
    assert db.execute("SELECT patient_id FROM gateways WHERE id = %s", (hub,)).fetchone() == (
        owner,
    )
    assert db.execute(
        "SELECT count(*) FROM gateways WHERE lower(id) LIKE 'homevitals-%%'"
    ).fetchone() == (0,)
    refused = _audit_rows(db, mark, "patient.enroll")
    assert len(refused) == 3 and all(row[0].startswith("cli:") for row in refused)
    ok = runner.invoke(cli, ["patients", "add", f"new-{tag}", "--gateway", f"gw-new-{tag}"])
    assert ok.exit_code == 0, ok.output
    assert len(_audit_rows(db, mark, "patient.enroll")) == 4


# --- 7. Host header forgery ----------------------------------------------------------------


def test_smart_configuration_ignores_the_host_header(client: TestClient) -> None:
    """Before: ``token_endpoint`` was https://evil.example/api/v1/auth/token."""
    r = client.get(
        "/fhir/.well-known/smart-configuration",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert r.status_code == 200
    assert "evil" not in r.text
    meta = client.get("/fhir/metadata", headers={"Host": "evil.example"})
    assert "evil" not in meta.text


def test_links_ignore_the_host_header(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    """Bundle fullUrl/self/next and REST ``next`` come from PUBLIC_BASE_URL too."""
    evil = {**auth(clinic.dr_lee), "Host": "evil.example"}
    bundle = client.get(f"/fhir/Observation?patient={clinic.patient_a}&_count=1", headers=evil)
    assert bundle.status_code == 200
    assert "evil" not in bundle.text and "https://testserver/fhir/Observation?" in bundle.text
    page = client.get(f"/api/v1/patients/{clinic.patient_a}/devices?limit=1", headers=evil)
    assert page.json()["next"].startswith("https://testserver/api/v1/patients/")


# --- 8. dashboard sign-out from an error page ----------------------------------------------


def _dashboard_login(client: TestClient, username: str) -> None:
    import re

    page = client.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/dashboard/login",
        data={"username": username, "password": "correct horse battery staple", "csrf": token[1]},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


@pytest.mark.parametrize(
    "path", ["/dashboard/patients/{c}", "/dashboard/patients/abc", "/dashboard/nowhere"]
)
def test_sign_out_from_an_error_page_ends_the_session(app: Any, clinic: Clinic, path: str) -> None:
    """Before: the Not found page's sign-out form had an empty CSRF token, so "Sign out"
    left the session alive."""
    import re

    with TestClient(app, base_url="https://testserver") as browser:
        _dashboard_login(browser, clinic.dr_lee)
        page = browser.get(path.format(c=clinic.patient_c))
        assert page.status_code in (404, 422)
        form = re.search(r'action="/dashboard/logout">.*?name="csrf" value="([^"]*)"', page.text)
        assert form is not None, page.text
        out = browser.post("/dashboard/logout", data={"csrf": form[1]}, follow_redirects=False)
        assert out.status_code == 303
        assert (
            browser.get("/dashboard/", follow_redirects=False)
            .headers["location"]
            .endswith("/login")
        )


# --- 9. FHIR Device.specialization and Flag reads by patients -----------------------------


def test_patient_gets_403_on_flag_read(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    r = client.get(f"/fhir/Flag/{clinic.flags['urgent_low_glucose']}", headers=auth(clinic.user_a))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("profile", "code"),
    [
        ("glucose-meter", "528401"),
        ("glucose-meter-month13", "528401"),
        ("bp-cuff", "528391"),
        ("bp-cuff-unsent-only", "528391"),
        ("cgm", "528409"),
        ("weight-scale", "528399"),
        ("pulse-oximeter", "528388"),
        ("thermometer", "528392"),
    ],
)
def test_device_specialization_for_every_profile(
    client: TestClient,
    auth: Auth,
    two_patients: dict[str, Any],
    db: psycopg.Connection[Any],
    profile: str,
    code: str,
) -> None:
    """Before: glucose meters, cuffs, scales and oximeters had no specialization (the
    table was keyed by reading kind; devices store profile ids)."""
    from api.fhir.resources import device_fhir_id

    device = f"spec-{profile}-{uuid.uuid4().hex[:6]}"
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, %s)", (device, profile))
    bind_device(db, device, two_patients["pid"], datetime.now(UTC) - timedelta(days=1))
    r = client.get(
        f"/fhir/Device/{device_fhir_id(device)}", headers=auth(two_patients["clinician"])
    )
    assert r.status_code == 200, r.text
    specs = r.json().get("specialization", [])
    assert [c["code"] for s in specs for c in s["systemType"]["coding"]] == [code]


def test_every_device_profile_has_a_specialization() -> None:
    """A new profile (or reading kind) without a specialization fails here, not in an EHR."""
    from api.fhir.resources import SPECIALIZATION, device_family
    from device_profiles import Kind
    from device_profiles.profiles import PROFILES

    assert set(SPECIALIZATION) == set(Kind)
    assert all(device_family(p) is not None for p in PROFILES)
