"""Session fixtures: the project's real PostgreSQL+TimescaleDB and Mosquitto.

They run in their own state directory (``.homevitals/pytest``) on free ports, so a
test run never touches the demo's services nor a system PostgreSQL/Mosquitto.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.postgres import LocalPostgres
from homevitals.services.system import free_port, pid_alive

# Property tests check correctness, not speed: a per-example deadline only measures how
# loaded the machine is (CI has 2 cores).  Speed belongs in benchmarks/.
settings.register_profile("homevitals", deadline=None)
settings.load_profile("homevitals")

REPO = Path(__file__).resolve().parent.parent
TEST_STATE_ROOT = REPO / ".homevitals" / "pytest"


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
    _clean_stale_runs()
    state = TEST_STATE_ROOT / str(os.getpid())
    state.mkdir(parents=True)
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def local_mosquitto(services_state_dir: Path) -> Iterator[LocalMosquitto]:
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
        return local_mosquitto.url_for(gateway_id, password)

    return provision


@pytest.fixture(scope="session")
def local_postgres(services_state_dir: Path) -> Iterator[LocalPostgres]:
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
