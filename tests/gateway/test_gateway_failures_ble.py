"""Failures during a sync: link cut, broker outage, gateway SIGKILL.  In each case every
record the device holds reaches the broker, in order, with stable ids."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Callable

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from gw_ble import GatewayCli, SimDevice, glucose_readings
from gw_helpers import Listener
from waiting import wait_until

from homevitals.services.mosquitto import LocalMosquitto
from simulators.testbed import TestbedInfo

pytestmark = [pytest.mark.ble, pytest.mark.services, pytest.mark.slow]

RECORDS = 1000
# A slow meter (4 ms before each record): a download takes seconds, time to interfere.
SLOW = {"record_interval_s": 0.004}


def _cursor(gw: GatewayCli, address: str) -> int:
    """The device cursor, read straight from the gateway's state (WAL: no locking)."""
    try:
        with sqlite3.connect(f"file:{gw.state_dir / 'gateway.sqlite3'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT cursor FROM devices WHERE address = ?", (address,)).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def _outbox_rows(gw: GatewayCli) -> int:
    with sqlite3.connect(f"file:{gw.state_dir / 'gateway.sqlite3'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT rows FROM outbox_stats").fetchone()[0])


def _assert_complete(listener: Listener, address: str, *, allow_resends: bool) -> None:
    readings = [r for r in listener.readings if r.device == address]
    by_seq: dict[int, set[str]] = {}
    for r in readings:
        assert r.seq is not None
        by_seq.setdefault(r.seq, set()).add(r.id)
    assert sorted(by_seq) == list(range(1, RECORDS + 1)), "lost records"
    assert all(len(ids) == 1 for ids in by_seq.values()), "a record changed its id"
    assert len({r.id for r in readings}) == RECORDS
    if not allow_resends:
        assert len(readings) == RECORDS, "duplicates on the wire"
    firsts = list(dict.fromkeys(r.seq for r in readings))
    assert firsts == list(range(1, RECORDS + 1)), "out of order"


async def _disconnect(bus_address: str, adapter: str, address: str) -> None:
    bus = await MessageBus(bus_address=bus_address).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}",
                interface="org.bluez.Device1",
                member="Disconnect",
            )
        )
        assert reply is not None and reply.message_type is MessageType.METHOD_RETURN, reply
    finally:
        bus.disconnect()


def test_link_cut_mid_download_resumes_without_loss_or_duplicates(
    ble_bed: TestbedInfo,
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    mqtt_url: str,
) -> None:
    meter = sim_devices("glucose-meter", glucose_readings(1, RECORDS), **SLOW)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-linkcut").start()
    try:
        gateway_cli.pair(meter.address)
        proc = gateway_cli.start("--once", "--duration", "90")
        assert wait_until(lambda: _cursor(gateway_cli, meter.address) >= 250, timeout=30)
        asyncio.run(_disconnect(ble_bed.bus_address, ble_bed.gateway_adapter, meter.address))
        assert proc.wait(120) == 0, gateway_cli.logs[-1].read_text()[-4000:]
        assert listener.wait_for(lambda s: len(s.readings) >= RECORDS, timeout=30)
        _assert_complete(listener, meter.address, allow_resends=False)
        device = gateway_cli.device(meter.address)
        assert device["errors"].get("link_lost") == 1
        assert device["cursor"] == RECORDS
    finally:
        listener.stop()


def test_broker_stopped_during_sync_outbox_holds_then_drains_in_order(
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    mqtt_url: str,
    mosquitto_control: LocalMosquitto,
) -> None:
    meter = sim_devices("glucose-meter", glucose_readings(1, RECORDS), **SLOW)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-outage").start()
    proc = None
    try:
        gateway_cli.pair(meter.address)
        proc = gateway_cli.start("--duration", "120")
        assert wait_until(lambda: _cursor(gateway_cli, meter.address) >= 250, timeout=30)
        mosquitto_control.stop()
        try:
            assert wait_until(lambda: _cursor(gateway_cli, meter.address) == RECORDS, timeout=60)
            assert _outbox_rows(gateway_cli) >= RECORDS - 500  # held on disk meanwhile
            status = gateway_cli.status()
            assert status["daemon"]["broker"]["connected"] is False
            # `gateway status --json` says why: paho's reconnects are refused meanwhile.
            assert wait_until(
                lambda: (
                    "Connection refused"
                    in (gateway_cli.status()["daemon"]["broker"].get("last_error") or "")
                ),
                timeout=30,
            ), gateway_cli.status()["daemon"]["broker"]
        finally:
            mosquitto_control.start()
        assert wait_until(lambda: _outbox_rows(gateway_cli) == 0, timeout=90)
        assert listener.wait_for(lambda s: len({r.id for r in s.readings}) >= RECORDS, timeout=60)
        _assert_complete(listener, meter.address, allow_resends=True)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        listener.stop()


def test_gateway_sigkill_mid_sync_then_restart_loses_nothing(
    sim_devices: Callable[..., SimDevice], gateway_cli: GatewayCli, mqtt_url: str
) -> None:
    meter = sim_devices("glucose-meter", glucose_readings(1, RECORDS), **SLOW)
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-sigkill").start()
    try:
        gateway_cli.pair(meter.address)
        proc = gateway_cli.start("--once", "--duration", "90")
        assert wait_until(lambda: _cursor(gateway_cli, meter.address) >= 250, timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = _cursor(gateway_cli, meter.address)
        assert 250 <= killed_at < RECORDS, "the kill did not land mid-download"
        rerun = gateway_cli.sync_once(duration=90)
        assert listener.wait_for(
            lambda s: len({r.id for r in s.readings}) >= RECORDS, timeout=30
        ), rerun.stderr[-6000:]
        _assert_complete(listener, meter.address, allow_resends=True)
        assert gateway_cli.device(meter.address)["cursor"] == RECORDS
        assert gateway_cli.status()["outbox"]["rows"] == 0
    finally:
        listener.stop()
