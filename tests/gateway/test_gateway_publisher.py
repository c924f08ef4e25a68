"""The publisher against the project's real Mosquitto and a real ingest worker: order,
rows deleted on ingest's receipt (not on PUBACK), outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_helpers import WorkerThread
from gw_helpers import Listener, make_reading
from waiting import wait_until_async

from gateway.config import MqttSettings
from gateway.outbox import Outbox
from gateway.publisher import Publisher
from gateway.store import GatewayDB
from homevitals.services.mosquitto import LocalMosquitto
from readings import DevicePaired

pytestmark = pytest.mark.services
DEVICE = "00:00:00:AA:AA:AA"


def _fill(outbox: Outbox, first: int, last: int) -> None:
    with outbox.db.transaction() as conn:
        outbox.enqueue_readings(conn, [make_reading(DEVICE, s) for s in range(first, last + 1)])


@pytest.fixture()
def ingest(database_url: str, ingest_mqtt_url: str) -> Iterator[WorkerThread]:
    """The real ingest worker: it sends the receipts the publisher deletes rows on."""
    worker = WorkerThread(database_url, ingest_mqtt_url, "gw-pub-tests", "hv-ingest-gw-pub")
    worker.start()
    yield worker
    worker.stop()


def test_drains_in_order_and_deletes_on_receipt(
    tmp_path: Path, mqtt_url: str, gateway_mqtt_url: Callable[[str], str], ingest: WorkerThread
) -> None:
    gateway_id = "gw-pub-order"
    listener = Listener(mqtt_url, gateway_id, client_id="hv-test-pub-order").start()
    outbox = Outbox(GatewayDB(tmp_path / "gw.sqlite3"))
    _fill(outbox, 1, 1000)
    outbox.enqueue_event(DevicePaired(device=DEVICE, at=datetime.now(UTC), profile="test"))

    async def scenario() -> None:
        publisher = Publisher(
            MqttSettings.from_url(gateway_mqtt_url(gateway_id)), gateway_id, outbox
        )
        await publisher.start()
        runner = asyncio.create_task(publisher.run())
        assert await publisher.drain(30)
        await publisher.stop()
        await runner

    asyncio.run(scenario())
    try:
        assert listener.wait_for(lambda s: len(s.readings) >= 1000 and len(s.all_events) >= 1)
        seqs = [r.seq for r in listener.readings]
        assert seqs == list(range(1, 1001))
        assert max(len(b.readings) for b in listener.batches) == 200
        assert outbox.depth() == 0
        assert listener.wait_for(lambda s: [st.state for st in s.statuses][-1:] == ["offline"])
        assert "online" in [st.state for st in listener.statuses]
    finally:
        listener.stop()


def test_outbox_holds_while_broker_is_down_then_drains_in_order(
    tmp_path: Path,
    mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
    mosquitto_control: LocalMosquitto,
    ingest: WorkerThread,
) -> None:
    gateway_id = "gw-pub-outage"
    url = gateway_mqtt_url(gateway_id)
    listener = Listener(mqtt_url, gateway_id, client_id="hv-test-pub-outage").start()
    outbox = Outbox(GatewayDB(tmp_path / "gw.sqlite3"))

    async def scenario() -> None:
        settings = MqttSettings.from_url(url)
        publisher = Publisher(settings, gateway_id, outbox)
        await publisher.start()
        runner = asyncio.create_task(publisher.run())
        _fill(outbox, 1, 300)
        publisher.notify()
        assert await publisher.drain(20)
        mosquitto_control.stop()
        try:
            await wait_until_async(lambda: not publisher.state.connected, 30, "the disconnect")
            _fill(outbox, 301, 900)
            published = publisher.state.published_rows
            publisher.notify()
            # The run loop took the wake-up (and, the broker being away, sent nothing).
            await wait_until_async(lambda: not publisher._wake.is_set(), 10, "the wake-up taken")
            assert outbox.depth() == 600  # held while the broker is away
            assert publisher.state.published_rows == published
            assert not publisher.state.connected
        finally:
            mosquitto_control.start()
        assert await publisher.drain(90)
        await publisher.stop()
        await runner

    try:
        asyncio.run(scenario())
        assert listener.wait_for(lambda s: len({r.id for r in s.readings}) >= 900, timeout=60)
        seqs = [r.seq or 0 for r in listener.readings]
        assert sorted(set(seqs)) == list(range(1, 901))
        # In order: duplicates (a re-send after the outage) may repeat, never reorder.
        firsts = list(dict.fromkeys(seqs))
        assert firsts == list(range(1, 901))
    finally:
        listener.stop()
