"""The fast MAGE (``analytics.metrics._mage``) agrees with an independent oracle.

``mage_reference.py`` re-derives iglu's algorithm in plain, literal Python and imports
nothing from the code under test, so a bug in a shared helper cannot hide in both.  Traces
are built from pieces that stress what the fast path reasons about: ties (values from a
small set), flat runs, NaN gaps shorter and longer than the 180-minute split, short
segments and float noise.  Besides the end result, each stage is compared on its own (the
moving averages, the crossings, the turning points, the elimination), so a difference
cannot hide inside a later one; and a few traces have a MAGE known by construction.
"""

from __future__ import annotations

import math
import statistics

import mage_reference as ref
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
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
    # The oracle sums exactly (fsum) and weights as R does; the fast path does neither.
    return abs(a - b) <= 1e-9 * abs(b)


def _triangle(low: float, high: float, half_period: int, periods: int) -> np.ndarray:
    up = np.linspace(low, high, half_period + 1)[:-1]
    down = np.linspace(high, low, half_period + 1)[:-1]
    return np.concatenate([np.concatenate([up, down])] * periods + [np.array([low])])


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        # Every rise and fall is the full swing and far above one SD: MAGE is the swing.
        (_triangle(100.0, 200.0, 24, 36), 100.0),
        (_triangle(60.0, 300.0, 36, 20), 240.0),
        # The same with a 2-hour hole (kept: <= 180 min) and a 4-hour one (split there).
        (
            np.concatenate(
                [_triangle(100.0, 200.0, 24, 10), [np.nan] * 24, _triangle(100.0, 200.0, 24, 10)]
            ),
            100.0,
        ),
        (
            np.concatenate(
                [_triangle(80.0, 180.0, 24, 10), [np.nan] * 48, _triangle(80.0, 180.0, 24, 10)]
            ),
            100.0,
        ),
        # Too short for the long window, flat, or empty: no MAGE.
        (np.array([100.0, 150.0] * 15), math.nan),
        (np.full(300, 120.0), math.nan),
        (np.full(300, np.nan), math.nan),
    ],
)
def test_mage_of_traces_known_by_construction(trace: np.ndarray, expected: float) -> None:
    assert _same(ref.mage(trace), expected)
    assert _same(fast.mage_from_grid(trace), expected)


@SETTINGS
@given(traces())
def test_mage_equals_reference(gl: np.ndarray) -> None:
    assert _same(fast.mage_from_grid(gl), ref.mage(gl))


@SETTINGS
@given(st.lists(traces(), max_size=6))
def test_batch_equals_reference_per_patient(grids: list[np.ndarray]) -> None:
    lengths = np.array([len(g) for g in grids], dtype=np.int64)
    starts = (np.cumsum(lengths) - lengths).astype(np.int64)
    values = np.concatenate([*grids, np.zeros(0)])
    got = fast.mage_from_grids(values, starts, lengths)
    assert len(got) == len(grids)
    for g, v in zip(grids, got, strict=True):
        assert _same(float(v), ref.mage(g))


@SETTINGS
@given(traces())
def test_each_stage_equals_reference(trace: np.ndarray) -> None:
    present = np.flatnonzero(~np.isnan(trace))
    if len(present) == 0:
        return
    gl = trace[present[0] : present[-1] + 1]
    fast_bounds = fast._segments(gl, fast.MAX_GAP_MIN / fast.GRID_MIN)
    oracle_segments = ref.segments(gl.tolist(), ref.GRID_MIN, ref.MAX_GAP_MIN)
    assert _same_with_nan([gl[lo:hi].tolist() for lo, hi in fast_bounds], oracle_segments)
    for seg_list in oracle_segments:
        if len(seg_list) < ref.LONG_MA:
            continue
        seg = np.array(seg_list)
        for width in (ref.SHORT_MA, ref.LONG_MA):
            np.testing.assert_allclose(
                fast._rolling_mean(seg, width),
                ref.moving_average(seg_list, width),
                rtol=1e-12,
                equal_nan=True,
            )
        delta = [
            s - lg
            for s, lg in zip(
                ref.moving_average(seg_list, ref.SHORT_MA),
                ref.moving_average(seg_list, ref.LONG_MA),
                strict=True,
            )
        ]
        ids, types = ref.crossings(seg_list, delta)
        fast_ids, fast_types = fast._crossings(seg, np.array(delta))
        assert (fast_ids.tolist(), fast_types.tolist()) == (ids, types)
        # Offset the segment inside a larger array, as in the batch.
        values = np.concatenate(([1.0, np.nan], seg))
        tp = fast._turning_points(values, [np.array(ids) + 2], [np.array(types)]) - 2
        assert tp.tolist() == ref.turning_points(seg_list, ids, types)
        values_present = [v for v in seg_list if not math.isnan(v)]
        sd = float(np.nanstd(seg, ddof=1))
        assert math.isclose(sd, statistics.stdev(values_present), rel_tol=1e-9, abs_tol=1e-12)
        if sd > 0:
            mm = seg[tp].tolist()
            for rising in (True, False):
                assert fast._eliminate(mm, sd, rising=rising) == ref.excursions(
                    mm, sd, rising=rising
                )


def _same_with_nan(a: list[list[float]], b: list[list[float]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y)
        and all((math.isnan(u) and math.isnan(v)) or u == v for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


@settings(SETTINGS, max_examples=1000)  # pure Python on short lists: cheap
@given(
    st.lists(st.one_of(_value, st.sampled_from([0.0, 1.0, 2.0])), min_size=1, max_size=80),
    st.sampled_from([0.5, 1.0, 1e-13, 30.0, 100.0]),
)
# The last excursion ends at the last turning point without a counter-move: where the
# next search starts (iglu: after MAGE- at the nadir j, after MAGE+ at k) decides whether
# one more excursion is counted.
@example([70.0, 1.0, 2.0, 1.0], 1.0)
@example([1.0, 70.0, 69.0, 70.0], 1.0)
def test_eliminate_equals_reference(mm: list[float], sd: float) -> None:
    # Raw turning-point lists (any order, ties, tiny or large SD), not only real traces.
    for rising in (True, False):
        assert fast._eliminate(mm, sd, rising=rising) == ref.excursions(mm, sd, rising=rising)
