"""``homevitals ingest run``: MQTT 5 shared-subscription worker writing to TimescaleDB.

Delivery (docs/gateway.md, "Failure analysis"): after the transaction holding a batch
committed, the worker publishes a receipt for every version-2 message in it to that
gateway's ``receipts`` topic (QoS 1), then acknowledges the messages.  The gateway
deletes its outbox rows only on a receipt and re-sends what stays unconfirmed, so the
broker is never trusted to keep anything: a message it drops (no live subscriber, a
restart that lost the shared subscription, a worker that died holding it) is sent
again, and the reading identity makes the second write a no-op.

So the worker connects with a clean start and a session that ends with the connection
(Session Expiry 0): the shared subscription exists only while a worker is alive to
take its share, and a worker stopped for good strands nothing.  Receive Maximum bounds
the unacknowledged messages the broker hands us, which is the backpressure when the
database is slow.
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from ingest import metrics
from ingest.deadletters import UNKNOWN_DEVICE_PREFIX, reprocess
from ingest.migrations import migrate
from ingest.pipeline import BatchOutcome, Message, predecoded, process_isolating
from ingest.registry import BindingCache, attribute_pending
from ingest.storage import apply_retention
from readings import (
    EVENTS_SUBSCRIPTION,
    READINGS_SUBSCRIPTION,
    SCHEMA_RECEIPT,
    STATUS_SUBSCRIPTION,
    BatchReceipt,
    Receipt,
    encode,
    parse_mqtt_url,
    receipts_topic,
    shared,
)

log = logging.getLogger("homevitals.ingest")


@dataclass(frozen=True, slots=True)
class IngestConfig:
    database_url: str
    mqtt_url: str
    group: str = "ingest"
    client_id: str | None = None
    max_batch_messages: int = 500
    max_wait_s: float = 0.05
    receive_maximum: int = 2000
    # 0: the session (and its share of the subscription) ends with the connection; what
    # was in flight to a worker that went away is re-sent by its gateway (no receipt).
    session_expiry_s: int = 0
    ca_file: Path | None = None  # CA for an mqtts:// broker (else the system's trust store)
    retention_days: int = 0  # 0: keep everything; else drop_chunks older than this
    retention_every_s: float = 3600.0
    progress_every_s: float = 60.0  # an INFO line with the counts since the last one
    # Decode readings batches in paho's network thread as they arrive, so that decoding
    # the next batch could overlap this batch's COPY and COMMIT (where the main thread
    # waits on the server without the GIL).  Off: on the shared 2-core machine it made
    # no difference above the noise (docs/performance.md, bench_ingest --decode-overlap).
    decode_on_receive: bool = False


@dataclass(frozen=True, slots=True)
class _Inbound:
    mid: int
    qos: int
    message: Message
    connection: int  # which connection delivered it (packet ids are per session)


class IngestWorker:
    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        self.inbox: queue.Queue[_Inbound] = queue.Queue()
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.cache = BindingCache()
        self.housekeeping_every_s = 2.0
        self._next_retention = 0.0
        # Called after each commit with the committed messages (benchmarks, tests).
        self.on_commit: Callable[[list[Message]], None] | None = None
        self.totals: dict[str, int] = {"messages": 0, "readings": 0, "dead_letters": 0}
        self._reported = dict(self.totals)
        self._reported_at = time.monotonic()
        client_id = config.client_id or f"hv-ingest-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        target = parse_mqtt_url(config.mqtt_url)
        self._target = target
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        if target.tls:
            self.client.tls_set(ca_certs=None if config.ca_file is None else str(config.ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()  # SUBACK of this connection's subscriptions
        self.receipts_sent = 0
        self._connection = 0  # counts connections: a clean start begins a new session
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)

    # paho callbacks run on the network thread: keep them tiny.
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason, extra={"reason": str(reason)})
            return
        self.subscribed.clear()
        self._connection += 1
        group = self.config.group
        options = SubscribeOptions(qos=1)
        client.subscribe(
            [
                (shared(group, READINGS_SUBSCRIPTION), options),
                (shared(group, EVENTS_SUBSCRIPTION), options),
                (shared(group, STATUS_SUBSCRIPTION), options),
            ]
        )
        self.connected.set()
        log.info(
            "connected to %s:%s, subscribed as group %r",
            self._target.host,
            self._target.port,
            group,
            extra={"broker": f"{self._target.host}:{self._target.port}", "group": group},
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused the subscriptions: %s", refused, extra={"reasons": refused})
            return
        self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self.stopping.is_set():
            log.warning(
                "disconnected from broker: %s (reconnecting)", reason, extra={"reason": str(reason)}
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        message = (
            predecoded(msg.topic, payload)
            if self.config.decode_on_receive
            else Message(msg.topic, payload)
        )
        self.inbox.put(_Inbound(msg.mid, msg.qos, message, self._connection))
        metrics.LAG.inc()

    def start(self) -> None:
        migrate(self.config.database_url)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        self.client.connect_async(
            self._target.host,
            self._target.port,
            keepalive=30,
            clean_start=self.config.session_expiry_s == 0,
            properties=props,
        )
        self.client.loop_start()

    def _collect(self) -> list[_Inbound]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.max_wait_s
        while len(batch) < self.config.max_batch_messages:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self.inbox.get(timeout=max(remaining, 0))
                    if remaining > 0
                    else self.inbox.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _write(self, conn: psycopg.Connection[Any], batch: list[_Inbound]) -> None:
        started = time.perf_counter()
        outcomes: list[BatchOutcome] = []
        result, changed = process_isolating(
            conn, [b.message for b in batch], self.cache, outcomes=outcomes
        )
        self._send_receipts(outcomes)  # committed: now the gateways may forget them
        if changed:
            self.cache.invalidate()
            parked, again = reprocess(
                conn, self.cache, devices=changed, reason_prefix=UNKNOWN_DEVICE_PREFIX
            )
            if parked:
                log.info(
                    "re-processed %d parked readings of newly paired devices (%d rejected again)",
                    parked,
                    again,
                    extra={"reprocessed": parked, "rejected_again": again},
                )
        current = self._connection
        for inbound in batch:  # only now: the readings are committed
            # A message of an earlier connection died with its session (clean start):
            # its packet id may already name another message of this one, not yet
            # committed, so it is not acknowledged (the gateway has the receipt).
            if inbound.connection == current:
                self.client.ack(inbound.mid, inbound.qos)
        if self.on_commit is not None:
            self.on_commit([b.message for b in batch])
        elapsed = time.perf_counter() - started
        metrics.BATCH_SECONDS.observe(elapsed)
        metrics.BATCH_MESSAGES.observe(len(batch))
        metrics.MESSAGES.inc(len(batch))
        metrics.LAG.dec(len(batch))
        metrics.DEAD_LETTERS.inc(result.dead_letters)
        for table, n in result.inserted.items():
            metrics.READINGS.labels(table).inc(n)
        for table, n in result.duplicates.items():
            metrics.DUPLICATES.labels(table).inc(n)
        stored = sum(result.inserted.values())
        self.totals["messages"] += len(batch)
        self.totals["readings"] += stored
        self.totals["dead_letters"] += result.dead_letters
        if result.dead_letters:
            log.warning(
                "batch of %d messages: %d dead letters",
                len(batch),
                result.dead_letters,
                extra={"messages": len(batch), "dead_letters": result.dead_letters},
            )
        if log.isEnabledFor(logging.DEBUG):  # the fields are built only when wanted
            log.debug(
                "batch committed",
                extra={
                    "messages": len(batch),
                    "readings": stored,
                    "duplicates": sum(result.duplicates.values()),
                    "dead_letters": result.dead_letters,
                    "batch_ms": round(elapsed * 1000, 2),
                },
            )

    def _send_receipts(self, outcomes: list[BatchOutcome]) -> None:
        """One receipt per gateway for the batches of this commit (QoS 1, not awaited: a
        receipt lost on the way only makes the gateway send the batch again)."""
        by_gateway: dict[str, list[BatchReceipt]] = {}
        for o in outcomes:
            by_gateway.setdefault(o.gateway, []).append(
                BatchReceipt(o.batch, o.stored, o.duplicate, o.dead_lettered)
            )
        now = datetime.now(UTC)
        for gateway, receipts in by_gateway.items():
            payload = encode(Receipt(SCHEMA_RECEIPT, gateway, now, receipts))
            self.client.publish(receipts_topic(gateway), payload, qos=1)
            self.receipts_sent += len(receipts)

    def _report_progress(self) -> None:
        """One INFO line per ``progress_every_s`` with what was stored since the last."""
        now = time.monotonic()
        if now - self._reported_at < self.config.progress_every_s:
            return
        delta = {k: v - self._reported.get(k, 0) for k, v in self.totals.items()}
        seconds = now - self._reported_at
        log.info(
            "stored %d readings from %d messages in %.0f s (%d dead letters)",
            delta["readings"],
            delta["messages"],
            seconds,
            delta["dead_letters"],
            extra={
                **delta,
                "interval_s": round(seconds, 1),
                "readings_per_s": round(delta["readings"] / seconds, 1),
                "queue_depth": self.inbox.qsize(),
            },
        )
        self._reported = dict(self.totals)
        self._reported_at = now

    def housekeeping(self, conn: psycopg.Connection[Any]) -> None:
        """Close the races between workers: readings parked as 'unknown device' or left
        unattributed by a worker whose cache was a moment older than another worker's
        pairing commit are picked up here."""
        parked, again = reprocess(
            conn, self.cache, reason_prefix=UNKNOWN_DEVICE_PREFIX, only_known_devices=True
        )
        if parked:
            log.info(
                "re-processed %d parked readings of now-known devices (%d rejected again)",
                parked,
                again,
                extra={"reprocessed": parked, "rejected_again": again},
            )
            self.totals["readings"] += parked - again
        with conn.transaction():
            attribute_pending(conn)
        if self.config.retention_days > 0 and time.monotonic() >= self._next_retention:
            apply_retention(conn, timedelta(days=self.config.retention_days))
            self._next_retention = time.monotonic() + self.config.retention_every_s

    def run(self, duration_s: float | None = None, idle_exit_s: float | None = None) -> None:
        """Consume until stopped (signal, ``duration_s`` elapsed, or idle for ``idle_exit_s``)."""
        # Each batch allocates ~10 objects per reading and frees them at commit: with the
        # default thresholds the cyclic GC runs hundreds of times per batch for nothing
        # (measured: -25 % throughput).  Start-up objects are frozen out of its scans.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        last_activity = time.monotonic()
        next_housekeeping = time.monotonic() + self.housekeeping_every_s
        conn: psycopg.Connection[Any] | None = None
        try:
            while True:
                if self.stopping.is_set() and self.inbox.empty():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.stopping.set()
                if idle_exit_s is not None and time.monotonic() - last_activity > idle_exit_s:
                    self.stopping.set()
                if time.monotonic() >= next_housekeeping and conn is not None:
                    try:
                        self.housekeeping(conn)
                    except psycopg.OperationalError as exc:
                        log.warning("housekeeping skipped: %s", exc, extra={"error": str(exc)})
                    next_housekeeping = time.monotonic() + self.housekeeping_every_s
                self._report_progress()
                batch = self._collect()
                if not batch:
                    continue
                last_activity = time.monotonic()
                while True:
                    try:
                        if conn is None or conn.closed:
                            conn = psycopg.connect(self.config.database_url, autocommit=True)
                        self._write(conn, batch)
                        break
                    except psycopg.OperationalError as exc:
                        # Database down or restarting: keep the batch (unacked) and retry.
                        log.warning(
                            "database unavailable (%s); retrying the batch",
                            exc,
                            extra={"error": str(exc), "messages": len(batch)},
                        )
                        if conn is not None:
                            conn.close()
                        conn = None
                        time.sleep(1.0)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.stopping.set()


def run_worker(
    config: IngestConfig, duration_s: float | None = None, idle_exit_s: float | None = None
) -> dict[str, int]:
    worker = IngestWorker(config)

    def _graceful(signum: int, frame: object) -> None:
        log.info(
            "signal %d: flushing and acknowledging, then stopping", signum, extra={"signal": signum}
        )
        worker.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _graceful)
        signal.signal(signal.SIGINT, _graceful)
    worker.run(duration_s=duration_s, idle_exit_s=idle_exit_s)
    log.info("stopped at %s: %s", datetime.now(UTC).isoformat(), worker.totals, extra=worker.totals)
    return worker.totals
