"""Plain typed functions behind the ``homevitals simulate`` commands (the CLI wires them
into click)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Literal

import msgspec

from device_profiles.model import Component, Kind
from simulators.fleet import DEFAULT_KIT, FleetConfig, FleetReport, generate_fleet, publish_fleet
from simulators.patients import DEFAULT_START
from simulators.scenarios import run_scenario

_CSV_VALUES = (
    Component.GLUCOSE,
    Component.CGM_TREND,
    Component.SYSTOLIC,
    Component.DIASTOLIC,
    Component.MEAN_ARTERIAL,
    Component.PULSE,
)


def truth_path_for(out: Path) -> Path:
    """``readings.csv`` -> ``readings.truth.json``."""
    return out.with_name(f"{out.stem}.truth.json")


def simulate_patient(
    scenario: str,
    days: int | None,
    seed: int,
    fmt: Literal["csv", "json"],
    out: Path,
    start: date = DEFAULT_START,
) -> Path:
    """Write a scenario's readings (CSV: one row per reading; JSON: a list of wire
    readings) to ``out`` and its ground truth to ``truth_path_for(out)``; returns ``out``."""
    result = run_scenario(scenario, days=days, seed=seed, start=start)
    readings = result.readings()
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        out.write_bytes(msgspec.json.format(msgspec.json.encode(readings), indent=1))
    elif fmt == "csv":
        with out.open("w", newline="") as fh:
            writer = csv.writer(fh)
            header = ["id", "device", "kind", "time", "device_time", "seq"]
            writer.writerow([*header, *(str(c) for c in _CSV_VALUES), "conditions", "meal"])
            for r in readings:
                writer.writerow(
                    [
                        r.id,
                        r.device,
                        str(r.kind),
                        r.time.isoformat().replace("+00:00", "Z"),
                        r.device_time or "",
                        "" if r.seq is None else r.seq,
                        *("" if r.values.get(c) is None else r.values[c] for c in _CSV_VALUES),
                        ";".join(str(c) for c in r.conditions),
                        r.details.get("meal") or "",
                    ]
                )
    else:
        raise ValueError(f"format must be 'csv' or 'json', not {fmt!r}")
    result.save_ground_truth(truth_path_for(out))
    return out


def run_fleet(
    gateways: int = 100,
    days: int = 30,
    *,
    mqtt_url: str | None = None,
    patients_per_gateway: int = 1,
    kit: tuple[Kind, ...] = DEFAULT_KIT,
    seed: int = 0,
    start: date | None = None,
    batch_size: int = 100,
    rate: float | None = None,
    max_inflight: int = 64,
    connections: int = 8,
    username: str | None = None,
    password: str | None = None,
    send_events: bool = True,
    progress: bool = True,
    report_path: Path | None = None,
    out: Path | None = None,
) -> FleetReport:
    """Publish the fleet to ``mqtt_url`` (or, without one, only generate it, writing JSON
    lines to ``out`` if given); prints the report and writes it as JSON to
    ``report_path`` if given."""
    config = FleetConfig(
        gateways=gateways,
        patients_per_gateway=patients_per_gateway,
        kit=kit,
        days=days,
        seed=seed,
        start=start,
        batch_size=batch_size,
    )
    if mqtt_url is None:
        report = generate_fleet(config, out, progress=progress)
    else:
        report = publish_fleet(
            config,
            mqtt_url,
            username=username,
            password=password,
            rate=rate,
            max_inflight=max_inflight,
            connections=connections,
            send_events=send_events,
            progress=progress,
        )
    print(report.summary())
    if report_path is not None:
        report.write_json(report_path)
    return report
