"""The report's charts: inline SVG drawn by hand (no JavaScript library, no web font, nothing
fetched), and the number formatting they share with the sections."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096")
KEPT_COLOR, REJECTED_COLOR = "#2b6cb0", "#dd6b20"


def fmt_num(value: float) -> str:
    """Compact, readable: 1,234 / 12.3k / 4.5M / 0.873 / 3e-04."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if v == int(v):
        return f"{int(v):,}"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 0.0001 or a == 0:
        return f"{v:.3g}"
    return f"{v:.1e}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def text_width(text: str, size: int = 12) -> float:
    """Approximate rendered width in pixels of ``text`` in a sans-serif font (no font metrics
    offline; these per-class averages are close to DejaVu Sans / Helvetica)."""
    width = 0.0
    for ch in text:
        if ch.isupper() or ch in "mw@%&":
            width += 0.74
        elif ch.isdigit():
            width += 0.64
        elif ch in " .,:;'|!ijlft()[]":
            width += 0.36
        else:
            width += 0.62
    return width * size


def _truncate(label: str, chars: int, pixels: float | None = None) -> str:
    """At most ``chars`` characters and, given ``pixels``, no wider than that (ellipsis when cut)."""
    if len(label) > chars:
        label = label[: max(chars - 1, 1)] + "…"
    while pixels is not None and len(label) > 2 and text_width(label) > pixels:
        label = label[:-2] + "…"
    return label


class Svg:
    """An SVG canvas that collects elements; every text is escaped on the way in."""

    def __init__(self, width: int, height: int, label: str):
        self.width, self.height = width, height
        self.parts: list[str] = []
        self.label = label

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str | None = None,
             opacity: float = 1.0) -> None:
        tip = f"<title>{esc(title)}</title>" if title else ""
        op = f' fill-opacity="{opacity:g}"' if opacity < 1 else ""
        self.parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                          f'fill="{fill}"{op}>{tip}</rect>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#cbd5e0", width: float = 1) -> None:
        self.parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                          f'stroke="{stroke}" stroke-width="{width:g}"/>')

    def polyline(self, points: Sequence[tuple[float, float]], stroke: str, width: float = 2) -> None:
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.parts.append(f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="{width:g}" '
                          'stroke-linejoin="round"/>')

    def circle(self, x: float, y: float, r: float, fill: str, title: str | None = None) -> None:
        tip = f"<title>{esc(title)}</title>" if title else ""
        self.parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:g}" fill="{fill}">{tip}</circle>')

    def text(self, x: float, y: float, value: Any, anchor: str = "start", size: int = 12,
             fill: str = "#2d3748", weight: str = "normal", rotate: bool = False, title: str | None = None) -> None:
        transform = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        tip = f"<title>{esc(title)}</title>" if title else ""
        self.parts.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
                          f'fill="{fill}" font-weight="{weight}"{transform}>{tip}{esc(value)}</text>')

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(self.label)}" '
                f'width="{self.width}" height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
                f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">'
                + "".join(self.parts) + "</svg>")


@dataclass
class Series:
    label: str
    values: Sequence[float]
    color: str


class BarChart:
    """Horizontal bars, one per label, value printed at the bar's end."""

    def __init__(self, width: int = 560, label_chars: int = 34, color: str = COLORS[0]):
        self.width, self.label_chars, self.color = width, label_chars, color

    def render(self, items: Sequence[tuple[str, float]], title: str, x_label: str = "documents") -> str:
        row, top, bottom = 22, 8, 34
        label_w = min(max((text_width(_truncate(lab, self.label_chars)) for lab, _ in items), default=30) + 14,
                      self.width * 0.55)
        value_w = 64
        plot_w = self.width - label_w - value_w
        svg = Svg(self.width, top + row * len(items) + bottom, title)
        peak = max((v for _, v in items), default=0) or 1
        for i, (label, value) in enumerate(items):
            y = top + i * row
            svg.text(label_w - 8, y + 15, _truncate(label, self.label_chars, label_w - 12), anchor="end", title=label)
            svg.rect(label_w, y + 3, plot_w * value / peak, row - 6, self.color, title=f"{label}: {fmt_num(value)}")
            svg.text(label_w + plot_w * value / peak + 5, y + 15, fmt_num(value), size=11, fill="#4a5568")
        axis_y = top + row * len(items) + 2
        svg.line(label_w, axis_y, label_w + plot_w, axis_y)
        svg.text(label_w + plot_w / 2, axis_y + 24, x_label, anchor="middle", size=11, fill="#4a5568")
        return svg.render()


class FunnelChart:
    """Per stage: a light bar for documents in, a dark bar for documents kept, the rejected share."""

    def __init__(self, width: int = 900):
        self.width = width

    def render(self, stages: Sequence[Mapping[str, Any]]) -> str:
        row, top, bottom = 30, 30, 36
        names = [f"{s.get('index', i)}. {s.get('name', '?')}" for i, s in enumerate(stages)]
        label_w = min(max((text_width(n) for n in names), default=30) + 16, 280)
        note_w = 190
        plot_w = self.width - label_w - note_w
        svg = Svg(self.width, top + row * len(stages) + bottom, "funnel through the stages")
        peak = max((max(int(s.get("in") or 0), int(s.get("kept") or 0)) for s in stages), default=0) or 1
        svg.rect(label_w, 8, 12, 12, "#bee3f8")
        svg.text(label_w + 17, 18, "documents in", size=11)
        svg.rect(label_w + 120, 8, 12, 12, KEPT_COLOR)
        svg.text(label_w + 137, 18, "kept", size=11)
        for i, (name, stage) in enumerate(zip(names, stages)):
            y = top + i * row
            n_in, kept = int(stage.get("in") or 0), int(stage.get("kept") or 0)
            rejected = int(stage.get("rejected") or 0)
            svg.text(label_w - 8, y + 19, name, anchor="end", title=name)
            svg.rect(label_w, y + 4, plot_w * n_in / peak, row - 8, "#bee3f8", title=f"{name}: {n_in:,} in")
            svg.rect(label_w, y + 8, plot_w * kept / peak, row - 16, KEPT_COLOR, title=f"{name}: {kept:,} kept")
            share = f" ({100 * rejected / n_in:.1f}%)" if n_in else ""
            note = f"{kept:,} kept · −{rejected:,}{share}"
            if stage.get("generated"):
                note += f" · +{int(stage['generated']):,} new"
            svg.text(label_w + plot_w + 8, y + 19, note, size=11, fill="#4a5568")
        axis_y = top + row * len(stages) + 2
        svg.line(label_w, axis_y, label_w + plot_w, axis_y)
        for tick in nice_ticks(0, peak, 5):
            if tick > peak:
                break
            x = label_w + plot_w * tick / peak
            svg.line(x, axis_y, x, axis_y + 4)
            svg.text(x, axis_y + 16, fmt_num(tick), anchor="middle", size=10, fill="#4a5568")
        svg.text(label_w + plot_w / 2, axis_y + 31, "documents", anchor="middle", size=11, fill="#4a5568")
        return svg.render()


class _Axes:
    """Plot-area geometry shared by the histogram and the line chart."""

    def __init__(self, width: int, height: int, left: int = 60, right: int = 16, top: int = 28, bottom: int = 46):
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top  # y0 is the bottom edge (SVG y grows downwards)

    @staticmethod
    def left_for(y_labels: Sequence[str]) -> int:
        """A left margin wide enough for the y tick labels and the rotated axis title beside them."""
        return int(max((text_width(t, 10) for t in y_labels), default=0) + 34)

    def frame(self, svg: Svg, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]],
              x_label: str, y_label: str) -> None:
        for y, text in y_ticks:
            svg.line(self.x0, y, self.x1, y, stroke="#edf2f7")
            svg.text(self.x0 - 6, y + 4, text, anchor="end", size=10, fill="#4a5568")
        svg.line(self.x0, self.y0, self.x1, self.y0, stroke="#a0aec0")
        svg.line(self.x0, self.y0, self.x0, self.y1, stroke="#a0aec0")
        last_right = -1e9
        for x, text in x_ticks:
            svg.line(x, self.y0, x, self.y0 + 4, stroke="#a0aec0")
            half = text_width(text, 10) / 2
            if x - half > last_right + 4:  # skip a tick label that would overlap its neighbour
                svg.text(x, self.y0 + 16, text, anchor="middle", size=10, fill="#4a5568")
                last_right = x + half
        svg.text((self.x0 + self.x1) / 2, self.height - 8, x_label, anchor="middle", size=11, fill="#2d3748")
        svg.text(14, (self.y0 + self.y1) / 2, y_label, anchor="middle", size=11, fill="#2d3748", rotate=True)

    def legend(self, svg: Svg, entries: Sequence[tuple[str, str]]) -> None:
        x = self.x0 + 4
        for label, color in entries:
            svg.rect(x, 8, 11, 11, color)
            svg.text(x + 15, 18, label, size=11)
            x += 15 + text_width(label, 11) + 14


class Histogram:
    """Overlaid histograms of one or more series over shared bins (linear or log-spaced)."""

    def __init__(self, width: int = 410, height: int = 230, bins: int = 30, log_x: bool = False):
        self.width, self.height, self.bins, self.log_x = width, height, bins, log_x

    def edges(self, values: np.ndarray) -> np.ndarray:
        lo, hi = float(values.min()), float(values.max())
        if self.log_x:
            lo = max(lo, 1.0)
            hi = max(hi, lo * 1.0001)
            return np.geomspace(lo, hi * 1.0001, self.bins + 1)
        if hi == lo:
            return np.array([lo - 0.5, lo + 0.5]) if lo == 0 else np.array([lo - abs(lo) * 0.05, lo + abs(lo) * 0.05])
        return np.linspace(lo, hi, self.bins + 1)

    def render(self, series: Sequence[Series], title: str, x_label: str, y_label: str = "documents",
               edges: np.ndarray | None = None) -> str:
        """``edges``: shared bin edges (to compare panels); default: spanning these series."""
        arrays = [np.asarray(s.values, dtype=float) for s in series]
        arrays = [a[np.isfinite(a)] for a in arrays]
        if edges is None:
            edges = self.edges(np.concatenate([a for a in arrays if a.size] or [np.zeros(1)]))
        counts = [np.histogram(np.clip(a, edges[0], edges[-1]), bins=edges)[0] for a in arrays]
        peak = max((int(c.max()) for c in counts if c.size), default=0) or 1
        y_values = [t for t in nice_ticks(0, peak, 4) if t <= peak and t == int(t)]  # counts: whole numbers
        ax = _Axes(self.width, self.height, left=_Axes.left_for([fmt_num(t) for t in y_values]))
        svg = Svg(self.width, self.height, title)

        def xpos(v: float) -> float:
            if self.log_x:
                span = math.log(edges[-1]) - math.log(edges[0])
                return ax.x0 + (ax.x1 - ax.x0) * (math.log(max(v, edges[0])) - math.log(edges[0])) / span
            return ax.x0 + (ax.x1 - ax.x0) * (v - edges[0]) / (edges[-1] - edges[0])

        def ypos(c: float) -> float:
            return ax.y0 - (ax.y0 - ax.y1) * c / peak

        y_ticks = [(ypos(t), fmt_num(t)) for t in y_values]
        if self.log_x:
            decades = range(math.floor(math.log10(edges[0])), math.ceil(math.log10(edges[-1])) + 1)
            marks = [m * 10 ** d for d in decades for m in (1, 2, 5)]
            x_ticks = [(xpos(v), fmt_num(v)) for v in marks if edges[0] <= v <= edges[-1]]
        else:
            x_ticks = [(xpos(t), fmt_num(t)) for t in nice_ticks(edges[0], edges[-1], 5) if edges[0] <= t <= edges[-1]]
        ax.frame(svg, x_ticks, y_ticks, x_label, y_label)
        opacity = 1.0 if len(series) == 1 else 0.55
        for s, c in zip(series, counts):
            for i, n in enumerate(c):
                if n:
                    left, right = xpos(edges[i]), xpos(edges[i + 1])
                    svg.rect(left + 0.5, ypos(n), max(right - left - 1, 1), ax.y0 - ypos(n), s.color,
                             title=f"{s.label}: {n:,} in [{fmt_num(edges[i])}, {fmt_num(edges[i + 1])})",
                             opacity=opacity)
        ax.legend(svg, [(f"{s.label} (n={a.size:,})", s.color) for s, a in zip(series, arrays)])
        return svg.render()


class LineChart:
    """One or more (x, y) series over a shared x axis."""

    def __init__(self, width: int = 410, height: int = 230):
        self.width, self.height = width, height

    def render(self, series: Sequence[tuple[str, Sequence[float], Sequence[float], str]], title: str,
               x_label: str, y_label: str) -> str:
        xs_all = [x for _, xs, _, _ in series for x in xs]
        ys_all = [y for _, _, ys, _ in series for y in ys]
        x_lo, x_hi = min(xs_all), max(xs_all)
        y_lo, y_hi = min(ys_all), max(ys_all)
        if y_hi == y_lo:
            y_lo, y_hi = y_lo - (abs(y_lo) * 0.1 or 1), y_hi + (abs(y_hi) * 0.1 or 1)
        pad = (y_hi - y_lo) * 0.05
        y_lo, y_hi = (0.0 if y_lo >= 0 and y_lo - pad < 0 else y_lo - pad), y_hi + pad
        if x_hi == x_lo:
            x_hi = x_lo + 1
        y_values = [t for t in nice_ticks(y_lo, y_hi, 4) if y_lo <= t <= y_hi]
        ax = _Axes(self.width, self.height, left=_Axes.left_for([fmt_num(t) for t in y_values]))
        svg = Svg(self.width, self.height, title)

        def xpos(v: float) -> float:
            return ax.x0 + (ax.x1 - ax.x0) * (v - x_lo) / (x_hi - x_lo)

        def ypos(v: float) -> float:
            return ax.y0 - (ax.y0 - ax.y1) * (v - y_lo) / (y_hi - y_lo)

        x_ticks = [(xpos(t), fmt_num(t)) for t in nice_ticks(x_lo, x_hi, 5) if x_lo <= t <= x_hi]
        y_ticks = [(ypos(t), fmt_num(t)) for t in y_values]
        ax.frame(svg, x_ticks, y_ticks, x_label, y_label)
        for label, xs, ys, color in series:
            points = [(xpos(x), ypos(y)) for x, y in zip(xs, ys)]
            if len(points) == 1 or len(points) <= 12:
                for (px, py), x, y in zip(points, xs, ys):
                    svg.circle(px, py, 2.5, color, title=f"{label} at {fmt_num(x)}: {fmt_num(y)}")
            if len(points) > 1:
                svg.polyline(points, color)
        ax.legend(svg, [(label, color) for label, _, _, color in series])
        return svg.render()
