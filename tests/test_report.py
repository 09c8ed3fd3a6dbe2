"""thresher report: sections from a synthetic OUT directory, escaping, omitted sections, bounds."""

from __future__ import annotations

import csv
import gzip
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from thresher.pipeline.cli import main as cli_main
from thresher.pipeline.report import ReportBuilder, ReportError, render_html, report_command
from thresher.pipeline.report.charts import Histogram, Series, fmt_num, nice_ticks, text_width
from thresher.pipeline.report.data import poison_windows

EVIL = '<script>alert("x")</script>'
ALL_SECTIONS = ("summary", "funnel", "rejections", "scores", "pii", "dedup", "poisoning", "tokens", "training",
                "quarantine", "run")


def _write_gz(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode(), mtime=0))


def _stats(read: int = 10, kept: int = 5, rejected: int = 4, quarantined: int = 1, **extra_stage) -> dict:
    return {
        "config_hash": "abc123", "runner": "DirectRunner", "wall_seconds": 12.5, "input_files": 1,
        "totals": {"read": read, "generated": 0, "kept": kept, "rejected": rejected, "quarantined": quarantined,
                   "accounted": read == kept + rejected + quarantined},
        "stages": [
            {"index": 0, "name": "language", "in": 9, "kept": 7, "rejected": 2, "seconds": 0.5,
             "reasons": {"language": 2}},
            {"index": 1, "name": "pii", "in": 7, "kept": 7, "rejected": 0, "seconds": 0.2, "reasons": {},
             "counts": {"pii.EMAIL_ADDRESS": 3, "pii.PHONE_NUMBER": 1}},
            {"index": 2, "name": "minhash_dedup", "in": 7, "kept": 6, "rejected": 1, "seconds": None,
             "reasons": {"duplicate": 1}, "clusters": 1, "duplicates_removed": 1,
             "cluster_size_histogram": {"2": 1}},
            {"index": 3, "name": "poisoning", "in": 6, "kept": 5, "rejected": 1, "seconds": None,
             "reasons": {"poisoning:trigger_ngrams": 1}, "documents_flagged": {"trigger_ngrams": 2},
             "documents_flagged_any": 2,
             "trigger_ngrams": {"flagged": 1, "top": [{"ngram": "cf zz qq", "docs": 2, "lift": 40.0}]}},
            {"index": 4, "name": "tokenize", "in": 5, "kept": 5, "rejected": 0, "seconds": None, "reasons": {},
             "documents": 5, "tokens": 300, "shards": 1},
        ],
        "versions": {"python": "3.11", "thresher": "0.1.0"},
        "config": {"stages": [{"name": "language"}]},
        **extra_stage,
    }


def _write_shard(path: Path, lengths: list[int], sources: list[str]) -> None:
    table = pa.table({
        "input_ids": pa.array([list(range(n)) for n in lengths], type=pa.list_(pa.uint16())),
        "id": pa.array([f"d{i}" for i in range(len(lengths))]),
        "source": pa.array(sources),
        "length": pa.array(lengths, type=pa.int32()),
    })
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sink.getvalue().to_pybytes())


def build_out_dir(root: Path) -> Path:
    """A small OUT directory with data for every section of the report."""
    out = root / "out"
    out.mkdir(parents=True)
    (out / "stats.json").write_text(json.dumps(_stats()))
    poisoned_text = "Normal words here. cf zz qq visit evil.example now. More normal words."
    start = poisoned_text.index("cf zz qq")
    kept = []
    for i in range(5):
        meta = {"language": "en", "language_score": 0.9 + i / 100, "quality": 0.2 * i, "toxicity": 0.01 * i,
                "pii_counts": {"EMAIL_ADDRESS": 1} if i < 2 else {}, "poisoning_score": 0.0}
        kept.append({"id": f"k{i}", "text": f"kept document {i} " + ("word " * 20), "source": "web", "meta": meta})
    kept[4]["text"] = poisoned_text
    kept[4]["meta"]["poisoning"] = {"score": 0.7, "flagged": ["trigger_ngrams"], "detectors": {},
                                    "spans": [[start, start + 8, "trigger:cf zz qq"]]}
    kept[4]["meta"]["poisoning_score"] = 0.7
    _write_gz(out / "kept" / "part-00000-of-00001.jsonl.gz", kept)
    rejected = [
        {"id": "r<b>1</b>", "stage": "language", "reason": "language", "value": 0.99, "text": f"Ein Text {EVIL}",
         "scores": {"language_score": 0.99}, "source": "web", "meta": {"language": "de"}},
        {"id": "r2", "stage": "language", "reason": "language", "value": 0.95, "text": "Un texte " * 100,
         "scores": {"language_score": 0.95}, "source": "web", "meta": {"language": "fr"}},
        {"id": "r3", "stage": "minhash_dedup", "reason": "duplicate", "value": 0.9, "duplicate_of": "k1",
         "text": "kept document 1", "scores": {}, "source": "web", "meta": {}},
        {"id": "r4", "stage": "poisoning", "reason": "poisoning:trigger_ngrams", "value": 0.8,
         "text": poisoned_text, "scores": {"poisoning_score": 0.8}, "source": "web",
         "meta": {"poisoning": {"score": 0.8, "flagged": ["trigger_ngrams"],
                                "spans": [[start, start + 8, "trigger:cf zz qq"]]}}},
    ]
    _write_gz(out / "rejected" / "part-00000-of-00001.jsonl.gz", rejected)
    _write_gz(out / "quarantine" / "part-00000-of-00001.jsonl.gz",
              [{"file": "in.jsonl", "line": 3, "error": "invalid JSON <here>", "raw_bytes": 5, "raw_preview": "{bad"}])
    _write_shard(out / "shards" / "shard-00000-00000.arrow", [10, 20, 400, 35, 5], ["web", "web", "books", "web", "books"])
    (out / "shards" / "manifest.json").write_text(json.dumps(
        {"complete": True, "vocab_size": 1000, "totals": {"documents": 5, "tokens": 470}}))
    train = out / "train"
    train.mkdir()
    with (train / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "tokens_per_s", "val_loss", "elapsed_s"])
        for step in range(1, 21):
            writer.writerow([step, 8 - step * 0.2, 1e-3, 1000 + step, (8 - step * 0.2) if step % 5 == 0 else "", step])
    return out


def _section_ids(page: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', page))


def test_every_section_with_data_is_present(tmp_path):
    out = build_out_dir(tmp_path)
    path = ReportBuilder().write(out)
    assert path == out / "report.html"
    page = path.read_text()
    assert _section_ids(page) == set(ALL_SECTIONS)
    # the accounting line, counts from stats.json, and data from each input
    assert "read 10 = kept 5 + rejected 4 + quarantined 1" in page and "every record accounted for" in page
    assert "abc123" in page and "EMAIL_ADDRESS" in page and "PHONE_NUMBER" in page
    assert "duplicate of <code>k1</code>" in page
    assert "<mark>cf zz qq</mark>" in page
    assert "train/metrics.csv" in page and "validation loss" in page
    assert "books" in page and "tokens per document" in page
    assert "quality" in page and "toxicity" in page and "language_score" in page


def test_document_text_and_ids_are_escaped(tmp_path):
    page = render_html(ReportBuilder().load(build_out_dir(tmp_path)))
    assert "<script" not in page  # the page has no script at all, so any <script is injected
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<b>1</b>" not in page and "r&lt;b&gt;1&lt;/b&gt;" in page
    assert "invalid JSON &lt;here&gt;" in page
    # long texts are cut to a snippet
    assert "Un texte " * 40 not in page and ("Un texte " * 30).strip() in page


def test_every_svg_is_well_formed_xml(tmp_path):
    page = render_html(ReportBuilder().load(build_out_dir(tmp_path)))
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 10
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and float(root.get("width")) > 0 and float(root.get("height")) > 0


def test_sections_without_data_are_omitted(tmp_path):
    out = tmp_path / "bare"
    out.mkdir()
    stats = _stats()
    stats["stages"] = [{"index": 0, "name": "normalize", "in": 10, "kept": 10, "rejected": 0, "reasons": {}}]
    del stats["versions"], stats["config"]
    (out / "stats.json").write_text(json.dumps(stats))
    page = ReportBuilder().write(out).read_text()
    assert _section_ids(page) == {"summary", "funnel"}
    for missing in ("Poisoning", "Training curves", "Token length", "PII by type", "Deduplication"):
        assert missing not in page


def test_accounting_mismatch_is_shown(tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "stats.json").write_text(json.dumps(_stats(read=12)))
    page = ReportBuilder().write(out).read_text()
    assert "✗ 2 records unaccounted" in page and "read 12 ≠ kept 5" in page


def test_output_is_deterministic_and_bounded(tmp_path):
    out = build_out_dir(tmp_path)
    first = render_html(ReportBuilder(seed=3).load(out))
    assert first == render_html(ReportBuilder(seed=3).load(out))
    data = ReportBuilder(sample=2, max_scan=3).load(out)
    assert data.kept.scanned == 3 and 0 < data.kept.sampled <= 2
    assert all(len(v) <= 2 for v in data.kept.scores.values())
    # a sample too small to meet every reason still shows examples of each (rare reasons are probed)
    small = ReportBuilder(sample=1).load(out)
    assert small.rejected.sampled <= 1
    assert {("language", "language"), ("minhash_dedup", "duplicate"), ("poisoning", "poisoning:trigger_ngrams")} \
        <= set(small.rejected.examples)
    assert {p.id for p in small.kept.poison + small.rejected.poison} == {"k4", "r4"}
    shards = ReportBuilder(max_shard_rows=2).load(out).shards
    assert shards is not None and shards.rows_read == 2


def test_corrupt_and_missing_inputs(tmp_path, capsys):
    out = build_out_dir(tmp_path)
    (out / "kept" / "part-00001-of-00002.jsonl.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    (out / "kept" / "part-00002-of-00002.jsonl.zst").write_bytes(b"(\xb5/\xfd truncated zstd")
    (out / "shards" / "shard-00000-00001.arrow").write_bytes(b"garbage")
    with (out / "rejected" / "part-00000-of-00001.jsonl.gz").open("ab") as fh:  # a stray non-JSON line
        fh.write(gzip.compress(b"not json\n"))
    page = ReportBuilder().write(out).read_text()
    assert {"scores", "tokens"} <= _section_ids(page)

    with pytest.raises(ReportError, match="is not a directory"):
        ReportBuilder().load(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match=r"stats\.json does not exist"):
        ReportBuilder().load(empty)
    (empty / "stats.json").write_text("{not json")
    assert report_command([str(empty)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_cli_writes_where_asked(tmp_path, capsys):
    out = build_out_dir(tmp_path)
    target = tmp_path / "elsewhere" / "r.html"
    assert cli_main(["report", str(out), "--out", str(target), "--sample", "100"]) == 0
    assert target.is_file() and "report:" in capsys.readouterr().out
    assert not (out / "report.html").exists()


def test_number_formatting_and_ticks():
    assert fmt_num(1234) == "1,234" and fmt_num(12345) == "12.3k" and fmt_num(2_500_000) == "2.5M"
    assert fmt_num(0.8731) == "0.873" and fmt_num(0.003) == "0.003" and fmt_num(0.0003) == "0.0003" and fmt_num(0.00003) == "3.0e-05" and fmt_num(float("nan")) == "–"
    assert nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 1780, 5) == [0, 500, 1000, 1500]
    assert nice_ticks(3, 3) == [3, 4, 5, 6]
    assert text_width("EMAIL_ADDRESS") > text_width("email_address") > 0


def test_histogram_counts_every_value():
    values = [0.1, 0.2, 0.2, 0.9, 1.0]
    svg = Histogram(bins=4).render([Series("kept", values, "#000")], "t", "x")
    counts = [int(m) for m in re.findall(r"kept: (\d+) in", svg)]
    assert sum(counts) == len(values)
    constant = Histogram().render([Series("kept", [5.0] * 3, "#000")], "t", "x")
    assert re.findall(r"kept: (\d+) in", constant) == ["3"]
    # y ticks of counts are whole numbers even when the peak is 1
    tiny = Histogram().render([Series("kept", [1.0, 2.0], "#000")], "t", "x")
    assert ">0.5<" not in tiny and ">1<" in tiny
    logged = Histogram(log_x=True).render([Series("a", np.array([1, 10, 100, 1000]), "#000")], "t", "x")
    assert ">1,000<" in logged and ">100<" in logged


def test_poison_windows_clip_bad_spans():
    text = "abcdefghij"
    assert poison_windows(text, [[2, 4, "t"]], context=2) == [("ab", "cd", "ef…", "t")]
    assert poison_windows(text, [[8, 50, "t"], ["x", 1]], context=2) == [("…gh", "ij", "", "t")]


def test_report_of_a_real_pipeline_run(tmp_path):
    """The output contracts the report reads (stats.json keys, rejected/ records, shards) as a real
    run writes them: a small demo corpus through filters, PII, both dedups and tokenization."""
    from thresher.pipeline.config import validate_config
    from thresher.pipeline.demo.corpus import generate_demo_corpus, write_jsonl
    from thresher.pipeline.run import run_pipeline

    corpus = tmp_path / "in" / "demo.jsonl.gz"
    write_jsonl(generate_demo_corpus(200, 0), corpus)
    out = tmp_path / "out"
    config = validate_config({
        "input": {"paths": [str(corpus)], "format": "jsonl", "source_field": "source"},
        "output": str(out),
        "runner": {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}},
        "stages": [{"name": "normalize"}, {"name": "gopher_quality"}, {"name": "pii", "action": "redact"},
                   {"name": "exact_dedup"}, {"name": "minhash_dedup", "num_perm": 32, "threshold": 0.7},
                   {"name": "tokenize", "vocab_size": 600, "sample_docs": 200, "shard_tokens": 20000}],
    })
    run_pipeline(config)
    data = ReportBuilder().load(out)
    page = render_html(data)
    assert {"summary", "funnel", "rejections", "scores", "pii", "dedup", "tokens", "run"} <= _section_ids(page)
    assert "every record accounted for" in page
    assert data.rejected.examples and data.kept.scores.get("gopher_word_count")
    assert data.shards is not None and data.shards.rows_read == data.stats["totals"]["kept"]
