"""The whole-chain fault scenarios of issue #13, longer: counts per scenario.

    .venv/bin/python benchmarks/soak.py [--readings 5000] [--scenario NAME ...]
        [--seed 13] [--rounds 1] [--json FILE]
    make soak [READINGS=5000] [SCENARIOS="broker-restart mixed"] [SEED=13] [ROUNDS=1]

Runs the scenarios of ``tests/faults`` (same harness, same oracle) with ``--readings``
readings each, on its own BlueZoo bed, PostgreSQL+TimescaleDB and Mosquitto (free ports,
a temporary state directory, all stopped at the end), and prints one line per scenario:

    broker-restart: sent 5000 stored 3334 duplicates 0 lost 1666 mismatched 0 ...

Exit status 1 if any scenario did not store every reading exactly once, exact.
``--rounds N`` repeats the whole list with seeds seed, seed+1, ... (random fault points).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "faults")]

from harness import Counts, HarnessError, Services  # noqa: E402
from scenarios import SCENARIOS, run_scenario  # noqa: E402

from homevitals.services.mosquitto import LocalMosquitto  # noqa: E402
from homevitals.services.postgres import LocalPostgres  # noqa: E402
from homevitals.services.system import free_port  # noqa: E402
from simulators.testbed import running_testbed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=5000, help="readings per scenario")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only these (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=13, help="seed of the fault points")
    parser.add_argument("--rounds", type=int, default=1, help="repeat with seed+1, seed+2, ...")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = parser.parse_args()
    names = args.scenario or list(SCENARIOS)

    # Unix socket paths are short: keep the state under /tmp.
    state = Path(tempfile.mkdtemp(prefix="hv-soak-"))
    postgres = LocalPostgres(state, free_port())
    broker = LocalMosquitto(state, free_port())
    results: list[Counts] = []
    errors: list[str] = []
    started = time.monotonic()
    try:
        postgres.start()
        broker.start()
        services = Services(postgres, broker)
        adapters = sum(SCENARIOS[n].meters for n in names) * args.rounds
        with running_testbed(state / "ble", adapters) as bed:
            free = iter(a.name for a in bed.device_adapters)
            for round_ in range(args.rounds):
                seed = args.seed + round_
                for name in names:
                    mine = [next(free) for _ in range(SCENARIOS[name].meters)]
                    work = state / f"{name}-{round_}"
                    try:
                        results.append(
                            run_scenario(
                                name, bed, services, work, mine, args.readings, seed,
                                log=lambda line: print(line, flush=True),
                            )
                        )  # fmt: skip
                    except HarnessError as exc:  # a wait ran out: report it, go on
                        errors.append(f"{name} (seed {seed}): harness error: {exc}")
                        print(errors[-1], flush=True)
    finally:
        broker.stop()
        postgres.stop()
        shutil.rmtree(state, ignore_errors=True)
    print(f"\n== {args.readings} readings per scenario, {time.monotonic() - started:.0f} s ==")
    for counts in results:
        print(counts.line())
    for error in errors:
        print(error)
    if args.json is not None:
        args.json.write_text(json.dumps([c.to_json() for c in results], indent=2) + "\n")
    return 0 if all(c.ok for c in results) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
