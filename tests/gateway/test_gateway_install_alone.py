"""The home hub's install, alone: the gateway set from the lock in a fresh venv (no server
dependency), then ``homevitals gateway`` from that venv pairs a simulated meter on the
BlueZoo bed and publishes its records (docs/install.md, "The hub").

The venv is built exactly as docs/install.md tells a Raspberry Pi owner: ``pip install
--require-hashes -r requirements/gateway.txt`` then the project with ``--no-deps``.  The
processes run outside the checkout (no PYTHONPATH), so an import of a server package
(pandas, scipy, FastAPI, psycopg, fhir.resources, pydantic) fails here as it would on a hub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gw_ble import REPO, GatewayCli, SimDevice, glucose_readings
from gw_helpers import Listener

pytestmark = [pytest.mark.ble, pytest.mark.services, pytest.mark.slow]

# What the hub must never pull in (issue #12): the server roles' dependencies.
SERVER_ONLY = ("pandas", "scipy", "numpy", "fastapi", "psycopg", "fhir.resources", "pydantic")


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, check=False, cwd=cwd
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def hub_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the gateway set only, from the lock (hash-checked)."""
    root = tmp_path_factory.mktemp("hub")
    venv = root / "venv"
    # The interpreter the project's venv was made from, not the venv itself.
    _run(sys._base_executable, "-m", "venv", venv)  # type: ignore[attr-defined]
    pip = (venv / "bin" / "pip",)
    _run(*pip, "install", "-q", "--require-hashes", "-r", REPO / "requirements" / "gateway.txt")
    # A copy of the checkout, so the build cannot write into it (egg-info, build/).
    source = root / "src"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(".venv", ".homevitals", ".git", "*.egg-info", "build"),
    )
    _run(*pip, "install", "-q", "--no-deps", source, cwd=root)
    return venv


def test_hub_install_has_no_server_dependency(hub_venv: Path) -> None:
    listed = _run(hub_venv / "bin" / "pip", "list", "--format=freeze").stdout.lower()
    installed = {line.split("==")[0] for line in listed.splitlines()}
    assert not installed & {name.replace(".", "-") for name in SERVER_ONLY}, installed
    for module in SERVER_ONLY:
        probe = subprocess.run(
            [hub_venv / "bin" / "python", "-c", f"import {module}"],
            capture_output=True,
            check=False,
            cwd=hub_venv,
        )
        assert probe.returncode != 0, f"{module} is importable in the hub venv"


def test_gateway_help_runs_from_the_hub_install(hub_venv: Path) -> None:
    out = _run(hub_venv / "bin" / "homevitals", "gateway", "--help", cwd=hub_venv).stdout
    for command in ("pair", "run", "status", "devices", "unpair"):
        assert command in out


class HubGatewayCli(GatewayCli):
    """``homevitals gateway`` from the hub venv, outside the checkout."""

    venv: Path

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("PYTHONPATH", None)
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "homevitals"), "gateway", *args],
            check=False,
            cwd=self.state_dir.parent,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def test_hub_install_pairs_and_syncs_a_meter_over_ble(
    hub_venv: Path,
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    mqtt_url: str,
) -> None:
    hub = HubGatewayCli(
        gateway_cli.bed, gateway_cli.state_dir, gateway_cli.gateway_id, gateway_cli.mqtt_url
    )
    hub.venv = hub_venv
    hub.state_dir.mkdir(parents=True, exist_ok=True)
    meter = sim_devices("glucose-meter", glucose_readings(1, 40))
    listener = Listener(mqtt_url, hub.gateway_id, client_id="t-hub-install").start()
    try:
        hub.pair(meter.address)
        hub.sync_once()
        assert listener.wait_for(lambda s: len(s.readings) >= 40, timeout=60)
        assert sorted(r.seq for r in listener.readings if r.seq is not None) == list(range(1, 41))
        assert hub.device(meter.address)["cursor"] == 40
    finally:
        listener.stop()
