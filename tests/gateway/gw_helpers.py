"""Shared helpers of the gateway tests: readings, a state directory, a broker listener."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from waiting import suback_event, wait_until

from device_profiles.model import Component, Kind
from readings import (
    EventsMessage,
    GatewayStatus,
    Reading,
    ReadingsBatch,
    decode_batch,
    decode_events,
    decode_status,
    events_topic,
    reading_id,
    readings_topic,
    status_topic,
)

T0 = datetime(2026, 1, 1, 8, 0)


def make_reading(device: str, seq: int) -> Reading:
    device_time = T0 + timedelta(minutes=seq)
    return Reading(
        id=reading_id(device, Kind.GLUCOSE, device_time.isoformat(), seq),
        device=device,
        kind=Kind.GLUCOSE,
        time=device_time.replace(tzinfo=UTC),
        values={Component.GLUCOSE: 100.0 + seq % 50},
        device_time=device_time.isoformat(),
        seq=seq,
    )


@dataclass
class Listener:
    """Subscribes to one gateway's topics with a persistent session and collects."""

    url: str
    gateway_id: str
    client_id: str = "hv-test-listener"
    batches: list[ReadingsBatch] = field(default_factory=list)
    events: list[EventsMessage] = field(default_factory=list)
    statuses: list[GatewayStatus] = field(default_factory=list)
    _client: mqtt.Client | None = None
    _subscribed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Listener:
        parts = urlsplit(self.url)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(unquote(parts.username or ""), unquote(parts.password or ""))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._subscribed = suback_event(client)
        client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect_async(
            parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=False, properties=props
        )
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(10):
            raise TimeoutError("listener did not subscribe")
        return self

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        client.subscribe(
            [
                (readings_topic(self.gateway_id), 1),
                (events_topic(self.gateway_id), 1),
                (status_topic(self.gateway_id), 1),
            ]
        )

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.topic == readings_topic(self.gateway_id):
                self.batches.append(decode_batch(bytes(msg.payload)))
            elif msg.topic == events_topic(self.gateway_id):
                self.events.append(decode_events(bytes(msg.payload)))
            elif msg.topic == status_topic(self.gateway_id):
                self.statuses.append(decode_status(bytes(msg.payload)))

    @property
    def readings(self) -> list[Reading]:
        with self._lock:
            return [r for b in self.batches for r in b.readings]

    @property
    def all_events(self) -> list[object]:
        with self._lock:
            return [e for m in self.events for e in m.events]

    def wait_for(self, predicate: Callable[[Listener], bool], timeout: float = 30.0) -> bool:
        return wait_until(
            lambda: predicate(self),
            timeout,
            what=lambda: f"{len(self.statuses)} statuses, {len(self.batches)} batches seen",
        )

    def stop(self, *, forget: bool = True) -> None:
        if self._client is None:
            return
        if forget:  # end the persistent session so a later test starts clean
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._client = None
