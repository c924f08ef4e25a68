"""Plausibility limits and the components of each kind, in canonical units: derived from
the kinds' declaration (readings/kinds.py).

A value outside these limits cannot be a real measurement of a living patient (or is a
device fault), so the reading is dead-lettered with the reason instead of stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from readings import COMPONENTS_OF, PLAUSIBLE, REQUIRED

__all__ = ["COMPONENTS_OF", "EARLIEST", "FUTURE_TOLERANCE", "PLAUSIBLE", "REQUIRED"]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# A corrected time further ahead than this is a device clock fault (or a meter's fake
# far-future record), not a reading.
FUTURE_TOLERANCE = timedelta(hours=24)
