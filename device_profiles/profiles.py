"""Declarative device profiles: what a device advertises, how to fetch its records, and
which vendor quirks to expect.

A profile is data, not code: the gateway reads ``fetch``, ``requires_bonding``,
``clock``, ``quirks`` and ``min_gatt_interval_s`` and picks its procedure; parsing goes
through :meth:`DeviceProfile.parse_measurement`, which applies the quirks that change
decoding (``Quirk.MONTH_13_CLOCK``).

Matching (:func:`match_profile`): a *vendor* profile (one with a ``name_pattern``,
``manufacturer`` or ``model`` matcher) matches when every matcher it has matches
(``re.fullmatch``; a matcher against an unknown value does not match); a *standard*
profile matches when the device advertises one of its ``service_uuids``.  Vendor
profiles win over standard ones; among several vendor matches the one with more
matchers wins, then declaration order.

The vendor profiles encode behaviour described in DOMAIN.md ("Vendor behaviour seen in
public code"); their name patterns are illustrative placeholders for real product
families and are meant to be edited as devices are qualified.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from device_profiles import uuids
from device_profiles.model import Kind, Measurement
from device_profiles.uuids import normalize_uuid

__all__ = [
    "PROFILES",
    "ClockSupport",
    "DeviceProfile",
    "FetchMethod",
    "Quirk",
    "UnknownProfileError",
    "get_profile",
    "match_profile",
]


class FetchMethod(enum.StrEnum):
    """How stored readings come off the device."""

    RACP_SEQUENCE = "racp_sequence"  # write RACP "report records >= last+1", await indications
    INDICATIONS_ON_CONNECT = "indications_on_connect"  # device indicates stored readings itself
    # CGM: RACP "report records with Time Offset >= last+1" (CGMS 1.0.1 §3.6, filter 0x01)
    RACP_TIME_OFFSET = "racp_time_offset"


class ClockSupport(enum.StrEnum):
    NONE = "none"  # no Current Time Service
    READ_ONLY = "read_only"  # 0x2A2B readable: record the skew
    SETTABLE = "settable"  # 0x2A2B writable: the gateway may correct the clock


class Quirk(enum.StrEnum):
    IGNORES_RACP_FILTER = "ignores_racp_filter"  # answers ">= N" with every record
    UNSENT_ONLY_THEN_DISCONNECTS = "unsent_only_then_disconnects"
    MONTH_13_CLOCK = "month_13_clock"  # reports month 13 for January of the next year
    REVERSED_SEQUENCE = "reversed_sequence"  # newest record has the lowest sequence number
    FAKE_HI_WHEN_FULL = "fake_hi_when_full"  # adds a far-future HI record when memory is full
    NO_CURRENT_TIME_SERVICE = "no_current_time_service"
    ERASES_AFTER_DOWNLOAD = "erases_after_download"
    BONDED_HOST_ONLY = "bonded_host_only"  # talks only to the host it bonded with
    DROPS_LINK_ON_STRIP_INSERT = "drops_link_on_strip_insert"


class UnknownProfileError(KeyError):
    """``get_profile`` was given an id no profile has."""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    id: str
    family: Kind
    display_name: str
    service_uuids: tuple[str, ...]  # what the device advertises (full 128-bit)
    measurement_uuid: str
    fetch: FetchMethod
    requires_bonding: bool
    clock: ClockSupport
    quirks: frozenset[Quirk] = frozenset()
    name_pattern: str | None = None  # regex, full match on the advertised local name
    manufacturer: str | None = None  # regex, full match on DIS Manufacturer Name
    model: str | None = None  # regex, full match on DIS Model Number
    # Minimum spacing between GATT operations; Tidepool uses ~0.5 s for fragile meters.
    min_gatt_interval_s: float = 0.0
    _compiled: tuple[re.Pattern[str] | None, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "service_uuids", tuple(normalize_uuid(u) for u in self.service_uuids)
        )
        object.__setattr__(self, "measurement_uuid", normalize_uuid(self.measurement_uuid))
        object.__setattr__(
            self,
            "_compiled",
            tuple(
                None if p is None else re.compile(p)
                for p in (self.name_pattern, self.manufacturer, self.model)
            ),
        )

    @property
    def is_vendor(self) -> bool:
        return any(p is not None for p in self._compiled)

    @property
    def specificity(self) -> int:
        return sum(p is not None for p in self._compiled)

    def matches(
        self,
        name: str | None,
        service_uuids: Iterable[str],
        manufacturer: str | None = None,
        model: str | None = None,
    ) -> bool:
        if self.is_vendor:
            for pattern, value in zip(self._compiled, (name, manufacturer, model), strict=True):
                if pattern is not None and (value is None or not pattern.fullmatch(value)):
                    return False
            return True
        advertised = {normalize_uuid(u) for u in service_uuids}
        return not advertised.isdisjoint(self.service_uuids)

    def parse_measurement(self, data: bytes) -> Measurement | tuple[Measurement, ...]:
        """Decode a notification/indication of ``measurement_uuid`` with this profile's
        quirks applied (CGM returns a tuple: one notification can hold several records).
        """
        if (
            Quirk.MONTH_13_CLOCK in self.quirks
            and self.measurement_uuid == uuids.GLUCOSE_MEASUREMENT
        ):
            from device_profiles.glucose import parse_glucose_measurement

            return parse_glucose_measurement(data, month13_rollover=True)
        from device_profiles.registry import decode

        result = decode(self.measurement_uuid, data)
        if isinstance(result, Measurement):
            return result
        if isinstance(result, tuple) and all(isinstance(r, Measurement) for r in result):
            return result
        raise TypeError(
            f"{self.measurement_uuid} does not decode to a Measurement"
        )  # pragma: no cover


def _glucose_meter(
    *,
    id: str,
    display_name: str,
    clock: ClockSupport,
    quirks: frozenset[Quirk] = frozenset(),
    name_pattern: str | None = None,
    min_gatt_interval_s: float = 0.0,
) -> DeviceProfile:
    return DeviceProfile(
        id=id,
        family=Kind.GLUCOSE,
        display_name=display_name,
        service_uuids=(uuids.GLUCOSE_SERVICE,),
        measurement_uuid=uuids.GLUCOSE_MEASUREMENT,
        fetch=FetchMethod.RACP_SEQUENCE,
        requires_bonding=True,
        clock=clock,
        quirks=quirks,
        name_pattern=name_pattern,
        min_gatt_interval_s=min_gatt_interval_s,
    )


def _bp_cuff(
    *,
    id: str,
    display_name: str,
    clock: ClockSupport,
    quirks: frozenset[Quirk] = frozenset(),
    name_pattern: str | None = None,
) -> DeviceProfile:
    return DeviceProfile(
        id=id,
        family=Kind.BLOOD_PRESSURE,
        display_name=display_name,
        service_uuids=(uuids.BLOOD_PRESSURE_SERVICE,),
        measurement_uuid=uuids.BLOOD_PRESSURE_MEASUREMENT,
        fetch=FetchMethod.INDICATIONS_ON_CONNECT,
        requires_bonding=True,
        clock=clock,
        quirks=quirks,
        name_pattern=name_pattern,
    )


_ALL: tuple[DeviceProfile, ...] = (
    # --- Standard SIG profiles --------------------------------------------------------
    _glucose_meter(
        id="glucose-meter",
        display_name="Glucose meter (Glucose Profile)",
        clock=ClockSupport.READ_ONLY,
    ),
    _bp_cuff(
        id="bp-cuff",
        display_name="Blood pressure monitor (Blood Pressure Profile)",
        clock=ClockSupport.READ_ONLY,
    ),
    DeviceProfile(
        id="cgm",
        family=Kind.CGM,
        display_name="Continuous glucose monitor (CGM Profile)",
        service_uuids=(uuids.CGM_SERVICE,),
        measurement_uuid=uuids.CGM_MEASUREMENT,
        # Stored records by Time Offset over the RACP, not the live notification stream.
        fetch=FetchMethod.RACP_TIME_OFFSET,
        requires_bonding=True,
        clock=ClockSupport.NONE,  # time is Session Start Time (+ zone, DST) + offset
    ),
    DeviceProfile(
        id="weight-scale",
        family=Kind.WEIGHT,
        display_name="Weight scale (Weight Scale Profile)",
        service_uuids=(uuids.WEIGHT_SCALE_SERVICE,),
        measurement_uuid=uuids.WEIGHT_MEASUREMENT,
        fetch=FetchMethod.INDICATIONS_ON_CONNECT,
        requires_bonding=True,
        clock=ClockSupport.READ_ONLY,
    ),
    DeviceProfile(
        id="pulse-oximeter",
        family=Kind.SPO2,
        display_name="Pulse oximeter (PLX Profile, spot check)",
        service_uuids=(uuids.PULSE_OXIMETER_SERVICE,),
        measurement_uuid=uuids.PLX_SPOT_CHECK,
        fetch=FetchMethod.INDICATIONS_ON_CONNECT,
        requires_bonding=False,
        clock=ClockSupport.READ_ONLY,
    ),
    DeviceProfile(
        id="thermometer",
        family=Kind.TEMPERATURE,
        display_name="Health thermometer (Health Thermometer Profile)",
        service_uuids=(uuids.HEALTH_THERMOMETER_SERVICE,),
        measurement_uuid=uuids.TEMPERATURE_MEASUREMENT,
        fetch=FetchMethod.INDICATIONS_ON_CONNECT,
        requires_bonding=False,
        clock=ClockSupport.READ_ONLY,
    ),
    # --- Vendor quirk profiles (DOMAIN.md "Vendor behaviour seen in public code") -----
    _glucose_meter(
        id="glucose-meter-ignores-filter",
        display_name="Glucose meter advertising as meter+<serial>, ignores the RACP filter",
        clock=ClockSupport.SETTABLE,
        quirks=frozenset({Quirk.IGNORES_RACP_FILTER, Quirk.DROPS_LINK_ON_STRIP_INSERT}),
        name_pattern=r"meter\+\d{6,10}",
        min_gatt_interval_s=0.5,
    ),
    _glucose_meter(
        id="glucose-meter-month13",
        display_name="Glucose meter whose clock reports month 13, no Current Time Service",
        clock=ClockSupport.NONE,
        quirks=frozenset({Quirk.MONTH_13_CLOCK, Quirk.NO_CURRENT_TIME_SERVICE}),
        name_pattern=r"GLM13-[0-9A-F]{4,12}",
        min_gatt_interval_s=0.5,
    ),
    _glucose_meter(
        id="glucose-meter-full-memory",
        display_name="Glucose meter with reversed sequence numbers and a fake HI record when full",
        clock=ClockSupport.READ_ONLY,
        quirks=frozenset({Quirk.REVERSED_SEQUENCE, Quirk.FAKE_HI_WHEN_FULL}),
        name_pattern=r"GLMR-\w{4,16}",
        min_gatt_interval_s=0.5,
    ),
    _bp_cuff(
        id="bp-cuff-unsent-only",
        display_name="BP cuff that sends only unsent records to its bonded host, then disconnects",
        clock=ClockSupport.SETTABLE,
        quirks=frozenset(
            {
                Quirk.UNSENT_ONLY_THEN_DISCONNECTS,
                Quirk.BONDED_HOST_ONLY,
                Quirk.ERASES_AFTER_DOWNLOAD,
            }
        ),
        name_pattern=r"BPM-\w{2,16}",
    ),
)

PROFILES: Mapping[str, DeviceProfile] = MappingProxyType({p.id: p for p in _ALL})


def get_profile(profile_id: str) -> DeviceProfile:
    try:
        return PROFILES[profile_id]
    except KeyError:
        raise UnknownProfileError(profile_id) from None


def match_profile(
    name: str | None,
    service_uuids: Iterable[str],
    manufacturer: str | None = None,
    model: str | None = None,
) -> DeviceProfile | None:
    """The profile for a scanned/connected device, or None (vendor profiles win)."""
    advertised = tuple(service_uuids)
    best: DeviceProfile | None = None
    for profile in PROFILES.values():
        if not profile.matches(name, advertised, manufacturer, model):
            continue
        if best is None or (profile.is_vendor, profile.specificity) > (
            best.is_vendor,
            best.specificity,
        ):
            best = profile
    return best
