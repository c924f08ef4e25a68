"""A hub cannot take its share of ingest's messages (red team, issue #14).

Mosquitto grants any client a ``$share/<group>/...`` subscription and applies the read
ACL only when delivering: a hub subscribed in ingest's group is handed a share of every
hub's messages, which the broker then drops (Alice's 3 subscribers: Bob's hub got 3 of 12
batches through; receipts bring the rest back, late; messages without receipts were
lost).  The installation's group name is a secret (``homevitals ingest run`` default), so
such a hub is alone in a group of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from delivery_helpers import WorkerThread, device_known, glucose, paired, stored
from mqtt_publish import publish_all
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_until

from homevitals.cli_ingest import ingest_group
from readings import (
    READINGS_SUBSCRIPTION,
    EventsMessage,
    ReadingsBatch,
    encode,
    events_topic,
    parse_mqtt_url,
    readings_topic,
    shared,
)

BATCHES = 12


def test_the_default_group_is_a_secret_of_the_installation(tmp_path: Path) -> None:
    group = ingest_group(tmp_path)
    assert group.startswith("ingest-") and len(group) > len("ingest-") + 8
    assert ingest_group(tmp_path) == group  # every worker of the installation shares it
    assert ingest_group(tmp_path / "other") != group
    assert not set(group) & set("/+#")  # a valid share name


def _thieves(url: str, groups: list[str]) -> Iterator[mqtt.Client]:
    target = parse_mqtt_url(url)
    for n, group in enumerate(groups):
        acked = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"thief-{n}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(target.username, target.password)
        client.on_subscribe = lambda *_args, acked=acked: acked.set()
        client.connect(target.host, target.port)
        client.loop_start()
        client.subscribe(shared(group, READINGS_SUBSCRIPTION), qos=1)
        assert acked.wait(10), "no SUBACK"
        yield client


@pytest.mark.parametrize(
    "group",
    [
        pytest.param(
            "ingest",
            marks=pytest.mark.xfail(
                strict=True, reason="the old default: a guessable group, the attack works"
            ),
        ),
        "secret",
    ],
)
def test_a_hub_in_a_guessed_group_takes_nothing(
    group: str,
    tmp_path: Path,
    database_url: str,
    ingest_mqtt_url: str,
    gateway_mqtt_url: Callable[[str], str],
) -> None:
    tag = group[:3] + datetime.now(UTC).strftime("%H%M%S%f")
    victim, device = f"gw-bob-{tag}", f"dev-bob-{tag}"
    real = ingest_group(tmp_path) if group == "secret" else group
    worker = WorkerThread(database_url, ingest_mqtt_url, real, f"hv-ingest-{tag}").start()
    thieves = list(
        _thieves(gateway_mqtt_url(f"gw-alice-{tag}"), ["ingest", "ingest", "homevitals"])
    )
    try:
        bob = gateway_mqtt_url(victim)
        events = EventsMessage("homevitals.event/1", victim, [paired(device)])
        publish_all(bob, [(events_topic(victim), encode(events))])
        assert wait_until(lambda: device_known(database_url, device), 30)
        # Version-1 batches: no receipts, no re-sends; what the broker drops stays lost.
        batches = [
            ReadingsBatch("homevitals.readings/1", victim, datetime.now(UTC), [glucose(device, s)])
            for s in range(1, BATCHES + 1)
        ]
        publish_all(bob, [(readings_topic(victim), encode(b)) for b in batches])
        assert wait_until(lambda: stored(database_url, device) == BATCHES, 20), (
            f"{stored(database_url, device)} of {BATCHES} batches reached ingest"
        )
    finally:
        for client in thieves:
            client.loop_stop()
            client.disconnect()
        worker.stop()
