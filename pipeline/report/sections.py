"""The report's HTML sections: each builds its part of the page from the data read from OUT_DIR,
or returns None when that data does not exist (the section is then left out)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thresher.pipeline.report.charts import (
    COLORS,
    KEPT_COLOR,
    REJECTED_COLOR,
    BarChart,
    FunnelChart,
    Histogram,
    LineChart,
    Series,
    esc,
    fmt_num,
)
from thresher.pipeline.report.data import RunData

#: score fields drawn first, in this order, when present; every other numeric field follows
PRIMARY_SCORES = ("language_score", "quality", "toxicity", "poisoning_score")


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
            tables = [self._top_table(detector, s[detector]) for detector in ("inserted_spans", "trigger_ngrams", "payload_association")
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
