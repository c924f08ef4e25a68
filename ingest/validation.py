"""Plausibility limits per component, in canonical units.

A value outside these limits cannot be a real measurement of a living patient (or is a
device fault), so the reading is dead-lettered with the reason instead of stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from device_profiles.model import Component, Kind

# (low, high) inclusive, canonical units.
PLAUSIBLE: dict[Component, tuple[float, float]] = {
    Component.GLUCOSE: (10.0, 1000.0),  # mg/dL; meters read 20-600, CGMs 40-400
    Component.SYSTOLIC: (40.0, 300.0),  # mmHg
    Component.DIASTOLIC: (20.0, 250.0),
    Component.MEAN_ARTERIAL: (20.0, 280.0),
    Component.PULSE: (20.0, 300.0),  # /min
    Component.WEIGHT: (0.5, 500.0),  # kg
    Component.HEIGHT: (0.3, 2.8),  # m
    Component.BMI: (5.0, 150.0),
    Component.SPO2: (40.0, 100.0),  # %
    Component.PULSE_AMPLITUDE_INDEX: (0.0, 100.0),
    Component.TEMPERATURE: (25.0, 45.0),  # Cel
    Component.CGM_TREND: (-50.0, 50.0),
    Component.CGM_QUALITY: (0.0, 100.0),
}

# Components a reading of each kind must carry (HI/LO glucose excepted, see columns.py).
REQUIRED: dict[Kind, tuple[Component, ...]] = {
    Kind.GLUCOSE: (Component.GLUCOSE,),
    Kind.CGM: (Component.GLUCOSE,),
    Kind.BLOOD_PRESSURE: (Component.SYSTOLIC, Component.DIASTOLIC),
    Kind.WEIGHT: (Component.WEIGHT,),
    Kind.SPO2: (Component.SPO2,),
    Kind.TEMPERATURE: (Component.TEMPERATURE,),
}

# Components a reading of each kind may carry: anything else has no column to go to and
# would be dropped without a word (or, like the cuff pressure, is not a reading at all).
COMPONENTS_OF: dict[Kind, frozenset[Component]] = {
    Kind.GLUCOSE: frozenset({Component.GLUCOSE}),
    Kind.CGM: frozenset({Component.GLUCOSE, Component.CGM_TREND, Component.CGM_QUALITY}),
    Kind.BLOOD_PRESSURE: frozenset(
        {Component.SYSTOLIC, Component.DIASTOLIC, Component.MEAN_ARTERIAL, Component.PULSE}
    ),
    Kind.WEIGHT: frozenset({Component.WEIGHT, Component.HEIGHT, Component.BMI}),
    Kind.SPO2: frozenset({Component.SPO2, Component.PULSE, Component.PULSE_AMPLITUDE_INDEX}),
    Kind.TEMPERATURE: frozenset({Component.TEMPERATURE}),
}

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# A corrected time further ahead than this is a device clock fault (or a meter's fake
# far-future record), not a reading.
FUTURE_TOLERANCE = timedelta(hours=24)
