"""The real gateway (Publisher + Outbox) and the real ingest worker, side by side in
threads, for the delivery tests (``tests/ingest/test_delivery_receipts.py``,
``tests/gateway/test_gateway_receipts.py``).  Waits are bounded polls of an observable
event (a row appearing, a counter moving), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from device_profiles.model import Component, Kind
from gateway.config import MqttSettings
from gateway.outbox import Outbox
from gateway.publisher import Publisher
from gateway.store import GatewayDB
from ingest.service import IngestConfig, IngestWorker
from readings import DevicePaired, Event, Reading, reading_id

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 8, 0)


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def glucose(device: str, seq: int, value: float | None = None) -> Reading:
    device_time = T0 + timedelta(minutes=seq)
    return Reading(
        id=reading_id(device, Kind.GLUCOSE, device_time.isoformat(), seq),
        device=device,
        kind=Kind.GLUCOSE,
        time=device_time.replace(tzinfo=UTC),
        values={Component.GLUCOSE: 100.0 + seq % 50 if value is None else value},
        device_time=device_time.isoformat(),
        seq=seq,
    )


def paired(device: str) -> DevicePaired:
    return DevicePaired(device=device, at=datetime(2026, 1, 1, tzinfo=UTC), profile="glucose-meter")


def stored(database_url: str, device: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM glucose WHERE device_id = %s", (device,)
        ).fetchone()
    return int(row[0]) if row else 0


def device_known(database_url: str, device: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT 1 FROM devices WHERE id = %s", (device,)).fetchone() is not None


def dead_letters(database_url: str, gateway: str) -> list[tuple[str, str | None]]:
    """(reason, device) of every dead letter from ``gateway``, oldest first."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT reason, device_id FROM dead_letters WHERE gateway_id = %s ORDER BY id",
            (gateway,),
        ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


class GatewayThread:
    """A gateway's Publisher and Outbox on their own asyncio loop in a thread (the SQLite
    outbox is only ever touched from that loop, as in the daemon)."""

    def __init__(self, url: str, gateway_id: str, state: Path, **publisher_kwargs: Any) -> None:
        self.url = url
        self.gateway_id = gateway_id
        self.path = state / f"{gateway_id}.sqlite3"
        self.kwargs = publisher_kwargs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.publisher: Publisher | None = None
        self.outbox: Outbox | None = None
        self._runner: asyncio.Task[None] | None = None

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self) -> GatewayThread:
        self.thread.start()

        async def go() -> None:
            self.outbox = Outbox(GatewayDB(self.path))
            self.publisher = Publisher(
                MqttSettings.from_url(self.url), self.gateway_id, self.outbox, **self.kwargs
            )
            await self.publisher.start()
            self._runner = asyncio.create_task(self.publisher.run())

        self._run(go())
        return self

    def enqueue(self, readings: Sequence[Reading] = (), events: Sequence[Event] = ()) -> None:
        async def go() -> None:
            assert self.outbox is not None and self.publisher is not None
            with self.outbox.db.transaction() as conn:
                self.outbox.enqueue_events(conn, events)
                self.outbox.enqueue_readings(conn, readings)
            self.publisher.notify()

        self._run(go())

    def depth(self) -> int:
        async def go() -> int:
            assert self.outbox is not None
            return self.outbox.depth()

        return self._run(go())

    @property
    def published_rows(self) -> int:
        assert self.publisher is not None
        return self.publisher.state.published_rows

    @property
    def connected(self) -> bool:
        assert self.publisher is not None
        return self.publisher.state.connected

    def stop(self) -> None:
        async def go() -> None:
            assert self.publisher is not None
            await self.publisher.stop()
            if self._runner is not None:
                await self._runner

        try:
            self._run(go())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


class WorkerThread:
    """``IngestWorker.run`` in a thread: the real worker, stoppable like SIGTERM does."""

    def __init__(self, database_url: str, mqtt_url: str, group: str, client_id: str) -> None:
        self.config = IngestConfig(
            database_url, mqtt_url, group=group, client_id=client_id, max_wait_s=0.01
        )
        self.worker = IngestWorker(self.config)
        self.worker.housekeeping_every_s = 0.5
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def start(self) -> WorkerThread:
        self.thread.start()
        if not self.worker.connected.wait(20):
            raise TimeoutError("ingest worker did not connect")
        return self

    @property
    def messages(self) -> int:
        return self.worker.totals["messages"]

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
