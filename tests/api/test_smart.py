"""SMART Backend Services: system clients sign in with client credentials, read FHIR
within their scopes and their clinician's panel only, are refused everything else, and
every read is audited under the client's name."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest
from api_helpers import Clinic, validated
from fastapi.testclient import TestClient

from api.smart.clients import ClientError, register_client, revoke_client

TOKEN = "/api/v1/auth/token"


def _client(db: psycopg.Connection[Any], clinic: Clinic, name: str, scope: str) -> tuple[str, str]:
    client_id = f"{name}-{clinic.tag}"
    _, secret = register_client(db, client_id, scope, clinic.dr_lee)
    return client_id, secret


def _token(client: TestClient, client_id: str, secret: str, scope: str | None) -> Any:
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope is not None:
        data["scope"] = scope
    return client.post(TOKEN, data=data)


def _bearer(response: Any) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module")
def ehr(db: psycopg.Connection[Any], clinic: Clinic) -> tuple[str, str]:
    return _client(db, clinic, "ehr", "system/Observation.rs")


def test_smart_configuration_and_capability_statement(client: TestClient) -> None:
    r = client.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    conf = r.json()
    assert conf["token_endpoint"].endswith(TOKEN)
    assert conf["grant_types_supported"] == ["client_credentials"]
    assert "client_secret_basic" in conf["token_endpoint_auth_methods_supported"]
    assert "system/Observation.rs" in conf["scopes_supported"]
    security = validated(client.get("/fhir/metadata"))["rest"][0]["security"]
    assert security["extension"][0]["extension"][0]["valueUri"] == conf["token_endpoint"]
    codes = {s["coding"][0]["code"] for s in security["service"]}
    assert "SMART-on-FHIR" in codes


def test_scopes_beyond_registration_are_dropped(client: TestClient, ehr: tuple[str, str]) -> None:
    r = _token(client, *ehr, "system/Observation.rs system/Patient.rs system/Flag.r openid")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/Observation.rs"
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    assert r.headers["cache-control"] == "no-store"
    narrowed = _token(client, *ehr, "system/Observation.r")
    assert narrowed.json()["scope"] == "system/Observation.r"
    default = _token(client, *ehr, None)  # no scope asked: the registration
    assert default.json()["scope"] == "system/Observation.rs"


def test_basic_client_authentication(client: TestClient, ehr: tuple[str, str]) -> None:
    basic = base64.b64encode(f"{ehr[0]}:{ehr[1]}".encode()).decode()
    r = client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": "system/Observation.s"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Observation.s"


def test_client_searches_observations_of_its_panel_only(
    client: TestClient, ehr: tuple[str, str], clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    headers = _bearer(_token(client, *ehr, "system/Observation.rs"))
    own = validated(
        client.get(
            "/fhir/Observation",
            params={"patient": f"Patient/{clinic.patient_a}", "_count": 5},
            headers=headers,
        )
    )
    assert own["total"] > 0
    first = own["entry"][0]["resource"]
    assert first["subject"]["reference"] == f"Patient/{clinic.patient_a}"
    validated(client.get(f"/fhir/Observation/{first['id']}", headers=headers))
    # Patient C is on Dr Ray's panel, not Dr Lee's: invisible, as to Dr Lee.
    other = validated(
        client.get("/fhir/Observation", params={"patient": str(clinic.patient_c)}, headers=headers)
    )
    assert other["total"] == 0
    everything = validated(client.get("/fhir/Observation", params={"_count": 500}, headers=headers))
    subjects = {e["resource"]["subject"]["reference"] for e in everything["entry"]}
    assert subjects <= {f"Patient/{clinic.patient_a}", f"Patient/{clinic.patient_b}"}
    rows = db.execute(
        "SELECT actor, role, action, patient_id, actor_id FROM audit_log"
        " WHERE actor = %s AND action LIKE 'fhir.%%' ORDER BY id",
        (f"client:{ehr[0]}",),
    ).fetchall()
    actions = {(r[2], r[3]) for r in rows}
    assert ("fhir.observation.search", clinic.patient_a) in actions
    assert ("fhir.observation.read", clinic.patient_a) in actions
    assert all(r[1] == "system" and r[4] is None for r in rows)
    signin = db.execute(
        "SELECT role, status, detail->>'scope' FROM audit_log WHERE actor = %s"
        " AND action = 'auth.client' ORDER BY id DESC LIMIT 1",
        (f"client:{ehr[0]}",),
    ).fetchone()
    assert signin == ("system", 200, "system/Observation.rs")


def test_client_refused_without_scope_and_outside_fhir(
    client: TestClient, ehr: tuple[str, str], clinic: Clinic, db: psycopg.Connection[Any]
) -> None:
    headers = _bearer(_token(client, *ehr, None))
    denied = validated(client.get(f"/fhir/Patient/{clinic.patient_a}", headers=headers), 403)
    assert "system/Patient.r" in denied["issue"][0]["diagnostics"]
    validated(client.get("/fhir/Patient", headers=headers), 403)
    validated(client.get("/fhir/Flag", headers=headers), 403)
    validated(client.get("/fhir/Device", headers=headers), 403)
    refusals = db.execute(
        "SELECT resource, status, detail->>'missing_scope' FROM audit_log"
        " WHERE actor = %s AND action = 'access.denied' ORDER BY id DESC LIMIT 4",
        (f"client:{ehr[0]}",),
    ).fetchall()
    assert refusals[::-1] == [
        (f"/fhir/Patient/{clinic.patient_a}", 403, "system/Patient.r"),
        ("/fhir/Patient", 403, "system/Patient.s"),
        ("/fhir/Flag", 403, "system/Flag.s"),
        ("/fhir/Device", 403, "system/Device.s"),
    ]
    flag = clinic.flags["cgm_tbr_over_target"]
    pid = clinic.patient_a
    for method, path in (
        ("GET", "/api/v1/flags"),
        ("POST", f"/api/v1/flags/{flag}/acknowledge"),
        ("GET", f"/api/v1/patients/{pid}/targets"),
        ("PUT", f"/api/v1/patients/{pid}/targets"),
        ("GET", f"/api/v1/patients/{pid}/readings/glucose"),
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/panel"),
    ):
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 403, (path, r.text)
        assert "system client tokens may only read FHIR" in r.json()["detail"]
    page = client.get(f"/dashboard/patients/{pid}", headers=headers, follow_redirects=False)
    assert page.status_code in (303, 401)  # a bearer token is no dashboard session


def test_wrong_secret_unknown_client_and_throttle(
    client: TestClient, db: psycopg.Connection[Any], clinic: Clinic
) -> None:
    client_id, secret = _client(db, clinic, "throttled", "system/Observation.rs")
    unknown = _token(client, f"nobody-{clinic.tag}", "x", None)
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    for _ in range(5):
        r = _token(client, client_id, "wrong-secret", None)
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_client"
    limited = _token(client, client_id, secret, None)  # right secret, but locked out
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    statuses = [
        row[0]
        for row in db.execute(
            "SELECT status FROM audit_log WHERE actor = %s AND action = 'auth.client' ORDER BY id",
            (f"client:{client_id}",),
        ).fetchall()
    ]
    assert statuses == [401] * 5 + [429]


@pytest.mark.parametrize(
    ("data", "headers", "status", "error"),
    [
        ({"grant_type": "authorization_code", "code": "x"}, {}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials"}, {}, 401, "invalid_client"),
        (
            {"grant_type": "client_credentials", "client_id": "x" * 5000, "client_secret": "y"},
            {},
            401,
            "invalid_client",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": "a",
                "client_secret": "b",
                "scope": 'system/Observation.rs "quoted"',
            },
            {},
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials"},
            {"Authorization": "Basic !!!"},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "client_credentials", "client_secret": "s"},
            {"Authorization": "Basic YTpi"},
            400,
            "invalid_request",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_assertion": "e30.e30.",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            },
            {},
            400,
            "invalid_client",
        ),
    ],
)
def test_malformed_token_requests(
    client: TestClient, data: dict[str, str], headers: dict[str, str], status: int, error: str
) -> None:
    r = client.post(TOKEN, data=data, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error and body["error_description"] == body["detail"]


def test_scope_outside_registration_is_invalid_scope(
    client: TestClient, ehr: tuple[str, str]
) -> None:
    r = _token(client, *ehr, "system/Patient.rs system/Flag.rs")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


def test_registration_changes_apply_to_live_tokens(
    client: TestClient, db: psycopg.Connection[Any], clinic: Clinic
) -> None:
    client_id, secret = _client(db, clinic, "rotating", "system/Observation.rs system/Patient.rs")
    headers = _bearer(_token(client, client_id, secret, None))
    validated(client.get(f"/fhir/Patient/{clinic.patient_a}", headers=headers))
    register_client(db, client_id, "system/Observation.rs", clinic.dr_lee)  # narrowed
    validated(client.get(f"/fhir/Patient/{clinic.patient_a}", headers=headers), 403)
    assert revoke_client(db, client_id)
    validated(client.get("/fhir/Observation", headers=headers), 401)


def test_registration_is_validated(db: psycopg.Connection[Any], clinic: Clinic) -> None:
    with pytest.raises(ClientError, match="clinician"):
        register_client(db, f"bad-{clinic.tag}", "system/Observation.rs", clinic.admin)
    with pytest.raises(ClientError, match="no grantable scope"):
        register_client(db, f"bad-{clinic.tag}", "system/Observation.cud", clinic.dr_lee)
    with pytest.raises(ClientError, match="client id"):
        register_client(db, "a b", "system/Observation.rs", clinic.dr_lee)
    assert not revoke_client(db, f"missing-{clinic.tag}")
