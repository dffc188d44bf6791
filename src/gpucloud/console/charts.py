"""Bar charts of money per day as inline SVG, drawn on the server (no chart library, no
script). The same numbers are always given as a table beside the chart for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from gpucloud.billing.money import Money
from gpucloud.console.reports import Day

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 16, 36


TICKS = 4  # grid lines above zero


def nice_step(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1
    power = 1
    while True:
        for m in (1, 2, 5):
            if m * power >= value:
                return m * power
        power *= 10


def axis_top(peak: int) -> int:
    """The axis maximum: TICKS equal steps of a round size, so every label is exact."""
    return TICKS * nice_step(-(-peak // TICKS))


def _label(minor: int, currency: str) -> str:
    amount = Money(minor, currency).decimal
    return f"{amount.normalize():f}" if amount == amount.to_integral() else f"{amount:f}"


def bar_chart(days: Sequence[Day], currency: str, title: str, chart_id: str) -> Markup:
    """An accessible SVG: role=img, a title and a description naming the total and the peak."""
    top = axis_top(max((d.minor for d in days), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    bar_w = max(2.0, slot * 0.7)
    total = sum(d.minor for d in days)
    peak = max(days, key=lambda d: d.minor, default=None)
    desc = f"Total {Money(total, currency)} over {len(days)} days"
    if peak is not None and peak.minor > 0:
        desc += f"; highest on {peak.day.isoformat()}: {Money(peak.minor, currency)}"
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="chart" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]
    for i in range(TICKS + 1):  # grid lines and y labels: 0, one step ... top
        value = top // TICKS * i
        y = TOP + plot_h - plot_h * i / TICKS
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_label(value, currency))}</text>"
        )
    every = max(1, len(days) // 8)
    for i, d in enumerate(days):
        h = plot_h * d.minor / top if top else 0
        x = LEFT + slot * i + (slot - bar_w) / 2
        tip = f"{d.day.isoformat()}: {Money(d.minor, currency)}"
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
            f'height="{h:.1f}"><title>{escape(tip)}</title></rect>'
        )
        if i % every == 0 or i == len(days) - 1:
            parts.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 18}" '
                f'text-anchor="middle">{d.day.strftime("%m-%d")}</text>'
            )
    parts.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
        f'y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    parts.append(f'<text class="axis" x="4" y="{TOP - 4}">{escape(currency)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))

