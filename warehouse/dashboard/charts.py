"""Inline SVG charts (bars, lines, a heat table): no font or file from outside the page; ticks on round numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2f6db5", "#e07b39", "#3a9a5b", "#c23b4e", "#7d5ba6", "#8c6d31", "#d45fa0", "#5f8f9f")
W, H = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 18, 46


def nice_ticks(top: float, *, whole: bool = True, most: int = 6) -> list[float]:
    """Axis ticks from 0 on round steps (1, 2 or 5 x 10^k) covering `top`, at most `most` of them;
    `whole` keeps counts on whole numbers (never 2.5 tickets)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / (most - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    if whole:
        step = max(step, 1.0)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _axis(ticks: Sequence[float], fmt: str) -> list[str]:
    out = []
    for v in ticks:
        y = TOP + (H - TOP - BOTTOM) * (1 - v / ticks[-1])
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{format(v, fmt)}</text>')
    return out


def _legend(names: Sequence[str]) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{H - 14}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{H - 5}" class="tick">{escape(name)}</text>')
        x += 24 + 13 * len(name)
    return out


def _svg(title: str, body: list[str]) -> str:
    return (f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" class="chart" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>' + "".join(body) + "</svg>")


def bar_chart(title: str, categories: Sequence[str], series: dict[str, Sequence[float | None]],
              *, fmt: str = ",.0f", ymax: float | None = None) -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    values = [v for s in series.values() for v in s if v is not None]
    ticks = nice_ticks(ymax if ymax is not None else max(values, default=0), whole=not fmt.endswith("%"))
    top = ticks[-1]
    body = _axis(ticks, fmt)
    n, k = max(len(categories), 1), max(len(series), 1)
    group = (W - LEFT - RIGHT) / n
    bar = group * 0.8 / k
    for j, (name, vals) in enumerate(series.items()):
        for i, v in enumerate(vals):
            if v is None:
                continue
            h = (H - TOP - BOTTOM) * min(v / top, 1.0)
            x = LEFT + i * group + group * 0.1 + j * bar
            body.append(f'<rect x="{x:.1f}" y="{H - BOTTOM - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                        f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(name)} · {escape(categories[i])}: '
                        f'{format(v, fmt)}</title></rect>')
    for i, c in enumerate(categories):
        body.append(f'<text x="{LEFT + (i + 0.5) * group:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" '
                    f'class="tick">{escape(c)}</text>')
    if len(series) > 1:
        body += _legend(list(series))
    return _svg(title, body)


def line_chart(title: str, xs: Sequence[str], series: dict[str, Sequence[float | None]],
               *, marks: Sequence[int] = (), fmt: str = ",.0f") -> str:
    """Lines over an ordered axis; `marks` are x positions flagged with a red dot (warnings)."""
    values = [v for s in series.values() for v in s if v is not None]
    ticks = nice_ticks(max(values, default=0), whole=not fmt.endswith("%"))
    top = ticks[-1]
    body = _axis(ticks, fmt)
    n = max(len(xs) - 1, 1)

    def pos(i: int, v: float) -> tuple[float, float]:
        return (LEFT + (W - LEFT - RIGHT) * i / n, H - BOTTOM - (H - TOP - BOTTOM) * v / top)

    first = None
    for j, (name, vals) in enumerate(series.items()):
        points = [pos(i, v) for i, v in enumerate(vals) if v is not None]
        if first is None:
            first = list(vals)
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[j % len(PALETTE)]}" '
                        f'stroke-width="2"><title>{escape(name)}</title></polyline>')
    for i in marks:
        if first and 0 <= i < len(first) and first[i] is not None:
            x, y = pos(i, float(first[i] or 0))
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="#c23b4e" class="warning-mark">'
                        f'<title>预警 {escape(xs[i])}</title></circle>')
    step = max(1, len(xs) // 10)
    for i in range(0, len(xs), step):
        x, _ = pos(i, 0)
        body.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" class="tick">{escape(xs[i])}</text>')
    if len(series) > 1:
        body += _legend(list(series))
    return _svg(title, body)


def heat_table(title: str, rows: Sequence[str], columns: Sequence[str],
               values: Sequence[Sequence[float | None]], *, worse: Sequence[bool] | None = None,
               fmt: str = ",.0f") -> str:
    """An HTML table for block data: cells of a column where more is worse (`worse`) shaded red by
    their share of that column's largest value; the other columns (population) left plain."""
    worse = list(worse) if worse is not None else [True] * len(columns)
    tops = [max((v for r in values if (v := r[j]) is not None), default=0.0) or 1.0 for j in range(len(columns))]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for name, vals in zip(rows, values, strict=True):
        cells = []
        for j, v in enumerate(vals):
            if v is None:
                cells.append("<td></td>")
                continue
            if not worse[j]:
                cells.append(f"<td>{format(v, fmt)}</td>")
                continue
            alpha = 0.08 + 0.8 * (v / tops[j])
            ink = "#fff" if alpha > 0.55 else "#222"
            cells.append(f'<td style="background:rgba(194,59,78,{alpha:.2f});color:{ink}">{format(v, fmt)}</td>')
        body.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    return (f'<table class="heat" aria-label="{escape(title)}"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
