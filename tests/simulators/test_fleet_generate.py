"""Fleet simulator: deterministic generation, counts, ids, the report, and publishing."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from waiting import suback_event, wait_until

from device_profiles.model import Kind
from readings import (
    EVENTS_SUBSCRIPTION,
    MAX_PAYLOAD_BYTES,
    READINGS_SUBSCRIPTION,
    DevicePaired,
    decode_batch,
    decode_events,
    encode,
    parse_mqtt_url,
)
from simulators.fleet import (
    FleetConfig,
    fleet_layout,
    fleet_readings,
    generate_fleet,
    paired_events,
    publish_fleet,
)

START = date(2025, 3, 3)
SMALL = FleetConfig(gateways=4, patients_per_gateway=2, days=3, seed=7, start=START, batch_size=50)


def test_counts_ids_and_batches() -> None:
    batches = list(fleet_readings(SMALL))
    readings = [r for _, b in batches for r in b]
    ids = [r.id for r in readings]
    assert len(ids) == len(set(ids))
    assert all(1 <= len(b) <= 50 for _, b in batches)
    per_kind = Counter(r.kind for r in readings)
    patient_days = SMALL.gateways * SMALL.patients_per_gateway * SMALL.days
    assert 200 * patient_days <= per_kind[Kind.CGM] <= 288 * patient_days
    assert 1 * patient_days <= per_kind[Kind.GLUCOSE] <= 7 * patient_days
    assert 1 * patient_days <= per_kind[Kind.BLOOD_PRESSURE] <= 4.5 * patient_days
    devices = {r.device for r in readings}
    assert devices <= {f"sim-gw-000{g}-{n}" for g in range(1, 5) for n in range(1, 7)}
    for gateway, batch in batches:
        assert all(r.device.startswith(f"sim-{gateway}-") for r in batch)
        assert all(r.time.utcoffset() == timedelta(0) for r in batch)
        assert all(r.device_time is not None for r in batch)
    # interleaved: the first batches come from different gateways
    assert [g for g, _ in batches[:4]] == ["gw-0001", "gw-0002", "gw-0003", "gw-0004"]


def test_regeneration_is_identical_and_seed_matters() -> None:
    again = list(fleet_readings(SMALL))
    assert again == list(fleet_readings(SMALL))
    sequential = FleetConfig(**{**_fields(SMALL), "interleave": False})
    assert sorted(r.id for _, b in fleet_readings(sequential) for r in b) == sorted(
        r.id for _, b in again for r in b
    )
    other = FleetConfig(**{**_fields(SMALL), "seed": 8})
    assert {r.id for _, b in fleet_readings(other) for r in b} != {
        r.id for _, b in again for r in b
    }


def _fields(config: FleetConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def test_generate_report_and_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "fleet.jsonl"
    report = generate_fleet(SMALL, out)
    readings = [r for _, b in fleet_readings(SMALL) for r in b]
    by_kind = Counter(str(r.kind) for r in readings)
    assert report.readings_by_kind == dict(by_kind)
    assert report.readings_total == report.readings_distinct == len(readings)
    assert report.event_messages == SMALL.gateways
    assert report.devices == 4 * 2 * 3
    assert set(report.patients) == {"gw-0001", "gw-0002", "gw-0003", "gw-0004"}
    assert [d["device"] for d in report.patients["gw-0001"]["gw-0001-p2"]] == [
        "sim-gw-0001-4",
        "sim-gw-0001-5",
        "sim-gw-0001-6",
    ]
    lines = out.read_bytes().splitlines()
    assert len(lines) == report.messages + report.event_messages
    assert sum(len(line) for line in lines) > report.bytes  # payload bytes plus the topic
    first_batch = json.loads(lines[SMALL.gateways])
    assert decode_batch(json.dumps(first_batch["payload"]).encode()).gateway == "gw-0001"
    saved = json.loads(report.write_json(tmp_path / "report.json").read_text())
    assert saved["readings_by_kind"] == dict(by_kind)
    assert "readings/s" in report.summary()


def test_paired_events_bind_every_device() -> None:
    gateway = fleet_layout(SMALL)[0]
    message = decode_events(encode(paired_events(SMALL, gateway)))
    assert all(isinstance(e, DevicePaired) for e in message.events)
    assert {e.device for e in message.events} == {d.device_id for d in gateway.devices}
    assert {e.profile for e in message.events if isinstance(e, DevicePaired)} == {
        "glucose-meter",
        "bp-cuff",
        "cgm",
    }


def test_largest_batch_fits_the_contract() -> None:
    config = FleetConfig(gateways=1, days=2, seed=1, start=START, batch_size=1000)
    for gateway, batch in fleet_readings(config):
        from simulators.fleet import _batch_payload

        assert len(_batch_payload(gateway, batch)) < MAX_PAYLOAD_BYTES


def test_a_month_of_ten_gateways() -> None:
    # Its speed is measured in benchmarks/bench_fleet_generate.py, not asserted here.
    config = FleetConfig(gateways=10, days=30, seed=3, start=START)
    report = generate_fleet(config)
    assert report.readings_total > 10 * 30 * 150  # adherence patterns leave gaps


@pytest.mark.services
def test_publish_fleet_delivers_every_reading(mqtt_url: str) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    config = FleetConfig(gateways=3, days=2, seed=5, start=START, batch_size=100)
    received: dict[str, set[str]] = {}
    events: set[str] = set()
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            if msg.topic.endswith("/events"):
                events.update(e.device for e in decode_events(msg.payload).events)
                return
            for r in decode_batch(msg.payload).readings:
                received.setdefault(str(r.kind), set()).add(r.id)

    address = parse_mqtt_url(mqtt_url)
    sub = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="test-fleet-sub",
        protocol=mqtt.MQTTv5,
    )
    sub.username_pw_set(address.username, address.password)
    sub.on_message = on_message
    subscribed = suback_event(sub)
    sub.connect(address.host, address.port)
    sub.loop_start()
    try:
        sub.subscribe([(READINGS_SUBSCRIPTION, 1), (EVENTS_SUBSCRIPTION, 1)])
        assert subscribed.wait(10)
        report = publish_fleet(config, mqtt_url, progress=False, connections=2, max_inflight=8)

        def all_received() -> bool:
            with lock:
                return sum(len(v) for v in received.values()) >= report.readings_distinct

        wait_until(all_received, 20, what=lambda: {k: len(v) for k, v in received.items()})
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert report.rejected == 0
    assert {k: len(v) for k, v in received.items()} == report.readings_by_kind
    assert len(events) == config.gateways * config.devices_per_gateway


@pytest.mark.services
def test_publish_with_per_gateway_credentials(gateway_mqtt_url: Callable[[str], str]) -> None:
    # The broker's ACL lets a gateway publish only under its own topics.
    config = FleetConfig(gateways=2, days=1, seed=6, start=START, kit=(Kind.BLOOD_PRESSURE,))
    report = publish_fleet(config, "", gateway_url=gateway_mqtt_url, progress=False)
    assert report.rejected == 0
    assert report.readings_total > 0 and report.event_messages == 2
