"""WARC input: Common Crawl-style response records become documents with main text extracted by
resiliparse; anything else is quarantined with its reason, and a truncated file keeps the
records before the cut."""

import gzip

from conftest import read_output, shared_file
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


def run(paths, out):
    config = validate_config({"input": {"paths": paths, "format": "warc"}, "output": str(out),
                              "runner": IN_MEMORY, "stages": [{"name": "normalize"}]})
    return run_pipeline(config).stats


def test_real_warc_files_give_documents_with_urls(tmp_path):
    first = shared_file("web/sample-0000.warc.gz")
    stats = run([str(first.parent / "*.warc.gz")], tmp_path / "out")
    kept = read_output(tmp_path / "out", "kept")
    quarantined = read_output(tmp_path / "out", "quarantine")
    assert stats["totals"]["accounted"]
    assert len(kept) + len(quarantined) == 37  # the HTTP responses in the two files
    assert len(kept) >= 30
    doc = next(d for d in kept if "semanticscholar.org/research/research-team" in d["meta"]["url"])
    assert doc["id"].startswith("urn:uuid:") and "Semantic Scholar Research Team" in doc["text"]
    assert "<div" not in doc["text"] and "<script" not in doc["text"]
    assert all(d["meta"]["url"].startswith("http") for d in kept)


def test_truncated_warc_keeps_what_came_before_and_says_so(tmp_path):
    data = gzip.decompress(shared_file("web/sample-0000.warc.gz").read_bytes())
    cut = tmp_path / "cut.warc.gz"
    whole = gzip.compress(data, mtime=0)
    cut.write_bytes(whole[: len(whole) // 2])
    stats = run([str(cut)], tmp_path / "out")
    quarantined = read_output(tmp_path / "out", "quarantine")
    kept = read_output(tmp_path / "out", "kept")
    assert stats["totals"]["accounted"] and kept
    errors = [q["error"] for q in quarantined]
    assert any("truncated gzip" in e for e in errors), errors
