"""Ingest throughput and latency on this machine, against two baselines from the same run.

    .venv/bin/python benchmarks/bench_ingest.py [--readings 300000] [--per-message 100]
        [--receipts-cost]   # also: version-1 messages (no receipts) against version 2
                            # (a receipt per batch), alternating, one worker, same run

Runs its own PostgreSQL+TimescaleDB and Mosquitto (``.homevitals/bench``, free ports).
Figures printed:
  raw COPY ceiling  - binary COPY of the same rows from memory into the hypertable
  naive subscriber  - one reading per message, one INSERT + commit per message
  homevitals ingest - the real worker (manual acks, batching, COPY), publisher in
                      another process; readings/s from first publish to last commit
  latency           - publish -> commit p50/p99 at half the measured maximum rate

    .venv/bin/python benchmarks/bench_ingest.py --compare-identity [--repeat 2]

measures what migration 0008's reading identity costs, in one run: raw COPY and the real
pipeline (one worker), with the identity claims (as ingest writes now) and without
them (the writer up to 0007: uniqueness only on (reading_id, time)), alternated.

    .venv/bin/python benchmarks/bench_ingest.py --compare-id-check [--repeat 4]

measures what checking each reading's id against its source record costs (red-team
finding B2: ``ingest.columns.refuse_forged_ids``): the check alone on the batch in
memory, and the real pipeline (one worker) with and without it, alternated.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device_profiles.model import Component, Kind
from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.postgres import LocalPostgres
from homevitals.services.system import free_port
from ingest.columns import COPY_TABLES
from ingest.migrations import migrate
from ingest.patients import enroll_patient
from ingest.pipeline import Message
from ingest.service import IngestConfig, IngestWorker
from readings import identity, parse_mqtt_url, wire

STATE = Path(__file__).resolve().parent.parent / ".homevitals" / "bench"
GATEWAY = "gw-bench"
DEVICES = 10
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_readings(n: int, offset: int = 0) -> list[wire.Reading]:
    out = []
    for i in range(offset, offset + n):
        device = f"bench-dev-{i % DEVICES}"
        seq = i // DEVICES
        when = T0 + timedelta(minutes=5 * seq)
        local = when.replace(tzinfo=None).isoformat()
        out.append(
            wire.Reading(
                id=identity.reading_id(device, Kind.CGM, local, seq),
                device=device,
                kind=Kind.CGM,
                time=when,
                values={Component.GLUCOSE: float(70 + (i * 7) % 200)},
                device_time=local,
                seq=seq,
            )
        )
    return out


def encode_batch(chunk: list[wire.Reading], v2: bool = False) -> bytes:
    """Version 1 (no receipt) or version 2 (a batch id: ingest publishes a receipt)."""
    if v2:
        return wire.encode(
            wire.ReadingsBatch(
                wire.SCHEMA_READINGS_V2, GATEWAY, datetime.now(UTC), chunk, batch=uuid.uuid4().hex
            )
        )
    return wire.encode(wire.ReadingsBatch(wire.SCHEMA_READINGS, GATEWAY, datetime.now(UTC), chunk))


def encode_batches(readings: list[wire.Reading], per_message: int, v2: bool = False) -> list[bytes]:
    return [
        encode_batch(readings[i : i + per_message], v2)
        for i in range(0, len(readings), per_message)
    ]


def publisher(url: str, payloads: list[bytes], rate: float | None, times: Any, start: Any) -> None:
    """Runs in its own process: publish QoS 1, optionally paced, recording publish times."""
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.max_inflight_messages_set(1000)
    client.connect(target.host, target.port)
    client.loop_start()
    start.wait()
    t0 = time.perf_counter()
    infos = []
    for i, payload in enumerate(payloads):
        if rate is not None:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        times[i] = time.time()
        infos.append(client.publish(wire.readings_topic(GATEWAY), payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def raw_copy(url: str, readings: list[wire.Reading], claims: bool = False) -> float:
    """The same rows, built before the clock starts, in one binary COPY (the writer's
    column types and dumpers); ``claims``: preceded by the COPY of their identity claims
    into ``reading_identity`` in the same transaction, as the writer does."""
    from ingest.columns import Flat, Origin, glucose_rows
    from ingest.writer import register_dumpers

    flat = Flat()
    flat.add(Origin("", GATEWAY), readings)
    rows = glucose_rows(flat, list(range(len(readings))), [1] * len(readings))
    with psycopg.connect(url, autocommit=True) as conn:
        register_dumpers(conn)
        empty(conn)
        started = time.perf_counter()
        with conn.cursor() as cur, conn.transaction():
            if claims:
                with cur.copy(
                    "COPY reading_identity (reading_id, tbl, time) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["bytea", "text", "timestamptz"])
                    for row in rows:
                        copy.write_row((row[1], "glucose", row[0]))
            columns = ", ".join(COPY_TABLES["glucose"].columns)
            with cur.copy(f"COPY glucose ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(COPY_TABLES["glucose"].types)
                for row in rows:
                    copy.write_row(row)
        elapsed = time.perf_counter() - started
        empty(conn)
    return len(rows) / elapsed


def empty(conn: psycopg.Connection[Any]) -> None:
    """No readings and no identity claims (a claim left behind would make the next run
    skip every row instead of storing it)."""
    conn.execute("TRUNCATE glucose, reading_identity")


def bench_database(pg: LocalPostgres, name: str) -> str:
    """A migrated database with the bench patient and devices."""
    url = pg.create_database(name)
    migrate(url)
    enroll_patient(url, "pt-bench", [GATEWAY])
    with psycopg.connect(url, autocommit=True) as conn:
        for d in range(DEVICES):
            conn.execute(
                "INSERT INTO devices (id, gateway_id) VALUES (%s, %s)",
                (f"bench-dev-{d}", GATEWAY),
            )
    return url


def compare_identity(
    pg: LocalPostgres, broker: LocalMosquitto, readings: list[wire.Reading], args: Any
) -> None:
    gateway_url = broker.url_for(GATEWAY, "bench-secret")
    broker.set_user(GATEWAY, "bench-secret")
    url = bench_database(pg, "bench_identity")
    variants = {"0007 (no claims; unique (reading_id, time))": False, "0008 (claims)": True}
    results: dict[str, dict[str, list[float]]] = {k: {"copy": [], "ingest": []} for k in variants}
    for _ in range(args.repeat):
        for name, claims in variants.items():
            results[name]["copy"].append(raw_copy(url, readings, claims))
            with psycopg.connect(url, autocommit=True) as conn:
                empty(conn)
            rate, _ = pipeline(
                url, broker.url, gateway_url, readings, args.per_message, None, 1, claims=claims
            )
            results[name]["ingest"].append(rate)
    for name, figures in results.items():
        copy_rates = ", ".join(f"{r:,.0f}" for r in figures["copy"])
        ingest_rates = ", ".join(f"{r:,.0f}" for r in figures["ingest"])
        print(f"{name}:")
        print(f"  raw COPY rows/s:            {copy_rates}")
        print(f"  ingest readings/s, 1 worker: {ingest_rates}")


def naive(url: str, mqtt_admin: str, gateway_url: str, n: int) -> float:
    """One reading per message; one INSERT and one commit per message."""
    readings = make_readings(n, offset=10_000_000)
    payloads = encode_batches(readings, 1)
    done = threading.Event()
    count = [0]
    conn = psycopg.connect(url, autocommit=False)
    target = parse_mqtt_url(mqtt_admin)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)

    def on_message(c: Any, u: Any, msg: Any) -> None:
        batch = wire.decode_batch(msg.payload)
        for r in batch.readings:
            conn.execute(
                "INSERT INTO glucose (time, reading_id, device_id, source, mgdl, sequence, device_time)"
                " VALUES (%s, %s, %s, 'cgm', %s, %s, %s) ON CONFLICT DO NOTHING",
                (r.time, r.id, r.device, r.values[Component.GLUCOSE], r.seq, r.device_time),
            )
        conn.commit()
        count[0] += 1
        if count[0] == len(payloads):
            done.set()

    client.on_message = on_message
    client.connect(target.host, target.port)
    client.subscribe(wire.readings_topic(GATEWAY), qos=1)
    client.loop_start()
    time.sleep(0.5)
    times = mp.Array("d", len(payloads))
    start = mp.Event()
    proc = mp.Process(target=publisher, args=(gateway_url, payloads, None, times, start))
    proc.start()
    time.sleep(0.5)
    started = time.perf_counter()
    start.set()
    done.wait(600)
    elapsed = time.perf_counter() - started
    proc.join()
    client.disconnect()
    client.loop_stop()
    conn.close()
    return n / elapsed


class _SentAt(msgspec.Struct):
    sent_at: datetime


_sent_at = msgspec.json.Decoder(_SentAt)


def worker_process(
    url: str,
    ingest_url: str,
    group: str,
    client_id: str,
    committed: Any,
    latencies: Any,
    ready: Any,
    stop: Any,
    decode_on_receive: bool = True,
    claims: bool = True,
    id_check: bool = True,
) -> None:
    """One ingest worker process (the unit of scale-out), reporting commits to the parent.

    ``claims=False``: the baseline of ``--compare-identity``, the writer as it was up to
    migration 0007 (no identity claims; uniqueness only on (reading_id, time))."""
    if not claims:
        from ingest import writer

        setattr(writer, "_claim", lambda *args: None)  # noqa: B010 - this process only
    if not id_check:  # the baseline of --compare-id-check: ingest before finding B2's fix
        from ingest import pipeline as ingest_pipeline

        setattr(ingest_pipeline, "refuse_forged_ids", lambda split: 0)  # noqa: B010

    worker = IngestWorker(
        IngestConfig(
            url,
            ingest_url,
            group=group,
            client_id=client_id,
            max_batch_messages=500,
            decode_on_receive=decode_on_receive,
        )
    )
    lat: list[float] = []

    def on_commit(messages: list[Message]) -> None:
        now = time.time()
        n = 0
        for m in messages:
            if not m.topic.endswith("/readings"):
                continue
            sent = _sent_at.decode(m.payload).sent_at.timestamp()
            lat.append(now - sent)
            n += m.payload.count(b'"id":')
        with committed.get_lock():
            committed.value += n

    worker.on_commit = on_commit
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    worker.connected.wait(10)
    ready.set()
    stop.wait()
    worker.stop()
    thread.join(60)
    latencies.put(lat)


def publisher_jit(
    url: str,
    readings: list[wire.Reading],
    per_message: int,
    rate: float | None,
    start: Any,
    v2: bool = False,
) -> None:
    """Publish with ``sent_at`` stamped at publish time (for publish -> commit latency).
    With ``v2`` the messages carry batch ids and the publisher, like a gateway, is
    subscribed to its receipts (it does not wait for them: this measures ingest)."""
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.max_inflight_messages_set(1000)
    client.connect(target.host, target.port)
    client.loop_start()
    if v2:
        client.subscribe(wire.receipts_topic(GATEWAY), qos=1)
    chunks = [readings[i : i + per_message] for i in range(0, len(readings), per_message)]
    prebuilt = None if rate is not None else encode_batches(readings, per_message, v2)
    start.wait()
    t0 = time.perf_counter()
    infos = []
    for i, chunk in enumerate(chunks):
        if rate is not None:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            payload = encode_batch(chunk, v2)
        else:
            assert prebuilt is not None
            payload = prebuilt[i]
        infos.append(client.publish(wire.readings_topic(GATEWAY), payload, qos=1))
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def pipeline(
    url: str,
    ingest_url: str,
    gateway_url: str,
    readings: list[wire.Reading],
    per_message: int,
    rate: float | None,
    workers: int,
    v2: bool = False,
    decode_on_receive: bool = True,
    claims: bool = True,
    id_check: bool = True,
) -> tuple[float, np.ndarray[Any, np.dtype[np.float64]]]:
    """Readings/s from first publish to last commit, and per-message latencies."""
    committed = mp.Value("q", 0)
    latencies: Any = mp.Queue()
    stop = mp.Event()
    group = f"bench-{uuid.uuid4().hex[:6]}"
    procs = []
    for i in range(workers):
        ready = mp.Event()
        proc = mp.Process(
            target=worker_process,
            args=(
                url,
                ingest_url,
                group,
                f"{group}-{i}",
                committed,
                latencies,
                ready,
                stop,
                decode_on_receive,
                claims,
                id_check,
            ),
        )
        proc.start()
        ready.wait(30)
        procs.append(proc)
    time.sleep(0.5)
    start = mp.Event()
    pub = mp.Process(
        target=publisher_jit, args=(gateway_url, readings, per_message, rate, start, v2)
    )
    pub.start()
    time.sleep(1.0)  # publisher connected and (for throughput runs) payloads pre-encoded
    started = time.perf_counter()
    start.set()
    while committed.value < len(readings):
        time.sleep(0.005)
        if time.perf_counter() - started > 900:
            raise RuntimeError(f"only {committed.value} of {len(readings)} committed")
    elapsed = time.perf_counter() - started
    pub.join()
    stop.set()
    lat = [x for _ in procs for x in latencies.get(timeout=60)]
    for proc in procs:
        proc.join(60)
    return len(readings) / elapsed, np.asarray(lat)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--naive-readings", type=int, default=3_000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker processes per run"
    )
    parser.add_argument(
        "--decode-overlap",
        action="store_true",
        help="only: decoding in the main thread vs on receipt (overlapping the COPY),"
        " alternating, 1 worker, 4 rounds each",
    )
    parser.add_argument(
        "--receipts-cost",
        action="store_true",
        help="only: version 1 vs version 2 (receipts), alternating, 1 worker, 4 rounds each",
    )
    parser.add_argument("--compare-identity", action="store_true")
    parser.add_argument(
        "--compare-id-check",
        action="store_true",
        help="only: the reading-id check (B2) on and off, alternating, 1 worker",
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    if STATE.exists():
        LocalMosquitto(STATE, 0).stop()
        LocalPostgres(STATE, 0).stop()
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True)
    pg, broker = LocalPostgres(STATE, free_port()), LocalMosquitto(STATE, free_port())
    pg.start()
    broker.start()
    try:
        readings = make_readings(args.readings)
        print(
            f"readings: {len(readings):,} CGM rows, {args.per_message} per message, {DEVICES} devices"
        )
        if args.compare_identity:
            compare_identity(pg, broker, readings, args)
            return
        url = bench_database(pg, "bench")
        gateway_url = broker.url_for(GATEWAY, "bench-secret")
        broker.set_user(GATEWAY, "bench-secret")
        if args.compare_id_check:
            compare_id_check(url, broker, gateway_url, readings, args)
            return
        if args.receipts_cost:
            receipts_cost(url, broker, gateway_url, readings, args.per_message)
            return
        if args.decode_overlap:
            decode_overlap(url, broker, gateway_url, readings, args.per_message)
            return

        ceiling = raw_copy(url, readings)
        print(f"raw COPY ceiling:      {ceiling:12,.0f} rows/s")
        slow = naive(url, broker.admin_url, gateway_url, args.naive_readings)
        print(
            f"naive subscriber:      {slow:12,.0f} readings/s  ({args.naive_readings:,} readings)"
        )
        best = 0.0
        for workers in args.workers:
            with psycopg.connect(url, autocommit=True) as conn:
                empty(conn)
            rate, _ = pipeline(
                url, broker.url, gateway_url, readings, args.per_message, None, workers
            )
            best = max(best, rate)
            print(
                f"homevitals ingest:     {rate:12,.0f} readings/s  ({workers} worker process(es))"
            )
            print(f"  vs naive:            {rate / slow:12.1f} x   (goal >= 50 x)")
            print(f"  vs raw COPY:         {100 * rate / ceiling:12.1f} %   (goal >= 60 %)")
        with psycopg.connect(url, autocommit=True) as conn:
            empty(conn)
        workers = args.workers[-1]
        half = best / 2 / args.per_message  # messages/s
        n_lat = min(len(readings), int(best / 2 * 10))  # ~10 s at half the best rate
        _, lat = pipeline(
            url, broker.url, gateway_url, readings[:n_lat], args.per_message, half, workers
        )
        p50, p99 = np.percentile(lat * 1000, [50, 99])
        print(
            f"latency at {best / 2:,.0f} readings/s ({workers} worker(s)): p50 {p50:.0f} ms,"
            f" p99 {p99:.0f} ms  (goal p99 < 1000 ms)"
        )
    finally:
        broker.stop()
        pg.stop()


def compare_id_check(
    url: str, broker: LocalMosquitto, gateway_url: str, readings: list[wire.Reading], args: Any
) -> None:
    """The id check alone (in memory, the batch as a worker holds it), then the pipeline
    with and without it, alternating so that both see the same machine load."""
    from ingest.columns import Flat, Origin, Split, refuse_forged_ids

    batch = readings[: min(len(readings), 50_000)]
    timings = []
    for _ in range(5):
        flat = Flat()
        flat.add(Origin("t", GATEWAY), batch)
        split = Split(flat, {"glucose": list(range(len(batch)))})
        started = time.perf_counter()
        assert refuse_forged_ids(split) == 0
        timings.append(time.perf_counter() - started)
    per = min(timings) / len(batch) * 1e6
    print(f"id check alone: {per:.2f} us per reading (best of 5, {len(batch):,} readings)")
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.repeat):
        for label in ("without", "with"):
            with psycopg.connect(url, autocommit=True) as conn:
                empty(conn)
            rate, _ = pipeline(
                url,
                broker.url,
                gateway_url,
                readings,
                args.per_message,
                None,
                1,
                id_check=label == "with",
            )
            rates[label].append(rate)
            print(f"  {label} id check: {rate:12,.0f} readings/s")
    off, on = (float(np.median(rates[k])) for k in ("without", "with"))
    print(
        f"id check cost (1 worker, median of {args.repeat}): {off:,.0f} -> {on:,.0f}"
        f" readings/s ({100 * (on / off - 1):+.1f} %)"
    )


def receipts_cost(
    url: str,
    broker: LocalMosquitto,
    gateway_url: str,
    readings: list[wire.Reading],
    per_message: int,
) -> None:
    """What receipts cost ingest: the same readings as version-1 messages (no receipts)
    and as version-2 messages (outcome per batch, one receipt per gateway per commit),
    alternating so that both see the same machine load."""
    rates: dict[str, list[float]] = {"v1": [], "v2": []}
    for _ in range(4):
        for label in ("v1", "v2"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE glucose")
            rate, _ = pipeline(
                url, broker.url, gateway_url, readings, per_message, None, 1, v2=label == "v2"
            )
            rates[label].append(rate)
            print(f"  {label}: {rate:12,.0f} readings/s")
    v1, v2 = (float(np.median(rates[k])) for k in ("v1", "v2"))
    print(
        f"receipts cost (1 worker): v1 {v1:,.0f} -> v2 {v2:,.0f} readings/s ({100 * (v2 / v1 - 1):+.1f} %)"
    )


def decode_overlap(
    url: str,
    broker: LocalMosquitto,
    gateway_url: str,
    readings: list[wire.Reading],
    per_message: int,
) -> None:
    """Decoding in the main thread (between COPYs) against decoding in paho's network
    thread as messages arrive (``IngestConfig.decode_on_receive``), alternating."""
    labels = ("inline", "on receive")
    rates: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(4):
        for label in labels:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE glucose")
            rate, _ = pipeline(
                url,
                broker.url,
                gateway_url,
                readings,
                per_message,
                None,
                1,
                v2=True,
                decode_on_receive=label == "on receive",
            )
            rates[label].append(rate)
            print(f"  {label}: {rate:12,.0f} readings/s")
    a, b = (float(np.median(rates[label])) for label in labels)
    print(
        f"decode overlap (1 worker): inline {a:,.0f} -> on receive {b:,.0f} readings/s"
        f" ({100 * (b / a - 1):+.1f} %)"
    )


if __name__ == "__main__":
    main()
