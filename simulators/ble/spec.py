"""What one simulated device is: profile, adapter, identity, memory, clock and quirks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from device_profiles.current_time import DstOffset
from device_profiles.model import Kind
from device_profiles.profiles import ClockSupport, DeviceProfile, Quirk, get_profile
from device_profiles.racp import RacpOperator
from simulators.ble.readings import Reading, load_readings, reading_from_json

__all__ = ["SUPPORTED_PROFILES", "DeviceSpec", "DeviceSpecError"]

# Profiles the simulator can play (families with a simulated behaviour).
SUPPORTED_PROFILES = frozenset(
    {
        "glucose-meter",
        "glucose-meter-ignores-filter",
        "glucose-meter-month13",
        "glucose-meter-full-memory",
        "bp-cuff",
        "bp-cuff-unsent-only",
        "cgm",
        "weight-scale",
        "pulse-oximeter",
    }
)

# Advertised names: vendor profiles are matched by name, so ours must fit their patterns.
_NAME_TEMPLATES = {
    "glucose-meter": "HV-Glucose-{serial}",
    "glucose-meter-ignores-filter": "meter+{serial}",
    "glucose-meter-month13": "GLM13-{serial}",
    "glucose-meter-full-memory": "GLMR-{serial}",
    "bp-cuff": "HV-BP-{serial}",
    "bp-cuff-unsent-only": "BPM-{serial}",
    "cgm": "HV-CGM-{serial}",
    "weight-scale": "HV-Scale-{serial}",
    "pulse-oximeter": "HV-PLX-{serial}",
}
_ADAPTER = re.compile(r"hci(\d+)")


class DeviceSpecError(ValueError):
    """A device spec the simulator cannot run."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device.  ``None`` fields default from the profile.

    ``serial`` defaults to the adapter number as 8 digits (fits every vendor name
    pattern); ``local_name`` to the profile's naming scheme with that serial.
    """

    profile: str  # device_profiles.profiles id, e.g. "glucose-meter", "bp-cuff"
    adapter: str  # "hci1": its own virtual adapter
    local_name: str | None = None
    serial: str | None = None
    readings: tuple[Reading, ...] = ()
    clock_skew_s: float = 0.0  # device clock = host local clock + skew
    battery: int = 90  # percent
    quirks: frozenset[Quirk] | None = None  # replaces the profile's quirks when given
    malformed: bool = False  # the lowest-numbered (first sent) record goes out truncated
    clock: ClockSupport | None = None  # Current Time: none / read-only / settable
    enforce_bonding: bool | None = None  # refuse data to an unpaired central
    memory_capacity: int | None = None  # records; FAKE_HI_WHEN_FULL needs it
    unsupported_racp_operators: frozenset[RacpOperator] = frozenset()
    racp_abort_supported: bool = True  # False: abort answers "abort unsuccessful"
    record_interval_s: float = 0.0  # pause before each record (slow meters, abort tests)
    control_socket: Path | None = None  # JSON-lines control channel (see control.py)
    manufacturer: str = "HomeVitals Simulated Devices"
    model: str | None = None  # default: the profile id
    firmware: str = "1.0.0"
    # CGM sensors (CGMS v1.0.1): the running session's start on the sensor's own clock
    # (None: its first reading's time, else the sensor clock at start-up), with the time zone / DST the collector
    # wrote (GSS Time Zone in minutes, None = unknown; DstOffset value), and whether
    # the sensor supports E2E-CRC (CGM Feature bit 12).
    session_start: datetime | None = None
    time_zone_minutes: int | None = 0
    dst_offset: DstOffset = DstOffset.STANDARD_TIME
    e2e_crc: bool = False
    session_run_time_h: int = 336  # 14 days
    _profile: DeviceProfile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.profile not in SUPPORTED_PROFILES:
            raise DeviceSpecError(
                f"profile {self.profile!r} not simulated; choose from {sorted(SUPPORTED_PROFILES)}"
            )
        if not _ADAPTER.fullmatch(self.adapter):
            raise DeviceSpecError(f"adapter must look like 'hci1', got {self.adapter!r}")
        if not 0 <= self.battery <= 100:
            raise DeviceSpecError(f"battery {self.battery} not a percentage")
        object.__setattr__(self, "_profile", get_profile(self.profile))
        object.__setattr__(self, "readings", tuple(self.readings))
        if self.serial is None:
            object.__setattr__(self, "serial", f"{self.adapter_index:08d}")
        if self.local_name is None:
            object.__setattr__(
                self, "local_name", _NAME_TEMPLATES[self.profile].format(serial=self.serial)
            )
        pattern = self._profile.name_pattern
        if pattern is not None and not re.fullmatch(pattern, self.name):
            raise DeviceSpecError(
                f"name {self.name!r} would not match profile {self.profile} ({pattern})"
            )

    # ------------------------------------------------------------------ derived
    @property
    def device_profile(self) -> DeviceProfile:
        return self._profile

    @property
    def adapter_index(self) -> int:
        m = _ADAPTER.fullmatch(self.adapter)
        assert m is not None  # checked in __post_init__
        return int(m.group(1))

    @property
    def name(self) -> str:
        assert self.local_name is not None  # set in __post_init__
        return self.local_name

    @property
    def serial_number(self) -> str:
        assert self.serial is not None  # set in __post_init__
        return self.serial

    @property
    def effective_quirks(self) -> frozenset[Quirk]:
        return self._profile.quirks if self.quirks is None else self.quirks

    @property
    def effective_clock(self) -> ClockSupport:
        if Quirk.NO_CURRENT_TIME_SERVICE in self.effective_quirks:
            return ClockSupport.NONE
        return self._profile.clock if self.clock is None else self.clock

    @property
    def bonding_enforced(self) -> bool:
        if self.enforce_bonding is None:
            return self._profile.requires_bonding
        return self.enforce_bonding

    def with_changes(self, **changes: Any) -> DeviceSpec:
        return replace(self, **changes)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "profile": self.profile,
            "adapter": self.adapter,
            "local_name": self.local_name,
            "serial": self.serial,
            "readings": [r.to_json() for r in self.readings],
            "clock_skew_s": self.clock_skew_s,
            "battery": self.battery,
            "malformed": self.malformed,
            "unsupported_racp_operators": sorted(int(o) for o in self.unsupported_racp_operators),
            "racp_abort_supported": self.racp_abort_supported,
            "record_interval_s": self.record_interval_s,
            "manufacturer": self.manufacturer,
            "firmware": self.firmware,
        }
        if self.quirks is not None:
            out["quirks"] = sorted(q.value for q in self.quirks)
        if self.clock is not None:
            out["clock"] = self.clock.value
        if self.enforce_bonding is not None:
            out["enforce_bonding"] = self.enforce_bonding
        if self.memory_capacity is not None:
            out["memory_capacity"] = self.memory_capacity
        if self.control_socket is not None:
            out["control_socket"] = str(self.control_socket)
        if self.model is not None:
            out["model"] = self.model
        if self._profile.family is Kind.CGM:
            out["session_start"] = (
                None if self.session_start is None else self.session_start.isoformat()
            )
            out["time_zone_minutes"] = self.time_zone_minutes
            out["dst_offset"] = self.dst_offset.value
            out["e2e_crc"] = self.e2e_crc
            out["session_run_time_h"] = self.session_run_time_h
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], base_dir: Path | None = None) -> DeviceSpec:
        """Build from a JSON object; ``readings`` may be a list or a JSON-lines path."""
        try:
            raw_readings = data.get("readings", [])
            if isinstance(raw_readings, str):
                path = Path(raw_readings)
                if base_dir is not None and not path.is_absolute():
                    path = base_dir / path
                readings = tuple(load_readings(path))
            else:
                readings = tuple(reading_from_json(r) for r in raw_readings)
            quirks = data.get("quirks")
            clock = data.get("clock")
            control = data.get("control_socket")
            start = data.get("session_start")
            return cls(
                profile=str(data["profile"]),
                adapter=str(data["adapter"]),
                local_name=data.get("local_name"),
                serial=data.get("serial"),
                readings=readings,
                clock_skew_s=float(data.get("clock_skew_s", 0.0)),
                battery=int(data.get("battery", 90)),
                quirks=None if quirks is None else frozenset(Quirk(q) for q in quirks),
                malformed=bool(data.get("malformed", False)),
                clock=None if clock is None else ClockSupport(clock),
                enforce_bonding=data.get("enforce_bonding"),
                memory_capacity=data.get("memory_capacity"),
                unsupported_racp_operators=frozenset(
                    RacpOperator(o) for o in data.get("unsupported_racp_operators", [])
                ),
                racp_abort_supported=bool(data.get("racp_abort_supported", True)),
                record_interval_s=float(data.get("record_interval_s", 0.0)),
                control_socket=None if control is None else Path(control),
                manufacturer=str(data.get("manufacturer", "HomeVitals Simulated Devices")),
                model=data.get("model"),
                firmware=str(data.get("firmware", "1.0.0")),
                session_start=None if start is None else datetime.fromisoformat(start),
                time_zone_minutes=data.get("time_zone_minutes", 0),
                dst_offset=DstOffset(data.get("dst_offset", DstOffset.STANDARD_TIME.value)),
                e2e_crc=bool(data.get("e2e_crc", False)),
                session_run_time_h=int(data.get("session_run_time_h", 336)),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, DeviceSpecError):
                raise
            raise DeviceSpecError(f"bad device spec: {e}") from e

    @classmethod
    def load(cls, path: Path) -> DeviceSpec:
        return cls.from_json(json.loads(path.read_text()), base_dir=path.parent)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
