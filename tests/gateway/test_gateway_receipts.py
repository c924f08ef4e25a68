"""The gateway's side of receipts on the real broker: without a receipt nothing is
deleted and batches are re-sent; only ingest may write receipts and a gateway reads only
its own; why the broker is unreachable shows in the state; operator credentials."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from delivery_helpers import GatewayThread, glucose, wait_until
from gw_helpers import Listener
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from homevitals.cli_services import services
from homevitals.services.mosquitto import LocalMosquitto
from homevitals.services.system import free_port
from readings import (
    SCHEMA_READINGS_V2,
    SCHEMA_RECEIPT,
    BatchReceipt,
    Receipt,
    encode,
    parse_mqtt_url,
    receipts_topic,
)

pytestmark = pytest.mark.services


def test_without_receipts_nothing_is_deleted_and_batches_are_resent(
    tmp_path: Path, mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    """An ingest older than receipts (here: no ingest at all, a listener takes the
    messages): the broker PUBACKs every batch, the gateway deletes nothing and sends the
    same batch (same batch id) again with growing waits."""
    gateway_id, device = "gw-rcpt-old", "dev-rcpt-old"
    listener = Listener(mqtt_url, gateway_id, client_id="hv-test-rcpt-old").start()
    gw = GatewayThread(
        gateway_mqtt_url(gateway_id), gateway_id, tmp_path, receipt_timeout_s=0.2
    ).start()
    try:
        gw.enqueue([glucose(device, s) for s in range(1, 51)])
        assert listener.wait_for(lambda s: len(s.batches) >= 3, timeout=30)
        batches = listener.batches[:3]
        assert {b.schema for b in batches} == {SCHEMA_READINGS_V2}
        assert len({b.batch for b in batches}) == 1  # one batch, sent three times
        assert [r.id for r in batches[0].readings] == [r.id for r in batches[2].readings]
        assert gw.depth() == 50
        assert gw.published_rows >= 100  # PUBACKed, and still not deleted
    finally:
        gw.stop()
        listener.stop()


def test_a_forged_or_foreign_receipt_deletes_nothing(
    tmp_path: Path, mqtt_url: str, gateway_mqtt_url: Callable[[str], str]
) -> None:
    """A receipt with an unknown batch id, or for another gateway, is ignored; the
    receipt with the right batch id deletes exactly that batch's rows."""
    gateway_id, device = "gw-rcpt-forge", "dev-rcpt-forge"
    listener = Listener(mqtt_url, gateway_id, client_id="hv-test-rcpt-forge").start()
    gw = GatewayThread(
        gateway_mqtt_url(gateway_id), gateway_id, tmp_path, receipt_timeout_s=30.0
    ).start()
    admin = _client(mqtt_url)
    try:
        gw.enqueue([glucose(device, s) for s in range(1, 11)])
        assert listener.wait_for(lambda s: len(s.batches) >= 1, timeout=30)
        sent = listener.batches[0]
        assert sent.batch is not None

        def receipt(gateway: str, batch: str) -> bytes:
            return encode(Receipt(SCHEMA_RECEIPT, gateway, sent.sent_at, [BatchReceipt(batch, 10)]))

        topic = receipts_topic(gateway_id)
        admin.publish(topic, receipt(gateway_id, "not-a-batch-of-mine"), qos=1).wait_for_publish(5)
        admin.publish(topic, receipt("gw-other", sent.batch), qos=1).wait_for_publish(5)
        admin.publish(topic, b"{not json", qos=1).wait_for_publish(5)
        admin.publish(topic, receipt(gateway_id, sent.batch), qos=1).wait_for_publish(5)
        assert wait_until(lambda: gw.depth() == 0, 10)
        assert gw.publisher is not None and gw.publisher.state.confirmed_rows == 10
    finally:
        admin.disconnect()
        admin.loop_stop()
        gw.stop()
        listener.stop()


class _Probe:
    """A plain MQTT 5 client recording SUBACK / PUBACK reason codes."""

    def __init__(self, url: str) -> None:
        self.client = _client(url)
        self.suback: list[ReasonCode] = []
        self.puback: list[ReasonCode] = []
        self.done = threading.Event()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _on_subscribe(
        self, c: object, u: object, mid: int, codes: list[ReasonCode], p: object
    ) -> None:
        self.suback = list(codes)
        self.done.set()

    def _on_publish(self, c: object, u: object, mid: int, code: ReasonCode, p: object) -> None:
        self.puback.append(code)
        self.done.set()

    def subscribe(self, topic: str) -> ReasonCode:
        self.done.clear()
        self.client.subscribe(topic, qos=1)
        assert self.done.wait(10), "no SUBACK"
        return self.suback[0]

    def publish(self, topic: str) -> ReasonCode:
        self.done.clear()
        self.client.publish(topic, b"{}", qos=1)
        assert self.done.wait(10), "no PUBACK"
        return self.puback[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _client(url: str) -> mqtt.Client:
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.connect(target.host, target.port)
    client.loop_start()
    return client


def test_only_ingest_writes_receipts_and_a_gateway_reads_only_its_own(
    gateway_mqtt_url: Callable[[str], str], ingest_mqtt_url: str
) -> None:
    mine, other = "gw-rcpt-acl-a", "gw-rcpt-acl-b"
    gateway = _Probe(gateway_mqtt_url(mine))
    ingest = _Probe(ingest_mqtt_url)
    got: list[str] = []
    gateway.client.on_message = lambda c, u, msg: got.append(msg.topic)
    try:
        assert gateway.publish(receipts_topic(mine)).is_failure  # cannot confirm itself
        assert gateway.publish(receipts_topic(other)).is_failure
        assert ingest.publish(f"homevitals/v1/gw/{mine}/readings").is_failure
        # Mosquitto 2.0 grants any SUBSCRIBE and filters on delivery: subscribe to the
        # other gateway's receipts too, then see which of ingest's receipts arrive
        # (in publish order: the foreign one first, then one of its own).
        for topic in (receipts_topic(other), "homevitals/v1/gw/+/receipts", receipts_topic(mine)):
            gateway.subscribe(topic)
        assert not ingest.publish(receipts_topic(other)).is_failure
        assert not ingest.publish(receipts_topic(mine)).is_failure
        assert wait_until(lambda: receipts_topic(mine) in got, 10)
        assert receipts_topic(other) not in got, got
    finally:
        gateway.close()
        ingest.close()


def test_state_says_why_the_broker_is_unreachable(
    tmp_path: Path, local_mosquitto: LocalMosquitto
) -> None:
    nobody = f"mqtt://gw-rcpt-down:secret@127.0.0.1:{free_port()}"
    refused = GatewayThread(nobody, "gw-rcpt-down", tmp_path).start()
    wrong = local_mosquitto.url_for("gw-rcpt-wrong", "not-the-password")
    denied = GatewayThread(wrong, "gw-rcpt-wrong", tmp_path).start()
    try:
        assert refused.publisher is not None and denied.publisher is not None
        r, d = refused.publisher.state, denied.publisher.state
        assert wait_until(lambda: r.last_error is not None, 15), "no error recorded"
        assert "Connection refused" in (r.last_error or "") and not r.connected
        assert wait_until(lambda: d.last_error is not None, 15)
        assert "Not authorized" in (d.last_error or "") or "Bad user name" in (d.last_error or "")
        assert not d.connected
    finally:
        refused.stop()
        denied.stop()


def test_gateway_credentials_cli(
    services_state_dir: Path, local_mosquitto: LocalMosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMEVITALS_STATE_DIR", str(services_state_dir))
    monkeypatch.setenv("HOMEVITALS_MQTT_PORT", str(local_mosquitto.port))
    monkeypatch.delenv("HOMEVITALS_MQTT_URL", raising=False)
    runner = CliRunner()
    for name in ("homevitals-admin", "homevitals-ingest", "HomeVitals-x", "a/b", "x" * 65):
        result = runner.invoke(services, ["gateway-credentials", name])
        assert result.exit_code == 2, (name, result.output)
    result = runner.invoke(services, ["gateway-credentials", "gw-rcpt-cli"])
    assert result.exit_code == 0, result.output
    url = result.output.strip().splitlines()[-1]
    assert url.startswith("mqtt://gw-rcpt-cli:")
    ingest_entry = local_mosquitto._read_users()["homevitals-ingest"]
    for reserved in ("homevitals-ingest", "homevitals-admin"):  # e.g. through enrollment
        with pytest.raises(ValueError, match="reserved prefix"):
            local_mosquitto.set_user(reserved, "taken-over")
    assert local_mosquitto._read_users()["homevitals-ingest"] == ingest_entry
    probe = _Probe(url)  # the account works at once (the broker reloaded its passwords)
    try:
        assert not probe.subscribe(receipts_topic("gw-rcpt-cli")).is_failure
    finally:
        probe.close()


def test_the_generated_acl_is_brought_up_to_date_and_an_operators_is_not(
    tmp_path: Path,
) -> None:
    from homevitals.services.mosquitto import ACL_HEADER

    broker = LocalMosquitto(tmp_path, 0)
    broker.acl.parent.mkdir(parents=True)
    old = ACL_HEADER + "\nuser homevitals-ingest\npattern write homevitals/v1/gw/%u/#\n"
    broker.acl.write_text(old)
    assert broker.refresh_acl()
    assert "pattern read homevitals/v1/gw/%u/receipts" in broker.acl.read_text()
    assert not broker.refresh_acl()  # current: left as it is
    broker.acl.write_text("# my own rules\n")
    assert not broker.refresh_acl()
    assert broker.acl.read_text() == "# my own rules\n"
