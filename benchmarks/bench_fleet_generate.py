"""Fleet generation speed (``simulators.fleet.generate_fleet``), with a same-run baseline.

Moved here from tests/simulators/test_fleet_generate.py, which asserted ``elapsed < 5.0``:
a wall-clock bound fails on a loaded machine and proves nothing on an idle one.  Here the
fleet is timed next to a baseline measured in the same run on the same machine: one
gateway for the same days.  Generation is per gateway, so the ratio should stay close to
the gateway count (linear); much more means a per-fleet cost crept in.

Run: ``.venv/bin/python benchmarks/bench_fleet_generate.py [gateways] [days]``
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.fleet import FleetConfig, FleetReport, generate_fleet

START = date(2026, 3, 1)
ROUNDS = 3


def best_of(config: FleetConfig) -> tuple[float, FleetReport]:
    best = float("inf")
    report: FleetReport | None = None
    for _ in range(ROUNDS):
        began = time.perf_counter()
        report = generate_fleet(config)
        best = min(best, time.perf_counter() - began)
    assert report is not None
    return best, report


def main(argv: list[str]) -> None:
    gateways = int(argv[0]) if argv else 10
    days = int(argv[1]) if len(argv) > 1 else 30
    base_s, base = best_of(FleetConfig(gateways=1, days=days, seed=3, start=START))
    fleet_s, fleet = best_of(FleetConfig(gateways=gateways, days=days, seed=3, start=START))
    print(
        f"baseline  1 gateway  x {days} days: {base_s:7.3f} s  {base.readings_total:>9,} readings"
    )
    print(
        f"fleet    {gateways:2d} gateways x {days} days: {fleet_s:7.3f} s  "
        f"{fleet.readings_total:>9,} readings  ({fleet.readings_total / fleet_s:,.0f} readings/s)"
    )
    print(f"fleet / baseline: {fleet_s / base_s:.1f}x for {gateways}x the gateways")


if __name__ == "__main__":
    main(sys.argv[1:])
