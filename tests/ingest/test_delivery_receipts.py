"""Attacks on "delivered means committed" (GitHub issue #13).

Real Mosquitto (restarted through ``mosquitto_control``), real PostgreSQL, the real
ingest worker (``IngestWorker`` in a thread) and the real gateway ``Publisher`` +
``Outbox``.  A PUBACK only says the broker took a message; these tests break the path
after the broker (restart, workers that come and go, no worker yet) and count what the
database holds against what the gateway sent.

Before the fix (PUBACK deleted outbox rows; ingest used persistent sessions):
(a) 0/1000 stored, (b) 500/1000, (c) 1000/2000, (d) 0/300, (e) 2 dead letters,
(f) 0/3 stored and 1 whole-message dead letter (see the branch report for the run).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_helpers import (
    GatewayThread,
    WorkerThread,
    dead_letters,
    device_known,
    glucose,
    paired,
    stored,
    wait_until,
)
from mqtt_publish import publish_all

from homevitals.services.mosquitto import LocalMosquitto
from readings import EventsMessage, ReadingsBatch, encode, events_topic, readings_topic

pytestmark = [pytest.mark.services, pytest.mark.slow]

# Re-sends of unconfirmed batches start after this (the default is longer, for real links).
RECEIPT_TIMEOUT_S = 1.0
STORE_TIMEOUT_S = 60.0


@pytest.fixture()
def started() -> Iterator[list[GatewayThread | WorkerThread]]:
    """Everything a test started, stopped at its end whatever happened."""
    things: list[GatewayThread | WorkerThread] = []
    yield things
    for thing in reversed(things):
        with contextlib.suppress(Exception):  # best effort clean-up
            thing.stop()


def _gateway(
    url: str, gateway_id: str, tmp_path: Path, started: list[GatewayThread | WorkerThread]
) -> GatewayThread:
    gw = GatewayThread(url, gateway_id, tmp_path, **_publisher_kwargs()).start()
    started.append(gw)
    return gw


def _worker(
    database_url: str,
    ingest_mqtt_url: str,
    group: str,
    client_id: str,
    started: list[GatewayThread | WorkerThread],
) -> WorkerThread:
    worker = WorkerThread(database_url, ingest_mqtt_url, group, client_id).start()
    started.append(worker)
    return worker


def _publisher_kwargs() -> dict[str, float]:
    return {"receipt_timeout_s": RECEIPT_TIMEOUT_S}


def _pair_through(gw: GatewayThread, database_url: str, device: str) -> None:
    gw.enqueue(events=[paired(device)])
    assert wait_until(lambda: device_known(database_url, device), 30), "pairing never stored"


def _expect_stored(database_url: str, device: str, sent: int) -> None:
    wait_until(lambda: stored(database_url, device) >= sent, STORE_TIMEOUT_S, every=0.2)
    n = stored(database_url, device)
    assert n == sent, f"{n}/{sent} stored"


def test_a_broker_restart_full_outbox_ingest_reconnects_after_gateway(
    tmp_path: Path,
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    mosquitto_control: LocalMosquitto,
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group, n = "gw-dlv-a", "dev-dlv-a", "dlv-a", 1000
    worker = _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-a", started)
    gw = _gateway(gateway_mqtt_url(gateway_id), gateway_id, tmp_path, started)
    _pair_through(gw, database_url, device)
    mosquitto_control.stop()
    try:
        assert wait_until(lambda: not gw.connected)
        gw.enqueue([glucose(device, s) for s in range(1, n + 1)])  # held in the outbox
        worker.stop()  # ingest will come back, later than the gateway
    finally:
        mosquitto_control.start()
    before = gw.published_rows
    assert wait_until(lambda: gw.published_rows >= before + n, 60), "gateway never published"
    _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-a", started)
    _expect_stored(database_url, device, n)
    assert wait_until(lambda: gw.depth() == 0, 30), "outbox rows never confirmed"


def test_b_broker_restart_with_ingest_down(
    tmp_path: Path,
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    mosquitto_control: LocalMosquitto,
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group = "gw-dlv-b", "dev-dlv-b", "dlv-b"
    worker = _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-b", started)
    gw = _gateway(gateway_mqtt_url(gateway_id), gateway_id, tmp_path, started)
    _pair_through(gw, database_url, device)
    worker.stop()  # ingest down for the whole broker restart
    before = gw.published_rows
    gw.enqueue([glucose(device, s) for s in range(1, 501)])
    assert wait_until(lambda: gw.published_rows >= before + 500, 30)
    mosquitto_control.stop()
    try:
        assert wait_until(lambda: not gw.connected)
    finally:
        mosquitto_control.start()
    before = gw.published_rows
    gw.enqueue([glucose(device, s) for s in range(501, 1001)])
    assert wait_until(lambda: gw.published_rows >= before + 500, 60)
    _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-b", started)
    _expect_stored(database_url, device, 1000)
    assert wait_until(lambda: gw.depth() == 0, 30), "outbox rows never confirmed"


def test_c_two_workers_one_stopped_for_good_strands_nothing(
    tmp_path: Path,
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group = "gw-dlv-c", "dev-dlv-c", "dlv-c"
    _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-c1", started)
    second = _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-c2", started)
    gw = _gateway(gateway_mqtt_url(gateway_id), gateway_id, tmp_path, started)
    _pair_through(gw, database_url, device)
    second.stop()  # for good: nobody ever connects as hv-ingest-dlv-c2 again
    gw.enqueue([glucose(device, s) for s in range(1, 2001)])
    _expect_stored(database_url, device, 2000)
    assert wait_until(lambda: gw.depth() == 0, 30), "outbox rows never confirmed"


def test_d_readings_before_any_ingest_subscribed_are_stored_once_it_runs(
    tmp_path: Path,
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group = "gw-dlv-d", "dev-dlv-d", "dlv-d-never-seen-before"
    gw = _gateway(gateway_mqtt_url(gateway_id), gateway_id, tmp_path, started)
    gw.enqueue([glucose(device, s) for s in range(1, 301)], events=[paired(device)])
    assert wait_until(lambda: gw.published_rows >= 301, 30), "gateway never published"
    _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-d", started)
    _expect_stored(database_url, device, 300)
    assert dead_letters(database_url, gateway_id) == []
    assert wait_until(lambda: gw.depth() == 0, 30), "outbox rows never confirmed"


def _pair_directly(gateway_url: str, gateway_id: str, device: str, database_url: str) -> None:
    events = EventsMessage("homevitals.event/1", gateway_id, [paired(device)])
    publish_all(gateway_url, [(events_topic(gateway_id), encode(events))])
    assert wait_until(lambda: device_known(database_url, device), 30), "pairing never stored"


def test_e_the_same_invalid_reading_redelivered_is_one_dead_letter(
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group = "gw-dlv-e", "dev-dlv-e", "dlv-e"
    worker = _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-e", started)
    url = gateway_mqtt_url(gateway_id)
    _pair_directly(url, gateway_id, device, database_url)
    readings = [glucose(device, 1), glucose(device, 2, value=5000.0)]  # 5000 mg/dL: invalid
    seen = worker.messages
    for _ in range(2):  # the gateway re-sends: same readings, a new envelope
        batch = ReadingsBatch("homevitals.readings/1", gateway_id, datetime.now(UTC), readings)
        publish_all(url, [(readings_topic(gateway_id), encode(batch))])
    assert wait_until(lambda: worker.messages >= seen + 2, 30), "ingest never took both"
    assert stored(database_url, device) == 1
    letters = dead_letters(database_url, gateway_id)
    assert len(letters) == 1, f"{len(letters)} dead letters: {letters}"
    assert "implausible glucose 5000" in letters[0][0]


def test_f_nan_and_infinity_tokens_keep_the_valid_readings(
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    started: list[GatewayThread | WorkerThread],
) -> None:
    gateway_id, device, group = "gw-dlv-f", "dev-dlv-f", "dlv-f"
    worker = _worker(database_url, ingest_mqtt_url, group, "hv-ingest-dlv-f", started)
    url = gateway_mqtt_url(gateway_id)
    _pair_directly(url, gateway_id, device, database_url)

    def plain(seq: int) -> dict[str, object]:
        return json.loads(
            encode(
                ReadingsBatch(
                    "homevitals.readings/1", gateway_id, datetime.now(UTC), [glucose(device, seq)]
                )
            )
        )["readings"][0]

    bad_value = plain(2) | {"values": {"glucose": float("nan")}}
    bad_skew = plain(4) | {"skew_s": float("inf")}
    bad_original = plain(6) | {"original": {"glucose": [float("-inf"), "mg/dL"]}}
    payload = json.dumps(  # what Python's json writes: NaN, Infinity, -Infinity
        {
            "schema": "homevitals.readings/1",
            "gateway": gateway_id,
            "sent_at": datetime.now(UTC).isoformat(),
            "readings": [plain(1), bad_value, plain(3), bad_skew, plain(5), bad_original],
        }
    ).encode()
    assert b"NaN" in payload and b"-Infinity" in payload
    seen = worker.messages
    publish_all(url, [(readings_topic(gateway_id), payload)])
    assert wait_until(lambda: worker.messages >= seen + 1, 30)
    n = stored(database_url, device)
    letters = dead_letters(database_url, gateway_id)
    assert (n, len(letters)) == (3, 3), f"{n}/3 stored, dead letters: {letters}"
    assert all(dev == device for _, dev in letters)
    reasons = " | ".join(reason for reason, _ in letters)
    assert "NaN" in reasons and "Infinity" in reasons
