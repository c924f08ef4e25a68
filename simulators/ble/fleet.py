"""Launch and stop several simulated device processes on a running test bed.

    with DeviceFleet(info) as fleet:
        fleet.start_many([DeviceSpec("glucose-meter", "hci1", readings=...),
                          DeviceSpec("bp-cuff", "hci2")])
        fleet.add_readings("hci1", [Reading(...)])

Each device runs ``python -m simulators.ble --spec <state>/<adapter>.json`` in its own
process group, logs to ``<state>/<adapter>.log`` and listens for control commands on
``<state>/<adapter>.ctl``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from simulators.ble.control import send_command
from simulators.ble.readings import Reading
from simulators.ble.spec import DeviceSpec
from simulators.testbed import TestbedInfo, env_for

__all__ = ["DeviceFleet", "DeviceProcess", "FleetError"]

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 3.0
_REPO_ROOT = Path(__file__).resolve().parents[2]


class FleetError(RuntimeError):
    """A device process did not come up, or was asked for something impossible."""


@dataclass(slots=True)
class DeviceProcess:
    spec: DeviceSpec
    process: subprocess.Popen[bytes]
    control_socket: Path
    log_path: Path
    address: str  # the device adapter's Bluetooth address, what the gateway sees

    @property
    def pid(self) -> int:
        return self.process.pid


class DeviceFleet:
    """Simulated devices as child processes, one per adapter."""

    def __init__(self, info: TestbedInfo, state_dir: Path | None = None) -> None:
        self.info = info
        self.state_dir = (state_dir or info.state_dir / "devices").resolve()
        self.devices: dict[str, DeviceProcess] = {}

    def free_adapters(self) -> list[str]:
        return [a.name for a in self.info.device_adapters if a.name not in self.devices]

    def start(self, spec: DeviceSpec, timeout: float = READY_TIMEOUT_S) -> DeviceProcess:
        return self.start_many([spec], timeout)[0]

    def start_many(
        self, specs: Sequence[DeviceSpec], timeout: float = READY_TIMEOUT_S
    ) -> list[DeviceProcess]:
        """Launch all, then wait until every one printed READY."""
        known = {a.name for a in self.info.device_adapters}
        for spec in specs:
            if spec.adapter not in known:
                raise FleetError(f"{spec.adapter} is not a device adapter of this bed")
            if spec.adapter in self.devices:
                raise FleetError(
                    f"{spec.adapter} already runs {self.devices[spec.adapter].spec.name}"
                )
        if len({s.adapter for s in specs}) != len(specs):
            raise FleetError("one device per adapter")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        started = [self._launch(spec) for spec in specs]
        try:
            self._wait_ready(started, timeout)
        except BaseException:
            for dev in started:
                self._terminate(dev)
            raise
        for dev in started:
            self.devices[dev.spec.adapter] = dev
        return started

    def _launch(self, spec: DeviceSpec) -> DeviceProcess:
        control = self.state_dir / f"{spec.adapter}.ctl"
        spec = spec.with_changes(control_socket=control)
        spec_path = self.state_dir / f"{spec.adapter}.json"
        spec.dump(spec_path)
        log_path = self.state_dir / f"{spec.adapter}.log"
        env = {**os.environ, **env_for(self.info)}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "simulators.ble", "--spec", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,
            )
        return DeviceProcess(spec, proc, control, log_path, self.info.address_of(spec.adapter))

    def _wait_ready(self, started: Iterable[DeviceProcess], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = {dev.process.stdout: dev for dev in started if dev.process.stdout}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                names = ", ".join(d.spec.name for d in waiting.values())
                raise FleetError(f"not READY after {timeout:.0f} s: {names}")
            readable, _, _ = select.select(list(waiting), [], [], remaining)
            for stream in readable:
                dev = waiting[stream]
                line = stream.readline()
                if not line:
                    raise FleetError(
                        f"{dev.spec.name} exited ({dev.process.poll()}); see {dev.log_path}"
                    )
                if line.strip() == b"READY":
                    del waiting[stream]
                    _close(stream)

    def stop(self, adapter: str) -> None:
        dev = self.devices.pop(adapter, None)
        if dev is not None:
            self._terminate(dev)

    def stop_all(self) -> None:
        for dev in list(self.devices.values()):
            dev.process.send_signal(signal.SIGTERM)  # all at once, then wait for each
        for adapter in list(self.devices):
            self.stop(adapter)

    def _terminate(self, dev: DeviceProcess) -> None:
        proc = dev.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # own session: pgid == pid
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout is not None:
            _close(proc.stdout)
        dev.control_socket.unlink(missing_ok=True)

    # ------------------------------------------------------------------ control
    def control(self, adapter: str, command: dict[str, Any]) -> dict[str, Any]:
        try:
            dev = self.devices[adapter]
        except KeyError:
            raise FleetError(f"no device on {adapter}") from None
        return send_command(dev.control_socket, command)

    def add_readings(self, adapter: str, readings: Sequence[Reading]) -> list[int]:
        reply = self.control(adapter, {"cmd": "add", "readings": [r.to_json() for r in readings]})
        return [int(i) for i in reply["ids"]]

    def status(self, adapter: str) -> dict[str, Any]:
        return self.control(adapter, {"cmd": "status"})

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def _close(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):
        stream.close()
