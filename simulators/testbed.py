"""The BlueZoo BLE test bed: a private D-Bus daemon plus a patched bluezoo.

The gateway talks to Bluetooth through BlueZ's D-Bus API only, so a user-space
``org.bluez`` on a private bus lets unmodified bleak connect to simulated devices
(``simulators.ble``) with no radio and no root.  The system bus is never touched: every
process gets ``DBUS_SYSTEM_BUS_ADDRESS`` pointing at ``<state_dir>/bus.sock``.

Adapter ``hci0`` belongs to the gateway; ``hci1``.. are one per simulated device.
Addresses are deterministic: ``hciN`` is ``00:00:00:00:00:<N+1>``.

State (pids, ``testbed.json``, logs) lives in ``state_dir`` so ``up`` and ``down`` can
run from separate CLI invocations::

    info = testbed_up(Path(".homevitals/ble"), adapters=3)
    env = {**os.environ, **env_for(info)}  # for the gateway / device processes
    testbed_down(Path(".homevitals/ble"))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

__all__ = [
    "AdapterInfo",
    "Testbed",
    "TestbedError",
    "TestbedInfo",
    "adapter_address",
    "env_for",
    "running_testbed",
    "testbed_down",
    "testbed_status",
    "testbed_up",
]

log = logging.getLogger(__name__)

INFO_FILE = "testbed.json"
BUS_SOCKET = "bus.sock"
DBUS_PID_FILE = "dbus-daemon.pid"
BLUEZOO_PID_FILE = "bluezoo.pid"
DBUS_LOG = "dbus-daemon.log"
BLUEZOO_LOG = "bluezoo.log"
GATEWAY_ADAPTER = "hci0"
SCAN_INTERVAL_S = 1  # bluezoo's default is 10 s; 1 keeps discovery fast in tests
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 3.0
DBUS_MARKER = "dbus-daemon"  # must appear in the recorded process's command line
BLUEZOO_MARKER = "simulators.bluezoo_patches"
# Unix socket paths are limited to 108 bytes (sun_path) including the terminator.
MAX_SOCKET_PATH = 107
_REPO_ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")


class TestbedError(RuntimeError):
    """The test bed could not be started, or is not in the expected state."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str  # "hci0"
    address: str  # "00:00:00:00:00:01"

    @property
    def object_path(self) -> str:
        return f"/org/bluez/{self.name}"


@dataclass(frozen=True, slots=True)
class TestbedInfo:
    """What a client needs to use a running test bed."""

    __test__ = False

    state_dir: Path
    bus_address: str  # the value for DBUS_SYSTEM_BUS_ADDRESS
    adapters: tuple[AdapterInfo, ...]  # hci0 (gateway) first
    dbus_pid: int
    bluezoo_pid: int

    @property
    def adapter_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.adapters)

    @property
    def gateway_adapter(self) -> str:
        return self.adapters[0].name

    @property
    def device_adapters(self) -> tuple[AdapterInfo, ...]:
        return self.adapters[1:]

    def address_of(self, adapter: str) -> str:
        for a in self.adapters:
            if a.name == adapter:
                return a.address
        raise KeyError(adapter)

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "bus_address": self.bus_address,
            "gateway_adapter": self.gateway_adapter,
            "adapters": [{"name": a.name, "address": a.address} for a in self.adapters],
            "pids": {"dbus-daemon": self.dbus_pid, "bluezoo": self.bluezoo_pid},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestbedInfo:
        return cls(
            state_dir=Path(data["state_dir"]),
            bus_address=str(data["bus_address"]),
            adapters=tuple(
                AdapterInfo(name=str(a["name"]), address=str(a["address"]))
                for a in data["adapters"]
            ),
            dbus_pid=int(data["pids"]["dbus-daemon"]),
            bluezoo_pid=int(data["pids"]["bluezoo"]),
        )


def adapter_address(index: int) -> str:
    """Deterministic address of ``hci<index>``: 00:00:00:00:00:01 for hci0."""
    n = index + 1
    return f"00:00:00:00:{(n >> 8) & 0xFF:02X}:{n & 0xFF:02X}"


def env_for(info: TestbedInfo) -> dict[str, str]:
    """Environment for any process that must reach the bed's ``org.bluez``.

    bleak (through dbus-fast) reads ``DBUS_SYSTEM_BUS_ADDRESS`` when its global BlueZ
    manager first connects, once per event loop: set it before that happens.
    """
    return {"DBUS_SYSTEM_BUS_ADDRESS": info.bus_address}


# --------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:  # zombie or kernel thread
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def _is_ours(pid: int, marker: str, state_dir: Path) -> bool:
    """True when ``pid`` is alive, leads its own process group, runs our command and
    was started in ``state_dir`` (so a recycled pid is never mistaken for ours)."""
    cmd = _cmdline(pid)
    if cmd is None or not any(marker in part for part in cmd):
        return False
    try:
        if os.readlink(f"/proc/{pid}/cwd") != str(state_dir):
            return False
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stop_group(pid: int, marker: str, state_dir: Path, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM then SIGKILL the process group ``pid`` leads, if it is still ours."""
    if not _is_ours(pid, marker, state_dir):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    if _is_ours(pid, marker, state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if done == pid:
            return False
    state = _proc_state(pid)
    return state is not None and state != "Z"


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, even when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _bluez_adapters(bus_address: str, timeout: float) -> set[str] | None:
    """Adapter names bluezoo exports, or None when ``org.bluez`` is not reachable."""
    try:
        async with asyncio.timeout(timeout):
            bus = await MessageBus(bus_address=bus_address).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path="/",
                        interface="org.freedesktop.DBus.ObjectManager",
                        member="GetManagedObjects",
                    )
                )
            finally:
                bus.disconnect()
    except (OSError, TimeoutError, EOFError):
        return None
    if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
        return None
    objects: dict[str, dict[str, Any]] = reply.body[0]
    return {
        path.rsplit("/", 1)[1]
        for path, ifaces in objects.items()
        if "org.bluez.Adapter1" in ifaces and ifaces["org.bluez.Adapter1"]["Powered"].value
    }


def _healthy(info: TestbedInfo, timeout: float = 2.0) -> bool:
    if not (
        _is_ours(info.dbus_pid, DBUS_MARKER, info.state_dir)
        and _is_ours(info.bluezoo_pid, BLUEZOO_MARKER, info.state_dir)
    ):
        return False
    found = _run_sync(_bluez_adapters(info.bus_address, timeout))
    return found is not None and set(info.adapter_names) <= found


# --------------------------------------------------------------------------- Testbed


class Testbed:
    """A private D-Bus daemon and a patched bluezoo with ``adapters`` + 1 adapters.

    ``adapters`` is the number of simulated devices; the gateway gets ``hci0`` on top.
    """

    __test__ = False

    def __init__(self, state_dir: Path, adapters: int) -> None:
        if adapters < 1:
            raise ValueError(f"need at least one device adapter, got {adapters}")
        self.state_dir = state_dir.resolve()
        self.adapter_count = adapters
        socket_path = self.state_dir / BUS_SOCKET
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise TestbedError(f"state dir path too long for a unix socket: {socket_path}")
        self._socket_path = socket_path
        self._info: TestbedInfo | None = None
        self._logs: list[IO[bytes]] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def bus_address(self) -> str:
        return f"unix:path={self._socket_path}"

    @property
    def adapters(self) -> tuple[AdapterInfo, ...]:
        return tuple(
            AdapterInfo(f"hci{i}", adapter_address(i)) for i in range(self.adapter_count + 1)
        )

    @property
    def adapter_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.adapters)

    @property
    def gateway_adapter(self) -> str:
        return GATEWAY_ADAPTER

    @property
    def info(self) -> TestbedInfo:
        if self._info is None:
            raise TestbedError("test bed not started")
        return self._info

    def start(self) -> TestbedInfo:
        if shutil.which("dbus-daemon") is None:
            raise TestbedError("dbus-daemon not found (Debian package 'dbus')")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._socket_path.unlink(missing_ok=True)
        try:
            dbus_pid = self._spawn(
                [
                    "dbus-daemon",
                    "--session",
                    "--nofork",
                    "--nopidfile",
                    f"--address={self.bus_address}",
                ],
                DBUS_LOG,
                DBUS_PID_FILE,
            )
            self._wait_for_socket(dbus_pid)
            bluezoo_args = ["--auto-enable", "--scan-interval", str(SCAN_INTERVAL_S)]
            for adapter in self.adapters:
                bluezoo_args += ["-a", adapter.address]
            bluezoo_pid = self._spawn(
                [sys.executable, "-m", "simulators.bluezoo_patches", *bluezoo_args],
                BLUEZOO_LOG,
                BLUEZOO_PID_FILE,
            )
            info = TestbedInfo(
                state_dir=self.state_dir,
                bus_address=self.bus_address,
                adapters=self.adapters,
                dbus_pid=dbus_pid,
                bluezoo_pid=bluezoo_pid,
            )
            self._wait_for_adapters(info)
        except BaseException:
            self.stop()
            raise
        (self.state_dir / INFO_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")
        self._info = info
        log.info("BLE test bed up: %s, adapters %s", info.bus_address, info.adapter_names)
        return info

    def stop(self) -> None:
        _stop_recorded(self.state_dir)
        for proc in self._procs:
            proc.poll()  # reaped already; lets Popen record it
        self._procs.clear()
        self._release_logs()
        self._info = None

    def detach(self) -> None:
        """Leave the processes running after this object is gone (CLI ``up``)."""
        self._release_logs()
        for proc in self._procs:
            proc.returncode = 0  # not ours to wait for any more; silences ResourceWarning
        self._procs.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _release_logs(self) -> None:
        for f in self._logs:  # the children keep their own descriptors
            f.close()
        self._logs.clear()

    def _spawn(self, argv: list[str], log_name: str, pid_name: str) -> int:
        env = dict(os.environ)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        logf = (self.state_dir / log_name).open("ab")
        self._logs.append(logf)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.state_dir,
            start_new_session=True,  # own process group: `down` kills exactly this tree
        )
        self._procs.append(proc)
        (self.state_dir / pid_name).write_text(f"{proc.pid}\n")
        return proc.pid

    def _wait_for_socket(self, dbus_pid: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._socket_path.exists():
            if not _alive(dbus_pid):
                raise TestbedError(f"dbus-daemon exited; see {self.state_dir / DBUS_LOG}")
            if time.monotonic() > deadline:
                raise TestbedError("dbus-daemon did not create its socket")
            time.sleep(0.02)

    def _wait_for_adapters(self, info: TestbedInfo) -> None:
        """Poll GetManagedObjects until org.bluez exports every adapter, powered."""
        deadline = time.monotonic() + START_TIMEOUT_S
        wanted = set(info.adapter_names)
        while True:
            if not _alive(info.bluezoo_pid):
                raise TestbedError(f"bluezoo exited; see {self.state_dir / BLUEZOO_LOG}")
            found = _run_sync(_bluez_adapters(info.bus_address, 1.0))
            if found is not None and wanted <= found:
                return
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"bluezoo adapters not ready after {START_TIMEOUT_S:.0f} s "
                    f"(have {sorted(found or ())}); see {self.state_dir / BLUEZOO_LOG}"
                )
            time.sleep(0.1)


def _stop_recorded(state_dir: Path) -> None:
    """Stop the processes recorded in ``state_dir`` (bluezoo first), then tidy up."""
    for pid_name, marker in ((BLUEZOO_PID_FILE, BLUEZOO_MARKER), (DBUS_PID_FILE, DBUS_MARKER)):
        pid_file = state_dir / pid_name
        pid = _read_pid(pid_file)
        if pid is not None:
            _stop_group(pid, marker, state_dir)
        pid_file.unlink(missing_ok=True)
    (state_dir / INFO_FILE).unlink(missing_ok=True)
    (state_dir / BUS_SOCKET).unlink(missing_ok=True)


# --------------------------------------------------------------------------- CLI helpers


def _load_info(state_dir: Path) -> TestbedInfo | None:
    try:
        data = json.loads((state_dir / INFO_FILE).read_text())
        return TestbedInfo.from_json(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def testbed_status(state_dir: Path) -> TestbedInfo | None:
    """The running, healthy test bed recorded in ``state_dir``, else None."""
    info = _load_info(state_dir.resolve())
    if info is None or not _healthy(info):
        return None
    return info


def testbed_up(state_dir: Path, adapters: int) -> TestbedInfo:
    """Start the bed, or return the one already running there if healthy and big enough.

    Processes outlive the caller (they are in their own sessions); stop them with
    :func:`testbed_down`.
    """
    state_dir = state_dir.resolve()
    existing = testbed_status(state_dir)
    if existing is not None and len(existing.adapters) >= adapters + 1:
        return existing
    _stop_recorded(state_dir)  # stale or too small: replace it
    bed = Testbed(state_dir, adapters)
    info = bed.start()
    bed.detach()
    return info


def testbed_down(state_dir: Path) -> None:
    """Stop exactly the processes ``testbed_up`` started in ``state_dir``."""
    _stop_recorded(state_dir.resolve())


@contextlib.contextmanager
def running_testbed(state_dir: Path, adapters: int) -> Iterator[TestbedInfo]:
    """``with running_testbed(dir, n) as info:`` — a bed for the block's duration."""
    with Testbed(state_dir, adapters) as bed:
        yield bed.info
