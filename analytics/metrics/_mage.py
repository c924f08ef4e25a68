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

The crossing search is vectorized per segment (see ``_crossings``).  The extremum step is
sequential (each range starts at the previous turning point) but is solved for all segments
of all patients at once as a fixed point (see ``_turning_points``).  The elimination step
stays a loop over turning points, O(1) work per turning point (see ``_eliminate``).
The moving averages come from cumulative sums; where their difference is within the
sums' rounding it is recomputed as R's ``mean`` does (see ``_ma_difference``).
``tests/analytics/mage_reference.py`` is an independent oracle (iglu's algorithm re-derived
in plain Python, sharing no code with this module); property tests compare every stage.
"""

from __future__ import annotations

import math

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
    values = np.asarray(values, dtype=np.float64)
    one = np.zeros(1, dtype=np.int64)
    lengths = np.full(1, len(values), dtype=np.int64)
    return float(mage_from_grids(values, one, lengths, grid_min, short_ma, long_ma, max_gap_min)[0])


def mage_from_grids(
    values: FloatArray,
    starts: IntArray,
    lengths: IntArray,
    grid_min: float = GRID_MIN,
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: float = MAX_GAP_MIN,
) -> FloatArray:
    """MAGE (mg/dL) of many patients' traces concatenated in ``values`` (patient ``p`` at
    ``values[starts[p] : starts[p] + lengths[p]]``); NaN where not computable."""
    out = np.full(len(starts), np.nan)
    # Per segment: (patient, duration, absolute crossing ids, types, SD).
    segs: list[tuple[int, float, IntArray, IntArray, float]] = []
    for pat in np.flatnonzero(lengths).tolist():
        s = int(starts[pat])
        present = np.flatnonzero(~np.isnan(values[s : s + int(lengths[pat])]))
        if len(present) == 0:
            continue
        first = s + int(present[0])
        gl = values[first : s + int(present[-1]) + 1]
        if len(gl) < _MIN_POINTS or len(gl) < long_ma:
            continue
        for lo, hi in _segments(gl, max_gap_min / grid_min):
            seg = gl[lo:hi]
            n = hi - lo
            if n < _MIN_POINTS or n < long_ma or np.all(np.isnan(seg)):
                continue
            sd = float(np.nanstd(seg, ddof=1))
            if not sd > 0:
                # A flat segment has no excursion (iglu's elimination loop never ends on sd == 0).
                continue
            delta = _ma_difference(seg, short_ma, long_ma)
            ids, types = _crossings(seg, delta)
            segs.append((pat, (n - 1) * grid_min, ids + (first + lo), types, sd))
    if not segs:
        return out
    ext = _turning_points(
        values, [ids for _, _, ids, _, _ in segs], [types for _, _, _, types, _ in segs]
    )
    # Extremes of segment i are ext[bounds[i] : bounds[i + 1]] (one per crossing but the last).
    bounds = [0, *np.cumsum([len(ids) - 1 for _, _, ids, _, _ in segs]).tolist()]
    mm_all: list[float] = values[ext].tolist()
    num: dict[int, float] = {}
    den: dict[int, float] = {}
    for i, (p, hours, _, _, sd) in enumerate(segs):
        mm = mm_all[bounds[i] : bounds[i + 1]]
        plus = _eliminate(mm, sd, rising=True)
        minus = _eliminate(mm, sd, rising=False)
        # Same accumulation order as the reference (segment by segment, MAGE+ then MAGE-),
        # so the weighted mean is bit-identical.
        for v in (
            float(np.mean(plus)) if plus else float("nan"),
            abs(float(np.mean(minus))) if minus else float("nan"),
        ):
            if not np.isnan(v):
                num[p] = num.get(p, 0.0) + v * hours
                den[p] = den.get(p, 0.0) + hours
    for p, d in den.items():
        if d > 0:
            out[p] = num[p] / d
    return out


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


def _ma_difference(gl: FloatArray, short_ma: int, long_ma: int) -> FloatArray:
    """Short minus long moving average; only its sign is used (the crossings).

    Cumulative sums carry rounding (~1e-14 on a fortnight), so on a flat stretch the two
    averages' difference gets random signs: spurious crossings where iglu, whose ``mean``
    of equal values is exactly that value, finds none (found by the independent oracle,
    tests/analytics/mage_reference.py).  Where the difference is within that rounding,
    both averages are recomputed as R's ``mean`` does: sum / n, refined by the mean
    deviation from it.
    """
    delta = _rolling_mean(gl, short_ma) - _rolling_mean(gl, long_ma)
    ok = ~np.isnan(gl)
    if not ok.any():
        return delta
    bound = 8.0 * np.finfo(np.float64).eps * len(gl) * float(np.max(np.abs(gl[ok])))
    for i in np.flatnonzero(np.abs(delta) <= bound).tolist():
        delta[i] = _r_mean(gl, i, short_ma) - _r_mean(gl, i, long_ma)
    return delta


def _r_mean(gl: FloatArray, i: int, width: int) -> float:
    """R's ``mean`` of the window of ``width`` ending at ``i`` (NaN ignored; the first
    windows are back-filled, as in ``_rolling_mean``)."""
    end = max(i, width - 1) + 1
    window = [v for v in gl[end - width : end].tolist() if not math.isnan(v)]
    if not window:
        return float("nan")
    m = math.fsum(window) / len(window)
    return m + math.fsum(v - m for v in window) / len(window)


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


def _turning_points(
    values: FloatArray, ids_per_seg: list[IntArray], types_per_seg: list[IntArray]
) -> IntArray:
    """Turning points of all segments (absolute positions in ``values``), in order.

    iglu: turning point i of a segment is the first arg-min (type 0) or arg-max (type 1) of
    the segment over [k[i-1], ids[i+1]] (NaN never wins), k[-1] = ids[0].  Each range
    depends on the previous result, so solve k = F(k) by iteration: start from
    k[i-1] = ids[i] (a guess), re-evaluate only the ranges whose left bound moved, stop
    when none does.  The fixed point is unique (k[0] is fixed, k[i] follows from k[i-1])
    and after t rounds the first t turning points of every segment are final, so this
    ends; in practice in a few rounds, each vectorized over all segments.
    """
    ids = np.concatenate(ids_per_seg)
    types = np.concatenate(types_per_seg)
    seg_len = np.array([len(x) for x in ids_per_seg])
    seg_end = np.cumsum(seg_len)
    # One row per crossing except each segment's last: range [lo, ids[i + 1]], type types[i].
    row = np.ones(len(ids), dtype=bool)
    row[seg_end - 1] = False
    r = np.flatnonzero(row)
    first = np.zeros(len(ids), dtype=bool)
    first[seg_end - seg_len] = True
    first = first[r]
    cur, hi = ids[r], ids[r + 1]
    # argmax of x is argmin of -x (same ties); a sign per range, no key array over all values.
    sign = np.where(types[r] == 1, -1.0, 1.0)
    lo = cur.copy()
    k = _first_argmin(values, lo, hi, sign)
    while True:
        want = np.empty_like(lo)
        want[1:] = k[:-1]
        want[first] = cur[first]
        moved = np.flatnonzero(want != lo)
        if len(moved) == 0:
            return k
        lo[moved] = want[moved]
        k[moved] = _first_argmin(values, lo[moved], hi[moved], sign[moved])


def _first_argmin(values: FloatArray, lo: IntArray, hi: IntArray, sign: FloatArray) -> IntArray:
    """First position of the minimum of ``sign[i] * values[lo[i] : hi[i] + 1]`` for every i,
    NaN ignored (ranges may overlap: they are gathered into one array, then reduced).

    Every range holds a value: crossings and segment ends are never NaN.
    """
    width = hi - lo + 1
    offs = np.cumsum(width) - width
    pos = np.arange(int(width.sum())) - np.repeat(offs - lo, width)
    v = values[pos] * np.repeat(sign, width)
    low = np.fmin.reduceat(v, offs)
    hit = np.flatnonzero(v == np.repeat(low, width))
    # The first hit at or after a range's start is the range's first minimum.
    result: IntArray = pos[hit[np.searchsorted(hit, offs)]]
    return result


def _eliminate(mm: list[float], sd: float, *, rising: bool) -> list[float]:
    """iglu's excursion elimination for MAGE+ (``rising``) or MAGE- (0-based port).

    Faithful to iglu including its asymmetry: after a MAGE+ excursion the search restarts
    at the right turning point's follower ``k``, after a MAGE- one at its peak ``j``.

    iglu rescans i in prev_j..j for every j; here the test "best >= sd" uses a running
    min (MAGE+) / max (MAGE-) of mm[prev_j..j] instead: rounded subtraction is monotone,
    so max_i sgn*(mm[j] - mm[i]) == sgn*(mm[j] - running extreme) exactly.  iglu's own loop
    picks the left turning point (first index on ties), once per counted excursion.
    """
    n = len(mm)
    heights: list[float] = []
    j = prev_j = 0
    sgn = 1.0 if rising else -1.0
    ref = mm[0]
    while True:
        # Next j whose best excursion from mm[prev_j..j] reaches sd (iglu: j += 1 otherwise).
        if rising:
            for j in range(j, n):  # noqa: B020 (j carries on from the break)
                x = mm[j]
                if x < ref:
                    ref = x
                elif x - ref >= sd:
                    break
            else:
                return heights
        else:
            for j in range(j, n):  # noqa: B020
                x = mm[j]
                if x > ref:
                    ref = x
                elif -(x - ref) >= sd:
                    break
            else:
                return heights
        # best left turning point in prev_j..j (first one on ties, as which.max)
        best_i = prev_j
        best = sgn * (x - mm[prev_j])
        for i in range(prev_j + 1, j + 1):
            v = sgn * (x - mm[i])
            if v > best:
                best, best_i = v, i
        for k in range(j, n):
            if sgn * (mm[k] - mm[j]) > 0:
                j = k
            if sgn * (mm[k] - mm[j]) < -sd or k == n - 1:
                heights.append(mm[j] - mm[best_i])
                prev_j = k if rising else j
                j = k
                break
        window = mm[prev_j : j + 1]
        ref = min(window) if rising else max(window)
