"""Publishing helper for the ingest tests (a plain paho client, like a gateway)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from readings import parse_mqtt_url


def publish_all(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish with QoS 1 and wait for every PUBACK."""
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(target.username, target.password)
    client.connect(target.host, target.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
