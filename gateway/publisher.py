"""MQTT publishing (paho-mqtt 2.x, MQTT v5): status with Last Will, outbox drain.

- Status: ``GatewayStatus`` online, retained, on every connect; the Last Will is the
  same topic with "offline" (retained), so a dead gateway shows as offline.
- Readings/events: taken from the outbox oldest first, batched (``ReadingsBatch`` /
  ``EventsMessage``), published with QoS 1; a batch's rows are deleted only when its
  PUBACK arrives (message id -> row ids).  A bounded number of batches is in flight.
- Reconnects: paho's own loop retries with exponential backoff (1 s doubling to 60 s)
  and re-sends unacknowledged QoS 1 messages itself after reconnecting.  After a
  restart of the gateway, every row still in the outbox is published again; reading
  ids are deterministic, so the server stores each reading once.

paho calls back in its network thread; every callback is handed to the asyncio loop
(``call_soon_threadsafe``), so the outbox (SQLite) is only touched from the loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttSettings
from gateway.outbox import READING, Outbox, PendingBatch
from readings import (
    EventsMessage,
    GatewayStatus,
    ReadingsBatch,
    encode,
    events_topic,
    readings_topic,
    status_topic,
)

log = logging.getLogger(__name__)

GATEWAY_VERSION = "0.1.0"
# After a batch was refused (PUBACK with an error reason code), wait before retrying.
_REFUSED_RETRY_S = 30.0
_POLL_S = 1.0  # also pick up rows other processes (``gateway pair``) added


@dataclass(slots=True)
class BrokerState:
    connected: bool = False
    last_change: datetime | None = None
    last_error: str | None = None
    published_batches: int = 0
    published_rows: int = 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Publisher:
    def __init__(
        self,
        settings: MqttSettings,
        gateway_id: str,
        outbox: Outbox,
        *,
        batch_size: int = 200,
        max_inflight_batches: int = 8,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.batch_size = batch_size
        self.max_inflight_batches = max_inflight_batches
        self.state = BrokerState()
        self._client_id = client_id or f"hv-gateway-{gateway_id}"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[int, PendingBatch] = {}
        self._sent_upto = 0  # highest outbox id handed to paho
        self._hold_until = 0.0
        self._stopping = False
        self.on_state_change: Callable[[BrokerState], None] | None = None

    # -- lifecycle -----------------------------------------------------------------
    def _status(self, state: str) -> bytes:
        return encode(
            GatewayStatus(
                schema="homevitals.status/1",
                gateway=self.gateway_id,
                state="online" if state == "online" else "offline",
                at=_utc_now(),
                outbox_depth=self.outbox.depth(),
                version=GATEWAY_VERSION,
            )
        )

    async def start(self) -> None:
        """Connect in the background (retrying with backoff until stopped)."""
        self._loop = asyncio.get_running_loop()
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv5
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            client.tls_set(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(status_topic(self.gateway_id), self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        client.max_inflight_messages_set(self.max_inflight_batches + 4)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        client.loop_start()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publish "offline" (retained), then disconnect cleanly."""
        self._stopping = True
        self._wake.set()
        client = self._client
        if client is None:
            return
        if self.state.connected:
            info = client.publish(
                status_topic(self.gateway_id), self._status("offline"), qos=1, retain=True
            )
            deadline = asyncio.get_running_loop().time() + timeout_s
            while not info.is_published() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        client.disconnect()
        client.loop_stop()
        self._client = None

    # -- paho callbacks (network thread) -> loop -------------------------------------
    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._to_loop(self._connected, not reason_code.is_failure, str(reason_code))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._to_loop(self._disconnected, str(reason_code))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._to_loop(self._acked, mid, reason_code.is_failure, str(reason_code))

    # -- loop side -----------------------------------------------------------------
    def _set_state(self, connected: bool, error: str | None) -> None:
        self.state.connected = connected
        self.state.last_change = _utc_now()
        self.state.last_error = error
        if self.on_state_change is not None:
            self.on_state_change(self.state)

    def _connected(self, ok: bool, reason: str) -> None:
        if not ok:
            log.warning("broker refused the connection: %s", reason)
            self._set_state(False, reason)
            return
        log.info("connected to broker %s:%d", self.settings.host, self.settings.port)
        self._set_state(True, None)
        if self._client is not None:
            self._client.publish(
                status_topic(self.gateway_id), self._status("online"), qos=1, retain=True
            )
        self._wake.set()

    def _disconnected(self, reason: str) -> None:
        if self.state.connected and not self._stopping:
            log.warning("disconnected from broker: %s (reconnecting with backoff)", reason)
        self._set_state(False, reason)

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        batch = self._inflight.pop(mid, None)
        if batch is None:
            return  # the status message, or a batch from before a restart
        if failed:
            log.error(
                "broker refused a batch of %d %s rows (%s); retrying in %.0f s",
                len(batch.row_ids),
                batch.kind,
                reason,
                _REFUSED_RETRY_S,
            )
            # Publish again from the oldest unacknowledged row, after a pause.
            self._sent_upto = min(
                [batch.row_ids[0] - 1] + [b.row_ids[0] - 1 for b in self._inflight.values()]
            )
            self._inflight.clear()
            assert self._loop is not None
            self._hold_until = self._loop.time() + _REFUSED_RETRY_S
            return
        self.outbox.delete(batch.row_ids)
        self.state.published_batches += 1
        self.state.published_rows += len(batch.row_ids)
        self._wake.set()

    def notify(self) -> None:
        """New rows were committed to the outbox."""
        self._wake.set()

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    def _publish_batch(self, batch: PendingBatch) -> bool:
        assert self._client is not None
        now = _utc_now()
        if batch.kind == READING:
            topic = readings_topic(self.gateway_id)
            payload = encode(
                ReadingsBatch(
                    schema="homevitals.readings/1",
                    gateway=self.gateway_id,
                    sent_at=now,
                    readings=list(batch.readings),
                )
            )
        else:
            topic = events_topic(self.gateway_id)
            payload = encode(
                EventsMessage(
                    schema="homevitals.event/1", gateway=self.gateway_id, events=list(batch.events)
                )
            )
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed (%s); will retry", info.rc)
            return False
        self._inflight[info.mid] = batch
        self._sent_upto = batch.last_id
        return True

    def _pump(self) -> None:
        assert self._loop is not None
        if self._loop.time() < self._hold_until:
            return
        while self.state.connected and len(self._inflight) < self.max_inflight_batches:
            batch = self.outbox.next_batch(self._sent_upto, max_readings=self.batch_size)
            if batch is None or not self._publish_batch(batch):
                return

    async def run(self) -> None:
        """Drain the outbox for as long as the gateway runs."""
        while not self._stopping:
            self._wake.clear()
            try:
                self._pump()
            except Exception:
                log.exception("outbox drain failed; retrying")
            try:
                async with asyncio.timeout(_POLL_S):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight (True) or time out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not self._inflight and self.outbox.depth() == 0:
                return True
            await asyncio.sleep(0.05)
        return False
