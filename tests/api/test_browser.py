"""The dashboard in a real headless Chromium, against uvicorn on loopback.

Chromium is Debian's (``/usr/bin/chromium``, never a downloaded one), driven by Playwright
for Python: sign in through the form, open the patient page, check the AGP SVG in the live
DOM and take a screenshot of it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from api_helpers import PASSWORD, Clinic
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright
from waiting import wait_until

from api.core.config import ApiSettings
from api.main import create_app
from homevitals.services.system import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 2200}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    # Plain http on loopback: the Secure cookie flag is off for this server only.
    settings = ApiSettings(
        database_url=database_url, jwt_secret=secrets.token_urlsafe(48), cookie_secure=False
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, 20, what="uvicorn to start")
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies from another test) and its page."""
    context = chromium.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/dashboard/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form").evaluate("form => form.submit()")
    page.wait_for_url(lambda url: not url.endswith("/dashboard/login"))  # and its load event


def _path(page: Page) -> str:
    return str(page.evaluate("location.pathname"))


@pytest.mark.slow
def test_clinician_sees_panel_and_agp(
    server: str, page: Page, clinic: Clinic, tmp_path: Path
) -> None:
    _sign_in(page, server, clinic.dr_lee)
    assert _path(page) == "/dashboard/"
    names = page.locator("#panel tbody td:first-child").all_text_contents()
    assert names[0].startswith("Archer")
    # The session cookie is HttpOnly: invisible to page scripts.
    assert "hv_session" not in page.evaluate("document.cookie")
    assert any(c["name"] == "hv_session" and c["httpOnly"] for c in page.context.cookies())

    page.goto(f"{server}/dashboard/patients/{clinic.patient_a}")
    agp = page.locator("svg#agp-chart")
    box = agp.bounding_box()
    assert box is not None and box["width"] > 500 and box["height"] > 200
    assert agp.locator("polygon").count() == 2
    assert agp.locator("polyline.median").count() == 1
    assert page.locator("svg#bp-chart polyline.systolic").count() >= 1
    assert page.locator("#flags form").count() >= 2

    path = tmp_path / "agp.png"
    png = agp.screenshot(path=path)
    assert png[:8] == PNG_MAGIC
    assert path.stat().st_size > 8_000  # bands, median and axes, not a blank image
    full = page.screenshot(path=tmp_path / "patient.png")
    assert full[:8] == PNG_MAGIC
    assert len(full) > 30_000


@pytest.mark.slow
def test_patient_sees_only_own_page(server: str, page: Page, clinic: Clinic) -> None:
    _sign_in(page, server, clinic.user_a)
    assert _path(page) == f"/dashboard/patients/{clinic.patient_a}"
    assert page.locator("svg#agp-chart").count() == 1
    assert page.locator("#flags").count() == 0
    page.goto(f"{server}/dashboard/patients/{clinic.patient_b}")
    assert "No such patient" in (page.locator("body").text_content() or "")
