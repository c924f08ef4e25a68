"""One call from a profile to all of a patient's device data over a period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import pandas as pd

from device_profiles.model import Kind, Measurement
from readings import Reading
from simulators.patients.adherence import AdherencePlan, plan_adherence
from simulators.patients.bp import sample_home_bp
from simulators.patients.events import BpCrisis, DataGap, FastingRise, HypoEpisode, Injection
from simulators.patients.glucose import (
    GlucoseDay,
    MealPlan,
    sample_cgm,
    sample_smbg,
    simulate_glucose,
)
from simulators.patients.profile import PatientProfile, rng_for
from simulators.patients.series import BpSeries, CgmSeries, DeviceSeries, SmbgSeries, TrueGlucose
from simulators.patients.timebase import local_midnight_utc

DEFAULT_START = date(2025, 3, 3)  # a Monday; a DST change in the US six days later


@dataclass(frozen=True, slots=True, eq=False)
class PatientData:
    """Everything simulated for one patient over ``days`` local days from ``start``."""

    profile: PatientProfile
    start: date
    days: int
    period_start: datetime  # UTC, local midnight of ``start``
    period_end: datetime  # UTC, local midnight after the last day
    adherence: AdherencePlan
    meals: MealPlan
    true_glucose: TrueGlucose
    smbg: SmbgSeries
    cgm: CgmSeries
    bp: BpSeries

    def series(self, kind: Kind) -> DeviceSeries:
        if kind is Kind.GLUCOSE:
            return self.smbg
        if kind is Kind.CGM:
            return self.cgm
        if kind is Kind.BLOOD_PRESSURE:
            return self.bp
        raise ValueError(f"no simulated device for {kind}")

    def measurements(self, kind: Kind) -> list[Measurement]:
        return self.series(kind).measurements()

    def readings(self, devices: Mapping[Kind, str]) -> list[Reading]:
        """Wire readings of the given devices (kind -> device id), in time order."""
        out: list[Reading] = []
        for kind, device_id in devices.items():
            out.extend(self.series(kind).readings(device_id))
        out.sort(key=lambda r: (r.time, r.device))
        return out

    def to_frame(self, devices: Mapping[Kind, str]) -> pd.DataFrame:
        """One row per reading (wide: one column per value component)."""
        rows = [
            {
                "id": r.id,
                "device": r.device,
                "kind": str(r.kind),
                "time": r.time,
                "device_time": r.device_time,
                "seq": r.seq,
                **{str(c): v for c, v in r.values.items()},
                "conditions": ";".join(str(c) for c in r.conditions),
                "meal": r.details.get("meal"),
            }
            for r in self.readings(devices)
        ]
        return pd.DataFrame(rows)


def default_devices(patient_id: str) -> dict[Kind, str]:
    return {
        Kind.GLUCOSE: f"sim-{patient_id}-1",
        Kind.BLOOD_PRESSURE: f"sim-{patient_id}-2",
        Kind.CGM: f"sim-{patient_id}-3",
    }


def simulate(
    profile: PatientProfile,
    days: int,
    start: date = DEFAULT_START,
    injections: Sequence[Injection] = (),
) -> PatientData:
    """Simulate ``days`` local days from ``start`` (deterministic from ``profile.seed``)."""
    if days < 1:
        raise ValueError(f"days must be >= 1, not {days}")
    plan = plan_adherence(profile, days, rng_for(profile.seed, "adherence"))
    gaps = [i for i in injections if isinstance(i, DataGap)]
    if gaps:
        active = plan.active.copy()
        for gap in gaps:
            active[max(0, gap.start_day) : gap.start_day + gap.days] = False
        plan = replace(plan, active=active)
    hypos = tuple(i for i in injections if isinstance(i, HypoEpisode))
    rises = tuple(i for i in injections if isinstance(i, FastingRise))
    crises = tuple(i for i in injections if isinstance(i, BpCrisis))

    gday: GlucoseDay = simulate_glucose(
        profile, start, days, rng_for(profile.seed, "glucose"), rises=rises, hypos=hypos
    )
    smbg = sample_smbg(profile, gday, start, days, plan, rng_for(profile.seed, "smbg"), hypos=hypos)
    cgm = sample_cgm(profile, gday.truth, start, plan, rng_for(profile.seed, "cgm"))
    bp = sample_home_bp(profile, start, days, plan, rng_for(profile.seed, "bp"), crises=crises)
    return PatientData(
        profile=profile,
        start=start,
        days=days,
        period_start=local_midnight_utc(start, profile.timezone),
        period_end=local_midnight_utc(start + timedelta(days=days), profile.timezone),
        adherence=plan,
        meals=gday.meals,
        true_glucose=gday.truth,
        smbg=smbg,
        cgm=cgm,
        bp=bp,
    )


__all__ = ["DEFAULT_START", "PatientData", "default_devices", "simulate"]
