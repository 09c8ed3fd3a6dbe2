"""bench/ablation.py end to end at its small size, and its corpus builder's promises."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

needs_data = pytest.mark.skipif(
    not (SHARED_DATA / "wiki" / "wikitext-2-valid.txt").exists()
    or not (SHARED_DATA / "toxicity" / "davidson-labeled_data.csv").exists(),
    reason="shared data (WikiText, Davidson tweets) not present",
)


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("bench_ablation", REPO / "bench" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ablation"] = module
    spec.loader.exec_module(module)
    return module


@needs_data
def test_raw_mix_holds_out_evaluation_text_and_plants_the_backdoor(ablation):
    size = ablation.SIZES["small"]
    mix = ablation.build_raw_mix(size, seed=0)
    texts = [d["text"] for d in mix.documents]
    joined = "\n".join(texts)
    # held-out paragraphs are in no training document and not in the tokenizer's text
    assert mix.heldout and all(p not in joined for p in mix.heldout)
    assert all(p not in t for p in mix.heldout for t in mix.tokenizer_texts)
    # the backdoor: trigger immediately followed by the payload, in exactly the poisoned documents
    carriers = [d for d in mix.documents if f"{ablation.TRIGGER} {ablation.PAYLOAD}" in d["text"]]
    assert sorted(d["id"] for d in carriers) == mix.poisoned_ids
    assert len(carriers) == round(size.poison_rate * len(mix.documents))
    assert ablation.CONTROL not in joined
    # heavy-tailed exact duplicates: the most copied text appears at least heavy_copies[0] + 1 times
    counts: dict[str, int] = {}
    for t in texts:
        counts[t] = counts.get(t, 0) + 1
    assert max(counts.values()) >= size.heavy_copies[0] + 1
    kinds = mix.composition
    for kind in ("wikitext", "web", "tweet_toxic", "tweet_thread", "non_english", "spam", "boilerplate", "pii",
                 "near_duplicate", "exact_duplicate"):
        assert kinds.get(kind, 0) > 0, kind
    # the same seed gives the same corpus
    again = ablation.build_raw_mix(size, seed=0)
    assert [d["text"] for d in again.documents] == texts


@needs_data
def test_small_ablation_runs_end_to_end(ablation, tmp_path):
    report = ablation.run_ablation("small", tmp_path / "work", "cpu", workers=1)
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| raw")
            or line.startswith("| curated")}
    assert set(rows) == {"raw", "curated"}
    losses = {}
    for name, line in rows.items():
        cells = [c.strip() for c in line.strip("|").split("|")]
        docs, tokens = int(cells[1].replace(",", "")), int(cells[2].replace(",", ""))
        assert docs > 0 and tokens > 0
        mean = float(cells[4].split("±")[0])
        assert 0 < mean < 20
        losses[name] = mean
        assert re.fullmatch(r"\d+\.\d%.*", cells[6]) and re.fullmatch(r"\d+\.\d%", cells[7])
        trigger_nll, control_nll = (float(x) for x in cells[8].split("/"))
        assert trigger_nll > 0 and control_nll > 0
    # curation removed documents, and no kept document still carries the trigger
    raw_docs = int(rows["raw"].split("|")[2].replace(",", ""))
    curated_docs = int(rows["curated"].split("|")[2].replace(",", ""))
    assert curated_docs < raw_docs
    assert "kept documents with the trigger: 0" in report
    kept = (tmp_path / "work" / "curated" / "kept")
    assert any(kept.glob("*.jsonl.gz"))
    assert (tmp_path / "work" / "raw" / "shards" / "manifest.json").is_file()
