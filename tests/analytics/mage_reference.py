"""MAGE by iglu's default algorithm (``iglu::mage``, version 'ma', direction 'avg').

Port of ``mage_ma_single`` (iglu, R/mage_ma_single.R; Fernandes et al. 2022,
doi:10.1177/19322968221114405):

1. the trace on iglu's 5-minute grid (``CGMS2DayByDay``; built by the caller) is trimmed
   to its first..last value and split into segments at gaps longer than ``max_gap``
   (180 min);
2. per segment: right-aligned short (5) and long (32 points) moving averages (NaN
   ignored inside a window, the first ``w`` points take the value at ``w``); crossings of
   the two averages; between consecutive crossings the extreme value (the left bound is
   the previous turning point);
3. excursion elimination: an excursion counts when it rises (MAGE+) or falls (MAGE-) by at
   least one SD of the segment; MAGE+ and MAGE- are the mean of the counted amplitudes;
4. the result is the mean over all non-missing (segment, direction) values, weighted by
   segment duration.

The crossing search is vectorized (see ``_crossings``); the extremum and elimination steps
are sequential by nature and loop over turning points (a few hundred per patient per
fortnight), never over readings.
"""

from __future__ import annotations

import numpy as np

from analytics.metrics._frame import FloatArray, IntArray

SHORT_MA = 5
LONG_MA = 32
MAX_GAP_MIN = 180.0
GRID_MIN = 5.0
_MIN_POINTS = 7


def mage_from_grid(
    values: FloatArray,
    grid_min: float = GRID_MIN,
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: float = MAX_GAP_MIN,
) -> float:
    """MAGE (mg/dL) of one patient's trace on a regular grid (NaN = no value)."""
    present = np.flatnonzero(~np.isnan(values))
    if len(present) == 0:
        return float("nan")
    gl = values[present[0] : present[-1] + 1]
    if len(gl) < _MIN_POINTS or len(gl) < long_ma:
        return float("nan")
    num = 0.0
    den = 0.0
    for lo, hi in _segments(gl, max_gap_min / grid_min):
        seg = gl[lo:hi]
        hours = (hi - lo - 1) * grid_min
        plus, minus = _mage_segment(seg, short_ma, long_ma)
        for v in (plus, minus):
            if not np.isnan(v):
                num += v * hours
                den += hours
    if den > 0:
        return num / den
    # All counted segments have zero duration (cannot happen for >= 7 points) or none counted.
    return float("nan")


def _segments(gl: FloatArray, max_gap_points: float) -> list[tuple[int, int]]:
    """Data segments between NaN runs longer than ``max_gap_points`` (gap runs dropped:
    iglu keeps them as all-NA segments whose MAGE is NA, which the 'avg' filter drops)."""
    isnan = np.isnan(gl)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], isnan, [False])).astype(np.int8)))
    gap_starts, gap_ends = edges[0::2], edges[1::2]
    long = (gap_ends - gap_starts) > max_gap_points
    bounds: list[tuple[int, int]] = []
    lo = 0
    for s, e in zip(gap_starts[long], gap_ends[long], strict=True):
        bounds.append((lo, int(s)))
        lo = int(e)
    bounds.append((lo, len(gl)))
    return [(a, b) for a, b in bounds if b > a]


def _rolling_mean(gl: FloatArray, width: int) -> FloatArray:
    """zoo::rollapply(mean, align='right', na.rm=TRUE), leading values back-filled."""
    ok = ~np.isnan(gl)
    csum = np.concatenate(([0.0], np.cumsum(np.where(ok, gl, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(ok)))
    s = csum[width:] - csum[:-width]
    c = ccnt[width:] - ccnt[:-width]
    out = np.empty(len(gl))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[width - 1 :] = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    out[: width - 1] = out[width - 1]
    return out


def _crossings(gl: FloatArray, delta: FloatArray) -> tuple[IntArray, IntArray]:
    """Crossing points of the two moving averages and their type (1 max, 0 min).

    iglu scans i = 2..n and records a crossing at i when gl[i], gl[i-1], delta[i],
    delta[i-1] are all present and either delta[i]*delta[i-1] < 0 (a) or
    delta[i]*delta[last crossing] < 0 (b).  Crossings of kind (a) alone keep the sign of
    the last crossing, so the sign that (b) compares against is the sign at the previous
    present-and-nonzero point of the (b) chain: a vectorized equivalent of the scan.
    """
    n = len(gl)
    sign = np.sign(delta)
    valid = np.zeros(n, dtype=bool)
    ok = ~np.isnan(gl) & ~np.isnan(delta)
    valid[1:] = ok[1:] & ok[:-1]
    a = np.zeros(n, dtype=bool)
    a[1:] = valid[1:] & (sign[1:] * sign[:-1] < 0)
    s0 = sign[0] if not np.isnan(sign[0]) else 0.0
    chain = np.flatnonzero(valid & (sign != 0))
    b = np.zeros(n, dtype=bool)
    if s0 == 0:
        first_a = np.flatnonzero(a)
        if len(first_a):
            chain = chain[chain >= first_a[0]]
            prev = np.concatenate(([sign[first_a[0]]], sign[chain[:-1]]))
            b[chain] = sign[chain] != prev
    elif len(chain):
        prev = np.concatenate(([s0], sign[chain[:-1]]))
        b[chain] = sign[chain] != prev
    idx = np.flatnonzero(a | b)
    ids = np.concatenate(([0], idx, [n - 1])).astype(np.int64)
    types = np.concatenate(
        ([1 if delta[0] > 0 else 0], (delta[idx] > 0).astype(np.int64), [1 if delta[-1] > 0 else 0])
    ).astype(np.int64)
    return ids, types


def _mage_segment(gl: FloatArray, short_ma: int, long_ma: int) -> tuple[float, float]:
    """(MAGE+, MAGE-) of one segment; NaN where not computable."""
    nan = float("nan")
    n = len(gl)
    if n < _MIN_POINTS or n < long_ma or np.all(np.isnan(gl)):
        return nan, nan
    delta = _rolling_mean(gl, short_ma) - _rolling_mean(gl, long_ma)
    ids, types = _crossings(gl, delta)
    as_min = np.where(np.isnan(gl), np.inf, gl)
    as_max = np.where(np.isnan(gl), -np.inf, gl)
    n_ext = len(ids) - 1
    minmax: list[float] = [0.0] * n_ext
    prev_tp = 0
    for i in range(n_ext):
        s1 = int(ids[0]) if i == 0 else prev_tp
        s2 = int(ids[i + 1])
        if types[i] == 0:
            k = s1 + int(np.argmin(as_min[s1 : s2 + 1]))
        else:
            k = s1 + int(np.argmax(as_max[s1 : s2 + 1]))
        minmax[i] = float(gl[k])
        prev_tp = k
    sd = float(np.nanstd(gl, ddof=1))
    if not sd > 0:
        # A flat segment has no excursion (iglu's elimination loop never ends on sd == 0).
        return nan, nan
    plus = _eliminate(minmax, sd, rising=True)
    minus = _eliminate(minmax, sd, rising=False)
    if not plus and not minus:
        return nan, nan
    return (float(np.mean(plus)) if plus else nan, abs(float(np.mean(minus))) if minus else nan)


def _eliminate(mm: list[float], sd: float, *, rising: bool) -> list[float]:
    """iglu's excursion elimination for MAGE+ (``rising``) or MAGE- (0-based port).

    Faithful to iglu including its asymmetry: after a MAGE+ excursion the search restarts
    at the right turning point's follower ``k``, after a MAGE- one at its peak ``j``.
    """
    n = len(mm)
    heights: list[float] = []
    j = prev_j = 0
    sgn = 1.0 if rising else -1.0
    while j < n:
        # best left turning point in prev_j..j (first one on ties, as which.max)
        best_i = prev_j
        best = sgn * (mm[j] - mm[prev_j])
        for i in range(prev_j + 1, j + 1):
            v = sgn * (mm[j] - mm[i])
            if v > best:
                best, best_i = v, i
        if best >= sd:
            for k in range(j, n):
                if sgn * (mm[k] - mm[j]) > 0:
                    j = k
                if sgn * (mm[k] - mm[j]) < -sd or k == n - 1:
                    heights.append(mm[j] - mm[best_i])
                    prev_j = k if rising else j
                    j = k
                    break
        else:
            j += 1
    return heights
