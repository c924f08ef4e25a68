"""Session fixtures: the project's real PostgreSQL+TimescaleDB and Mosquitto, and the
one BlueZoo BLE test bed of the session.

The services run in their own state directory (``.homevitals/pytest``) on free ports, so
a test run never touches the demo's services nor a system PostgreSQL/Mosquitto.

Markers follow from fixtures: a test whose fixture closure holds a services fixture gets
``services``, one that holds the BLE bed gets ``ble`` (``pytest_collection_modifyitems``),
so ``pytest -m "not services and not ble"`` starts nothing and no test file has to
remember its marker.  A test that reaches one of them another way (``getfixturevalue``)
without the marker fails at set-up instead of starting services behind ``-m``'s back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from waiting import broker_accepts, wait_until

from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.postgres import LocalPostgres
from homevitals.services.system import free_port, pid_alive
from simulators.testbed import AdapterInfo, TestbedInfo, env_for, running_testbed

# Property tests check correctness, not speed: a per-example deadline only measures how
# loaded the machine is (CI has 2 cores).  Speed belongs in benchmarks/.
settings.register_profile("homevitals", deadline=None)
settings.load_profile("homevitals")

REPO = Path(__file__).resolve().parent.parent
TEST_STATE_ROOT = REPO / ".homevitals" / "pytest"

# Hypothesis' default 200 ms deadline per example is a wall-clock assert: on a loaded
# machine it fails tests that are right (test_wire did, at 314 ms).  Speed is measured in
# benchmarks/, never asserted in tests.
settings.register_profile("homevitals", deadline=None)
settings.load_profile("homevitals")

# The fixtures that start a process, and the marker a test using them must carry.  Every
# other services fixture depends on one of these.
MARKER_OF_FIXTURE = {
    "services_state_dir": "services",
    "local_postgres": "services",
    "local_mosquitto": "services",
    "ble_bed": "ble",
}

# Device adapters of the session's one BLE bed.  Every simulated device takes a fresh one
# (a fresh address: no test sees another test's device, bond or GATT cache).  At most 38
# today: the gateway tests' former pool of 26, the simulator tests' 10, end-to-end 2.
BLE_DEVICE_ADAPTERS = 64


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())  # the whole closure, not only arguments
        needs = {MARKER_OF_FIXTURE[n] for n in names if n in MARKER_OF_FIXTURE}
        for marker in sorted(needs):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)


_running: list[pytest.Item] = []  # the test being set up / run, for the guard below


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> object:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


def _require_marker(fixture: str) -> None:
    """Fail the test that starts ``fixture`` without its marker (called by the fixture
    itself: a ``pytest_fixture_setup`` hook here would not see session fixtures, whose
    hooks come from the session's directory, above tests/)."""
    marker = MARKER_OF_FIXTURE[fixture]
    item = _running[-1] if _running else None
    if item is not None and item.get_closest_marker(marker) is None:
        pytest.fail(
            f"{item.nodeid} starts {fixture!r} without the {marker!r} marker: request the "
            f"fixture as an argument (the marker then follows) or mark the test",
            pytrace=False,
        )


def _clean_stale_runs() -> None:
    """Stop and remove what interrupted earlier runs left (their pytest pid is gone)."""
    if not TEST_STATE_ROOT.is_dir():
        return
    for run in TEST_STATE_ROOT.iterdir():
        if run.name.isdigit() and not pid_alive(int(run.name)):
            LocalMosquitto(run, 0).stop()
            LocalPostgres(run, 0).stop()
            shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="session")
def services_state_dir() -> Iterator[Path]:
    """A state directory of this test run alone (concurrent runs don't collide)."""
    _require_marker("services_state_dir")
    _clean_stale_runs()
    state = TEST_STATE_ROOT / str(os.getpid())
    state.mkdir(parents=True)
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def local_mosquitto(services_state_dir: Path) -> Iterator[LocalMosquitto]:
    _require_marker("local_mosquitto")
    broker = LocalMosquitto(services_state_dir, free_port(), tls_port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def mosquitto_control(local_mosquitto: LocalMosquitto) -> LocalMosquitto:
    """The broker itself, for tests that stop and restart it."""
    return local_mosquitto


@pytest.fixture(scope="session")
def mqtt_url(local_mosquitto: LocalMosquitto) -> str:
    """An account that may read and write everything under homevitals/."""
    return local_mosquitto.admin_url


@pytest.fixture(scope="session")
def ingest_mqtt_url(local_mosquitto: LocalMosquitto) -> str:
    """The ingest service account (read-only on gateway topics)."""
    return local_mosquitto.url


@pytest.fixture(scope="session")
def gateway_mqtt_url(local_mosquitto: LocalMosquitto) -> Callable[[str], str]:
    """Provision per-gateway credentials (username = gateway id) and return its URL."""

    def provision(gateway_id: str) -> str:
        password = local_mosquitto.password_for(gateway_id)
        local_mosquitto.set_user(gateway_id, password)
        url = local_mosquitto.url_for(gateway_id, password)
        # The broker applies the password file on SIGHUP, in its own time: wait for the
        # account to be live (a CONNACK), not for a while.
        wait_until(lambda: broker_accepts(url), 10, what=f"the broker to accept {gateway_id}")
        return url

    return provision


@pytest.fixture(scope="session")
def local_postgres(services_state_dir: Path) -> Iterator[LocalPostgres]:
    _require_marker("local_postgres")
    cluster = LocalPostgres(services_state_dir, free_port())
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def database_url(local_postgres: LocalPostgres) -> str:
    """A fresh database with the schema migrated."""
    from ingest.migrations import migrate

    url = local_postgres.create_database("hv_test")
    migrate(url)
    return url


@pytest.fixture(scope="session")
def ble_bed() -> Iterator[TestbedInfo]:
    """The session's one BlueZoo bed; ``DBUS_SYSTEM_BUS_ADDRESS`` points at it meanwhile
    (bleak reads it when its BlueZ manager first connects in an event loop)."""
    _require_marker("ble_bed")
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon not installed (Debian package dbus)")
    # Unix socket paths are short (108 bytes): the bed lives under /tmp, not in a deep
    # pytest directory.
    state = Path(tempfile.mkdtemp(prefix="hv-ble-"))
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        with running_testbed(state, BLE_DEVICE_ADAPTERS) as info:
            os.environ.update(env_for(info))
            yield info
    finally:
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def ble_adapter(ble_bed: TestbedInfo) -> Callable[[], AdapterInfo]:
    """``take()`` -> a device adapter no simulated device has used in this session."""
    free = iter(ble_bed.device_adapters)

    def take() -> AdapterInfo:
        try:
            return next(free)
        except StopIteration:
            pytest.fail(
                f"more than {BLE_DEVICE_ADAPTERS} simulated devices: raise BLE_DEVICE_ADAPTERS"
            )

    return take
