"""The CLI without Bluetooth: options/env vars, devices/status/unpair on a state dir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import gateway
from gateway.config import GatewayConfig, MqttSettings, SyncSettings
from gateway.daemon import retry_delay
from gateway.outbox import Outbox
from gateway.store import DeviceStore, GatewayDB, PairedDevice

ADDRESS = "00:00:00:00:00:09"


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    db = GatewayDB(state / "gateway.sqlite3")
    DeviceStore(db).add(PairedDevice(address=ADDRESS, profile="glucose-meter", serial="42"))
    DeviceStore(db).count_error(ADDRESS, "malformed", "cut short: 0102")
    db.close()
    return state


def test_status_and_devices_read_the_state_dir(tmp_path: Path) -> None:
    state = _state(tmp_path)
    runner = CliRunner()
    env = {"HOMEVITALS_GATEWAY_STATE_DIR": str(state), "HOMEVITALS_GATEWAY_ID": "gw-cli"}
    result = runner.invoke(gateway, ["status", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gateway_id"] == "gw-cli"
    assert data["daemon"]["running"] is False
    assert data["outbox"]["rows"] == 0
    assert data["devices"][0]["errors"] == {"malformed": 1}

    result = runner.invoke(gateway, ["devices"], env=env)
    assert result.exit_code == 0 and ADDRESS in result.output

    result = runner.invoke(gateway, ["unpair", "--keep-bond", ADDRESS.lower()], env=env)
    assert result.exit_code == 0, result.output
    db = GatewayDB(state / "gateway.sqlite3")
    assert DeviceStore(db).all() == []
    batch = Outbox(db).next_batch(0)
    assert batch is not None and batch.kind == "event"  # DeviceUnpaired waits in the outbox
    assert runner.invoke(gateway, ["unpair", "--keep-bond", ADDRESS], env=env).exit_code == 1


def test_mqtt_url_parsing() -> None:
    s = MqttSettings.from_url("mqtts://gw%2D1:p%40ss@broker.example:8884")
    assert (s.host, s.port, s.username, s.password, s.tls) == (
        "broker.example",
        8884,
        "gw-1",
        "p@ss",
        True,
    )
    assert MqttSettings.from_url("mqtt://h").port == 1883


def test_bad_gateway_id_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        gateway, ["status", "--gateway-id", "bad/id", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "gateway id" in result.output
    try:
        GatewayConfig(gateway_id="ok-1", state_dir=tmp_path, mqtt=None)
    except ValueError:  # pragma: no cover
        raise AssertionError("valid id refused") from None


def test_retry_backoff_doubles_to_the_cap() -> None:
    s = SyncSettings(retry_min_s=2, retry_max_s=30)
    assert [retry_delay(n, s) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]
