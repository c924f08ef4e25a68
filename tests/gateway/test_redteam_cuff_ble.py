"""Red team A1 over BLE: a cuff whose measurements carry no time stamp (and a BP cuff
has no record number) must still give one reading per measurement, each stored."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from delivery_helpers import WorkerThread
from gw_ble import GatewayCli, SimDevice
from gw_helpers import Listener
from waiting import wait_until

from device_profiles.model import Component

pytestmark = [pytest.mark.ble, pytest.mark.services]


def _undated(count: int) -> list[dict[str, object]]:
    return [{"systolic": 120 + i, "diastolic": 80 + i, "pulse": 60 + i} for i in range(count)]


def _stored(url: str, device: str) -> list[float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT systolic FROM blood_pressure WHERE device_id = %s ORDER BY systolic",
            (device,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def test_cuff_without_time_stamps_stores_every_measurement(
    sim_devices: Callable[..., SimDevice],
    gateway_cli: GatewayCli,
    gateway_ingest: WorkerThread,
    mqtt_url: str,
) -> None:
    cuff = sim_devices("bp-cuff", _undated(5))
    listener = Listener(mqtt_url, gateway_cli.gateway_id, client_id="t-undated").start()
    try:
        gateway_cli.pair(cuff.address)
        gateway_cli.sync_once(duration=20)
        assert listener.wait_for(lambda s: len(s.readings) >= 5, timeout=30)
        readings = listener.readings
        assert sorted(r.values[Component.SYSTOLIC] for r in readings) == [120, 121, 122, 123, 124]
        assert all(r.device_time is None and r.seq is None for r in readings)
        assert len({r.id for r in readings}) == 5, "one id per measurement"
        assert len({r.time for r in readings}) == 5, "each its own receive time"
        url = gateway_ingest.config.database_url
        wait_until(lambda: len(_stored(url, cuff.address)) >= 5, 20)
        assert _stored(url, cuff.address) == [120, 121, 122, 123, 124]
        assert cuff.status()["unsent"] == 0
    finally:
        listener.stop()
