"""MQTT publishing (paho-mqtt 2.x, MQTT v5): status with Last Will, outbox drain.

- Status: ``GatewayStatus`` online, retained, on every connect; the Last Will is the
  same topic with "offline" (retained), so a dead gateway shows as offline.
- Readings/events: taken from the outbox oldest first, batched (``ReadingsBatch`` /
  ``EventsMessage`` version 2, each with a batch id), published with QoS 1.  A batch's
  rows are deleted only when ingest's **receipt** for its batch id arrives on
  ``homevitals/v1/gw/<gateway>/receipts``: ingest sends it after the transaction holding
  the batch committed (docs/wire-format.md, "Receipts").  A PUBACK only says the broker
  took the message (it drops a message no one subscribes to, and loses shared
  subscriptions on a restart), so it is used for flow control alone.
- Re-sends: a batch without a receipt is published again (same batch id) after
  ``receipt_timeout_s``, then after twice that, up to ``receipt_timeout_max_s``.  At most
  ``max_inflight_batches`` batches wait for receipts.  Reading ids are deterministic, so
  the server stores each reading once however often it arrives.  Against an ingest that
  sends no receipts (older than this contract) nothing is deleted: the gateway keeps
  re-sending and loses nothing (docs/gateway.md, "Failure analysis").
- Reconnects: paho's own loop retries with exponential backoff (1 s doubling to 60 s);
  why the last attempt failed (connection refused, not authorized, ...) is kept in
  ``state.last_error`` for ``gateway status``.  After a restart of the gateway, every
  row still in the outbox is published again under new batch ids.

paho calls back in its network thread; every callback is handed to the asyncio loop
(``call_soon_threadsafe``), so the outbox (SQLite) is only touched from the loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import sys
import uuid
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
    SCHEMA_EVENT_V2,
    SCHEMA_READINGS_V2,
    EventsMessage,
    GatewayStatus,
    ReadingsBatch,
    WireError,
    decode_receipt,
    encode,
    events_topic,
    readings_topic,
    receipts_topic,
    status_topic,
)

log = logging.getLogger(__name__)

GATEWAY_VERSION = "0.2.0"
# After a batch was refused (PUBACK with an error reason code), wait before retrying.
_REFUSED_RETRY_S = 30.0
# A publish paho could not even queue (e.g. the connection dropped that instant).
_PUBLISH_RETRY_S = 1.0
_POLL_S = 1.0  # also pick up rows other processes (``gateway pair``) added


@dataclass(slots=True)
class BrokerState:
    connected: bool = False
    last_change: datetime | None = None
    last_error: str | None = None  # why the last connection attempt failed or ended
    published_batches: int = 0  # PUBACKed: the broker took them (flow control only)
    published_rows: int = 0
    confirmed_batches: int = 0  # receipts: committed by ingest, outbox rows deleted
    confirmed_rows: int = 0
    resent_batches: int = 0  # published again for want of a receipt
    dead_lettered: int = 0  # items ingest committed as dead letters (receipts say so)
    last_receipt_at: datetime | None = None
    receipts_subscribed: bool = False


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _InFlight:
    """A batch published and not yet confirmed by a receipt."""

    batch: PendingBatch
    batch_id: str
    attempts: int = 0
    due: float = 0.0  # loop time at which it is published (again) without a receipt


class Publisher:
    def __init__(
        self,
        settings: MqttSettings,
        gateway_id: str,
        outbox: Outbox,
        *,
        batch_size: int = 200,
        max_inflight_batches: int = 16,
        client_id: str | None = None,
        receipt_timeout_s: float = 30.0,
        receipt_timeout_max_s: float = 600.0,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.outbox = outbox
        self.batch_size = batch_size
        self.max_inflight_batches = max_inflight_batches
        self.receipt_timeout_s = receipt_timeout_s
        self.receipt_timeout_max_s = receipt_timeout_max_s
        self.state = BrokerState()
        # Mosquitto closes the older of two connections with one client id, whoever opens
        # the newer: a guessable id would let any client knock this hub off the broker.
        # Sessions are not resumed (clean start), so a fresh unguessable id costs nothing.
        self._client_id = client_id or f"hv-gateway-{gateway_id}-{secrets.token_hex(8)}"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[str, _InFlight] = {}  # batch id -> batch awaiting its receipt
        self._by_mid: dict[int, str] = {}  # MQTT message id -> batch id (PUBACK pending)
        self._sent_upto = 0  # highest outbox id taken into a batch
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
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
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
        if not reason_code.is_failure:
            # The session ends with the connection: subscribe on every connect.
            client.subscribe(receipts_topic(self.gateway_id), qos=1)
        self._to_loop(self._connected, not reason_code.is_failure, str(reason_code))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its ``except OSError`` (the TCP/TLS connect
        # failed): the exception in hand says why (refused, unreachable, TLS, DNS).
        exc = sys.exc_info()[1]
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "connection failed"
        self._to_loop(self._connect_failed, reason)

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

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reason_codes if r.is_failure]
        self._to_loop(self._subscribed, refused)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == receipts_topic(self.gateway_id):
            self._to_loop(self._receipt, bytes(msg.payload))

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
            self._set_state(False, f"broker refused the connection: {reason}")
            return
        log.info("connected to broker %s:%d", self.settings.host, self.settings.port)
        self._set_state(True, None)
        if self._client is not None:
            self._client.publish(
                status_topic(self.gateway_id), self._status("online"), qos=1, retain=True
            )
        # A reconnect often follows a broker restart, which may have lost what was in
        # flight: unconfirmed batches go again after one base timeout, not the backoff.
        assert self._loop is not None
        due = self._loop.time() + self.receipt_timeout_s
        for f in self._inflight.values():
            f.due = min(f.due, due)
        self._by_mid.clear()
        self._wake.set()

    def _connect_failed(self, reason: str) -> None:
        if self.state.last_error != reason:
            log.warning(
                "cannot reach broker %s:%d: %s (retrying with backoff)",
                self.settings.host,
                self.settings.port,
                reason,
            )
        self._set_state(False, reason)

    def _disconnected(self, reason: str) -> None:
        was_connected = self.state.connected
        if was_connected and not self._stopping:
            log.warning("disconnected from broker: %s (reconnecting with backoff)", reason)
        self.state.receipts_subscribed = False
        if not was_connected and self.state.last_error is not None:
            return  # keep the refusal's own reason (e.g. "Not authorized")
        self._set_state(False, None if self._stopping else f"disconnected: {reason}")

    def _subscribed(self, refused: list[str]) -> None:
        if refused:
            # Without its receipts a gateway deletes nothing and re-sends forever: say so.
            log.error(
                "broker refused the receipts subscription (%s): outbox rows cannot be"
                " confirmed; is the broker's ACL current? (docs/wire-format.md)",
                ", ".join(refused),
            )
            self.state.last_error = f"receipts subscription refused: {', '.join(refused)}"
            return
        self.state.receipts_subscribed = True

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        batch_id = self._by_mid.pop(mid, None)
        f = None if batch_id is None else self._inflight.get(batch_id)
        if f is None:
            return  # the status message, or a batch confirmed already
        if failed:
            log.error(
                "broker refused a batch of %d %s rows (%s); retrying in %.0f s",
                len(f.batch.row_ids),
                f.batch.kind,
                reason,
                _REFUSED_RETRY_S,
            )
            assert self._loop is not None
            f.due = self._loop.time() + _REFUSED_RETRY_S
            return
        self.state.published_batches += 1
        self.state.published_rows += len(f.batch.row_ids)

    def _receipt(self, payload: bytes) -> None:
        try:
            receipt = decode_receipt(payload)
        except WireError as exc:
            log.warning("unreadable receipt ignored: %s", exc.reason)
            return
        if receipt.gateway != self.gateway_id:
            log.warning("receipt for gateway %r ignored", receipt.gateway)
            return
        self.state.last_receipt_at = _utc_now()
        confirmed: list[int] = []
        for entry in receipt.batches:
            f = self._inflight.pop(entry.batch, None)
            if f is None:
                continue  # confirmed already (a re-send's second receipt), or before a restart
            confirmed.extend(f.batch.row_ids)
            self.state.confirmed_batches += 1
            self.state.confirmed_rows += len(f.batch.row_ids)
            if entry.dead_lettered:
                self.state.dead_lettered += entry.dead_lettered
                log.warning(
                    "ingest kept %d of %d %s rows of batch %s as dead letters"
                    " (see `homevitals deadletters list` on the server)",
                    entry.dead_lettered,
                    len(f.batch.row_ids),
                    f.batch.kind,
                    entry.batch,
                )
        if confirmed:
            self.outbox.delete(confirmed)
            self._wake.set()

    def notify(self) -> None:
        """New rows were committed to the outbox."""
        self._wake.set()

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    def _timeout(self, attempts: int) -> float:
        """Receipt wait after the ``attempts``-th publish: doubling, capped."""
        wait: float = self.receipt_timeout_s * 2.0 ** max(attempts - 1, 0)
        return min(wait, self.receipt_timeout_max_s)

    def _publish(self, f: _InFlight) -> bool:
        assert self._client is not None and self._loop is not None
        batch = f.batch
        now = _utc_now()
        if batch.kind == READING:
            topic = readings_topic(self.gateway_id)
            payload = encode(
                ReadingsBatch(
                    schema=SCHEMA_READINGS_V2,
                    gateway=self.gateway_id,
                    sent_at=now,
                    readings=list(batch.readings),
                    batch=f.batch_id,
                )
            )
        else:
            topic = events_topic(self.gateway_id)
            payload = encode(
                EventsMessage(
                    schema=SCHEMA_EVENT_V2,
                    gateway=self.gateway_id,
                    events=list(batch.events),
                    batch=f.batch_id,
                )
            )
        info = self._client.publish(topic, payload, qos=1)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed (%s); will retry", info.rc)
            f.due = self._loop.time() + _PUBLISH_RETRY_S
            return False
        f.attempts += 1
        f.due = self._loop.time() + self._timeout(f.attempts)
        self._by_mid[info.mid] = f.batch_id
        return True

    def _pump(self) -> None:
        assert self._loop is not None
        if not self.state.connected:
            return
        now = self._loop.time()
        # Unconfirmed batches first, oldest rows first: re-send those whose wait is over.
        for f in sorted(self._inflight.values(), key=lambda x: x.batch.row_ids[0]):
            if f.due <= now and self.state.connected:
                if f.attempts:
                    self.state.resent_batches += 1
                    log.info(
                        "no receipt for batch %s (%d %s rows) after %d sends: sending again",
                        f.batch_id,
                        len(f.batch.row_ids),
                        f.batch.kind,
                        f.attempts,
                    )
                if not self._publish(f):
                    return
        while self.state.connected and len(self._inflight) < self.max_inflight_batches:
            batch = self.outbox.next_batch(self._sent_upto, max_readings=self.batch_size)
            if batch is None:
                return
            f = _InFlight(batch, uuid.uuid4().hex)
            self._inflight[f.batch_id] = f
            self._sent_upto = batch.last_id
            if not self._publish(f):
                return

    def _next_wait(self) -> float:
        assert self._loop is not None
        if not self._inflight or not self.state.connected:
            return _POLL_S
        soonest = min(f.due for f in self._inflight.values()) - self._loop.time()
        return min(_POLL_S, max(soonest, 0.01))

    async def run(self) -> None:
        """Drain the outbox for as long as the gateway runs."""
        while not self._stopping:
            self._wake.clear()
            try:
                self._pump()
            except Exception:
                log.exception("outbox drain failed; retrying")
            try:
                async with asyncio.timeout(self._next_wait()):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty and nothing awaits a receipt (True: ingest
        committed everything) or time out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not self._inflight and self.outbox.depth() == 0:
                return True
            await asyncio.sleep(0.05)
        return False
