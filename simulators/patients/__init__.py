"""Simulated patients: glucose (type 1, type 2, none), home blood pressure and adherence.

Deterministic from ``PatientProfile.seed``.  ``simulate(profile, days)`` returns a
``PatientData`` holding the true glucose and each device's series (fingerstick meter, CGM,
BP cuff) as numpy arrays, with DataFrame, ``device_profiles.Measurement`` and
``readings.wire.Reading`` views.
"""

from simulators.patients.adherence import AdherencePlan, plan_adherence
from simulators.patients.bp import ambulatory_bp, office_bp
from simulators.patients.events import BpCrisis, DataGap, FastingRise, HypoEpisode, Injection
from simulators.patients.profile import (
    Adherence,
    BpPattern,
    BpStage,
    DiabetesType,
    GlycemicControl,
    PatientProfile,
    random_profile,
    rng_for,
)
from simulators.patients.series import (
    RANGE_HIGH,
    RANGE_LOW,
    RANGE_OK,
    BpSeries,
    CgmSeries,
    DeviceSeries,
    SmbgSeries,
    TrueGlucose,
)
from simulators.patients.simulate import DEFAULT_START, PatientData, default_devices, simulate

__all__ = [
    "DEFAULT_START",
    "RANGE_HIGH",
    "RANGE_LOW",
    "RANGE_OK",
    "Adherence",
    "AdherencePlan",
    "BpCrisis",
    "BpPattern",
    "BpSeries",
    "BpStage",
    "CgmSeries",
    "DataGap",
    "DeviceSeries",
    "DiabetesType",
    "FastingRise",
    "GlycemicControl",
    "HypoEpisode",
    "Injection",
    "PatientData",
    "PatientProfile",
    "SmbgSeries",
    "TrueGlucose",
    "ambulatory_bp",
    "default_devices",
    "office_bp",
    "plan_adherence",
    "random_profile",
    "rng_for",
    "simulate",
]
