"""BLE fixtures of the gateway tests: simulated devices as processes on the session's
BlueZoo bed (``tests/conftest.py``), and the gateway CLI as a process (so a test can
SIGKILL it)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_helpers import WorkerThread
from gw_ble import REPO, GatewayCli, SimDevice, process_env

from homevitals.services.postgres import LocalPostgres
from simulators.testbed import AdapterInfo, TestbedInfo


@pytest.fixture
def sim_devices(
    ble_bed: TestbedInfo, ble_adapter: Callable[[], AdapterInfo], tmp_path: Path
) -> Iterator[Callable[..., SimDevice]]:
    """``start(profile, readings=[...], **spec)`` -> a running simulated device, on a
    fresh adapter (address) of the session's bed."""
    started: list[SimDevice] = []
    counter = itertools.count()

    def start(profile: str, readings: list[dict[str, Any]] | None = None, **spec: Any) -> SimDevice:
        adapter = ble_adapter().name
        n = next(counter)
        control = tmp_path / f"dev{n}.ctl"
        spec_json = {
            "profile": profile,
            "adapter": adapter,
            "readings": readings or [],
            "control_socket": str(control),
            **spec,
        }
        spec_path = tmp_path / f"dev{n}.json"
        spec_path.write_text(json.dumps(spec_json))
        log = tmp_path / f"dev{n}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.ble", "--spec", str(spec_path)],
            cwd=REPO,
            env=process_env(ble_bed),
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "READY":
            proc.kill()
            pytest.fail(f"simulated {profile} did not start: {line!r}\n{log.read_text()[-3000:]}")
        device = SimDevice(spec_json, ble_bed.address_of(adapter), control, proc, log)
        started.append(device)
        return device

    yield start
    for device in started:
        device.stop()


@pytest.fixture(scope="module")
def gateway_ingest(
    local_postgres: LocalPostgres, ingest_mqtt_url: str, request: pytest.FixtureRequest
) -> Iterator[WorkerThread]:
    """The real ingest worker: the gateway deletes outbox rows only on its receipts
    (docs/wire-format.md), so the gateway CLI tests run against one.  Its own database:
    simulated devices reuse adapter addresses, and what these tests store must not show
    up in other tests' counts.  One per module, stopped at its end: a module that tests a
    gateway with no ingest at all (test_gateway_receipts) must not meet a running one."""
    from ingest.migrations import migrate

    module = request.module.__name__.rsplit(".", 1)[-1]
    url = local_postgres.create_database(f"hv_gw_{module}"[:60])
    migrate(url)
    worker = WorkerThread(url, ingest_mqtt_url, f"gw-{module}", f"hv-ingest-{module}")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def gateway_cli(
    ble_bed: TestbedInfo,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    gateway_mqtt_url: Callable[[str], str],
    gateway_ingest: WorkerThread,
) -> GatewayCli:
    gateway_id = "gw-" + request.node.name.replace("test_", "")[:40].replace("[", "-").strip("]")
    gateway_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in gateway_id)
    return GatewayCli(ble_bed, tmp_path / "gateway", gateway_id, gateway_mqtt_url(gateway_id))


@pytest.fixture(autouse=True)
def _collect_cyclic_garbage() -> Iterator[None]:
    """paho clients a test dropped (reference cycles through their callbacks) keep their
    sockets until the cycle collector runs; in one long test process their descriptors
    passed 1024 and paho's select() failed for every client after them.  Collect them."""
    yield
    import gc

    gc.collect()
