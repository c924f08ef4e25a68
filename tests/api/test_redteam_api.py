"""Red-team findings B8-B11, the audit gaps and the smaller ones (API side), each
written as the attacker ran it; each was run against the code before its fix and
failed there (docs/api.md "Attacks this suite replays").
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from api_helpers import PASSWORD, Auth, Clinic
from fastapi.testclient import TestClient
from waiting import wait_until

from api.bootstrap import add_to_panel, create_user
from api.core.config import ApiSettings
from homevitals.services.system import free_port
from ingest.patients import upsert_patient
from ingest.registry import bind_device

REPO = Path(__file__).resolve().parents[2]


def _mark(db: psycopg.Connection[Any]) -> int:
    row = db.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()
    assert row is not None
    return int(row[0])


def _rows(db: psycopg.Connection[Any], since: int, action: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT actor, status, patient_id, resource, detail, client_ip FROM audit_log"
        " WHERE id > %s AND action = %s ORDER BY id",
        (since, action),
    ).fetchall()


def _browser(app: Any, username: str) -> TestClient:
    browser = TestClient(app, base_url="https://testserver")
    page = browser.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = browser.post(
        "/dashboard/login",
        data={"username": username, "password": PASSWORD, "csrf": token[1]},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return browser


def _page_csrf(browser: TestClient, path: str) -> str:
    page = browser.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return found[1]


def _clinician(db: psycopg.Connection[Any], patient_id: int) -> str:
    name = f"rt-{uuid.uuid4().hex[:8]}"
    create_user(db, name, PASSWORD, "clinician")
    db.execute(
        "INSERT INTO clinician_panel (clinician_id, patient_id)"
        " SELECT id, %s FROM users WHERE username = %s",
        (patient_id, name),
    )
    return name


def _open_flag(db: psycopg.Connection[Any], patient_id: int) -> int:
    row = db.execute(
        "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence)"
        " VALUES (%s, %s, 'low', 'red team', '{}') RETURNING id",
        (patient_id, f"redteam_{uuid.uuid4().hex[:8]}"),
    ).fetchone()
    assert row is not None
    return int(row[0])


# --- B8. signing out ends the session; a reset ends every token ---------------------------


def test_b8_old_session_cookie_is_dead_after_sign_out(
    app: Any, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: 303 and the cookie cleared in the browser only; the copied cookie still
    read the patient page (200) and resolved a flag, audited as the signed-out user."""
    flag = _open_flag(db, clinic.patient_a)
    browser = _browser(app, clinic.dr_lee)
    csrf = _page_csrf(browser, f"/dashboard/patients/{clinic.patient_a}")
    stolen = browser.cookies.get("hv_session")
    assert stolen
    mark = _mark(db)
    out = browser.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert [r[0] for r in _rows(db, mark, "auth.logout")] == [clinic.dr_lee]

    with TestClient(app, base_url="https://testserver") as replay:
        replay.cookies.set("hv_session", stolen, path="/dashboard")
        page = replay.get(f"/dashboard/patients/{clinic.patient_a}", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        post = replay.post(
            f"/dashboard/flags/{flag}/resolve",
            data={"csrf": csrf, "note": "replayed"},
            follow_redirects=False,
        )
        assert post.status_code == 303 and post.headers["location"] == "/dashboard/login"
    state = db.execute("SELECT status FROM flags WHERE id = %s", (flag,)).fetchone()
    assert state is not None and state[0] == "open"
    assert _rows(db, mark, "flag.resolve") == []


@pytest.mark.parametrize("change", [{"password": "another long passphrase"}, {"active": False}])
def test_b8_reset_or_disable_revokes_bearer_tokens_and_sessions(
    app: Any, client: TestClient, auth: Auth, clinic: Clinic, change: dict[str, Any]
) -> None:
    """Before: after a password reset the bearer token kept answering 200 (only refresh
    tokens were revoked) and so did the dashboard session."""
    db_user = f"rt-reset-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(app.state.settings.database_url, autocommit=True) as db:
        user_id = create_user(db, db_user, PASSWORD, "clinician")
    bearer = {"Authorization": f"Bearer {auth.token(db_user)['access_token']}"}
    browser = _browser(app, db_user)
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200
    r = client.patch(f"/api/v1/users/{user_id}", json=change, headers=auth(clinic.admin))
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    page = browser.get("/dashboard/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    if "password" in change:
        fresh = auth.token(db_user, change["password"])["access_token"]
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh}"})
        assert me.status_code == 200


def test_b8_api_logout_revokes_the_access_token_too(
    client: TestClient, auth: Auth, clinic: Clinic
) -> None:
    pair = auth.token(clinic.user_b)
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200
    out = client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert out.status_code == 204
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401


# --- B9. the client address is the TCP peer ------------------------------------------------


@pytest.fixture(params=[None])
def api_run(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """``homevitals api run`` (one worker) as a subprocess; ``request.param``: the value
    of HOMEVITALS_API_TRUSTED_PROXIES, if any."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEVITALS_")}
    env.update(
        HOMEVITALS_DATABASE_URL=database_url,
        HOMEVITALS_MQTT_URL="mqtt://127.0.0.1:1",
        HOMEVITALS_STATE_DIR=str(tmp_path / "state"),
        HOMEVITALS_CONFIG=str(tmp_path / "absent.toml"),
    )
    if request.param is not None:
        env["HOMEVITALS_API_TRUSTED_PROXIES"] = request.param
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "homevitals", "api", "run", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/api/v1/health", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(serving, 90.0, what=log_path.read_text, step=0.25)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def test_b9_forwarded_for_does_not_rotate_the_sign_in_limit(
    api_run: str, db: psycopg.Connection[Any]
) -> None:
    """Before: 12 failed sign-ins with a new X-Forwarded-For each never got a 429, and
    the audit log held the 12 forged addresses."""
    username = f"rt-xff-{uuid.uuid4().hex[:6]}"
    create_user(db, username, PASSWORD, "clinician")
    mark = _mark(db)
    codes = []
    with httpx.Client(base_url=api_run, timeout=30.0) as http:
        for i in range(12):
            r = http.post(
                "/api/v1/auth/token",
                data={"username": username, "password": "wrong"},
                headers={"X-Forwarded-For": f"203.0.113.{i + 1}", "X-Forwarded-Proto": "https"},
            )
            codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    ips = {row[5] for row in _rows(db, mark, "auth.login") if row[0] == username}
    assert ips == {"127.0.0.1"}


@pytest.mark.parametrize("api_run", ["127.0.0.1"], indirect=True)
def test_b9_trusted_proxies_opt_in(api_run: str, db: psycopg.Connection[Any]) -> None:
    """Behind a real proxy (HOMEVITALS_API_TRUSTED_PROXIES) its X-Forwarded-For is the
    client address again."""
    username = f"rt-xff-{uuid.uuid4().hex[:6]}"
    mark = _mark(db)
    with httpx.Client(base_url=api_run, timeout=30.0) as http:
        r = http.post(
            "/api/v1/auth/token",
            data={"username": username, "password": "wrong"},
            headers={"X-Forwarded-For": "198.51.100.7"},
        )
    assert r.status_code == 401
    ips = {row[5] for row in _rows(db, mark, "auth.login") if row[0] == username}
    assert ips == {"198.51.100.7"}


# --- B10. no redirect built from the Host header -------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/patients/",
        "/api/v1/flags/",
        "/fhir/Observation/",
        "/fhir/metadata/",
        "/dashboard",
        "/dashboard/login/",
    ],
)
def test_b10_trailing_slash_redirects_ignore_the_host_header(
    client: TestClient, auth: Auth, clinic: Clinic, path: str
) -> None:
    """Before: 307 to https://evil.example/... on every router."""
    r = client.get(
        path,
        headers={**auth(clinic.dr_lee), "Host": "evil.example"},
        follow_redirects=False,
    )
    location = r.headers.get("location", "")
    assert "evil" not in location, (r.status_code, location)
    # Still redirected, on PUBLIC_BASE_URL.
    twin = path.rstrip("/") if path.endswith("/") else path + "/"
    assert (r.status_code, location) == (307, f"https://testserver{twin}")


# --- B11. FHIR patient filters are applied or refused ---------------------------------------


def _subjects(bundle: dict[str, Any]) -> set[str]:
    out = set()
    for entry in bundle.get("entry", []):
        res = entry["resource"]
        ref = (res.get("subject") or res.get("patient") or {}).get("reference")
        out.add(ref)
    return out


@pytest.fixture(scope="module")
def empty_patient(db: psycopg.Connection[Any], clinic: Clinic) -> tuple[str, str]:
    """(a clinician with patient A and a patient E with no data on the panel, E's MRN):
    a search for E must find nothing, never A's data."""
    mrn = f"MRN-E-{uuid.uuid4().hex[:8]}".upper()
    pid = upsert_patient(db, f"rt-{mrn.lower()}", "UTC", "Eve Empty", mrn, None)
    name = _clinician(db, clinic.patient_a)
    add_to_panel(db, name, pid)
    return name, mrn


@pytest.mark.parametrize(
    "name",
    [
        "subject.identifier",
        "subject:identifier",
        "patient:identifier",
        "subject:Patient.identifier",
        "patient.identifier",
        "patient:Patient.identifier",
    ],
)
@pytest.mark.parametrize("resource", ["Observation", "Flag"])
def test_b11_patient_identifier_forms_narrow(
    client: TestClient,
    auth: Auth,
    clinic: Clinic,
    empty_patient: tuple[str, str],
    name: str,
    resource: str,
) -> None:
    """Before: ``subject.identifier``, ``subject:identifier`` and ``patient:identifier``
    were dropped under lenient handling: patient E's MRN gave patient A's 4000+
    Observations (the whole panel)."""
    lee = auth(empty_patient[0])
    mrn_a, mrn_b = f"MRN{clinic.tag}A".upper(), empty_patient[1]
    for_b = client.get(f"/fhir/{resource}?{name}={mrn_b}&_count=5", headers=lee)
    assert for_b.status_code == 200, for_b.text
    assert for_b.json()["total"] == 0
    for_a = client.get(f"/fhir/{resource}?{name}=urn:homevitals:mrn|{mrn_a}&_count=5", headers=lee)
    assert for_a.status_code == 200 and for_a.json()["total"] > 0
    assert _subjects(for_a.json()) == {f"Patient/{clinic.patient_a}"}


def test_b11_device_identifier_modifier(
    client: TestClient, auth: Auth, empty_patient: tuple[str, str]
) -> None:
    lee = auth(empty_patient[0])
    mrn_b = empty_patient[1]
    r = client.get(f"/fhir/Device?patient:identifier={mrn_b}", headers=lee)
    assert r.status_code == 200 and r.json()["total"] == 0


def test_b11_flag_id(client: TestClient, auth: Auth, clinic: Clinic) -> None:
    """Before: ``Flag?_id=X`` returned all 3 of patient A's flags."""
    lee = auth(clinic.dr_lee)
    flag = clinic.flags["urgent_low_glucose"]
    r = client.get(f"/fhir/Flag?_id={flag}", headers=lee)
    assert r.status_code == 200
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [str(flag)]


@pytest.mark.parametrize(
    "query",
    [
        "Device?subject={b}",
        "Device?subject:Patient={b}",
        "Observation?subject.name=Baker",
        "Observation?patient:missing=false",
        "Observation?subject:missing=true",
        "Observation?_has:Flag:patient:status=active",
        "Flag?patient.birthdate=1960-05-17",
        "Patient?_has:Observation:patient:code=1234",
        "Patient?_revinclude=Observation:subject",
        "Observation?_include=Observation:patient",
        "Patient?family=Baker",
        "Patient?_id:not=1",
    ],
)
def test_b11_unsupported_patient_filters_are_refused_even_lenient(
    client: TestClient, auth: Auth, clinic: Clinic, query: str
) -> None:
    """Before: each answered 200 with everything the caller may see."""
    r = client.get(f"/fhir/{query.format(b=clinic.patient_b)}", headers=auth(clinic.dr_lee))
    assert r.status_code == 400, r.text[:300]
    assert r.json()["resourceType"] == "OperationOutcome"


# --- Audit gaps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "Patient?_id={c}",
        "Patient?identifier={mrn_c}",
        "Patient?_id={a},{c}",
        "Observation?patient={a}&patient={c}",
    ],
)
def test_audit_fhir_search_naming_an_outside_patient(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any], query: str
) -> None:
    """Before: no ``access.denied`` row for any of these."""
    mrn_c = f"MRN{clinic.tag}C".upper()
    url = "/fhir/" + query.format(a=clinic.patient_a, c=clinic.patient_c, mrn_c=mrn_c)
    mark = _mark(db)
    r = client.get(url, headers=auth(clinic.dr_lee))
    assert r.status_code == 200
    denied = [row[2] for row in _rows(db, mark, "access.denied")]
    assert denied == [clinic.patient_c]


def test_audit_gateway_sign_ins(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: no audit row for a gateway's sign-in, its failure or its 429."""
    code = client.post(
        f"/api/v1/patients/{clinic.patient_b}/gateway-code", headers=auth(clinic.dr_lee)
    ).json()["code"]
    gw = f"gw-rt-{uuid.uuid4().hex[:6]}"
    enrolled = client.post(
        "/api/v1/gateways/enroll", json={"enrollment_code": code, "gateway_id": gw}
    )
    assert enrolled.status_code == 201, enrolled.text
    secret = enrolled.json()["mqtt_password"]
    mark = _mark(db)
    ok = client.post("/api/v1/gateways/token", json={"gateway_id": gw, "secret": secret})
    assert ok.status_code == 200
    codes = [
        client.post(
            "/api/v1/gateways/token", json={"gateway_id": gw, "secret": "x" * 20}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    rows = _rows(db, mark, "gateway.token")
    assert [r[1] for r in rows] == [200] + [401] * 5 + [429]
    assert {r[0] for r in rows} == {gw} and rows[0][2] == clinic.patient_b


def test_audit_dashboard_csrf_failures_and_sign_out(
    app: Any, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: a forged form (403), a form without its token (422) and a sign-out left
    no row."""
    flag = _open_flag(db, clinic.patient_a)
    browser = _browser(app, clinic.dr_lee)
    mark = _mark(db)
    bad = browser.post(f"/dashboard/flags/{flag}/resolve", data={"csrf": "0" * 64, "note": "x"})
    assert bad.status_code == 403
    missing = browser.post(f"/dashboard/flags/{flag}/resolve", data={"note": "x"})
    assert missing.status_code == 422
    rows = _rows(db, mark, "access.denied")
    assert [(r[0], r[1]) for r in rows] == [(clinic.dr_lee, 403), (clinic.dr_lee, 422)], rows
    assert all(r[4].get("reason", "").startswith("csrf") for r in rows)
    csrf = _page_csrf(browser, "/dashboard/")
    browser.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)
    assert [r[0] for r in _rows(db, mark, "auth.logout")] == [clinic.dr_lee]


def test_audit_custody_refusal_names_the_patients(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: the ``access.denied`` row of a refused decision had no patient id."""
    row = db.execute(
        "INSERT INTO custody_requests (device_id, from_gateway, from_patient, to_gateway,"
        " to_patient, event, requested_at) VALUES (%s, 'gw-x', %s, 'gw-y', %s, 'paired', now())"
        " RETURNING id",
        (f"dev-rt-{uuid.uuid4().hex[:6]}", clinic.patient_c, clinic.patient_a),
    ).fetchone()
    assert row is not None
    mark = _mark(db)
    r = client.post(
        f"/api/v1/custody/requests/{row[0]}/approve",
        json={"reason": "take it"},
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code == 404
    denied = sorted(r[2] for r in _rows(db, mark, "access.denied"))
    assert denied == sorted([clinic.patient_a, clinic.patient_c])


# --- Smaller ----------------------------------------------------------------------------------


def test_cookie_secure_follows_the_public_url(database_url: str) -> None:
    secret = secrets.token_urlsafe(48)
    https = ApiSettings(database_url=database_url, jwt_secret=secret, public_base_url="https://x")
    http = ApiSettings(database_url=database_url, jwt_secret=secret, public_base_url="http://x")
    assert https.cookie_secure is True and http.cookie_secure is False


def test_session_cookie_is_secure_on_https(app: Any, clinic: Clinic) -> None:
    browser = TestClient(app, base_url="https://testserver")
    page = browser.get("/dashboard/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = browser.post(
        "/dashboard/login",
        data={"username": clinic.dr_lee, "password": PASSWORD, "csrf": token[1]},
        follow_redirects=False,
    )
    assert "Secure" in r.headers["set-cookie"]


def test_login_csrf_refuses_a_planted_pair(app: Any, clinic: Clinic) -> None:
    """Before: any cookie value equal to the form field was accepted (a planted pair)."""
    browser = TestClient(app, base_url="https://testserver")
    browser.cookies.set("hv_login_csrf", "x" * 32, path="/dashboard")
    r = browser.post(
        "/dashboard/login",
        data={"username": clinic.dr_lee, "password": PASSWORD, "csrf": "x" * 32},
        follow_redirects=False,
    )
    assert r.status_code == 400


def test_create_patient_does_not_reveal_another_clinics_mrn(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: 409 "a patient with this MRN exists" to a clinician of another clinic."""
    mrn_c = f"MRN{clinic.tag}C".upper()
    body = {
        "given_name": "X",
        "family_name": "Y",
        "birth_date": "1970-01-01",
        "timezone": "UTC",
    }
    mark = _mark(db)
    clash = client.post(
        "/api/v1/patients", json={**body, "mrn": mrn_c}, headers=auth(clinic.dr_lee)
    )
    assert "MRN" not in clash.text and "mrn" not in clash.text.lower()
    ext = client.post(
        "/api/v1/patients",
        json={**body, "mrn": f"NEW{uuid.uuid4().hex[:8]}", "external_id": f"api-{clinic.tag}-c"},
        headers=auth(clinic.dr_lee),
    )
    assert (clash.status_code, clash.json()) == (ext.status_code, ext.json())
    denied = [r[2] for r in _rows(db, mark, "access.denied")]
    assert denied == [clinic.patient_c, clinic.patient_c]


def test_device_move_before_the_losing_patients_later_readings_is_refused(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Before: 200; the move dated before patient A's later reading left A's chart with a
    reading the bindings give to B."""
    device = f"cuff-rt-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    db.execute("INSERT INTO devices (id, profile) VALUES (%s, 'blood_pressure')", (device,))
    bind_device(db, device, clinic.patient_a, now - timedelta(days=5))
    db.execute(
        "INSERT INTO blood_pressure (time, reading_id, device_id, patient_id, systolic,"
        " diastolic, conditions) VALUES (%s, %s, %s, %s, 120, 80, '{}')",
        (now - timedelta(days=1), uuid.uuid4(), device, clinic.patient_a),
    )
    r = client.post(
        f"/api/v1/patients/{clinic.patient_b}/devices",
        json={"device_id": device, "at": (now - timedelta(days=2)).isoformat(), "reason": "swap"},
        headers=auth(clinic.dr_lee),
    )
    assert r.status_code == 409, r.text
    assert "last reading" in r.json()["detail"]


def test_create_patient_clashes_are_limited(
    client: TestClient, auth: Auth, clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    """Sweeping MRNs through the enrolment answer meets the registration limit."""
    sweeper = _clinician(db, clinic.patient_a)
    body = {"given_name": "X", "family_name": "Y", "birth_date": "1970-01-01", "timezone": "UTC"}
    mrn_c = f"MRN{clinic.tag}C".upper()
    codes = [
        client.post(
            "/api/v1/patients", json={**body, "mrn": mrn_c}, headers=auth(sweeper)
        ).status_code
        for _ in range(11)
    ]
    assert codes == [409] * 10 + [429]
