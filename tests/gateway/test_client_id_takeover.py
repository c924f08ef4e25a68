"""A hub cannot knock another hub off the broker by taking its client id (red team).

Mosquitto closes the older of two connections that use one client id, whoever opens the
newer, and ties client ids to no username.  With the documented ``hv-gateway-<id>``,
Alice's hub connecting as ``hv-gateway-gw-bob`` disconnected Bob's hub (and fired its
"offline" Last Will).  The hub's client id now carries a random part, new at each start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from delivery_helpers import GatewayThread
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_until

from readings import parse_mqtt_url

pytestmark = [pytest.mark.services]


def _connect_as(url: str, client_id: str) -> mqtt.Client:
    target = parse_mqtt_url(url)
    accepted = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.on_connect = lambda *_args: accepted.set()
    client.connect(target.host, target.port)
    client.loop_start()
    assert accepted.wait(10), "no CONNACK"
    return client


def test_another_hub_using_the_documented_client_id_does_not_disconnect_this_one(
    tmp_path: Path, gateway_mqtt_url: Callable[[str], str]
) -> None:
    bob = GatewayThread(gateway_mqtt_url("gw-cid-bob"), "gw-cid-bob", tmp_path).start()
    try:
        wait_until(lambda: bob.connected, 15, "bob's hub never connected")
        assert bob.publisher is not None
        connected_at = bob.publisher.state.last_change
        alice = gateway_mqtt_url("gw-cid-alice")
        thieves = [
            _connect_as(alice, "hv-gateway-gw-cid-bob"),
            _connect_as(alice, "hv-gateway-gw-cid-bob-cli"),
        ]
        # A round trip through the broker after the thieves' CONNACKs: had the broker
        # closed Bob's connection for them, his state would have changed by now.
        probe = _connect_as(alice, "hv-probe")
        probe.disconnect()
        probe.loop_stop()
        assert bob.connected
        assert bob.publisher.state.last_change == connected_at
        for client in thieves:
            client.disconnect()
            client.loop_stop()
    finally:
        bob.stop()
