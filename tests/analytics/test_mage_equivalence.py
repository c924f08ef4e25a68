"""The vectorized MAGE gives exactly the results of the original port (``mage_reference``).

``mage_reference.py`` is the loop-per-turning-point implementation as it was before the
speed-up, kept verbatim as an oracle.  Traces are built from pieces that stress what the
fast path reasons about: ties (values from a small set), flat runs, NaN gaps shorter and
longer than the 180-minute split, short segments and float noise.
"""

from __future__ import annotations

import math

import mage_reference as ref
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics.metrics import _mage as fast

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_value = st.one_of(
    st.sampled_from([70.0, 100.0, 100.0 + 1e-13, 140.0, 180.0, 250.0]),  # ties, near-ties
    st.integers(40, 400).map(float),
    st.floats(40.0, 400.0, allow_nan=False),
)
_piece = st.one_of(
    st.lists(_value, min_size=1, max_size=60),  # noise
    st.tuples(_value, st.integers(1, 80)).map(lambda t: [t[0]] * t[1]),  # flat run
    st.tuples(_value, _value, st.integers(2, 50)).map(  # ramp
        lambda t: np.linspace(t[0], t[1], t[2]).tolist()
    ),
    st.integers(1, 80).map(lambda k: [math.nan] * k),  # gap: <= 36 points stays, > 36 splits
)


@st.composite
def traces(draw: st.DrawFn) -> np.ndarray:
    return np.array([v for p in draw(st.lists(_piece, max_size=25)) for v in p], dtype=float)


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-12 * abs(b)


@SETTINGS
@given(traces())
def test_mage_equals_reference(gl: np.ndarray) -> None:
    assert _same(fast.mage_from_grid(gl), ref.mage_from_grid(gl))


@SETTINGS
@given(st.lists(traces(), max_size=6))
def test_batch_equals_reference_per_patient(grids: list[np.ndarray]) -> None:
    lengths = np.array([len(g) for g in grids], dtype=np.int64)
    starts = (np.cumsum(lengths) - lengths).astype(np.int64)
    values = np.concatenate([*grids, np.zeros(0)])
    got = fast.mage_from_grids(values, starts, lengths)
    assert len(got) == len(grids)
    for g, v in zip(grids, got, strict=True):
        assert _same(float(v), ref.mage_from_grid(g))


def _reference_turning_points(gl: np.ndarray, ids: np.ndarray, types: np.ndarray) -> list[int]:
    """The extremum loop of ``mage_reference._mage_segment``, returning positions."""
    as_min = np.where(np.isnan(gl), np.inf, gl)
    as_max = np.where(np.isnan(gl), -np.inf, gl)
    out: list[int] = []
    prev_tp = 0
    for i in range(len(ids) - 1):
        s1 = int(ids[0]) if i == 0 else prev_tp
        s2 = int(ids[i + 1])
        if types[i] == 0:
            k = s1 + int(np.argmin(as_min[s1 : s2 + 1]))
        else:
            k = s1 + int(np.argmax(as_max[s1 : s2 + 1]))
        out.append(k)
        prev_tp = k
    return out


@SETTINGS
@given(traces())
def test_turning_points_and_excursions_equal_reference(trace: np.ndarray) -> None:
    # Segment by segment, so a difference cannot hide inside the averages.
    present = np.flatnonzero(~np.isnan(trace))
    if len(present) == 0:
        return
    gl = trace[present[0] : present[-1] + 1]
    for lo, hi in ref._segments(gl, ref.MAX_GAP_MIN / ref.GRID_MIN):
        seg = gl[lo:hi]
        if len(seg) < ref.LONG_MA:
            continue
        delta = ref._rolling_mean(seg, ref.SHORT_MA) - ref._rolling_mean(seg, ref.LONG_MA)
        ids, types = ref._crossings(seg, delta)
        # Offset the segment inside a larger array, as in the batch.
        values = np.concatenate(([1.0, np.nan], seg))
        tp = fast._turning_points(values, [ids + 2], [types]) - 2
        assert tp.tolist() == _reference_turning_points(seg, ids, types)
        sd = float(np.nanstd(seg, ddof=1))
        if sd > 0:
            mm = seg[tp].tolist()
            for rising in (True, False):
                assert fast._eliminate(mm, sd, rising=rising) == ref._eliminate(
                    mm, sd, rising=rising
                )


@SETTINGS
@given(
    st.lists(st.one_of(_value, st.sampled_from([0.0, 1.0, 2.0])), min_size=1, max_size=80),
    st.sampled_from([0.5, 1.0, 1e-13, 30.0, 100.0]),
)
def test_eliminate_equals_reference(mm: list[float], sd: float) -> None:
    # Raw turning-point lists (any order, ties, tiny or large SD), not only real traces.
    for rising in (True, False):
        assert fast._eliminate(mm, sd, rising=rising) == ref._eliminate(mm, sd, rising=rising)
