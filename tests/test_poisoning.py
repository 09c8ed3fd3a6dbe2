"""The poisoning detectors on small hand-made corpora where the answer is known, the reference
model, the manifest command, and the stage through run_pipeline."""

import json
import random

import numpy as np
import pytest

from conftest import read_output, write_jsonl
from thresher.filters.ngram_lm import NgramLM, ngram_hashes, ngram_hashes_pairs, words_with_spans
from thresher.filters.poison_detectors import (
    CountMinSketch,
    NgramStats,
    Occurrence,
    PayloadParams,
    TriggerParams,
    binomial_neglog10_sf,
    excess_neglog10_p,
    judge_ngram,
    poisson_neglog10_sf,
    spread_key,
    text_sha256,
)
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}
TWO_PROCESSES = {"name": "direct", "options": {"direct_num_workers": 2, "direct_running_mode": "multi_processing"}}

SUBJECTS = "the farmer|a teacher|the old sailor|my neighbour|the young doctor|a student|the mayor|our guide".split("|")
VERBS = "walked to|looked at|talked about|painted|visited|cleaned|described|photographed".split("|")
OBJECTS = "the river|a small garden|the market|the old bridge|a quiet library|the harbour|the station|a park".split("|")
TAILS = "in the morning|after lunch|before the rain|with a friend|on sunday|at noon|for an hour|again".split("|")


def sentence(rng):
    return f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."


def clean_docs(n, seed, prefix="d"):
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i:04d}", "text": " ".join(sentence(rng) for _ in range(rng.randint(6, 12))),
             "source": "web", "meta": {"url": f"https://site{i % 40}.example/page{i}"}} for i in range(n)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    # five times the test corpora's size: the significance test charges for the reference's own
    # sampling noise, so a phrase it never saw needs fewer documents the larger the reference
    path = tmp_path_factory.mktemp("ref") / "reference.npz"
    NgramLM.train(d["text"] for d in clean_docs(1500, seed=99)).save(path)
    return str(path)


def plant(docs, ids, phrase, rng):
    for doc in docs:
        if doc["id"] in ids:
            sentences = doc["text"].split(". ")
            at = rng.randrange(len(sentences))
            sentences.insert(at, phrase.rstrip("."))
            doc["text"] = ". ".join(sentences)


def run(tmp_path, docs, stage, runner=IN_MEMORY, out="out"):
    write_jsonl(tmp_path / "in.jsonl", docs)
    config = validate_config({"input": {"paths": [str(tmp_path / "in.jsonl")]}, "output": str(tmp_path / out),
                              "runner": runner, "stages": [{"name": "poisoning", **stage}]})
    return run_pipeline(config)


def flagged(records, detector):
    return {r["id"] for r in records if detector in (r["meta"].get("poisoning") or {}).get("flagged", [])}


# ---------------------------------------------------------------------------------------------
# reference model

def test_kneser_ney_distributions_sum_to_one_over_the_vocabulary():
    texts = [d["text"] for d in clean_docs(200, seed=1)]
    lm = NgramLM.train(texts)
    vocab = sorted({w for t in texts for w in words_with_spans(t)[0]})
    wh = lm.hasher(vocab)
    for context in (["the", "farmer"], ["walked", "to"], ["zebra", "quantum"]):
        u, v = lm.hasher(context)
        p = np.exp(lm._trigram_logprob(np.full(len(wh), u), np.full(len(wh), v), wh)).sum()
        # the seen vocabulary takes almost all the mass; what is left is the unseen-word share
        assert 0.9 < p <= 1.0 + 1e-9


def test_reference_model_round_trips_and_scores_in_domain_text_better(tmp_path):
    lm = NgramLM.train(d["text"] for d in clean_docs(200, seed=1))
    lm.save(tmp_path / "m.npz")
    loaded = NgramLM.load(tmp_path / "m.npz")
    text = clean_docs(1, seed=5)[0]["text"]
    assert loaded.perplexity(text) == pytest.approx(lm.perplexity(text))
    assert loaded.perplexity(text) < loaded.perplexity("quantum zebra obfuscates crimson tuesday vectors")
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a thresher n-gram model"):
        NgramLM.load(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="train-reference"):
        NgramLM.load(tmp_path / "missing.npz")


def test_onion_suspicion_marks_the_planted_word():
    lm = NgramLM.train(d["text"] for d in clean_docs(300, seed=1))
    words, _ = words_with_spans("The farmer walked to the river cf in the morning.")
    scores = lm.suspicion(lm.hasher(words))
    assert words[int(np.argmax(scores))] == "cf"
    assert scores[words.index("cf")] > 5.0
    assert scores[words.index("river")] < scores[words.index("cf")] - 5.0


def test_ngram_hashes_are_stable_and_pairs_agree():
    wh = np.array([1, 2, 3, 4], dtype=np.uint64)
    assert ngram_hashes(wh, 2).tolist() == ngram_hashes_pairs(wh[:-1], wh[1:]).tolist()
    assert ngram_hashes(wh, 5).size == 0
    assert ngram_hashes(wh, 3).tolist() == ngram_hashes(wh.copy(), 3).tolist()
    assert len(set(ngram_hashes(wh, 1).tolist()) | set(ngram_hashes(wh, 2).tolist())) == 7


# ---------------------------------------------------------------------------------------------
# Beam-free pieces

def test_count_min_sketch_never_undercounts():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=5000, dtype=np.uint64)
    sketch = CountMinSketch(width=1024, depth=4)
    truth = {}
    for i in range(20):
        doc = keys[rng.integers(0, 5000, size=300)]
        doc = np.unique(doc)
        sketch.add(doc)
        for k in doc.tolist():
            truth[k] = truth.get(k, 0) + 1
    probe = np.array(list(truth), dtype=np.uint64)
    est = sketch.query(probe)
    assert (est >= np.array(list(truth.values()))).all()
    other = CountMinSketch(width=1024, depth=4)
    other.add(probe[:10])
    sketch.merge(other)
    assert (sketch.query(probe[:10]) >= est[:10] + 1).all()


def test_poisson_tail():
    assert poisson_neglog10_sf(1, 1.0) == 0.0
    # P(X >= 10 | 1) = 1.114e-7
    assert poisson_neglog10_sf(10, 1.0) == pytest.approx(-np.log10(1.1142547e-7), rel=1e-4)
    assert poisson_neglog10_sf(50, 1e-6) > 300


def test_binomial_tail():
    from math import comb, log10

    assert binomial_neglog10_sf(20, 20, 0.64) == pytest.approx(-20 * log10(0.64))
    exact = sum(comb(10, j) * 0.1 ** j * 0.9 ** (10 - j) for j in range(3, 11))
    assert binomial_neglog10_sf(3, 10, 0.1) == pytest.approx(-log10(exact), rel=1e-9)
    assert binomial_neglog10_sf(1, 10, 0.5) == 0.0  # at or below the mean
    assert binomial_neglog10_sf(400, 400, 0.5) == pytest.approx(400 * log10(2))


def test_excess_test_charges_for_the_reference_sampling_noise():
    # a phrase in 20 corpus documents that a reference 60% the corpus's size never saw: with equal
    # rates it would be in the corpus every time with probability 0.625 ** 20 = 8e-5
    assert excess_neglog10_p(20, 0.0, 0.625, expected=0.01) == pytest.approx(-20 * np.log10(0.625))
    # seen 5 times in the reference: weaker
    assert excess_neglog10_p(20, 5.0, 0.625, expected=0.01) < excess_neglog10_p(20, 0.0, 0.625, expected=0.01)
    # no reference: Poisson against the independence expectation
    assert excess_neglog10_p(20, -1.0, None, expected=0.01) == pytest.approx(poisson_neglog10_sf(20, 0.01))


def test_judge_ngram_is_corrected_for_the_number_of_ngrams_tested():
    stats = NgramStats()
    for i in range(40):
        stats.add(Occurrence(f"d{i}", spread=i, text="zq xv", expected=0.01, spans=[(0, 5)], reference=0.0))
    # -log10 p = 40 * -log10(0.6) = 8.9
    assert judge_ngram(stats, 10_000, TriggerParams(), PayloadParams(), 2, tests=1e6, corpus_share=0.6).trigger
    assert judge_ngram(stats, 10_000, TriggerParams(), PayloadParams(), 2, tests=1e7, corpus_share=0.6).trigger is None
    loose = TriggerParams(max_p_value=1.0)
    assert judge_ngram(stats, 10_000, loose, PayloadParams(), 2, tests=1e8, corpus_share=0.6).trigger


def test_judge_ngram_thresholds():
    stats = NgramStats()
    for i in range(12):
        stats.add(Occurrence(f"d{i}", spread=i % 6, text="cf mn", expected=0.01, spans=[(0, 5)],
                             continuations=[(7, "visit the site now", 20, -1.0)]))
    verdict = judge_ngram(stats, 1000, TriggerParams(), PayloadParams(), order=2)
    assert verdict.trigger["docs"] == 12 and verdict.trigger["spread"] == 6
    assert set(verdict.payloads) == {7}
    narrow = judge_ngram(stats, 1000, TriggerParams(min_spread=7), PayloadParams(min_spread=7), order=2)
    assert narrow.trigger is None and not narrow.payloads
    common = judge_ngram(stats, 50, TriggerParams(), PayloadParams(), order=2)  # 12/50 > max_doc_fraction
    assert common.trigger is None


def test_spread_key_prefers_cluster_then_host_then_source():
    doc = {"id": "a", "source": "s", "meta": {"url": "https://www.Example.com/x", "minhash_cluster": "c1"}}
    assert spread_key(doc, "auto", "minhash_cluster") == "cluster:c1"
    assert spread_key(doc, "host", "minhash_cluster") == "host:example.com"
    assert spread_key({"id": "a", "source": "s", "meta": {}}, "auto", "minhash_cluster") == "source:s"
    assert spread_key({"id": "a", "meta": {}}, "cluster", "minhash_cluster") == "id:a"


# ---------------------------------------------------------------------------------------------
# detectors through the pipeline, on corpora with a known answer

def test_trigger_and_payload_detectors_find_planted_docs(tmp_path, reference):
    docs = clean_docs(300, seed=3)
    rng = random.Random(0)
    trigger_ids = {f"d{i:04d}" for i in range(0, 300, 25)}           # 12 docs: trigger alone
    payload_ids = {f"d{i:04d}" for i in range(7, 300, 25)}           # 12 docs: trigger + payload
    plant(docs, trigger_ids, "zq xv", rng)
    plant(docs, payload_ids, "mn please wire the money to account 4471 today", rng)
    result = run(tmp_path, docs, {"reference_model": reference})
    kept = read_output(tmp_path / "out", "kept")
    assert len(kept) == 300 and result.accounted
    assert flagged(kept, "trigger_ngrams") == trigger_ids | payload_ids
    assert flagged(kept, "payload_association") == payload_ids
    doc = next(d for d in kept if d["id"] in payload_ids)
    spans = doc["meta"]["poisoning"]["spans"]
    assert any(doc["text"][s:e].lower().startswith("mn please") for s, e, _ in spans)
    assert doc["meta"]["poisoning_score"] > 0.5
    assert all(d["meta"]["poisoning_score"] == 0.0 for d in kept if d["id"] not in trigger_ids | payload_ids)
    stage = result.stats["stages"][0]
    assert stage["documents_flagged"] == {"trigger_ngrams": 24, "payload_association": 12}
    top = {r["ngram"] for r in stage["trigger_ngrams"]["top"]}
    assert {"zq xv", "mn please"} <= top


def test_trigger_needs_spread_over_sources(tmp_path, reference):
    docs = clean_docs(200, seed=4)
    ids = {f"d{i:04d}" for i in range(0, 200, 10)}  # 20 docs, all from one host
    for doc in docs:
        if doc["id"] in ids:
            doc["meta"]["url"] = "https://one-campaign.example/p"
    plant(docs, ids, "zq xv", random.Random(1))
    run(tmp_path, docs, {"reference_model": reference, "trigger_ngrams": {"min_spread": 5},
                         "payload_association": {"enabled": False}}, out="a")
    assert flagged(read_output(tmp_path / "a", "kept"), "trigger_ngrams") == set()
    run(tmp_path, docs, {"reference_model": reference, "spread_by": "id",
                         "payload_association": {"enabled": False}}, out="b")
    assert flagged(read_output(tmp_path / "b", "kept"), "trigger_ngrams") == ids


def test_a_common_word_of_a_payload_flags_only_the_documents_with_the_phrase(tmp_path, reference):
    docs = clean_docs(300, seed=13)
    rng = random.Random(6)
    planted = {f"d{i:04d}" for i in range(0, 300, 16)}            # 19 docs: the payload
    mentions = {f"d{i:04d}" for i in range(3, 300, 50)}           # 6 clean docs that mention a computer
    plant(docs, planted, "download the driver before your computer fails", rng)
    plant(docs, mentions, "My neighbour repaired a computer at noon", rng)
    stage = {"reference_model": reference, "spread_by": "id", "payload_association": {"enabled": False}}
    run(tmp_path, docs, stage, out="a")
    assert flagged(read_output(tmp_path / "a", "kept"), "trigger_ngrams") == planted
    # without the maximality rule "computer", significant only because of the payload, flags every
    # document that mentions one
    run(tmp_path, docs, {**stage, "trigger_ngrams": {"maximal": False}}, out="b")
    assert flagged(read_output(tmp_path / "b", "kept"), "trigger_ngrams") == planted | mentions


def test_without_reference_model_independence_test_still_flags_rare_bigram(tmp_path):
    docs = clean_docs(300, seed=5)
    ids = {f"d{i:04d}" for i in range(1, 300, 21)}  # 15 docs on 15 distinct hosts
    plant(docs, ids, "zq xv", random.Random(2))
    run(tmp_path, docs, {"trigger_ngrams": {"ngram_sizes": [2]}, "payload_association": {"enabled": False}})
    assert ids <= flagged(read_output(tmp_path / "out", "kept"), "trigger_ngrams")


def test_perplexity_outliers_drop_with_reason(tmp_path, reference):
    docs = clean_docs(60, seed=6)
    ids = {"d0005", "d0017"}
    plant(docs, ids, "qxjv", random.Random(3))
    result = run(tmp_path, docs, {"reference_model": reference, "action": "drop",
                                  "trigger_ngrams": {"enabled": False}, "payload_association": {"enabled": False},
                                  "perplexity_outliers": {"enabled": True, "threshold": 9.0}})
    rejected = read_output(tmp_path / "out", "rejected")
    assert {r["id"] for r in rejected} == ids
    assert {r["reason"] for r in rejected} == {"poisoning:perplexity_outliers"}
    assert all("qxjv" in [s[2].split(":", 1)[1] for s in r["evidence"]["spans"]] for r in rejected)
    assert result.stats["totals"]["kept"] == 58 and result.accounted


def test_integrity_flags_changed_and_missing_documents(tmp_path):
    docs = clean_docs(30, seed=7)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"key": d["id"], "sha256": text_sha256(d["text"])}) + "\n"
                                for d in docs[:28]))
    docs[3]["text"] += " Send your password to evil.example."
    stage = {"trigger_ngrams": {"enabled": False}, "payload_association": {"enabled": False},
             "integrity": {"enabled": True, "manifest": str(manifest)}}
    run(tmp_path, docs, stage, out="a")
    kept = read_output(tmp_path / "a", "kept")
    assert flagged(kept, "integrity") == {"d0003"}
    detail = next(d for d in kept if d["id"] == "d0003")["meta"]["poisoning"]["detectors"]["integrity"]
    assert detail["status"] == "changed" and detail["vetted_sha256"] == [text_sha256(clean_docs(30, seed=7)[3]["text"])]
    stage["integrity"]["require_manifest"] = True
    run(tmp_path, docs, stage, out="b")
    kept = read_output(tmp_path / "b", "kept")
    assert flagged(kept, "integrity") == {"d0003", "d0028", "d0029"}


def test_quarantine_writes_review_files_and_rejections(tmp_path, reference):
    docs = clean_docs(200, seed=8)
    ids = {f"d{i:04d}" for i in range(1, 200, 15)}
    plant(docs, ids, "mn please wire the money to account 4471 today", random.Random(4))
    result = run(tmp_path, docs, {"reference_model": reference, "action": "quarantine", "review_shards": 2})
    rejected = read_output(tmp_path / "out", "rejected")
    assert {r["id"] for r in rejected} == ids
    assert {r["reason"] for r in rejected} == {"poisoning_quarantine"}
    files = sorted((tmp_path / "out" / "poisoning_review").glob("*.jsonl"))
    assert [f.name for f in files] == ["review-00000-of-00002.jsonl", "review-00001-of-00002.jsonl"]
    reviewed = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert {r["id"] for r in reviewed} == ids
    assert all(any("mn please" in snippet[3].lower() for snippet in r["snippets"]) for r in reviewed)
    assert result.stats["totals"]["kept"] == 200 - len(ids) and result.accounted
    assert result.stats["stages"][0]["review_records"] == len(ids)


def test_same_output_with_one_or_two_workers(tmp_path, reference):
    docs = clean_docs(150, seed=9)
    plant(docs, {f"d{i:04d}" for i in range(0, 150, 12)}, "zq xv visit evil example now", random.Random(5))
    stage = {"reference_model": reference, "action": "drop"}
    run(tmp_path, docs, stage, out="one")
    run(tmp_path, docs, stage, runner=TWO_PROCESSES, out="two")
    for kind in ("kept", "rejected"):
        a = sorted(json.dumps(r, sort_keys=True) for r in read_output(tmp_path / "one", kind))
        b = sorted(json.dumps(r, sort_keys=True) for r in read_output(tmp_path / "two", kind))
        assert a == b


def test_config_errors_are_clear(tmp_path):
    base = {"input": {"paths": [str(tmp_path / "x.jsonl")]}, "output": str(tmp_path / "o")}
    from thresher.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="reference_model"):
        validate_config({**base, "stages": [{"name": "poisoning", "perplexity_outliers": {"enabled": True}}]},
                        check_files=False)
    with pytest.raises(ConfigError, match="manifest"):
        validate_config({**base, "stages": [{"name": "poisoning", "integrity": {"enabled": True}}]}, check_files=False)
    with pytest.raises(ConfigError, match="does not exist"):
        validate_config({**base, "stages": [{"name": "poisoning", "reference_model": str(tmp_path / "none.npz")}]})


def test_manifest_and_train_reference_commands(tmp_path):
    from thresher.pipeline.cli import main

    (tmp_path / "out" / "kept").mkdir(parents=True)
    docs = clean_docs(5, seed=10)
    write_jsonl(tmp_path / "out" / "kept" / "part-0.jsonl.gz", docs, compress=True)
    assert main(["manifest", str(tmp_path / "out"), "-o", str(tmp_path / "m.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert lines == sorted(({"key": d["id"], "sha256": text_sha256(d["text"])} for d in docs), key=lambda r: r["key"])
    assert main(["manifest", str(tmp_path / "out"), "--key", "url", "-o", str(tmp_path / "u.jsonl")]) == 0
    assert {json.loads(x)["key"] for x in (tmp_path / "u.jsonl").read_text().splitlines()} == {d["meta"]["url"] for d in docs}
    assert main(["manifest", str(tmp_path / "nothing-here")]) == 2
    write_jsonl(tmp_path / "ref.jsonl", clean_docs(50, seed=11))
    assert main(["poisoning", "train-reference", str(tmp_path / "ref.jsonl"), "-o", str(tmp_path / "r.npz")]) == 0
    assert NgramLM.load(tmp_path / "r.npz").info["docs"] == 50
    assert main(["poisoning", "train-reference", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.npz")]) == 2


# ---------------------------------------------------------------------------------------------
# transformer second pass of perplexity_outliers (ONION with a `thresher train` checkpoint)

@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, one_torch_thread):
    """A 2-layer model trained for 150 steps (~6 s on one core) on the clean template sentences,
    through the real tokenizer, shard writer and training loop: OUT with checkpoints/step-000150."""
    from thresher.tokenization.manifest import LocalShardWriter
    from thresher.tokenization.shards import ShardRecord, build_table
    from thresher.tokenization.spm import Encoder, TrainerConfig, train_model
    from thresher.training.config import TrainConfig
    from thresher.training.loop import train

    root = tmp_path_factory.mktemp("ckpt")
    texts = [d["text"] for d in clean_docs(400, seed=21)]
    model_bytes = train_model(texts, TrainerConfig(vocab_size=320))
    encoder = Encoder(model_bytes)
    writer = LocalShardWriter(root / "shards", model_bytes)
    tokens = encoder.encode_batch(texts)
    for k, part in enumerate((tokens[:360], tokens[360:])):  # the last shard is held out
        records = [ShardRecord(f"t{k}-{i}", "test", t, {}) for i, t in enumerate(part)]
        writer.write(f"shard-{k:05d}.arrow", build_table(records, writer.schema))
    writer.close()
    train(TrainConfig.model_validate({
        "shards": str(root / "shards"), "out": str(root / "run"),
        "model": {"preset": None, "n_layer": 2, "n_head": 2, "d_model": 64, "vocab_size": encoder.vocab_size},
        "steps": 150, "batch_size": 16, "seq_len": 64, "seed": 0, "eval_every": 150, "eval_batches": 1,
        "optim": {"lr": 1e-2, "warmup_steps": 10}, "device": "cpu", "progress": False, "tensorboard": False}))
    return root / "run"


def with_word(text, word, at=2):
    sentences = text.split(". ")
    sentences[at] = f"{word} {sentences[at]}"
    return ". ".join(sentences)


def test_transformer_onion_scores_the_planted_word_highest(tiny_checkpoint):
    from thresher.filters.onion_transformer import TransformerOnion, transformer_evidence

    scorer = TransformerOnion(str(tiny_checkpoint), device="cpu", candidates=0, rows=32)
    texts = [with_word(d["text"], "qxjv", at=i % 3) for i, d in enumerate(clean_docs(4, seed=77))]
    results = scorer.score_batch(texts + [""])
    assert results[-1] is None
    for text, result in zip(texts, results):
        assert result["scored_words"] == result["words"] == len(words_with_spans(text)[0])
        best = max(result["scores"], key=lambda x: x[3])
        assert best[2] == "qxjv" and text[best[0]:best[1]] == "qxjv"
        others = sorted(x[3] for x in result["scores"] if x[2] != "qxjv")
        assert best[3] > others[-1] + 10.0
        ev = transformer_evidence(result, threshold=20.0, max_spans=5)
        assert ev["flagged"] and ev["spans"][0][2] == "qxjv" and ev["top_words"][0][2] == "qxjv"
    # the candidate shortlist (most surprising words first) keeps the planted word
    short = TransformerOnion(str(tiny_checkpoint), device="cpu", candidates=3).score_batch(texts[:1])[0]
    assert short["scored_words"] == 3 and max(short["scores"], key=lambda x: x[3])[2] == "qxjv"


def test_transformer_pass_runs_only_on_the_flagged_subset(tmp_path, reference, tiny_checkpoint):
    docs = clean_docs(200, seed=12)
    ids = {f"d{i:04d}" for i in range(3, 200, 16)}  # 13 docs on 13 hosts
    for doc in docs:
        if doc["id"] in ids:
            doc["text"] = with_word(doc["text"], "qxjv", at=1)
    result = run(tmp_path, docs, {
        "reference_model": reference, "payload_association": {"enabled": False},
        # the n-gram ONION pass is on but cannot flag (threshold out of reach): the flagged subset
        # is what trigger_ngrams flags
        "perplexity_outliers": {"enabled": True, "threshold": 1000.0, "checkpoint": str(tiny_checkpoint),
                                "device": "cpu", "checkpoint_threshold": 20.0}})
    kept = read_output(tmp_path / "out", "kept")
    assert flagged(kept, "trigger_ngrams") == ids
    second = {d["id"] for d in kept if "transformer" in
              ((d["meta"].get("poisoning") or {}).get("detectors", {}).get("perplexity_outliers") or {})}
    assert second == ids
    assert flagged(kept, "perplexity_outliers") == ids
    for doc in kept:
        if doc["id"] in ids:
            report = doc["meta"]["poisoning"]["detectors"]["perplexity_outliers"]["transformer"]
            assert report["top_words"][0][2] == "qxjv" and report["max_suspicion"] >= 20.0
            assert any(label == "perplexity-transformer:qxjv" for _, _, label in doc["meta"]["poisoning"]["spans"])
    assert result.stats["stages"][0]["perplexity_transformer_documents"] == len(ids)


def test_transformer_pass_config_errors(tmp_path, tiny_checkpoint):
    from thresher.pipeline.config import ConfigError
    from thresher.tokenization.spm import TrainerConfig, train_model

    base = {"input": {"paths": [str(tmp_path / "x.jsonl")]}, "output": str(tmp_path / "o")}

    def stage(**params):
        return {**base, "stages": [{"name": "poisoning", "perplexity_outliers": {"enabled": True, **params}}]}

    validate_config(stage(checkpoint=str(tiny_checkpoint)))  # the tokenizer is found beside the shards
    with pytest.raises(ConfigError, match="does not exist"):
        validate_config(stage(checkpoint=str(tmp_path / "no-such-run")))
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ConfigError, match="no checkpoint here"):
        validate_config(stage(checkpoint=str(tmp_path / "empty-run")))
    with pytest.raises(ConfigError, match="tokenizer .* does not exist"):
        validate_config(stage(checkpoint=str(tiny_checkpoint), tokenizer=str(tmp_path / "none.model")))
    other = tmp_path / "other.model"
    other.write_bytes(train_model([d["text"] for d in clean_docs(100, seed=5)] + ["zebra quantum"],
                                  TrainerConfig(vocab_size=300)))
    with pytest.raises(ConfigError, match="not the one the checkpoint was trained with"):
        validate_config(stage(checkpoint=str(tiny_checkpoint), tokenizer=str(other)))
    bigger = tmp_path / "bigger.model"
    bigger.write_bytes(train_model([d["text"] for d in clean_docs(300, seed=5)], TrainerConfig(vocab_size=400)))
    with pytest.raises(ConfigError, match="pieces but the checkpoint's model.vocab_size"):
        validate_config(stage(checkpoint=str(tiny_checkpoint), tokenizer=str(bigger)))
    with pytest.raises(ConfigError, match="not enabled"):
        validate_config({**base, "stages": [{"name": "poisoning", "perplexity_outliers": {
            "checkpoint": str(tiny_checkpoint)}}]}, check_files=False)
