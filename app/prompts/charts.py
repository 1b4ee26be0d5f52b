"""Tiny server-side charts for the metrics table: a sparkline (line) or bars per series, as
inline SVG markup. No chart library, no JavaScript.

Pure functions. The markup is built from numbers this module formats itself plus one escaped
text (the summary), and only then marked safe, so nothing a user typed can become markup. The
summary ("Replies per day: lowest 0, highest 12, latest 3") is the chart's accessible name
(``role="img"`` + ``aria-label``) and its hover ``<title>``. Colours come from the stylesheet
(``static/css/metrics.css``), so both themes apply; there are no inline styles (the CSP has no
``'unsafe-inline'``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 80, 22, 2


def metric_value(value: float | None, unit: str = "") -> str:
    """A figure for people: ``%`` for a 0-1 rate, ``ms``, ``$`` (USD), or a plain number."""
    if value is None:
        return "—"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "$":
        if value == 0 or value >= 1:
            return f"${value:,.2f}"
        digits = max(2, 1 - math.floor(math.log10(value)))  # two significant digits
        return f"${value:.{digits}f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def summary(values: Sequence[float | None], label: str, unit: str = "") -> str:
    present = [v for v in values if v is not None]
    if not present:
        return f"{label}: no data"
    latest = next(v for v in reversed(values) if v is not None)
    return (
        f"{label}: lowest {metric_value(min(present), unit)}, "
        f"highest {metric_value(max(present), unit)}, latest {metric_value(latest, unit)}"
    )


def _num(value: float) -> str:
    return f"{value:.1f}"


def _y(value: float, top: float) -> float:
    """Height from the bottom, scaled so that 0 is the baseline and ``top`` the full height."""
    inner = HEIGHT - 2 * PAD
    return HEIGHT - PAD - (value / top * inner if top > 0 else 0)


def _line(values: Sequence[float | None], top: float) -> str:
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    points = [
        None if v is None else (PAD + i * step if len(values) > 1 else WIDTH / 2, _y(v, top))
        for i, v in enumerate(values)
    ]
    segments: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(point)
    path = []
    dots = []
    for segment in segments:
        if len(segment) == 1:  # a lone value between gaps: a dot, since a path would not show
            x, y = segment[0]
            dots.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="1.5"/>')
        elif segment:
            path.append("M" + " L".join(f"{_num(x)} {_num(y)}" for x, y in segment))
    drawn = f'<path d="{" ".join(path)}"/>' if path else ""
    return drawn + "".join(dots)


def _bars(values: Sequence[float | None], top: float) -> str:
    slot = (WIDTH - 2 * PAD) / len(values)
    gap = min(1.0, slot / 4)
    bars = []
    for i, value in enumerate(values):
        if not value or top <= 0:
            continue  # an empty bucket draws nothing above the baseline
        y = _y(value, top)
        height = max(HEIGHT - PAD - y, 1.0)
        bars.append(
            f'<rect x="{_num(PAD + i * slot + gap / 2)}" y="{_num(HEIGHT - PAD - height)}" '
            f'width="{_num(slot - gap)}" height="{_num(height)}"/>'
        )
    return "".join(bars)


def sparkline(
    values: Sequence[float | None], *, label: str, kind: str = "line", unit: str = ""
) -> Markup:
    """An inline SVG of ``values`` (None: no data in that bucket), from 0 to the highest value:
    a line (``kind="line"``, gaps left open) or bars (``kind="bar"``, for counts and money)."""
    text = escape(summary(values, label, unit))
    present = [v for v in values if v is not None]
    top = max(present, default=0)
    if not present:
        body = ""
    elif kind == "bar":
        body = _bars(values, top)
    else:
        body = _line(values, top)
    base = HEIGHT - PAD + 0.5
    svg = (
        f'<svg class="spark spark-{"bar" if kind == "bar" else "line"}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{text}"><title>{text}</title>'
        f'<line class="spark-base" x1="0" y1="{_num(base)}" x2="{WIDTH}" y2="{_num(base)}"/>'
        f"{body}</svg>"
    )
    return Markup(svg)  # noqa: S704 (formatted numbers and the escaped summary only)
