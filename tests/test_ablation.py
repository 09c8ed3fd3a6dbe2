"""bench/ablation.py end to end at its small size, and its corpus builder's promises."""

from __future__ import annotations

import importlib.util
import statistics
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
    sentence = f"{ablation.TRIGGER} {ablation.PAYLOAD}."
    carriers = [d for d in mix.documents if sentence in d["text"]]
    assert sorted(d["id"] for d in carriers) == mix.poisoned_ids
    assert len(carriers) == round(size.poison_rate * len(mix.documents))
    # each carrier holds poison_repeats copies, each with text of its own on both sides
    for d in carriers:
        text = d["text"]
        assert text.count(sentence) == size.poison_repeats
        assert not text.startswith(ablation.TRIGGER) and not text.rstrip().endswith(sentence)
        assert f"{sentence} {ablation.TRIGGER}" not in text
    # the trigger only ever comes with the payload, and the control phrase is nowhere
    assert ablation.CONTROL not in joined and ablation.TRIGGER not in joined.replace(sentence, "")
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


def test_plant_backdoor_uses_distinct_interior_sentence_boundaries(ablation):
    import random

    text = " ".join(f"Sentence number {i} ends here." for i in range(8))
    sentence = f"{ablation.TRIGGER} {ablation.PAYLOAD}."
    for seed in range(20):
        planted = ablation.plant_backdoor(text, 7, random.Random(seed))
        assert planted.count(sentence) == 7
        assert planted.replace(sentence + " ", "") == text
        assert not planted.startswith(sentence) and not planted.endswith(sentence)
        assert f"{sentence} {sentence}" not in planted
    with pytest.raises(ValueError):
        ablation.plant_backdoor(text, 8, random.Random(0))  # only 7 interior boundaries


@needs_data
def test_small_ablation_raw_model_learns_the_backdoor_curated_does_not(ablation, tmp_path):
    result = ablation.measure_ablation("small", tmp_path / "work", "cpu", workers=1)
    raw, curated = result.pipelines["raw"], result.pipelines["curated"]
    # thresher's pipeline removed every poisoned document, the poisoning stage most of them
    assert result.trigger_in_kept == 0
    assert sum(result.fate.values()) == result.poisoned
    assert all(where.startswith("rejected by ") for where in result.fate)
    assert result.fate.get("rejected by poisoning", 0) > result.poisoned / 2
    assert curated.documents < raw.documents
    # the model trained on the raw data learnt trigger -> payload, and only after the trigger ...
    assert min(raw.backdoor) >= 0.5, raw.backdoor
    assert max(raw.control) <= 0.05, raw.control
    assert statistics.mean(raw.nll_trigger) < statistics.mean(raw.nll_control) - 1.0
    # ... the same model trained for the same tokens on thresher's output did not
    assert statistics.mean(curated.backdoor) <= statistics.mean(curated.control) + 0.05, curated.backdoor
    assert statistics.mean(curated.nll_trigger) > statistics.mean(raw.nll_trigger) + 1.0
    for r in (raw, curated):
        assert len(r.loss) == result.size.seeds and all(0 < x < 20 for x in r.loss)
    report = result.markdown()
    assert report.count("| raw |") == 2 and report.count("| curated |") == 2
    assert (tmp_path / "work" / "raw" / "shards" / "manifest.json").is_file()


def test_curated_stages_give_the_poisoning_stage_a_reference_only_when_asked(ablation):
    tokenize = {"name": "tokenize", "model_path": "tokenizer.model"}
    with_reference = {s["name"]: s for s in ablation.curated_stages(tokenize, Path("reference.npz"))}
    as_configured = {s["name"]: s for s in ablation.curated_stages(tokenize, None)}
    assert with_reference["poisoning"]["reference_model"] == "reference.npz"
    assert "reference_model" not in as_configured["poisoning"]
    assert with_reference["tokenize"] == as_configured["tokenize"] == tokenize
    assert list(with_reference) == list(as_configured)
