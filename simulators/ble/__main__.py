"""Run one simulated BLE device, or talk to a running one.

    python -m simulators.ble --spec device.json
    python -m simulators.ble --profile glucose-meter --adapter hci1 --readings r.jsonl
    python -m simulators.ble control /path/to/hci1.ctl status
    python -m simulators.ble control /path/to/hci1.ctl add new-readings.jsonl

The device connects to ``--bus`` (default: ``$DBUS_SYSTEM_BUS_ADDRESS``, i.e. the test
bed), prints ``READY`` on stdout once registered and advertising, and stops cleanly on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from device_profiles.profiles import ClockSupport, Quirk
from simulators.ble.control import ControlError, send_command
from simulators.ble.device import SimulatedDevice, serve_device
from simulators.ble.readings import load_readings
from simulators.ble.spec import SUPPORTED_PROFILES, DeviceSpec, DeviceSpecError

READY = "READY"


def _device_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulators.ble",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spec", type=Path, help="device spec JSON (other options override it)")
    p.add_argument("--profile", choices=sorted(SUPPORTED_PROFILES))
    p.add_argument("--adapter", help="its own adapter, e.g. hci1")
    p.add_argument("--name", help="advertised local name")
    p.add_argument("--serial")
    p.add_argument("--readings", type=Path, help="JSON-lines readings file")
    p.add_argument("--skew", type=float, help="device clock skew in seconds")
    p.add_argument("--battery", type=int)
    p.add_argument(
        "--quirk",
        action="append",
        choices=[q.value for q in Quirk],
        help="replace the profile's quirks (repeatable)",
    )
    p.add_argument("--no-quirks", action="store_true", help="none of the profile's quirks")
    p.add_argument("--clock", choices=[c.value for c in ClockSupport])
    p.add_argument("--malformed", action="store_true", help="send one undecodable record")
    p.add_argument("--no-bonding", action="store_true", help="serve unpaired centrals")
    p.add_argument("--memory-capacity", type=int)
    p.add_argument("--record-interval", type=float, help="seconds before each record")
    p.add_argument("--control", type=Path, help="control socket path")
    p.add_argument(
        "--bus",
        default=os.environ.get("DBUS_SYSTEM_BUS_ADDRESS"),
        help="D-Bus address of org.bluez (default $DBUS_SYSTEM_BUS_ADDRESS)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _spec_from_args(args: argparse.Namespace) -> DeviceSpec:
    if args.spec is not None:
        spec = DeviceSpec.load(args.spec)
    elif args.profile and args.adapter:
        spec = DeviceSpec(profile=args.profile, adapter=args.adapter)
    else:
        raise DeviceSpecError("give --spec, or --profile and --adapter")
    changes: dict[str, object] = {}
    if args.profile is not None:
        changes["profile"] = args.profile
    if args.adapter is not None:
        changes["adapter"] = args.adapter
    if args.name is not None:
        changes["local_name"] = args.name
    if args.serial is not None:
        changes["serial"] = args.serial
    if args.readings is not None:
        changes["readings"] = tuple(load_readings(args.readings))
    if args.skew is not None:
        changes["clock_skew_s"] = args.skew
    if args.battery is not None:
        changes["battery"] = args.battery
    if args.no_quirks:
        changes["quirks"] = frozenset()
    if args.quirk:
        changes["quirks"] = frozenset(Quirk(q) for q in args.quirk)
    if args.clock is not None:
        changes["clock"] = ClockSupport(args.clock)
    if args.malformed:
        changes["malformed"] = True
    if args.no_bonding:
        changes["enforce_bonding"] = False
    if args.memory_capacity is not None:
        changes["memory_capacity"] = args.memory_capacity
    if args.record_interval is not None:
        changes["record_interval_s"] = args.record_interval
    if args.control is not None:
        changes["control_socket"] = args.control
    return spec.with_changes(**changes) if changes else spec


async def _run(spec: DeviceSpec, bus: str | None) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)

    def ready(_device: SimulatedDevice) -> None:
        print(READY, flush=True)

    try:
        await serve_device(spec, bus, on_ready=ready)
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("stopped")


def _control_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.ble control")
    p.add_argument("socket", type=Path)
    p.add_argument(
        "cmd",
        help="status | add | battery | set_skew | disconnect | insert_strip | start_session | stop_session",
    )
    p.add_argument("arg", nargs="?", help="add: readings file; battery: level; set_skew: s")
    args = p.parse_args(argv)
    command: dict[str, object] = {"cmd": args.cmd}
    if args.cmd == "add":
        if args.arg is None:
            p.error("add needs a JSON-lines readings file")
        command["readings"] = [r.to_json() for r in load_readings(Path(args.arg))]
    elif args.cmd == "battery":
        command["level"] = int(args.arg)
    elif args.cmd == "set_skew":
        command["seconds"] = float(args.arg)
    try:
        reply = send_command(args.socket, command)
    except (OSError, ControlError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["control"]:
        return _control_main(argv[1:])
    args = _device_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        spec = _spec_from_args(args)
    except (DeviceSpecError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    asyncio.run(_run(spec, args.bus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
