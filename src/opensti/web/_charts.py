"""Server-rendered SVG charts: calls over time (stacked bars) and certificate validity
(a timeline). Pure functions from numbers and times to markup: no JavaScript library, no
CDN, nothing to fetch, and the page reads the same with the SVG off (each chart has a
``<title>``, a ``<desc>`` summary, and the page a table of the same figures).

Every text that reaches the markup is escaped; numbers are formatted by us.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["PALETTE", "Series", "Span", "stacked_bars", "timeline"]

#: Colours with a 3:1 contrast against white (WCAG non-text contrast), in series order.
PALETTE = ("#1b7a3a", "#2f6db5", "#b8860b", "#b3261e", "#6a3d9a", "#5f6368", "#00796b")
_TEXT = 'font-family="sans-serif" font-size="11" fill="#333"'


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked band: a value per bucket, oldest first."""

    label: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Span:
    """One bar of a timeline (a certificate's validity)."""

    label: str
    start: dt.datetime
    end: dt.datetime
    #: A CSS-safe word (``active``, ``superseded``...), also the bar's class.
    state: str
    #: Drawn with a mark at its start: it replaced an earlier bar.
    renewal: bool = False


def _nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:,.0f}"


def _open(width: int, height: int, title: str, desc: str, css: str) -> list[str]:
    return [
        f'<svg class="chart {css}" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
    ]


def _legend(labels: Sequence[str], x: float, y: float) -> list[str]:
    parts, offset = [], 0.0
    for index, label in enumerate(labels):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect class="key" x="{x + offset:.1f}" y="{y - 9}" width="10" height="10" '
            f'fill="{colour}"/><text x="{x + offset + 14:.1f}" y="{y}" {_TEXT}>'
            f"{escape(label)}</text>"
        )
        offset += 24 + 6.5 * len(label)
    return parts


@dataclass(frozen=True, slots=True)
class _Frame:
    """The plot area inside the axes."""

    left: float
    top: float
    width: float
    height: float


def stacked_bars(
    title: str,
    series: Sequence[Series],
    *,
    start: dt.datetime,
    bucket: dt.timedelta,
    unit: str,
    tick_every: int,
    width: int = 960,
    height: int = 240,
) -> Markup:
    """Bars per time bucket, the series stacked in order; the y axis in ``unit``, an x
    label (UTC time) every ``tick_every`` buckets."""
    buckets = max((len(s.values) for s in series), default=0)
    totals = [sum(s.values[i] for s in series if i < len(s.values)) for i in range(buckets)]
    top = _nice_ceiling(max(totals, default=0.0))
    frame = _Frame(left=48, top=28, width=width - 60, height=height - 28 - 26)
    peak = max(totals, default=0.0)
    minutes = int(bucket.total_seconds() // 60)
    peaks = "; ".join(f"{s.label}: peak {_number(max(s.values, default=0))}" for s in series)
    desc = (
        f"{buckets} bars of {minutes} minutes from {start:%Y-%m-%d %H:%M} UTC, in {unit}; "
        f"{peaks or 'no calls'}; highest bar {_number(peak)}."
    )
    parts = _open(width, height, title, desc, "bars")
    parts += _y_axis(frame, top, unit, width)
    parts += _x_axis(frame, start, bucket, buckets, tick_every)
    step = frame.width / max(buckets, 1)
    for index in range(buckets):
        base = 0.0
        for number, band in enumerate(series):
            value = band.values[index] if index < len(band.values) else 0.0
            if value <= 0:
                continue
            y = frame.top + frame.height * (1 - (base + value) / top)
            tall = frame.height * value / top
            at = start + bucket * index
            parts.append(
                f'<rect class="bar s{number}" x="{frame.left + index * step:.1f}" y="{y:.1f}" '
                f'width="{max(step - 1, 1):.1f}" height="{tall:.1f}" '
                f'fill="{PALETTE[number % len(PALETTE)]}"><title>{at:%H:%M} UTC '
                f"{escape(band.label)}: {_number(value)} {escape(unit)}</title></rect>"
            )
            base += value
    parts += _legend([s.label for s in series], frame.left, 14)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (built from escaped text and our numbers)


def _y_axis(frame: _Frame, top: float, unit: str, width: int) -> list[str]:
    parts = []
    for tick in range(5):
        value = top * tick / 4
        y = frame.top + frame.height * (1 - tick / 4)
        parts.append(
            f'<line x1="{frame.left}" x2="{width - 12}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f"{_TEXT}>{_number(value)}</text>"
        )
    mid = frame.top + frame.height / 2
    parts.append(
        f'<text class="unit" transform="translate(12 {mid:.1f}) rotate(-90)" '
        f'text-anchor="middle" {_TEXT}>{escape(unit)}</text>'
    )
    return parts


def _x_axis(
    frame: _Frame, start: dt.datetime, bucket: dt.timedelta, buckets: int, every: int
) -> list[str]:
    bottom = frame.top + frame.height
    parts = [
        f'<line x1="{frame.left}" x2="{frame.left + frame.width}" y1="{bottom}" '
        f'y2="{bottom}" stroke="#999"/>'
    ]
    step = frame.width / max(buckets, 1)
    for index in range(0, buckets + 1, max(every, 1)):
        x = frame.left + index * step
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" {_TEXT}>'
            f"{start + bucket * index:%H:%M}</text>"
        )
    return parts


def timeline(
    title: str,
    spans: Sequence[Span],
    *,
    now: dt.datetime,
    renew_at: dt.datetime | None = None,
    width: int = 960,
) -> Markup:
    """One bar per span on a shared time axis, a line at ``now`` and one at ``renew_at``."""
    row, top_margin = 22, 30
    height = top_margin + row * max(len(spans), 1) + 30
    times = [t for s in spans for t in (s.start, s.end)] + [now]
    if renew_at is not None:
        times.append(renew_at)
    first, last = min(times), max(times)
    pad = (last - first) * 0.03 or dt.timedelta(hours=1)
    first, last = first - pad, last + pad
    frame = _Frame(left=130, top=top_margin, width=width - 142, height=row * max(len(spans), 1))

    def x(at: dt.datetime) -> float:
        return frame.left + frame.width * ((at - first) / (last - first))

    renewals = sum(s.renewal for s in spans)
    desc = (
        f"{len(spans)} certificates from {first + pad:%Y-%m-%d} to {last - pad:%Y-%m-%d}, "
        f"{renewals} renewals; now {now:%Y-%m-%d %H:%M} UTC"
        + (f"; renews {renew_at:%Y-%m-%d %H:%M} UTC" if renew_at else "")
        + "."
    )
    parts = _open(width, height, title, desc, "timeline")
    for index, span in enumerate(spans):
        y = frame.top + index * row
        state = escape(span.state)
        parts.append(
            f'<text x="{frame.left - 8}" y="{y + 14}" text-anchor="end" {_TEXT}>'
            f"{escape(span.label)}</text>"
            f'<rect class="bar {state}" x="{x(span.start):.1f}" y="{y + 3}" '
            f'width="{max(x(span.end) - x(span.start), 2):.1f}" height="{row - 8}" '
            f'fill="{_STATE_COLOURS.get(span.state, PALETTE[5])}"><title>{escape(span.label)} '
            f"({state}): {span.start:%Y-%m-%d %H:%M} to {span.end:%Y-%m-%d %H:%M} UTC"
            "</title></rect>"
        )
        if span.renewal:
            tip = x(span.start)
            parts.append(
                f'<path class="renewal" d="M{tip:.1f} {y + 1} l-5 -6 h10 z" fill="#333">'
                f"<title>renewed {span.start:%Y-%m-%d %H:%M} UTC</title></path>"
            )
    parts += _marker(x(now), frame, "now", "#b3261e")
    if renew_at is not None:
        parts += _marker(x(renew_at), frame, "renews", "#2f6db5")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  (built from escaped text and our numbers)


_STATE_COLOURS = {
    "active": PALETTE[0],
    "pending": PALETTE[2],
    "failed": PALETTE[3],
    "revoked": PALETTE[3],
}


def _marker(at: float, frame: _Frame, label: str, colour: str) -> list[str]:
    bottom = frame.top + frame.height
    return [
        f'<line class="marker {label}" x1="{at:.1f}" x2="{at:.1f}" y1="{frame.top - 8}" '
        f'y2="{bottom + 4}" stroke="{colour}" stroke-width="2" stroke-dasharray="4 3"/>',
        f'<text x="{at:.1f}" y="{bottom + 18}" text-anchor="middle" {_TEXT}>{label}</text>',
    ]
