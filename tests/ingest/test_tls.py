"""TLS end to end: the gateway's own publisher and the ingest worker both reach the broker
only over its TLS listener, verifying it against the project's CA; a client without that
CA is refused."""

from __future__ import annotations

import asyncio
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from waiting import suback_event, wait_until

from gateway.config import GatewayConfig, MqttSettings
from gateway.outbox import Outbox
from gateway.pairing import publish_pending
from gateway.store import GatewayDB
from homevitals.services.mosquitto import INGEST_USER, LocalMosquitto
from ingest.service import IngestConfig, IngestWorker
from readings import DevicePaired, parse_mqtt_url

pytestmark = pytest.mark.services

GATEWAY = "gw-tls"
DEVICE = "AA:BB:CC:00:11:22"


def test_gateway_and_ingest_over_tls(
    database_url: str, local_mosquitto: LocalMosquitto, tmp_path: Path
) -> None:
    password = local_mosquitto.password_for(GATEWAY)
    local_mosquitto.set_user(GATEWAY, password)
    ca = local_mosquitto.ca_file
    assert ca.is_file()

    worker = IngestWorker(
        IngestConfig(
            database_url,
            local_mosquitto.url_for(INGEST_USER, tls=True),
            group="tls",
            ca_file=ca,
            max_wait_s=0.01,
        )
    )
    subscribed = suback_event(worker.client)
    thread = threading.Thread(target=worker.run, kwargs={"duration_s": 30}, daemon=True)
    thread.start()
    assert subscribed.wait(20), "ingest could not connect and subscribe over TLS"

    config = GatewayConfig(
        gateway_id=GATEWAY,
        state_dir=tmp_path,
        mqtt=MqttSettings.from_url(
            local_mosquitto.url_for(GATEWAY, password, tls=True), ca_file=ca
        ),
    )
    assert config.mqtt is not None and config.mqtt.tls
    tmp_path.mkdir(exist_ok=True)
    outbox = Outbox(GatewayDB(config.db_path), config.outbox)
    outbox.enqueue_event(DevicePaired(device=DEVICE, at=datetime.now(UTC), profile="glucose-meter"))
    assert asyncio.run(publish_pending(config, outbox, 20.0)), "gateway could not publish over TLS"

    def bound() -> tuple[object, ...] | None:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT gateway_id FROM devices WHERE id = %s", (DEVICE,)
            ).fetchone()

    found = wait_until(bound, 20, what="the paired device's row")
    worker.stop()
    thread.join(30)
    assert found == (GATEWAY,)


def test_a_client_without_the_ca_is_refused(local_mosquitto: LocalMosquitto) -> None:
    target = parse_mqtt_url(local_mosquitto.url_for(INGEST_USER, tls=True))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.tls_set()  # the system trust store does not know the project's CA
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect(target.host, target.port)
