"""Server-rendered dashboard: clinician panel in triage order, patient pages (AGP, daily
glucose, blood pressure, flags with acknowledge/resolve forms, devices), and the same
patient page for patients about themselves.

Security: a session JWT (``typ=session``, 15 min, renewed on every page) in an
HttpOnly, SameSite=Strict, Secure cookie scoped to ``/dashboard``; every form carries a
CSRF token bound to the session (HMAC of its id); the login form uses a double-submit
token.  Pages send a strict Content-Security-Policy (no scripts at all).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from analytics.flags import FlagNotFoundError, FlagTransitionError, get_flag
from analytics.summary import agp, bp_summary, glucose_summary
from api.core import audit
from api.core.config import ApiSettings
from api.core.principal import Principal
from api.core.revocation import revoke_session
from api.core.security import TokenError, csrf_token, csrf_valid, decode_token
from api.dashboard import charts
from api.dashboard.body import (
    SPO2_LOW,
    BodyVitals,
    Spo2,
    Temperature,
    Weight,
    body_vitals,
    zone,
)
from api.deps import ConnDep, DbId, SettingsDep, can_see, principal_from_token, visible_patients
from api.routes.auth import authenticate, signed_token
from api.routes.flags import FlagAction, transition
from api.routes.panel import triage_panel
from api.routes.patients import fetch_patient, patient_devices
from api.routes.targets import effective
from device_profiles.model import Component, Kind
from readings import KINDS, Display

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "hv_session"
LOGIN_CSRF_COOKIE = "hv_login_csrf"
COOKIE_PATH = "/dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# Every control states both its text and its background colour, so its contrast is what
# the stylesheet says and not the browser's default button face (white on #efefef was
# 1.15:1); tests/api/test_dashboard_contrast.py holds each pair to WCAG 2.x 4.5:1.
STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f8fa}
header{background:#12355b;color:#fff;padding:10px 20px;display:flex;justify-content:space-between}
a{color:#0b4f8a}header a{color:#fff;background:#12355b}
button{color:#fff;background:#12355b;border:1px solid #12355b;border-radius:4px;padding:3px 10px;font:inherit}
header button{color:#12355b;background:#fff;border-color:#fff}
input{color:#1d2733;background:#fff;border:1px solid #5a6b7d;border-radius:3px;padding:2px 6px;font:inherit}
input::placeholder{color:#5a6b7d;background:#fff}
main{padding:16px 20px;max-width:1100px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{padding:6px 8px;border-bottom:1px solid #dde3ea;text-align:left}
.urgent{color:#b00020;font-weight:600}.high{color:#b34d00}.medium{color:#8a6d00}.low{color:#555}
section{background:#fff;margin:14px 0;padding:12px 16px;border:1px solid #dde3ea;border-radius:6px}
svg .grid{stroke:#e3e8ee}svg .tick{font-size:11px;fill:#555}svg .target{fill:#e5f5e9}
svg .outer{fill:#a9c6e8;opacity:.55}svg .inner{fill:#4f86c6;opacity:.6}
svg .median{fill:none;stroke:#12355b;stroke-width:2.5}svg .range{stroke:#4f86c6;stroke-width:3}
svg .mean{fill:#12355b}svg .systolic{fill:none;stroke:#b00020;stroke-width:2}
svg .diastolic{fill:none;stroke:#12355b;stroke-width:2}svg .target-line{stroke:#2e7d32;stroke-dasharray:4 3}
svg .weight{fill:none;stroke:#12355b;stroke-width:2}h3{margin:10px 0 6px;font-size:1.05em}
.stats{display:flex;gap:22px;flex-wrap:wrap}.stat b{display:block;font-size:1.3em}
form.inline{display:inline}.err{color:#b00020}
"""


def _page(title: str, body: str, user: Principal | None = None, csrf: str = "") -> str:
    """A page; with ``user``, the header names them and carries the sign-out form, whose
    ``csrf`` must then be the session's token (an empty one would make "Sign out" a
    silent no-op: use ``_user_page``)."""
    who = ""
    if user is not None:
        assert csrf, "a signed-in page needs the session's CSRF token for its sign-out form"
        who = (
            f"<span>{escape(user.name)} ({escape(user.role)}) "
            f'<form class="inline" method="post" action="{COOKIE_PATH}/logout">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            '<button type="submit">Sign out</button></form></span>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} - HomeVitals</title><style>{STYLE}</style></head><body>"
        f'<header><a href="{COOKIE_PATH}/"><b>HomeVitals</b></a>{who}</header>'
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=SECURITY_HEADERS)


def _user_page(
    settings: ApiSettings, user: Principal, title: str, body: str, status_code: int
) -> HTMLResponse:
    """An error or notice page for a signed-in user: sign-out works from it too."""
    csrf = csrf_token(settings.secret, user.session_id)
    return _html(_page(title, body, user, csrf), status_code)


def error_page(request: Request, status_code: int, detail: str) -> HTMLResponse:
    """The page of an error raised outside a dashboard route's own handling (unknown
    path, invalid path parameter): with a working sign-out form when the request carries
    a valid session.  The signature is checked without the database (an exception
    handler has no connection); signing out then checks the account as usual."""
    settings: ApiSettings = request.app.state.settings
    body = f"<p>{escape(detail)}</p>"
    title = {403: "Forbidden", 404: "Not found"}.get(status_code, "Request not possible")
    token = request.cookies.get(SESSION_COOKIE)
    claims = None
    if token:
        try:
            claims = decode_token(settings.secret, token, "session")
        except TokenError:
            claims = None
    if claims is None or claims.role not in ("patient", "clinician", "admin"):
        return _html(_page(title, body), status_code)
    user = Principal(claims.role, "signed in", None, claims.patient_id, claims.session_id)
    return _user_page(settings, user, title, body, status_code)


def _set_session(
    response: Response, settings: ApiSettings, user: Principal, session_id: str
) -> None:
    token = signed_token(settings, user, "session", session_id)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.access_token_minutes * 60,
        path=COOKIE_PATH,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def _session(
    request: Request, conn: psycopg.Connection[Any], settings: ApiSettings
) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        user = principal_from_token(conn, settings, token, "session")
    except HTTPException:
        return None
    return user if user.is_person else None


def _audit_form_refusal(
    conn: psycopg.Connection[Any],
    request: Request,
    user: Principal | None,
    code: int,
    reason: str,
) -> None:
    """A refused dashboard form (a forged or expired CSRF token, a form without one) is
    on record like every other refusal: ``access.denied`` with the path and why."""
    audit.write(
        conn,
        user,
        "access.denied",
        ip=audit.client_ip(request),
        resource=request.url.path,
        status=code,
        detail={"reason": reason},
    )


def audit_invalid_form(request: Request, code: int) -> None:
    """For the app's validation-error handler: a dashboard POST whose form failed
    validation (e.g. no CSRF field), audited with the session's user if it has one."""
    if request.method != "POST":
        return
    from api.core.db import get_pool

    settings: ApiSettings = request.app.state.settings
    with get_pool(request.app).connection() as conn:
        user = _session(request, conn, settings)
        _audit_form_refusal(conn, request, user, code, "csrf token missing or form invalid")


def _to_login() -> RedirectResponse:
    return RedirectResponse(f"{COOKIE_PATH}/login", status_code=status.HTTP_303_SEE_OTHER)


def _render(
    request: Request,
    settings: ApiSettings,
    user: Principal,
    title: str,
    body: str,
) -> HTMLResponse:
    response = _html(_page(title, body, user, csrf_token(settings.secret, user.session_id)))
    _set_session(response, settings, user, user.session_id)  # sliding renewal
    return response


# --- sign-in -------------------------------------------------------------------------------


LOGIN_CSRF_SECONDS = 900


def _login_csrf_token(secret: bytes) -> str:
    """``<nonce>.<time>.<HMAC(secret, nonce.time)>``: a value only this server can mint,
    so a planted cookie/field pair of the attacker's choosing is refused; expires with
    the form."""
    body = f"{secrets.token_urlsafe(18)}.{int(time.time())}"
    mac = hmac.new(secret, b"login-csrf:" + body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _login_csrf_valid(secret: bytes, token: str) -> bool:
    body, _, mac = token.rpartition(".")
    issued = body.rpartition(".")[2]
    if not body or not issued.isdigit():
        return False
    expected = hmac.new(secret, b"login-csrf:" + body.encode(), hashlib.sha256).hexdigest()
    fresh = 0 <= time.time() - int(issued) <= LOGIN_CSRF_SECONDS
    return hmac.compare_digest(expected, mac) and fresh


@router.get("/login")
def login_form(request: Request, error: str | None = None) -> HTMLResponse:
    settings: ApiSettings = request.app.state.settings
    token = _login_csrf_token(settings.secret)
    message = f'<p class="err">{escape(error)}</p>' if error else ""
    body = (
        f'{message}<form method="post" action="{COOKIE_PATH}/login">'
        f'<input type="hidden" name="csrf" value="{token}">'
        '<p><label>Username <input name="username" autocomplete="username" required></label></p>'
        '<p><label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    response = _html(_page("Sign in", body))
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=LOGIN_CSRF_SECONDS,
        path=COOKIE_PATH,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    csrf: Annotated[str, Form(max_length=200)],
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if (
        not expected
        or not secrets.compare_digest(expected, csrf)
        or not _login_csrf_valid(settings.secret, csrf)
        or request.headers.get("sec-fetch-site", "same-origin") == "cross-site"
    ):
        _audit_form_refusal(conn, request, None, 400, "csrf token of the sign-in form invalid")
        return _html(_page("Sign in", '<p class="err">Form expired; reload and retry.</p>'), 400)
    try:
        user = authenticate(
            conn,
            settings,
            request.app.state.login_throttle,
            username,
            password,
            audit.client_ip(request),
        )
    except HTTPException as exc:
        page = login_form(request, str(exc.detail))
        page.status_code = exc.status_code
        return page
    response = RedirectResponse(f"{COOKIE_PATH}/", status_code=status.HTTP_303_SEE_OTHER)
    _set_session(response, settings, user, secrets.token_hex(16))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
def logout(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    user = _session(request, conn, settings)
    if user is not None and not csrf_valid(settings.secret, user.session_id, csrf):
        _audit_form_refusal(conn, request, user, 403, "csrf token of the sign-out form invalid")
        # Not a silent redirect that leaves the session alive: say so, with a form that
        # works (a cross-site form cannot sign anyone out, one of ours always can).
        return _user_page(
            settings,
            user,
            "Sign out",
            "<p>That sign-out form had expired; use the button above to sign out.</p>",
            403,
        )
    if user is not None:
        # Ended on the server, not only in this browser: a copy of the cookie is dead.
        revoke_session(conn, user.session_id, user.user_id, settings.access_token_minutes)
        audit.write(conn, user, "auth.logout", ip=audit.client_ip(request), resource="dashboard")
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


# --- pages ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@router.get("/")
def home(request: Request, conn: ConnDep, settings: SettingsDep) -> Response:
    user = _session(request, conn, settings)
    if user is None:
        return _to_login()
    if user.role == "patient":
        return RedirectResponse(
            f"{COOKIE_PATH}/patients/{user.patient_id}", status_code=status.HTTP_303_SEE_OTHER
        )
    entries = triage_panel(conn, visible_patients(conn, user))
    audit.write(
        conn,
        user,
        "dashboard.panel",
        ip=audit.client_ip(request),
        resource="panel",
        detail={"patients": [e.patient.id for e in entries]},
    )
    rows = []
    for e in entries:
        p = e.patient
        name = f"{p.family_name or ''}, {p.given_name or ''}".strip(", ") or p.external_id
        sev = e.worst_open_severity or ""
        rows.append(
            "<tr>"
            f'<td><a href="{COOKIE_PATH}/patients/{p.id}">{escape(name)}</a></td>'
            f"<td>{escape(p.mrn or '')}</td>"
            f'<td class="{escape(sev)}">{e.urgent_open_flags} urgent / {e.open_flags} open</td>'
            f"<td>{_fmt(e.tir_pct, 0, ' %')}</td><td>{_fmt(e.tbr_pct, 1, ' %')}</td>"
            f"<td>{escape(e.glucose_source or '-')}</td><td>{_when(e.last_reading)}</td></tr>"
        )
    table = (
        '<table id="panel"><thead><tr><th>Patient</th><th>MRN</th><th>Open flags</th>'
        "<th>TIR 70-180</th><th>TBR &lt;70</th><th>Source</th><th>Last reading</th></tr></thead>"
        f"<tbody>{''.join(rows) or '<tr><td colspan=7>No patients on your panel.</td></tr>'}"
        "</tbody></table>"
    )
    intro = "<p>Ordered for triage: open urgent flags, then worst time below range, then lowest time in range (last 14 days).</p>"
    return _render(request, settings, user, "Panel", intro + table)


def _flags_section(conn: psycopg.Connection[Any], patient_id: int, csrf: str, staff: bool) -> str:
    if not staff:
        return ""
    rows = conn.execute(
        "SELECT id, severity, status, rule_id, summary, opened_at, acknowledged_by, resolve_note"
        " FROM flags WHERE patient_id = %s ORDER BY status = 'resolved',"
        " array_position(ARRAY['urgent','high','medium','low'], severity), opened_at DESC"
        " LIMIT 50",
        (patient_id,),
    ).fetchall()
    items = []
    for fid, severity, state, rule, summary, opened, acked_by, note in rows:
        actions = ""
        hidden = f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        if state == "open":
            actions += (
                f'<form class="inline" method="post" action="{COOKIE_PATH}/flags/{fid}/acknowledge">'
                f'{hidden}<input name="note" placeholder="note" maxlength="2000">'
                '<button type="submit">Acknowledge</button></form> '
            )
        if state != "resolved":
            actions += (
                f'<form class="inline" method="post" action="{COOKIE_PATH}/flags/{fid}/resolve">'
                f'{hidden}<input name="note" placeholder="resolution note" required maxlength="2000">'
                '<button type="submit">Resolve</button></form>'
            )
        else:
            actions = escape(note or "")
        items.append(
            f'<tr id="flag-{fid}"><td class="{escape(severity)}">{escape(severity)}</td>'
            f"<td>{escape(state)}{' by ' + escape(acked_by) if acked_by else ''}</td>"
            f"<td>{escape(rule)}</td><td>{escape(summary)}</td><td>{_when(opened)}</td>"
            f"<td>{actions}</td></tr>"
        )
    return (
        '<section><h2>Flags</h2><table id="flags"><thead><tr><th>Severity</th><th>Status</th>'
        "<th>Rule</th><th>Summary</th><th>Opened</th><th></th></tr></thead><tbody>"
        + ("".join(items) or "<tr><td colspan=6>No flags.</td></tr>")
        + "</tbody></table></section>"
    )


def _devices_section(conn: psycopg.Connection[Any], patient_id: int, settings: ApiSettings) -> str:
    devices, _ = patient_devices(conn, patient_id, settings, 50, 0)
    rows = "".join(
        f"<tr><td>{escape(d.id)}</td><td>{escape(d.profile or '-')}</td>"
        f"<td>{escape(' '.join(x for x in (d.manufacturer, d.model) if x) or '-')}</td>"
        f"<td>{_when(d.last_sync)} ({escape(d.sync.state)})</td>"
        f"<td>{_fmt(d.battery_percent, 0, ' %') if d.battery_percent is not None else '-'}</td>"
        f"<td>{_fmt(d.clock_skew_s, 0, ' s')}</td>"
        f"<td>{'current' if d.bound_until is None else 'until ' + _when(d.bound_until)}</td></tr>"
        for d in devices
    )
    return (
        '<section><h2>Devices</h2><table id="devices"><thead><tr><th>Device</th><th>Kind</th>'
        "<th>Model</th><th>Last sync</th><th>Battery</th><th>Clock offset</th><th>Binding</th>"
        f"</tr></thead><tbody>{rows or '<tr><td colspan=7>No devices.</td></tr>'}</tbody></table></section>"
    )


def _stats(pairs: Iterable[tuple[str, str]]) -> str:
    return (
        '<div class="stats">'
        + "".join(f'<div class="stat"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in pairs)
        + "</div>"
    )


LB_PER_KG = 2.2046226218


def _signed(value: float, digits: int, suffix: str) -> str:
    # A real minus sign; a change that rounds to zero gets no sign at all ("-0.0").
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return text + suffix
    return ("+" if value > 0 else "\u2212") + text + suffix


def _display(kind: Kind, component: Component) -> Display:
    display = KINDS[kind].spec(component).display
    assert display is not None  # tests/test_kinds.py: every component has one
    return display


def _pct(value: float) -> str:
    # 89.6 % must not read as "90 %" next to a count of readings below 90 %.
    return f"{value:.1f}".removesuffix(".0") + " %"


def _day(value: datetime, tz: ZoneInfo) -> str:
    return value.astimezone(tz).date().isoformat()


# How values are shown: declared with their kinds (readings/kinds.py).
_WEIGHT = _display(Kind.WEIGHT, Component.WEIGHT)
_BMI = _display(Kind.WEIGHT, Component.BMI)
_TEMPERATURE = _display(Kind.TEMPERATURE, Component.TEMPERATURE)


def _weight_part(w: Weight | None, tz: ZoneInfo, first_day: date, last_day: date) -> str:
    if w is None:
        return ""
    kg = w.latest.value
    pairs = [
        (
            f"latest weight, {_day(w.latest.time, tz)}",
            f"{_WEIGHT.format(kg)} ({kg * LB_PER_KG:.1f} lb)",
        )
    ]
    if w.first.time < w.latest.time:
        delta = kg - w.first.value
        pairs.append(
            (
                f"change since {_day(w.first.time, tz)}",
                f"{_signed(delta, 1, ' kg')} ({_signed(100 * delta / w.first.value, 1, ' %')})",
            )
        )
    if w.bmi is not None:
        pairs.append((_BMI.label, _BMI.format(w.bmi)))
    return (
        f'<h3>{KINDS[Kind.WEIGHT].label}</h3><div id="weight">'
        + _stats(pairs)
        + charts.weight_svg(w.daily, first_day, last_day)
        + "</div>"
    )


def _spo2_part(s: Spo2 | None, tz: ZoneInfo) -> str:
    if s is None:
        return ""
    pairs = [
        (f"latest SpO2, {_day(s.latest.time, tz)}", _pct(s.latest.value)),
        ("lowest", _pct(s.lowest)),
        (f"readings below {SPO2_LOW:g} %", str(s.below_low)),
        ("readings", str(s.n)),
    ]
    return f'<h3>{KINDS[Kind.SPO2].label}</h3><div id="spo2">' + _stats(pairs) + "</div>"


def _temperature_part(t: Temperature | None, tz: ZoneInfo) -> str:
    if t is None:
        return ""
    pairs = [
        (f"latest temperature, {_day(t.latest.time, tz)}", _TEMPERATURE.format(t.latest.value)),
        ("highest", _TEMPERATURE.format(t.highest)),
    ]
    label = KINDS[Kind.TEMPERATURE].label
    return f'<h3>{label}</h3><div id="temperature">' + _stats(pairs) + "</div>"


def _body_section(v: BodyVitals, tz: ZoneInfo, start: datetime, end: datetime) -> str:
    """Weight, SpO2 and temperature; nothing at all when the period has none of them."""
    parts = (
        _weight_part(v.weight, tz, start.astimezone(tz).date(), end.astimezone(tz).date()),
        _spo2_part(v.spo2, tz),
        _temperature_part(v.temperature, tz),
    )
    if not any(parts):
        return ""
    title = "Weight and SpO2" if v.weight or v.spo2 else "Temperature"
    return f'<section id="body-vitals"><h2>{title}</h2>{"".join(parts)}</section>'


@router.get("/patients/{patient_id}")
def patient_page(
    patient_id: int, request: Request, conn: ConnDep, settings: SettingsDep, days: int = 14
) -> Response:
    user = _session(request, conn, settings)
    if user is None:
        return _to_login()
    if not 1 <= patient_id <= 2**62 or not can_see(conn, user, patient_id):
        audit.write(
            conn,
            user,
            "access.denied",
            ip=audit.client_ip(request),
            patient_id=patient_id,
            resource=request.url.path,
            status=404,
        )
        return _user_page(settings, user, "Not found", "<p>No such patient.</p>", 404)
    days = min(max(days, 1), 90)
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    patient = fetch_patient(conn, patient_id)
    g = glucose_summary(conn, patient_id, start, end)
    profile = agp(conn, patient_id, start, end)
    bp = bp_summary(conn, patient_id, start, end)
    target_row = conn.execute(
        "SELECT category, overrides FROM patient_targets WHERE patient_id = %s", (patient_id,)
    ).fetchone()
    targets = effective(*(target_row or ("standard", {})))
    bp_rows = conn.execute(
        "SELECT time, systolic, diastolic FROM blood_pressure WHERE patient_id = %s"
        " AND time >= %s AND time < %s ORDER BY time LIMIT 2000",
        (patient_id, start, end),
    ).fetchall()
    tz = zone(patient.timezone)
    vitals = body_vitals(conn, patient_id, start, end, tz.key)
    audit.write(
        conn,
        user,
        "dashboard.patient",
        ip=audit.client_ip(request),
        patient_id=patient_id,
        resource=request.url.path,
        detail={"days": days},
    )
    csrf = csrf_token(settings.secret, user.session_id)
    main = g.cgm if g.cgm.n_readings else g.smbg
    name = f"{patient.given_name or ''} {patient.family_name or ''}".strip() or patient.external_id
    header = (
        f"<p>MRN {escape(patient.mrn or '-')} &middot; born {escape(str(patient.birth_date or '-'))}"
        f" &middot; {escape(patient.timezone)} &middot; last {days} days "
        f"({escape(main.source.value.upper())})</p>"
    )
    glucose = _stats(
        [
            ("readings", str(main.n_readings)),
            ("mean mg/dL", _fmt(main.mean)),
            ("GMI", _fmt(main.gmi, 1, " %")),
            ("CV", _fmt(main.cv, 0, " %")),
            ("TIR 70-180", _fmt(main.pct_70_180, 0, " %")),
            ("TBR <70", _fmt(main.pct_below_70, 1, " %")),
            ("TBR <54", _fmt(main.pct_below_54, 1, " %")),
            ("TAR >180", _fmt(main.pct_above_180, 0, " %")),
            ("hypo events", str(main.hypo_events)),
        ]
    )
    bp_stats = _stats(
        [
            ("readings", str(bp.n_readings)),
            ("mean", f"{_fmt(bp.mean_systolic)}/{_fmt(bp.mean_diastolic)}"),
            ("morning", f"{_fmt(bp.morning_systolic)}/{_fmt(bp.morning_diastolic)}"),
            ("evening", f"{_fmt(bp.evening_systolic)}/{_fmt(bp.evening_diastolic)}"),
            ("stage", (bp.stage or "-").replace("_", " ")),
            ("above target", _fmt(bp.pct_above_target, 0, " %")),
        ]
    )
    body = (
        header
        + f"<section><h2>Glucose</h2>{glucose}</section>"
        + "<section><h2>Ambulatory glucose profile</h2>"
        + charts.agp_svg(profile.bins, targets.range_low, targets.range_high)
        + "</section><section><h2>Daily glucose</h2>"
        + charts.daily_svg(profile.daily)
        + f"</section><section><h2>Blood pressure</h2>{bp_stats}"
        + charts.bp_svg(
            [(r[0], float(r[1]), float(r[2])) for r in bp_rows],
            (targets.bp_systolic, targets.bp_diastolic),
        )
        + "</section>"
        + _body_section(vitals, tz, start, end)
        + _flags_section(conn, patient_id, csrf, user.role != "patient")
        + _devices_section(conn, patient_id, settings)
    )
    return _render(request, settings, user, name, body)


def _flag_action(
    request: Request,
    conn: psycopg.Connection[Any],
    settings: ApiSettings,
    flag_id: int,
    csrf: str,
    note: str,
    action: FlagAction,
) -> Response:
    user = _session(request, conn, settings)
    if user is None:
        return _to_login()
    if not csrf_valid(settings.secret, user.session_id, csrf):
        _audit_form_refusal(conn, request, user, 403, "csrf token invalid")
        return _user_page(
            settings, user, "Forbidden", "<p>Form expired; go back and reload.</p>", 403
        )
    ip = audit.client_ip(request)
    if user.role not in ("clinician", "admin"):
        audit.write(conn, user, "access.denied", ip=ip, resource=request.url.path, status=403)
        return _user_page(settings, user, "Forbidden", "<p>Only clinicians act on flags.</p>", 403)
    try:
        flag = get_flag(conn, flag_id)
    except FlagNotFoundError:
        return _user_page(settings, user, "Not found", "<p>No such flag.</p>", 404)
    if not can_see(conn, user, flag.patient_id):
        audit.write(
            conn,
            user,
            "access.denied",
            ip=ip,
            patient_id=flag.patient_id,
            resource=request.url.path,
            status=404,
        )
        return _user_page(settings, user, "Not found", "<p>No such flag.</p>", 404)
    note = note.strip()
    try:
        transition(conn, flag_id, action, user.name, note or None)
    except FlagTransitionError as exc:
        return _user_page(settings, user, "Not possible", f"<p>{escape(str(exc))}</p>", 409)
    audit.write(
        conn,
        user,
        f"flag.{action}",
        ip=ip,
        patient_id=flag.patient_id,
        resource=f"flag/{flag_id}",
        detail={"note": note},
    )
    return RedirectResponse(
        f"{COOKIE_PATH}/patients/{flag.patient_id}#flag-{flag_id}",
        status_code=status.HTTP_303_SEE_OTHER,
    )


@router.post("/flags/{flag_id}/acknowledge")
def flag_acknowledge(
    flag_id: DbId,
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form(max_length=100)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    return _flag_action(request, conn, settings, flag_id, csrf, note, "acknowledge")


@router.post("/flags/{flag_id}/resolve")
def flag_resolve(
    flag_id: DbId,
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    csrf: Annotated[str, Form(max_length=100)],
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    return _flag_action(request, conn, settings, flag_id, csrf, note, "resolve")
