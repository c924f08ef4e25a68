"""Inline SVG charts rendered on the server: AGP, daily glucose, home blood pressure,
daily weight.

Pure functions of the summary models; every text node goes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from html import escape

from analytics.summary import AgpBin, DailyGlucose

W, H = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 30
Y_MIN, Y_MAX = 40.0, 350.0


def _y(value: float, lo: float = Y_MIN, hi: float = Y_MAX, height: int = H) -> float:
    v = min(max(value, lo), hi)
    return TOP + (height - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo))


def _x(fraction: float) -> float:
    return LEFT + (W - LEFT - RIGHT) * fraction


def _frame(svg_id: str, title: str, body: list[str], height: int = H) -> str:
    return (
        f'<svg id="{escape(svg_id)}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" '
        f'height="{height}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _y_axis(ticks: Sequence[float], lo: float, hi: float, unit: str, height: int = H) -> list[str]:
    out = []
    for t in ticks:
        y = _y(t, lo, hi, height)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{t:g}</text>'
        )
    out.append(
        f'<text x="{LEFT - 6}" y="{height - BOTTOM + 16}" text-anchor="end" class="tick">'
        f"{escape(unit)}</text>"
    )
    return out


def agp_svg(bins: Sequence[AgpBin], low: float = 70.0, high: float = 180.0) -> str:
    """Percentile bands (5-95, 25-75) and the median by time of day, target range shaded."""
    body = [
        f'<rect x="{LEFT}" y="{_y(high):.1f}" width="{W - LEFT - RIGHT}" '
        f'height="{_y(low) - _y(high):.1f}" class="target"/>'
    ]
    body += _y_axis((54, 70, 180, 250, 350), Y_MIN, Y_MAX, "mg/dL")
    for hour in range(0, 25, 3):
        x = _x(hour / 24)
        body.append(
            f'<text x="{x:.1f}" y="{H - 10}" text-anchor="middle" class="tick">{hour:02d}:00</text>'
        )
    points = [b for b in bins if b.p50 is not None]
    if not points:
        body.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">No glucose data</text>')
        return _frame("agp-chart", "Ambulatory glucose profile", body)

    def band(lo_key: str, hi_key: str, css: str) -> str:
        top = [(b.minute, getattr(b, hi_key)) for b in points if getattr(b, hi_key) is not None]
        bottom = [(b.minute, getattr(b, lo_key)) for b in points if getattr(b, lo_key) is not None]
        coords = [f"{_x(m / 1440):.1f},{_y(v):.1f}" for m, v in top]
        coords += [f"{_x(m / 1440):.1f},{_y(v):.1f}" for m, v in reversed(bottom)]
        return f'<polygon points="{" ".join(coords)}" class="{css}"/>'

    body.append(band("p5", "p95", "outer"))
    body.append(band("p25", "p75", "inner"))
    median = " ".join(f"{_x(b.minute / 1440):.1f},{_y(b.p50 or 0):.1f}" for b in points)
    body.append(f'<polyline points="{median}" class="median"/>')
    return _frame("agp-chart", "Ambulatory glucose profile (5/25/50/75/95th percentiles)", body)


def daily_svg(days: Sequence[DailyGlucose]) -> str:
    """One bar per day: min-max range, mean dot."""
    body = [
        f'<rect x="{LEFT}" y="{_y(180):.1f}" width="{W - LEFT - RIGHT}" '
        f'height="{_y(70) - _y(180):.1f}" class="target"/>'
    ]
    body += _y_axis((54, 70, 180, 250, 350), Y_MIN, Y_MAX, "mg/dL")
    n = max(len(days), 1)
    for i, d in enumerate(days):
        x = _x((i + 0.5) / n)
        if d.min is not None and d.max is not None:
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_y(d.max):.1f}" y2="{_y(d.min):.1f}" '
                'class="range"/>'
            )
        if d.mean is not None:
            label = f"{d.date.isoformat()}: mean {d.mean:.0f} mg/dL, n={d.n}"
            body.append(
                f'<circle cx="{x:.1f}" cy="{_y(d.mean):.1f}" r="4" class="mean">'
                f"<title>{escape(label)}</title></circle>"
            )
        if n <= 31 and i % max(n // 10, 1) == 0:
            body.append(
                f'<text x="{x:.1f}" y="{H - 10}" text-anchor="middle" class="tick">'
                f"{escape(d.date.strftime('%m-%d'))}</text>"
            )
    return _frame("daily-chart", "Daily glucose: range and mean per day", body)


def bp_svg(
    readings: Sequence[tuple[datetime, float, float]],
    target: tuple[float, float] = (130.0, 80.0),
) -> str:
    """Systolic and diastolic over time, with the home target lines."""
    lo, hi = 40.0, 200.0
    body = _y_axis((60, 80, 120, 130, 140, 180), lo, hi, "mmHg")
    for value, css in ((target[0], "target-line"), (target[1], "target-line")):
        y = _y(value, lo, hi)
        body.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="{css}"/>')
    if not readings:
        body.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">No blood pressure data</text>'
        )
        return _frame("bp-chart", "Home blood pressure", body)
    t0 = readings[0][0].timestamp()
    span = max(readings[-1][0].timestamp() - t0, 1.0)
    for values, css in (
        ([r[1] for r in readings], "systolic"),
        ([r[2] for r in readings], "diastolic"),
    ):
        pts = " ".join(
            f"{_x((r[0].timestamp() - t0) / span):.1f},{_y(v, lo, hi):.1f}"
            for r, v in zip(readings, values, strict=True)
        )
        body.append(f'<polyline points="{pts}" class="{css}"/>')
    body.append(
        f'<text x="{LEFT + 4}" y="{H - 10}" class="tick">'
        f"{escape(readings[0][0].strftime('%Y-%m-%d'))} .. "
        f"{escape(readings[-1][0].strftime('%Y-%m-%d'))}</text>"
    )
    return _frame("bp-chart", "Home blood pressure: systolic and diastolic", body)


WEIGHT_H = 160  # a trend line next to the numbers, not a chart to read values from


def weight_svg(daily: Sequence[tuple[date, float]], first_day: date, last_day: date) -> str:
    """Mean weight per local day, placed on the page's period so gaps show as gaps."""
    if not daily:
        return ""
    values = [kg for _, kg in daily]
    lo, hi = math.floor(min(values)) - 1, math.ceil(max(values)) + 1
    hi += (hi - lo) % 2  # an even span puts the middle tick on a whole kilogram
    body = _y_axis((lo, (lo + hi) // 2, hi), lo, hi, "kg", WEIGHT_H)
    span = max((last_day - first_day).days + 1, 1)
    points, dots = [], []
    for day, kg in daily:
        x = _x(min(max(((day - first_day).days + 0.5) / span, 0.0), 1.0))
        y = _y(kg, lo, hi, WEIGHT_H)
        points.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="mean">'
            f"<title>{escape(f'{day.isoformat()}: {kg:.1f} kg')}</title></circle>"
        )
    body.append(f'<polyline points="{" ".join(points)}" class="weight"/>')
    body += dots
    body.append(
        f'<text x="{LEFT + 4}" y="{WEIGHT_H - 10}" class="tick">'
        f"{escape(first_day.isoformat())} .. {escape(last_day.isoformat())}</text>"
    )
    return _frame("weight-chart", "Daily weight (mean per day)", body, WEIGHT_H)
