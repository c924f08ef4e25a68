"""The dashboard in a real headless Chromium, against uvicorn on loopback.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-terminated JSON on fds 3/4), so no extra Python package is needed: sign in through
the form, open the patient page, check the AGP SVG in the live DOM and take a
screenshot of it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from api_helpers import PASSWORD, Clinic

from api.core.config import ApiSettings
from api.main import create_app
from homevitals.services.system import free_port

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,2200",
    "--remote-debugging-pipe",
)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's /usr/bin/chromium")


class Cdp:
    """Minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.set_inheritable(child_in, True)
        os.set_inheritable(child_out, True)
        argv = [str(CHROMIUM), *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        # bash puts the pipe ends on the fds Chromium expects (3 in, 4 out); dash cannot
        # redirect from fds above 9.
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{child_in} 4>&{child_out}', "bash", *argv],
            pass_fds=(child_in, child_out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_child_r, from_child_w, child_in, child_out):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_child], [], [], remaining)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the debugging pipe")
                self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open_page(self) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Page.enable")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {expression}")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5.0)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._to_child)
        os.close(self._from_child)


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
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Cdp]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    cdp = Cdp(profile)
    try:
        cdp.open_page()
        yield cdp
    finally:
        cdp.close()
        shutil.rmtree(profile, ignore_errors=True)


def _sign_in(cdp: Cdp, base: str, username: str) -> None:
    cdp.goto(f"{base}/dashboard/login")
    cdp.evaluate(
        f"document.querySelector('input[name=username]').value = {json.dumps(username)};"
        f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
        "document.querySelector('form').submit(); true"
    )
    cdp.wait_for("location.pathname !== '/dashboard/login' && document.readyState === 'complete'")


@pytest.mark.slow
def test_clinician_sees_panel_and_agp(
    server: str, browser: Cdp, clinic: Clinic, tmp_path: Path
) -> None:
    _sign_in(browser, server, clinic.dr_lee)
    assert browser.evaluate("location.pathname") == "/dashboard/"
    names = browser.evaluate(
        "Array.from(document.querySelectorAll('#panel tbody td:first-child')).map(td => td.textContent)"
    )
    assert names[0].startswith("Archer")
    # The session cookie is HttpOnly: invisible to page scripts.
    assert "hv_session" not in browser.evaluate("document.cookie")

    browser.goto(f"{server}/dashboard/patients/{clinic.patient_a}")
    agp = browser.evaluate(
        "(() => { const s = document.querySelector('svg#agp-chart'); if (!s) return null;"
        " const r = s.getBoundingClientRect();"
        " return {w: r.width, h: r.height, bands: s.querySelectorAll('polygon').length,"
        " median: s.querySelectorAll('polyline.median').length,"
        " y: r.top + window.scrollY, x: r.left}; })()"
    )
    assert agp is not None and agp["w"] > 500 and agp["h"] > 200
    assert agp["bands"] == 2 and agp["median"] == 1
    assert browser.evaluate("!!document.querySelector('svg#bp-chart polyline.systolic')")
    assert browser.evaluate("document.querySelectorAll('#flags form').length") >= 2

    shot = browser.send(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": agp["x"], "y": agp["y"], "width": agp["w"], "height": agp["h"], "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    path = tmp_path / "agp.png"
    path.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 8_000  # bands, median and axes, not a blank image
    full = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    assert len(full) > 30_000


@pytest.mark.slow
def test_patient_sees_only_own_page(server: str, browser: Cdp, clinic: Clinic) -> None:
    _sign_in(browser, server, clinic.user_a)
    assert browser.evaluate("location.pathname") == f"/dashboard/patients/{clinic.patient_a}"
    assert browser.evaluate("!!document.querySelector('svg#agp-chart')")
    assert browser.evaluate("document.querySelector('#flags') === null")
    browser.goto(f"{server}/dashboard/patients/{clinic.patient_b}")
    assert "No such patient" in browser.evaluate("document.body.textContent")
