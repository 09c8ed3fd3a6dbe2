"""`thresher report OUT_DIR`: one self-contained static HTML page about a run's output directory.

Everything is drawn here as inline SVG (no server, no JavaScript library, no web font, nothing
fetched): the funnel through the stages, rejection reasons with example documents, score
histograms, PII counts, dedup cluster sizes, poisoning flags with their spans, token lengths per
source, the training curves of any ``metrics.csv`` under OUT_DIR, and the totals with the
accounting line. A section appears only when its data exists.

Reading is bounded so the report stays fast on huge outputs: ``stats.json`` holds the exact
counts; documents are a seeded reservoir sample of at most ``sample`` records per side drawn from
the first ``max_scan`` lines (files visited in a seeded order); shards contribute at most
``max_shard_rows`` rows (only the ``length`` and ``source`` columns are read).
"""

from __future__ import annotations

import argparse
import csv
import functools
import gzip
import html
import json
import math
import os
import random
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

REPORT_NAME = "report.html"
SNIPPET_CHARS = 300
#: score fields drawn first, in this order, when present; every other numeric field follows
PRIMARY_SCORES = ("language_score", "quality", "toxicity", "poisoning_score")
#: meta fields that are not scores (they get their own sections, or are identifiers)
NON_SCORE_PREFIXES = ("pii_counts.", "pii_spans", "poisoning.", "minhash_cluster")
#: sub-directories of OUT that hold documents or shards, never a training run's metrics
DATA_DIRS = {"kept", "rejected", "quarantine", "shards", "input", "_progress", "_stage_stats"}
COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#b7791f", "#718096")
KEPT_COLOR, REJECTED_COLOR = "#2b6cb0", "#dd6b20"


class ReportError(ValueError):
    """OUT_DIR cannot be reported on: missing, or its stats.json is missing or unreadable."""


# ============================================================================================
# numbers and SVG primitives

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


# ============================================================================================
# reading OUT_DIR

def _open_binary(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith((".zst", ".zstd")):
        import io

        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb")))
    return path.open("rb")


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def record_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd")))


def iter_lines(files: Sequence[Path], limit: int, seed: int) -> Iterator[bytes]:
    """Up to ``limit`` non-empty lines (bytes, undecoded), files visited in a seeded order (a
    truncated or corrupt file ends its own contribution, not the report)."""
    order = list(files)
    random.Random(seed).shuffle(order)
    seen = 0
    for path in order:
        carry = b""
        try:
            with _open_binary(path) as fh:
                while True:
                    # big reads split here: far cheaper than readline() through gzip per line
                    chunk = fh.read(1 << 22)
                    if not chunk:
                        break
                    lines = (carry + chunk).split(b"\n")
                    carry = lines.pop()
                    for line in lines:
                        if seen >= limit:
                            return
                        if line.strip():
                            seen += 1
                            yield line
        except _read_errors():
            pass  # a truncated file still gives the lines before the damage
        if carry.strip() and seen < limit:
            seen += 1
            yield carry


def numeric_fields(mapping: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping, keys joined with "."; booleans are not scores."""
    out: dict[str, float] = {}
    for key, value in (mapping or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(numeric_fields(value, f"{name}."))
    return out


@functools.lru_cache(maxsize=4096)
def _is_score(name: str) -> bool:
    return not any(name == p.rstrip(".") or name.startswith(p) for p in NON_SCORE_PREFIXES)


def snippet(text: str, chars: int = SNIPPET_CHARS) -> str:
    return text if len(text) <= chars else text[:chars] + "…"


@dataclass
class PoisonExample:
    id: str
    side: str                       # "kept" or "rejected"
    score: float
    flagged: list[str]
    windows: list[tuple[str, str, str, str]]  # (before, span, after, label)


def poison_windows(text: str, spans: Sequence[Sequence[Any]], limit: int = 3, context: int = 60
                   ) -> list[tuple[str, str, str, str]]:
    out = []
    for span in list(spans)[:limit]:
        try:
            start, end, label = int(span[0]), int(span[1]), str(span[2]) if len(span) > 2 else ""
        except (TypeError, ValueError, IndexError):
            continue
        start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
        before = ("…" if start > context else "") + text[max(0, start - context):start]
        after = text[end:end + context] + ("…" if end + context < len(text) else "")
        out.append((before, text[start:end], after, label))
    return out


@dataclass
class RecordSample:
    """What one side (kept or rejected) contributes: a reservoir of per-document numbers plus
    examples collected while scanning."""

    scanned: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)   # from the reservoir
    sampled: int = 0                                               # documents in the reservoir
    counted: int = 0                                               # documents behind the counters
    pii_docs: Counter = field(default_factory=Counter)             # documents with >= 1 of a type
    pii_mentions: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    poison: list[PoisonExample] = field(default_factory=list)
    quarantine_errors: Counter = field(default_factory=Counter)


class RecordSampler(BaseModel):
    """Reads one of kept/ rejected/ quarantine/ with bounded work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample: int = Field(20_000, ge=1)
    max_scan: int = Field(1_000_000, ge=1)
    seed: int = 0
    examples_per_reason: int = Field(3, ge=0)
    poison_examples: int = Field(4, ge=0)

    def read(self, directory: Path, side: str, expected: int | None = None,
             wanted: Sequence[tuple[str, str]] = ()) -> RecordSample:
        """Scan ``directory``; ``expected`` (the count stats.json gives) sets the sampling rate so the
        sample spreads over everything scanned; ``wanted`` (stage, reason) pairs are rare enough that
        a random sample may miss them, so lines mentioning them are parsed for examples too."""
        sample = RecordSample()
        population = min(expected, self.max_scan) if expected else self.max_scan
        rate = 1.0 if side == "quarantine" else min(1.0, self.sample / max(population, 1))
        chooser = random.Random(f"{self.seed}:{side}:choose")
        replacer = random.Random(f"{self.seed}:{side}:replace")
        probes = [f'"reason"{sep}{json.dumps(reason, ensure_ascii=False)}'.encode()
                  for _, reason in wanted for sep in (":", ": ")]
        probe = re.compile(b"|".join(re.escape(p) for p in probes + [b'"poisoning":{', b'"poisoning": {']))
        reservoir: list[dict[str, float]] = []
        chosen_count = 0
        for line in iter_lines(record_files(directory), self.max_scan, self.seed):
            sample.scanned += 1
            chosen = rate >= 1.0 or chooser.random() < rate
            if not chosen and not probe.search(line):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            self._examples(record, side, sample)
            if not chosen:
                continue
            self._count(record, side, sample)
            chosen_count += 1
            numbers = self._numbers(record, side)
            if len(reservoir) < self.sample:  # a reservoir caps the sample should `expected` be wrong
                reservoir.append(numbers)
            else:
                j = replacer.randrange(chosen_count)
                if j < self.sample:
                    reservoir[j] = numbers
        sample.sampled = len(reservoir)
        sample.counted = chosen_count
        for numbers in reservoir:
            for name, value in numbers.items():
                sample.scores.setdefault(name, []).append(value)
        return sample

    @staticmethod
    def _numbers(record: dict, side: str) -> dict[str, float]:
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        source = meta if side == "kept" else (record.get("scores") if isinstance(record.get("scores"), dict) else {})
        return {k: v for k, v in numeric_fields(source).items() if _is_score(k)}

    @staticmethod
    def _count(record: dict, side: str, sample: RecordSample) -> None:
        """Counters over the random sample only (so they estimate the whole)."""
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        pii = meta.get("pii_counts")
        if side == "kept" and isinstance(pii, dict):
            for entity, count in pii.items():
                if isinstance(count, (int, float)) and count > 0:
                    sample.pii_docs[str(entity)] += 1
                    sample.pii_mentions[str(entity)] += int(count)
        if side == "quarantine":
            sample.quarantine_errors[str(record.get("error", "unknown error"))] += 1

    def _examples(self, record: dict, side: str, sample: RecordSample) -> None:
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        text = record.get("text") if isinstance(record.get("text"), str) else ""
        if side == "rejected":
            key = (str(record.get("stage", "?")), str(record.get("reason", "?")))
            bucket = sample.examples.setdefault(key, [])
            if len(bucket) < self.examples_per_reason:
                bucket.append({"id": str(record.get("id", "")), "value": record.get("value"),
                               "duplicate_of": record.get("duplicate_of"), "text": snippet(text)})
        if side == "quarantine":
            key = ("quarantine", str(record.get("error", "unknown error")))
            bucket = sample.examples.setdefault(key, [])
            if len(bucket) < self.examples_per_reason:
                bucket.append({"id": f"{record.get('file', '?')} line {record.get('line', '?')}",
                               "value": record.get("raw_bytes"), "duplicate_of": None,
                               "text": snippet(str(record.get("raw_preview", "")))})
        poisoning = meta.get("poisoning")
        if isinstance(poisoning, dict) and poisoning.get("flagged") and len(sample.poison) < self.poison_examples:
            sample.poison.append(PoisonExample(
                id=str(record.get("id", "")), side=side, score=float(poisoning.get("score") or 0.0),
                flagged=[str(x) for x in poisoning.get("flagged") or []],
                windows=poison_windows(text, poisoning.get("spans") or [])))


@dataclass
class ShardLengths:
    files: int
    rows_read: int
    lengths_by_source: dict[str, np.ndarray]
    manifest: dict[str, Any] | None


def read_shard_lengths(shards_dir: Path, max_rows: int) -> ShardLengths | None:
    """``length`` and ``source`` of up to ``max_rows`` shard rows (shards in name order)."""
    files = sorted(shards_dir.glob("*.arrow")) if shards_dir.is_dir() else []
    manifest = None
    manifest_path = shards_dir / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            manifest = None
    if not files:
        return None
    import pyarrow as pa

    lengths: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    rows = 0
    for path in files:
        if rows >= max_rows:
            break
        try:
            with pa.memory_map(str(path)) as source, pa.ipc.open_stream(source) as reader:
                if "length" not in reader.schema.names:
                    continue
                for batch in reader:
                    take = min(batch.num_rows, max_rows - rows)
                    lengths.append(batch.column("length").to_numpy(zero_copy_only=False)[:take].astype(np.int64))
                    if "source" in batch.schema.names:
                        sources.append(np.asarray(batch.column("source").to_pylist()[:take], dtype=object))
                    else:
                        sources.append(np.full(take, "", dtype=object))
                    rows += take
                    if rows >= max_rows:
                        break
        except (OSError, pa.ArrowInvalid):
            continue
    if not lengths:
        return None
    all_lengths = np.concatenate(lengths)
    all_sources = np.concatenate(sources)
    by_source = {str(s) or "(no source)": all_lengths[all_sources == s] for s in sorted(set(all_sources.tolist()))}
    return ShardLengths(files=len(files), rows_read=rows, lengths_by_source=by_source, manifest=manifest)


@dataclass
class TrainingRun:
    path: str
    rows: list[dict[str, float]]


def find_metrics(out_dir: Path, max_depth: int = 4) -> list[TrainingRun]:
    """Every ``metrics.csv`` under OUT_DIR (outside the document and shard folders)."""
    runs = []
    for root, dirs, files in os.walk(out_dir):
        depth = len(Path(root).relative_to(out_dir).parts)
        dirs[:] = sorted(d for d in dirs if not (depth == 0 and d in DATA_DIRS)) if depth < max_depth else []
        if "metrics.csv" in files:
            path = Path(root) / "metrics.csv"
            rows = read_metrics(path)
            if rows:
                runs.append(TrainingRun(str(path.relative_to(out_dir)), rows))
    return sorted(runs, key=lambda r: r.path)


def read_metrics(path: Path) -> list[dict[str, float]]:
    rows = []
    try:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                parsed = {}
                for key, value in row.items():
                    try:
                        number = float(value)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(number):
                        parsed[str(key)] = number
                if "step" in parsed:
                    rows.append(parsed)
    except (OSError, csv.Error):
        return []
    return rows


def load_stats(out_dir: Path) -> dict[str, Any]:
    if not out_dir.is_dir():
        raise ReportError(f"{out_dir} is not a directory")
    path = out_dir / "stats.json"
    if not path.is_file():
        raise ReportError(f"{path} does not exist: is {out_dir} the output directory of `thresher run`?")
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("stages", []), list):
        raise ReportError(f"{path} is not a thresher stats.json (expected an object with a 'stages' list)")
    return stats


@dataclass
class RunData:
    out_dir: Path
    stats: dict[str, Any]
    kept: RecordSample
    rejected: RecordSample
    quarantine: RecordSample
    shards: ShardLengths | None
    training: list[TrainingRun]
    review_files: int

    @property
    def stages(self) -> list[dict[str, Any]]:
        return [s for s in self.stats.get("stages", []) if isinstance(s, dict)]


# ============================================================================================
# sections

@dataclass
class Section:
    id: str
    title: str
    body: str


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1, raw: bool = False) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{cell if raw else esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figure(svg: str, caption: str = "") -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>" if caption else f"<figure>{svg}</figure>"


class SummarySection:
    def build(self, data: RunData) -> Section | None:
        stats = data.stats
        t = stats.get("totals") or {}
        cards = [("read", t.get("read")), ("generated", t.get("generated")), ("kept", t.get("kept")),
                 ("rejected", t.get("rejected")), ("quarantined", t.get("quarantined"))]
        card_html = "".join(f'<div class="card"><div class="big">{esc(fmt_num(v or 0))}</div>'
                            f'<div class="small">{esc(k)}</div></div>' for k, v in cards if v is not None)
        if all(k in t for k in ("read", "kept", "rejected", "quarantined")):
            read, gen = int(t["read"]), int(t.get("generated") or 0)
            kept, rej, quar = int(t["kept"]), int(t["rejected"]), int(t["quarantined"])
            ok = read + gen == kept + rej + quar
            lhs = f"read {read:,}" + (f" + generated {gen:,}" if gen else "")
            verdict = ('<span class="ok">✓ every record accounted for</span>' if ok else
                       f'<span class="bad">✗ {abs(read + gen - kept - rej - quar):,} records unaccounted</span>')
            accounting = (f'<p class="accounting">{esc(lhs)} {"=" if ok else "≠"} kept {kept:,} + rejected {rej:,} '
                          f"+ quarantined {quar:,} &nbsp; {verdict}</p>")
        else:
            accounting = '<p class="bad">stats.json has no complete totals: accounting cannot be checked</p>'
        facts = [("output directory", str(data.out_dir)), ("config hash", stats.get("config_hash", "–")),
                 ("runner", stats.get("runner", "–")), ("input files", stats.get("input_files", "–")),
                 ("wall time", f"{float(stats['wall_seconds']):,.1f} s" if isinstance(stats.get("wall_seconds"), (int, float)) else "–")]
        if data.kept.scanned or data.rejected.scanned:
            facts.append(("documents sampled for this report",
                          f"kept {data.kept.sampled:,} of {data.kept.scanned:,} scanned · "
                          f"rejected {data.rejected.sampled:,} of {data.rejected.scanned:,} scanned"))
        fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
        return Section("summary", "Totals", f'<div class="cards">{card_html}</div>{accounting}'
                                            f'<table class="facts">{fact_rows}</table>')


class FunnelSection:
    def build(self, data: RunData) -> Section | None:
        stages = data.stages
        if not stages:
            return None
        rows = []
        for s in stages:
            n_in, rej = int(s.get("in") or 0), int(s.get("rejected") or 0)
            rows.append([f"{s.get('index', '')}. {s.get('name', '?')}", f"{n_in:,}", f"{int(s.get('kept') or 0):,}",
                         f"{rej:,}", f"{100 * rej / n_in:.1f}%" if n_in else "–",
                         f"{int(s['generated']):,}" if s.get("generated") else "",
                         f"{s['seconds']:,.2f}" if isinstance(s.get("seconds"), (int, float)) else "–",
                         f"{n_in / s['seconds']:,.0f}" if isinstance(s.get("seconds"), (int, float)) and s["seconds"] > 0 else "–"])
        body = _figure(FunnelChart().render(stages), "Documents entering each stage and kept by it, in pipeline order.")
        body += _table(["stage", "in", "kept", "rejected", "rejected %", "generated", "seconds", "docs/s"], rows)
        body += ('<p class="note">Seconds are measured for per-document stages only; corpus-level stages run '
                 "across several fused Beam steps and their time is in the runner's monitoring.</p>")
        return Section("funnel", "Funnel through the stages", body)


class RejectionSection:
    def __init__(self, top_reasons: int = 3):
        self.top_reasons = top_reasons

    def build(self, data: RunData) -> Section | None:
        blocks = []
        for s in data.stages:
            reasons = {str(k): v for k, v in (s.get("reasons") or {}).items() if isinstance(v, (int, float)) and v > 0}
            if not reasons:
                continue
            name = str(s.get("name", "?"))
            ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            chart = BarChart(width=520, color=REJECTED_COLOR).render(ordered, f"rejection reasons of {name}")
            examples = []
            for reason, count in ordered[: self.top_reasons]:
                opened = " open" if not examples else ""
                found = data.rejected.examples.get((name, reason), [])
                if not found:
                    continue
                items = "".join(_example_html(e) for e in found)
                examples.append(f'<details{opened}><summary>{esc(reason)} — {count:,} documents; '
                                f"{len(found)} example{'s' if len(found) > 1 else ''}</summary>{items}</details>")
            blocks.append(f'<div class="stage-block"><h3>{esc(s.get("index", ""))}. {esc(name)} '
                          f'<span class="muted">({int(s.get("rejected") or 0):,} rejected)</span></h3>'
                          f'<div class="row">{chart}<div class="examples">{"".join(examples)}</div></div></div>')
        if not blocks:
            return None
        return Section("rejections", "Rejection reasons per stage",
                       '<p class="note">Counts are exact (stats.json); examples come from rejected/ '
                       "(first 300 characters of the text as the rejecting stage saw it).</p>" + "".join(blocks))


def _example_html(example: Mapping[str, Any]) -> str:
    value = example.get("value")
    value_text = fmt_num(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (
        "" if value is None else str(value))
    extra = f' · duplicate of <code>{esc(example["duplicate_of"])}</code>' if example.get("duplicate_of") else ""
    value_html = f" · value <b>{esc(value_text)}</b>" if value_text else ""
    return (f'<div class="example"><div class="meta"><code>{esc(example.get("id", ""))}</code>{value_html}{extra}</div>'
            f'<pre>{esc(example.get("text", ""))}</pre></div>')


class ScoreSection:
    def __init__(self, max_charts: int = 40):
        self.max_charts = max_charts

    def build(self, data: RunData) -> Section | None:
        names = sorted(set(data.kept.scores) | set(data.rejected.scores))
        if not names:
            return None
        primary = [n for n in PRIMARY_SCORES if n in names]
        rest = [n for n in names if n not in primary]
        def chart(name: str) -> str:
            series = []
            if data.kept.scores.get(name):
                series.append(Series("kept", data.kept.scores[name], KEPT_COLOR))
            if data.rejected.scores.get(name):
                series.append(Series("rejected", data.rejected.scores[name], REJECTED_COLOR))
            return _figure(Histogram().render(series, name, x_label=name))
        body = ('<p class="note">Kept: the score in each kept document\'s meta. Rejected: the scores the '
                f"rejecting stage recorded. Sampled: {data.kept.sampled:,} kept and {data.rejected.sampled:,} "
                "rejected documents (seeded reservoir).</p>")
        if primary:
            body += '<div class="grid">' + "".join(chart(n) for n in primary) + "</div>"
        shown = rest[: max(self.max_charts - len(primary), 0)]
        if shown:
            body += (f"<details{' open' if not primary else ''}><summary>{len(shown)} more score fields</summary>"
                     '<div class="grid">' + "".join(chart(n) for n in shown) + "</div></details>")
        if len(rest) > len(shown):
            body += f'<p class="note">Not drawn: {esc(", ".join(rest[len(shown):]))}.</p>'
        return Section("scores", "Score histograms", body)


class PiiSection:
    def build(self, data: RunData) -> Section | None:
        totals: Counter = Counter()
        for s in data.stages:
            if s.get("name") == "pii" or any(str(k).startswith("pii.") for k in (s.get("counts") or {})):
                for key, value in (s.get("counts") or {}).items():
                    if str(key).startswith("pii.") and isinstance(value, (int, float)):
                        totals[str(key)[4:]] += int(value)
        if not totals and not data.kept.pii_docs:
            return None
        body = '<div class="grid">'
        if totals:
            items = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
            body += _figure(BarChart(width=480, color=COLORS[3]).render(items, "PII by type", "mentions found"),
                            "PII mentions found by type, whole run (stats.json)")
        if data.kept.pii_docs:
            items = sorted(data.kept.pii_docs.items(), key=lambda kv: (-kv[1], kv[0]))
            body += _figure(BarChart(width=480, color=COLORS[4]).render(items, "kept documents with PII", "documents"),
                            f"Kept documents with at least one mention, by type, in a random sample of "
                            f"{data.kept.counted:,} kept documents (meta.pii_counts)")
        body += "</div>"
        return Section("pii", "PII by type", body)


def _bucket_start(label: str) -> float:
    try:
        return float(str(label).split("-")[0].rstrip("+"))
    except ValueError:
        return math.inf


class DedupSection:
    def build(self, data: RunData) -> Section | None:
        blocks = []
        for s in data.stages:
            hist = s.get("cluster_size_histogram")
            if not (isinstance(hist, dict) or "clusters" in s or "duplicates_removed" in s):
                continue
            name = f"{s.get('index', '')}. {s.get('name', '?')}"
            facts = [(k, s[k]) for k in ("clusters", "duplicates_removed", "lines_removed", "docs_with_lines_removed")
                     if isinstance(s.get(k), (int, float))]
            fact_html = "".join(f'<div class="card"><div class="big">{esc(fmt_num(v))}</div>'
                                f'<div class="small">{esc(k.replace("_", " "))}</div></div>' for k, v in facts)
            chart = ""
            if isinstance(hist, dict) and hist:
                items = sorted(((str(k), float(v)) for k, v in hist.items()), key=lambda kv: (_bucket_start(kv[0]), kv[0]))
                chart = _figure(BarChart(width=460, color=COLORS[5]).render(items, f"cluster sizes of {name}", "clusters"),
                                "Clusters by size (documents per cluster, the kept one included)")
            blocks.append(f'<div class="stage-block"><h3>{esc(name)}</h3><div class="cards">{fact_html}</div>{chart}</div>')
        if not blocks:
            return None
        return Section("dedup", "Deduplication clusters", '<div class="grid">' + "".join(blocks) + "</div>")


class PoisoningSection:
    def build(self, data: RunData) -> Section | None:
        stages = [s for s in data.stages if s.get("name") == "poisoning"]
        examples = data.kept.poison + data.rejected.poison
        if not stages and not examples:
            return None
        body = ""
        for s in stages:
            flagged = s.get("documents_flagged") if isinstance(s.get("documents_flagged"), dict) else {}
            cards = [("documents scanned", s.get("in")), ("flagged by any detector", s.get("documents_flagged_any", 0)),
                     ("rejected", s.get("rejected"))]
            if s.get("review_records") is not None:
                cards.append(("sent to review", s.get("review_records")))
            body += '<div class="cards">' + "".join(
                f'<div class="card"><div class="big">{esc(fmt_num(v or 0))}</div><div class="small">{esc(k)}</div></div>'
                for k, v in cards) + "</div>"
            if flagged:
                items = sorted(((str(k), float(v)) for k, v in flagged.items()), key=lambda kv: (-kv[1], kv[0]))
                body += _figure(BarChart(width=520, color=COLORS[4]).render(items, "documents flagged per detector"),
                                "Documents flagged, per detector")
            tables = [self._top_table(detector, s[detector])
                      for detector in ("inserted_spans", "trigger_ngrams", "payload_association")
                      if isinstance(s.get(detector), dict) and s[detector].get("top")]
            if tables:
                body += '<div class="grid">' + "".join(f"<div>{t}</div>" for t in tables) + "</div>"
        if examples:
            body += "<h3>Flagged documents (examples, spans highlighted)</h3>"
            for ex in examples:
                windows = "".join(
                    f'<div class="span"><span class="muted">{esc(label)}</span><pre>{esc(before)}<mark>{esc(span)}</mark>'
                    f"{esc(after)}</pre></div>" for before, span, after, label in ex.windows) or \
                    '<p class="note">no span recorded</p>'
                body += (f'<div class="example"><div class="meta"><code>{esc(ex.id)}</code> · {esc(ex.side)} · '
                         f"score <b>{esc(fmt_num(ex.score))}</b> · flagged by {esc(', '.join(ex.flagged))}</div>"
                         f"{windows}</div>")
        if data.review_files:
            body += (f'<p class="note">{data.review_files} review file(s) under poisoning_review/ hold the quarantined '
                     "documents with their evidence.</p>")
        return Section("poisoning", "Poisoning flags", body)

    @staticmethod
    def _top_table(detector: str, report: Mapping[str, Any]) -> str:
        top = [r for r in report.get("top") or [] if isinstance(r, dict)]
        text_columns: list[str] = []
        number_columns: list[str] = []
        for item in top:
            for key, value in item.items():
                if isinstance(value, (dict, list)) or key in text_columns or key in number_columns:
                    continue
                is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
                (number_columns if is_number else text_columns).append(key)
        columns = text_columns + number_columns
        rows = [[fmt_num(item[c]) if c in number_columns and isinstance(item.get(c), (int, float)) else item.get(c, "")
                 for c in columns] for item in top]
        return (f"<h3>{esc(detector.replace('_', ' '))}: {int(report.get('flagged') or 0):,} flagged, top {len(top)}</h3>"
                + _table(columns, rows, numeric_from=len(text_columns)))


class TokenSection:
    def __init__(self, max_sources: int = 12):
        self.max_sources = max_sources

    def build(self, data: RunData) -> Section | None:
        shards = data.shards
        if shards is None or not shards.lengths_by_source:
            return None
        by_source = sorted(shards.lengths_by_source.items(), key=lambda kv: (-kv[1].size, kv[0]))
        rows = []
        for name, lengths in by_source:
            rows.append([name, f"{lengths.size:,}", fmt_num(int(lengths.sum())), f"{lengths.mean():,.0f}",
                         f"{np.percentile(lengths, 50):,.0f}", f"{np.percentile(lengths, 90):,.0f}",
                         f"{np.percentile(lengths, 99):,.0f}", f"{int(lengths.max()):,}"])
        shown = by_source[: self.max_sources]
        everything = np.concatenate([l for _, l in shown])
        chart = Histogram(log_x=True, bins=28)
        edges = chart.edges(everything)  # shared by every panel so the sources compare
        figures = []
        for i, (name, lengths) in enumerate(shown):
            figures.append(_figure(chart.render([Series(name, lengths, COLORS[i % len(COLORS)])], name,
                                                x_label="tokens per document (log scale)", edges=edges),
                                   f"source: {name}"))
        manifest = shards.manifest or {}
        totals = manifest.get("totals") or {}
        note = (f"{shards.rows_read:,} documents read from {shards.files} shard file(s)"
                + (f"; the manifest counts {int(totals['documents']):,} documents and {int(totals['tokens']):,} tokens"
                   if isinstance(totals.get("documents"), int) and isinstance(totals.get("tokens"), int) else "")
                + (f"; vocabulary {manifest['vocab_size']:,}" if isinstance(manifest.get("vocab_size"), int) else "")
                + (" (manifest not complete)" if manifest and not manifest.get("complete", True) else "") + ".")
        body = f'<p class="note">{esc(note)}</p><div class="grid">{"".join(figures)}</div>'
        body += _table(["source", "documents", "tokens", "mean", "p50", "p90", "p99", "max"], rows)
        if len(by_source) > len(shown):
            body += f'<p class="note">Panels for the {len(shown)} largest sources; the table lists all.</p>'
        return Section("tokens", "Token length per source", body)


class TrainingSection:
    def build(self, data: RunData) -> Section | None:
        if not data.training:
            return None
        body = ""
        for run in data.training:
            rows = run.rows
            steps = [r["step"] for r in rows]
            charts = []
            loss = [(r["step"], r["loss"]) for r in rows if "loss" in r]
            val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
            series = []
            if loss:
                series.append(("train loss", [s for s, _ in loss], [v for _, v in loss], KEPT_COLOR))
            if val:
                series.append(("validation loss", [s for s, _ in val], [v for _, v in val], REJECTED_COLOR))
            if series:
                charts.append(_figure(LineChart().render(series, "loss", "step", "loss")))
            for key, label, color in (("lr", "learning rate", COLORS[2]), ("tokens_per_s", "tokens / s", COLORS[3])):
                points = [(r["step"], r[key]) for r in rows if key in r]
                if points:
                    charts.append(_figure(LineChart().render([(label, [s for s, _ in points], [v for _, v in points], color)],
                                                             label, "step", label)))
            last = rows[-1]
            facts = f"{len(rows):,} logged steps, last step {fmt_num(max(steps))}"
            if "loss" in last:
                facts += f", final train loss {fmt_num(last['loss'])}"
            if val:
                facts += f", final validation loss {fmt_num(val[-1][1])}"
            if "elapsed_s" in last:
                facts += f", {last['elapsed_s']:,.0f} s"
            body += (f'<h3><code>{esc(run.path)}</code></h3><p class="note">{esc(facts)}.</p>'
                     f'<div class="grid">{"".join(charts)}</div>')
        return Section("training", "Training curves", body)


class QuarantineSection:
    def build(self, data: RunData) -> Section | None:
        q = data.quarantine
        if not q.scanned:
            return None
        items = sorted(q.quarantine_errors.items(), key=lambda kv: (-kv[1], kv[0]))
        body = _figure(BarChart(width=760, label_chars=60, color=COLORS[7]).render(items[:15], "quarantine reasons", "records"),
                       f"Why inputs could not be parsed ({q.counted:,} quarantine records read)")
        for error, count in items[:3]:
            found = q.examples.get(("quarantine", error), [])
            if found:
                body += (f"<details><summary>{esc(error)} — {count:,}</summary>"
                         + "".join(_example_html(e) for e in found) + "</details>")
        return Section("quarantine", "Quarantine", body)


class RunInfoSection:
    def build(self, data: RunData) -> Section | None:
        versions = data.stats.get("versions") or {}
        config = data.stats.get("config")
        if not versions and not config:
            return None
        body = ""
        if versions:
            body += _table(["package", "version"], sorted(versions.items()), numeric_from=2)
        if config:
            body += ("<details><summary>validated config</summary><pre>"
                     + esc(json.dumps(config, indent=2, sort_keys=True, default=str)) + "</pre></details>")
        return Section("run", "Versions and config", body)


SECTIONS = (SummarySection(), FunnelSection(), RejectionSection(), ScoreSection(), PiiSection(), DedupSection(),
            PoisoningSection(), TokenSection(), TrainingSection(), QuarantineSection(), RunInfoSection())

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#2d3748;margin:0;background:#f7fafc}
header{background:#1a365d;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px}header p{margin:4px 0 0;color:#bee3f8;font-size:13px;word-break:break-all}
nav{background:#fff;border-bottom:1px solid #e2e8f0;padding:8px 32px;position:sticky;top:0;z-index:1}
nav a{margin-right:16px;color:#2b6cb0;text-decoration:none;font-size:14px}
main{padding:8px 32px 48px;max-width:1500px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:12px 20px 18px;margin:18px 0}
h2{font-size:20px;margin:6px 0 12px}h3{font-size:15px;margin:14px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 10px}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:8px 16px;min-width:110px;background:#f7fafc}
.big{font-size:22px;font-weight:600}.small{font-size:12px;color:#718096}
.accounting{font-size:15px}.ok{color:#276749;font-weight:600}.bad{color:#c53030;font-weight:600}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 10px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}thead th{background:#edf2f7}
table.facts th{font-weight:normal;color:#718096}
.grid{display:flex;flex-wrap:wrap;gap:10px 22px;align-items:flex-start}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:6px 0}figcaption{font-size:12px;color:#718096;max-width:520px}
.examples{flex:1;min-width:380px}
details{margin:6px 0}summary{cursor:pointer;font-size:14px}
.example{border-left:3px solid #cbd5e0;padding:2px 10px;margin:6px 0}
.example .meta{font-size:12px;color:#4a5568}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f7fafc;padding:6px 8px;margin:4px 0;max-height:132px;overflow:auto}
mark{background:#fed7d7;color:#742a2a;padding:0 1px}
.note{font-size:13px;color:#718096}.muted{color:#718096;font-weight:normal;font-size:13px}
.stage-block{border-top:1px solid #edf2f7;padding-top:4px}
code{font-size:12px}
"""


def render_html(data: RunData) -> str:
    sections = [s for s in (builder.build(data) for builder in SECTIONS) if s is not None]
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    title = f"thresher report: {data.out_dir.name or data.out_dir}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1><p>{esc(data.out_dir)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


class ReportBuilder(BaseModel):
    """Reads OUT_DIR (bounded) and writes the HTML report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample: int = Field(20_000, ge=1, description="documents sampled per side (kept, rejected)")
    max_scan: int = Field(1_000_000, ge=1, description="lines read per side at most")
    max_shard_rows: int = Field(1_000_000, ge=1)
    seed: int = 0

    def load(self, out_dir: str | Path) -> RunData:
        out = Path(out_dir).resolve()
        stats = load_stats(out)
        sampler = RecordSampler(sample=self.sample, max_scan=self.max_scan, seed=self.seed)
        totals = stats.get("totals") if isinstance(stats.get("totals"), dict) else {}
        expected = {side: int(totals[key]) if isinstance(totals.get(key), int) else None
                    for side, key in (("kept", "kept"), ("rejected", "rejected"))}
        review_dir = out / "poisoning_review"
        return RunData(
            out_dir=out, stats=stats,
            kept=sampler.read(out / "kept", "kept", expected["kept"]),
            rejected=sampler.read(out / "rejected", "rejected", expected["rejected"],
                                  self.rare_reasons(stats, expected["rejected"])),
            quarantine=sampler.read(out / "quarantine", "quarantine"),
            shards=read_shard_lengths(out / "shards", self.max_shard_rows),
            training=find_metrics(out),
            review_files=len(record_files(review_dir)),
        )

    def rare_reasons(self, stats: Mapping[str, Any], rejected: int | None) -> list[tuple[str, str]]:
        """(stage, reason) pairs a random sample of rejected/ would likely miss examples of."""
        rate = min(1.0, self.sample / max(min(rejected or self.max_scan, self.max_scan), 1))
        rare = []
        for stage in stats.get("stages") or []:
            if isinstance(stage, dict) and isinstance(stage.get("reasons"), dict):
                for reason, count in stage["reasons"].items():
                    if isinstance(count, (int, float)) and 0 < count * rate < 10:
                        rare.append((str(stage.get("name", "?")), str(reason)))
        return sorted(set(rare))

    def write(self, out_dir: str | Path, report_path: str | Path | None = None) -> Path:
        data = self.load(out_dir)
        target = Path(report_path) if report_path else data.out_dir / REPORT_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_text(render_html(data), encoding="utf-8")
        os.replace(tmp, target)
        return target


def report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher report",
                                     description="Write a self-contained HTML report of a run's output directory.")
    parser.add_argument("out_dir", help="the output directory of `thresher run` / `thresher demo`")
    parser.add_argument("--out", default=None, help=f"report file (default: OUT_DIR/{REPORT_NAME})")
    parser.add_argument("--sample", type=int, default=20_000, help="documents sampled per side (default 20000)")
    parser.add_argument("--max-scan", type=int, default=1_000_000,
                        help="lines read per side at most (default 1000000; only sampled lines are parsed)")
    parser.add_argument("--max-shard-rows", type=int, default=1_000_000, help="shard rows read at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("sample", "max_scan", "max_shard_rows"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    builder = ReportBuilder(sample=args.sample, max_scan=args.max_scan, max_shard_rows=args.max_shard_rows,
                            seed=args.seed)
    try:
        path = builder.write(args.out_dir, args.out)
    except ReportError as exc:
        print(f"thresher report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(report_command(sys.argv[1:]))
