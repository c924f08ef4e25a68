"""An independent MAGE oracle: iglu's ``mage_ma_single`` re-derived step by step.

Written from iglu's algorithm (Fernandes et al. 2022, "Open-source algorithm to calculate
Mean Amplitude of Glycemic Excursions using short and long moving averages", J Diabetes
Sci Technol, doi:10.1177/19322968221114405; iglu R/mage_ma_single.R, version 'ma',
direction 'avg'), not from ``analytics/metrics/_mage.py``: it imports nothing from the
code it checks, and uses plain Python (lists, ``math``, ``statistics``) where the fast
path uses numpy tricks (cumulative sums, sign chains, gathered reductions, running
extremes).  Deliberately slow and literal, one loop per step of the R code:

1. trim the trace on iglu's 5-minute grid to its first..last value; fewer than 7 points,
   or fewer than the long window, give NA;
2. split it where a run of missing points lasts longer than ``max_gap`` minutes (R: ``rle``
   of the gap flags, ``length * dt0 > max_gap``); the gap runs themselves are all-NA
   segments, NA in the end;
3. per segment: the short (5) and long (32) moving averages, right-aligned, NA ignored
   inside a window (``zoo::rollapply(mean, na.rm = TRUE)``), the first ``w`` values set to
   the ``w``-th; their difference;
4. crossing points, scanning i = 2..n as R does: where point and difference are present
   at i and i - 1, a sign change against i - 1 or against the last recorded crossing; the
   first and the last point are added, typed by the sign of the difference there;
5. between consecutive crossings the first minimum (type "min") or maximum ("max") of the
   glucose, from the previous turning point to the next crossing;
6. excursion elimination with the segment's SD, once rising (MAGE+), once falling (MAGE-),
   keeping iglu's asymmetry (after MAGE+ the search restarts at ``k``, after MAGE- at ``j``);
7. MAGE = the mean of the non-NA (segment, direction) values weighted by the segment's
   duration (``end - start``).

Floating point: a window's mean is R's (``r_mean``: exact sum, divided, refined by the
mean deviation; R does it in long double), the SD is ``statistics.stdev`` (exact rational
arithmetic).  One documented departure from R: a flat segment (SD 0) gives NA,
where iglu's elimination loop never ends.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

SHORT_MA = 5
LONG_MA = 32
MAX_GAP_MIN = 180.0
GRID_MIN = 5.0
MIN_POINTS = 7

REL_MIN, REL_MAX = 0, 1
NA = math.nan


def mage(
    trace: Sequence[float],
    grid_min: float = GRID_MIN,
    short_ma: int = SHORT_MA,
    long_ma: int = LONG_MA,
    max_gap_min: float = MAX_GAP_MIN,
) -> float:
    """MAGE (mg/dL, direction 'avg') of a trace on a regular grid (NaN = no value)."""
    gl = [float(v) for v in trace]
    present = [i for i, v in enumerate(gl) if not math.isnan(v)]
    if not present:
        return NA
    gl = gl[present[0] : present[-1] + 1]
    if len(gl) < MIN_POINTS or len(gl) < long_ma:
        return NA
    rows: list[tuple[float, float]] = []  # (MAGE+ or MAGE- of a segment, its duration)
    for seg in segments(gl, grid_min, max_gap_min):
        duration = (len(seg) - 1) * grid_min
        for value in segment_mage(seg, short_ma, long_ma):
            if not math.isnan(value):
                rows.append((value, duration))
    if not rows:
        return NA
    total = math.fsum(d for _, d in rows)
    return math.fsum(v * (d / total) for v, d in rows)


def segments(gl: list[float], grid_min: float, max_gap_min: float) -> list[list[float]]:
    """The data segments between runs of missing points longer than ``max_gap_min``
    (``gl`` starts and ends with a value; the long gaps themselves are left out)."""
    out: list[list[float]] = []
    start = 0
    i = 0
    while i < len(gl):
        if not math.isnan(gl[i]):
            i += 1
            continue
        run_end = i
        while run_end < len(gl) and math.isnan(gl[run_end]):
            run_end += 1
        if (run_end - i) * grid_min > max_gap_min:
            out.append(gl[start:i])
            start = run_end
        i = run_end
    out.append(gl[start:])
    return [s for s in out if s]


def moving_average(gl: list[float], width: int) -> list[float]:
    """Right-aligned mean over ``width`` points ignoring NaN (NaN if all are); the first
    ``width`` values take the ``width``-th."""
    out = [NA] * len(gl)
    for i in range(width - 1, len(gl)):
        window = [v for v in gl[i - width + 1 : i + 1] if not math.isnan(v)]
        out[i] = r_mean(window) if window else NA
    for i in range(min(width, len(gl))):
        out[i] = out[width - 1]
    return out


def r_mean(values: list[float]) -> float:
    """R's ``mean``: the sum divided by the count, then refined by the mean deviation
    from it (R's summary.c).  Equal values give exactly that value, so two averages of a
    flat stretch are equal and their difference is exactly 0: no crossing there."""
    n = len(values)
    m = math.fsum(values) / n
    return m + math.fsum(v - m for v in values) / n


def crossings(gl: list[float], delta: list[float]) -> tuple[list[int], list[int]]:
    """Crossing points (positions) of the two averages and their types, first and last
    point included, by iglu's scan."""
    n = len(gl)
    ids = [0]
    types = [REL_MAX if delta[0] > 0 else REL_MIN]
    for i in range(1, n):
        if any(math.isnan(x) for x in (gl[i], gl[i - 1], delta[i], delta[i - 1])):
            continue
        if delta[i] * delta[i - 1] < 0:
            ids.append(i)
            types.append(REL_MIN if delta[i] < delta[i - 1] else REL_MAX)
        elif delta[i] * delta[ids[-1]] < 0:  # after a gap or a zero: against the last crossing
            previous = delta[ids[-1]]
            ids.append(i)
            types.append(REL_MIN if delta[i] < previous else REL_MAX)
    ids.append(n - 1)
    types.append(REL_MAX if delta[n - 1] > 0 else REL_MIN)
    return ids, types


def turning_points(gl: list[float], ids: list[int], types: list[int]) -> list[int]:
    """Position of the extreme between each crossing and the next: the first minimum or
    maximum of the glucose from the previous turning point (the first crossing for the
    first) to the next crossing, NaN skipped."""
    points: list[int] = []
    for i in range(len(ids) - 1):
        lo = ids[0] if i == 0 else points[-1]
        hi = ids[i + 1]
        best = -1
        for k in range(lo, hi + 1):
            v = gl[k]
            if math.isnan(v):
                continue
            if (
                best < 0
                or (types[i] == REL_MIN and v < gl[best])
                or (types[i] == REL_MAX and v > gl[best])
            ):
                best = k
        points.append(best)
    return points


def excursions(minmax: list[float], sd: float, *, rising: bool) -> list[float]:
    """iglu's excursion elimination over the turning-point values: the heights of the
    counted excursions (positive for MAGE+, negative for MAGE-)."""
    n = len(minmax)
    heights: list[float] = []
    j = prev_j = 0
    while j < n:
        # minmax[j] - minmax[i] for i in prev_j..j; its best (first on ties) and where
        diffs = [minmax[j] - minmax[i] for i in range(prev_j, j + 1)]
        best = max(diffs) if rising else min(diffs)
        i = prev_j + diffs.index(best)
        if (best >= sd) if rising else (best <= -sd):
            for k in range(j, n):
                if (minmax[k] > minmax[j]) if rising else (minmax[k] < minmax[j]):
                    j = k
                back = minmax[k] - minmax[j]
                if ((back < -sd) if rising else (back > sd)) or k == n - 1:
                    heights.append(minmax[j] - minmax[i])
                    prev_j = k if rising else j
                    j = k
                    break
        else:
            j += 1
    return heights


def segment_mage(seg: list[float], short_ma: int, long_ma: int) -> tuple[float, float]:
    """(MAGE+, MAGE-) of one segment; NaN where not computable."""
    values = [v for v in seg if not math.isnan(v)]
    if not values or len(seg) < MIN_POINTS or len(seg) < long_ma:
        return NA, NA
    short, long = moving_average(seg, short_ma), moving_average(seg, long_ma)
    delta = [s - lg for s, lg in zip(short, long, strict=True)]
    ids, types = crossings(seg, delta)
    minmax = [seg[k] for k in turning_points(seg, ids, types)]
    sd = statistics.stdev(values)
    if sd == 0:
        return NA, NA
    plus = excursions(minmax, sd, rising=True)
    minus = excursions(minmax, sd, rising=False)
    return (
        math.fsum(plus) / len(plus) if plus else NA,
        abs(math.fsum(minus) / len(minus)) if minus else NA,
    )
