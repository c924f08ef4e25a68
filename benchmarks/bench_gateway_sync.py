"""Benchmark: sync stored glucose records from simulated meters to the broker.

    .venv/bin/python benchmarks/bench_gateway_sync.py [--records 1000] [--rss-devices 5]

Runs on the BlueZoo test bed (private D-Bus, no radio) and a project-local Mosquitto,
both started here and stopped at the end.

1. Throughput: one meter holding ``--records`` records, paired; the gateway daemon runs
   one pass in-process (``once``).  Reported: the BLE session (connect, DIS/battery/
   clock, RACP download, outbox commits), the whole pass (scan -> session -> outbox
   drained with every PUBACK), and the time until a subscriber has every reading.
2. Memory: ``--rss-devices`` meters with ``--records`` each, the gateway as its own
   process (``homevitals gateway run --once``); peak RSS (VmHWM) sampled from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.config import GatewayConfig, MqttSettings  # noqa: E402
from gateway.daemon import GatewayDaemon  # noqa: E402
from gateway.pairing import pair_device  # noqa: E402
from homevitals.services.mosquitto import LocalMosquitto  # noqa: E402
from homevitals.services.system import free_port  # noqa: E402
from readings import decode_batch, readings_topic  # noqa: E402
from simulators.testbed import TestbedInfo, env_for, running_testbed  # noqa: E402

T0 = datetime(2026, 11, 1, 6, 0)


class Counter:
    """Counts distinct reading ids arriving on one gateway's readings topic."""

    def __init__(self, url: str, gateway_id: str) -> None:
        parts = urlsplit(url)
        self.ids: set[str] = set()
        self.first_at: float | None = None
        self.last_at = 0.0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(unquote(parts.username or ""), unquote(parts.password or ""))
        topic = readings_topic(gateway_id)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("subscriber did not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        batch = decode_batch(bytes(msg.payload))
        now = time.perf_counter()
        with self._lock:
            self.first_at = self.first_at or now
            self.last_at = now
            self.ids.update(r.id for r in batch.readings)

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.ids) >= count:
                    return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_meter(bed: TestbedInfo, adapter: str, records: int, work: Path) -> subprocess.Popen[str]:
    spec = {
        "profile": "glucose-meter",
        "adapter": adapter,
        "readings": [
            {
                "device_time": (T0 + timedelta(minutes=i)).isoformat(),
                "mg_dl": 80 + i % 120,
                "sequence": i,
            }
            for i in range(1, records + 1)
        ],
    }
    path = work / f"{adapter}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, **env_for(bed), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.ble", "--spec", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        raise RuntimeError(f"simulated meter on {adapter} did not start")
    return proc


def config_for(bed: TestbedInfo, state: Path, gateway_id: str, url: str) -> GatewayConfig:
    return GatewayConfig(
        gateway_id=gateway_id,
        state_dir=state,
        mqtt=MqttSettings.from_url(url),
        adapter=bed.gateway_adapter,
        timezone=ZoneInfo("UTC"),
    )


def throughput(
    bed: TestbedInfo, broker: LocalMosquitto, work: Path, records: int, adapter: str, admin_url: str
) -> dict[str, float]:
    gateway_id = f"bench-throughput-{work.name}"
    url = broker.url_for(gateway_id, _provision(broker, gateway_id))
    work.mkdir(parents=True, exist_ok=True)
    meter = start_meter(bed, adapter, records, work)
    try:
        config = config_for(bed, work / "gw-throughput", gateway_id, url)
        asyncio.run(pair_device(config, bed.address_of(adapter), publish_timeout_s=5))
        counter = Counter(admin_url, gateway_id)
        daemon = GatewayDaemon(config, once=True, duration_s=120)
        t0 = time.perf_counter()
        asyncio.run(daemon.run())
        t_pass = time.perf_counter() - t0
        complete = counter.wait(records, 30)
        t_all = (counter.last_at or time.perf_counter()) - t0
        counter.stop()
        session = daemon.results[-1][1]
        daemon.close()
        if not complete or session.readings != records:
            raise RuntimeError(f"incomplete: {len(counter.ids)} of {records} received")
        return {
            "records": records,
            "session_s": round(session.elapsed_s, 3),
            "session_records_per_s": round(records / session.elapsed_s),
            "pass_s": round(t_pass, 3),
            "to_subscriber_s": round(t_all, 3),
            "end_to_end_records_per_s": round(records / t_all),
        }
    finally:
        meter.terminate()
        meter.wait(10)


def _provision(broker: LocalMosquitto, gateway_id: str) -> str:
    password = broker.password_for(gateway_id)
    broker.set_user(gateway_id, password)
    return password


def peak_rss(
    bed: TestbedInfo, broker: LocalMosquitto, work: Path, records: int, adapters: list[str]
) -> dict[str, float]:
    gateway_id = "bench-rss"
    url = broker.url_for(gateway_id, _provision(broker, gateway_id))
    meters = [start_meter(bed, a, records, work) for a in adapters]
    try:
        config = config_for(bed, work / "gw-rss", gateway_id, url)
        for a in adapters:
            asyncio.run(pair_device(config, bed.address_of(a), publish_timeout_s=5))
        env = {
            **os.environ,
            **env_for(bed),
            "PYTHONPATH": str(REPO),
            "HOMEVITALS_GATEWAY_ID": gateway_id,
            "HOMEVITALS_MQTT_URL": url,
            "HOMEVITALS_GATEWAY_STATE_DIR": str(config.state_dir),
            "HOMEVITALS_GATEWAY_ADAPTER": bed.gateway_adapter,
            "HOMEVITALS_GATEWAY_TIMEZONE": "UTC",
        }
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--once", "--duration", "120"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        hwm = rss = 0
        while proc.poll() is None:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
                    elif line.startswith("VmRSS:"):
                        rss = max(rss, int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"gateway exited {proc.returncode}")
        return {
            "devices": len(adapters),
            "records_each": records,
            "peak_rss_mib": round(max(hwm, rss) / 1024, 1),
            "pass_s": round(elapsed, 2),
        }
    finally:
        for m in meters:
            m.terminate()
            m.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rss-devices", type=int, default=5)
    ap.add_argument("--work", type=Path, default=REPO / ".homevitals" / "bench-gateway")
    args = ap.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    adapters_needed = args.repeat + args.rss_devices
    with running_testbed(args.work / "ble", adapters_needed) as bed:
        os.environ.update(env_for(bed))  # bleak in this process reaches the bed's org.bluez
        broker = LocalMosquitto(args.work / "mqtt", free_port())
        broker.start()
        try:
            names = [a.name for a in bed.device_adapters]
            runs = []
            for i in range(args.repeat):
                runs.append(
                    throughput(
                        bed, broker, args.work / f"run{i}", args.records, names[i], broker.admin_url
                    )
                )
                print(json.dumps({"throughput": runs[-1]}), flush=True)
            memory = peak_rss(bed, broker, args.work, args.records, names[args.repeat :])
            print(json.dumps({"memory": memory}), flush=True)
        finally:
            broker.stop()
    best = min(runs, key=lambda r: r["to_subscriber_s"])
    print(
        f"\n{args.records} records, best of {args.repeat}: BLE session {best['session_s']} s "
        f"({best['session_records_per_s']} records/s); pass incl. scan + publish "
        f"{best['pass_s']} s; all at the subscriber after {best['to_subscriber_s']} s "
        f"({best['end_to_end_records_per_s']} records/s)\n"
        f"{memory['devices']} devices x {memory['records_each']} records: gateway peak RSS "
        f"{memory['peak_rss_mib']} MiB (pass {memory['pass_s']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
