"""BLE test helpers of the gateway tests: simulated devices and the gateway CLI as
processes (so a test can SIGKILL it), readings for the simulators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from simulators.testbed import TestbedInfo, env_for

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 20, 6, 0)


def glucose_readings(first: int, count: int) -> list[dict[str, Any]]:
    """Meter records ``first``..: one a minute from T0 (device clock), varying values."""
    return [
        {
            "device_time": (T0 + timedelta(minutes=seq)).isoformat(),
            "mg_dl": 70 + (seq * 7) % 150,
            "sequence": seq,
        }
        for seq in range(first, first + count)
    ]


def bp_readings(count: int, start: datetime = T0) -> list[dict[str, Any]]:
    return [
        {
            "device_time": (start + timedelta(hours=12 * i)).isoformat(),
            "systolic": 120 + i,
            "diastolic": 80 + i % 5,
            "pulse": 65 + i,
        }
        for i in range(count)
    ]


def process_env(bed: TestbedInfo) -> dict[str, str]:
    env = {**os.environ, **env_for(bed)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["TZ"] = "UTC"
    return env


@dataclass
class SimDevice:
    spec: dict[str, Any]
    address: str
    control: Path
    proc: subprocess.Popen[str]
    log: Path

    def command(self, command: dict[str, Any]) -> dict[str, Any]:
        from simulators.ble.control import send_command

        return send_command(self.control, command)

    def add(self, readings: list[dict[str, Any]]) -> dict[str, Any]:
        return self.command({"cmd": "add", "readings": readings})

    def status(self) -> dict[str, Any]:
        return self.command({"cmd": "status"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class GatewayCli:
    """The gateway as the operator runs it: ``python -m gateway.cli ...`` processes."""

    bed: TestbedInfo
    state_dir: Path
    gateway_id: str
    mqtt_url: str | None
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = process_env(self.bed)
        env.update(
            HOMEVITALS_GATEWAY_ID=self.gateway_id,
            HOMEVITALS_GATEWAY_STATE_DIR=str(self.state_dir),
            HOMEVITALS_GATEWAY_ADAPTER=self.bed.gateway_adapter,
            HOMEVITALS_GATEWAY_TIMEZONE="UTC",
        )
        if self.mqtt_url:
            env["HOMEVITALS_MQTT_URL"] = self.mqtt_url
        return env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            check=False,
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def check(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = self.run(*args, timeout=timeout)
        assert proc.returncode == 0, f"gateway {' '.join(args)} failed:\n{proc.stderr[-5000:]}"
        return proc

    def pair(self, address: str) -> None:
        self.check("pair", "--address", address, "--scan-seconds", "15")

    def sync_once(self, duration: float = 60) -> subprocess.CompletedProcess[str]:
        return self.check("run", "--once", "--duration", str(duration), timeout=duration + 60)

    def start(self, *args: str) -> subprocess.Popen[str]:
        log = self.state_dir / f"gateway-{len(self.logs)}.log"
        self.logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", *args],
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
            text=True,
        )

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.check("status", "--json").stdout))

    def device(self, address: str) -> dict[str, Any]:
        for d in self.status()["devices"]:
            if d["address"] == address:
                return dict(d)
        raise KeyError(address)
