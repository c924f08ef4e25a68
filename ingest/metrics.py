"""Prometheus metrics of the ingest service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

READINGS = Counter("homevitals_ingest_readings_total", "Readings stored", ["table"])
DUPLICATES = Counter(
    "homevitals_ingest_duplicates_total", "Re-sent readings already stored", ["table"]
)
DEAD_LETTERS = Counter("homevitals_ingest_dead_letters_total", "Messages or readings dead-lettered")
MESSAGES = Counter("homevitals_ingest_messages_total", "MQTT messages processed")
BATCH_MESSAGES = Histogram(
    "homevitals_ingest_batch_messages",
    "Messages per database batch",
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500),
)
BATCH_SECONDS = Histogram(
    "homevitals_ingest_batch_seconds",
    "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge(
    "homevitals_ingest_queue_depth", "Messages received but not yet committed (consumer lag)"
)
