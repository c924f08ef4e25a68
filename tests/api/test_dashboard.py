"""Dashboard through the ASGI client: cookie session, CSRF, panel, patient page, forms."""

from __future__ import annotations

import re
from typing import Any

from api_helpers import PASSWORD, Clinic
from fastapi.testclient import TestClient


def _login(app: object, username: str) -> TestClient:
    browser = TestClient(app, base_url="https://testserver")  # type: ignore[arg-type]
    form = browser.get("/dashboard/login")
    assert form.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    r = browser.post(
        "/dashboard/login",
        data={"username": username, "password": PASSWORD, "csrf": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    assert "Path=/dashboard" in cookie
    return browser


def test_requires_login_and_login_csrf(app: object, clinic: Clinic) -> None:
    anon = TestClient(app, base_url="https://testserver")  # type: ignore[arg-type]
    r = anon.get("/dashboard/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    forged = anon.post(
        "/dashboard/login",
        data={"username": clinic.dr_lee, "password": PASSWORD, "csrf": "x" * 20},
        follow_redirects=False,
    )
    assert forged.status_code == 400


def test_clinician_panel_and_patient_page(app: object, clinic: Clinic) -> None:
    browser = _login(app, clinic.dr_lee)
    panel = browser.get("/dashboard/")
    assert panel.status_code == 200
    assert "default-src 'none'" in panel.headers["content-security-policy"]
    assert "Archer" in panel.text and "Cole" not in panel.text
    assert panel.text.index("Archer") < panel.text.index("Baker")
    page = browser.get(f"/dashboard/patients/{clinic.patient_a}")
    assert page.status_code == 200
    for marker in (
        'id="agp-chart"',
        'id="daily-chart"',
        'id="bp-chart"',
        'id="flags"',
        'id="devices"',
    ):
        assert marker in page.text
    assert clinic.device_meter in page.text
    assert browser.get(f"/dashboard/patients/{clinic.patient_c}").status_code == 404


def test_flag_forms_need_the_session_csrf(app: object, clinic: Clinic, db: Any) -> None:
    row = db.execute(
        "INSERT INTO flags (patient_id, rule_id, severity, summary, evidence)"
        " VALUES (%s, 'trend_fasting_glucose_rising', 'medium', 'rising', '{}') RETURNING id",
        (clinic.patient_a,),
    ).fetchone()
    fid = int(row[0])
    browser = _login(app, clinic.dr_lee)
    page = browser.get(f"/dashboard/patients/{clinic.patient_a}").text
    token = re.search(
        rf'flags/{fid}/acknowledge"><input type="hidden" name="csrf" value="([^"]+)"', page
    )
    assert token is not None
    bad = browser.post(f"/dashboard/flags/{fid}/acknowledge", data={"csrf": "nope", "note": "x"})
    assert bad.status_code == 403
    ok = browser.post(
        f"/dashboard/flags/{fid}/acknowledge",
        data={"csrf": token.group(1), "note": "seen <b>now</b>"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    assert ok.headers["location"].endswith(f"#flag-{fid}")
    after = browser.get(f"/dashboard/patients/{clinic.patient_a}").text
    assert f"acknowledged by {clinic.dr_lee}" in after


def test_patient_sees_own_page_without_flag_forms(app: object, clinic: Clinic) -> None:
    browser = _login(app, clinic.user_a)
    home = browser.get("/dashboard/", follow_redirects=False)
    assert home.headers["location"] == f"/dashboard/patients/{clinic.patient_a}"
    page = browser.get(home.headers["location"])
    assert 'id="agp-chart"' in page.text and 'id="flags"' not in page.text
    assert browser.get(f"/dashboard/patients/{clinic.patient_b}").status_code == 404


def test_html_is_escaped(app: object, clinic: Clinic, db: Any) -> None:
    db.execute(
        "UPDATE patients SET given_name = '<script>alert(1)</script>' WHERE id = %s",
        (clinic.patient_b,),
    )
    browser = _login(app, clinic.dr_lee)
    page = browser.get(f"/dashboard/patients/{clinic.patient_b}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
