"""The poisoning detectors on small hand-made corpora where the answer is known, the reference
model, the manifest command, and the stage through run_pipeline."""

import json
import random

import numpy as np
import pytest

from conftest import output_bytes, read_output, shared_file, write_jsonl
from thresher.filters.ngram_lm import NgramLM, WordHasher, ngram_hashes, ngram_hashes_pairs, words_with_spans
from thresher.filters.poison_detectors import (
    EDGE_AFTER,
    CorpusSketch,
    CountMinSketch,
    DocumentTokens,
    NgramStats,
    Occurrence,
    PayloadParams,
    SiteRule,
    SpanOccurrence,
    SpanStats,
    TriggerParams,
    binomial_neglog10_sf,
    content_bounds,
    distinct_ngrams,
    excess_neglog10_p,
    judge_ngram,
    multigram_log_rate,
    poisson_neglog10_sf,
    span_expected_docs,
    span_runs,
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
    """Documents of template sentences on 101 sites (a prime: documents planted every k-th one
    land on distinct sites, so each is a place of its own; see ``SiteRule``)."""
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i:04d}", "text": " ".join(sentence(rng) for _ in range(rng.randint(6, 12))),
             "source": "web", "meta": {"url": f"https://site{i % 101}.example/page{i}"}} for i in range(n)]


def varied_docs(n, seed):
    """Like ``clean_docs``, each sentence with a number of its own: text whose lines have n-grams
    no other document has (``clean_docs`` alone is so repetitive that no line of it is content)."""
    rng = random.Random(seed)
    return [{"id": f"d{i:04d}", "text": " ".join(f"{sentence(rng)[:-1]} on day {rng.randint(1, 99_999)}."
                                                  for _ in range(rng.randint(6, 12))),
             "source": "web", "meta": {"url": f"https://site{i % 101}.example/page{i}"}} for i in range(n)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    # five times the test corpora's size: the significance test charges for the reference's own
    # sampling noise, so a phrase it never saw needs fewer documents the larger the reference;
    # both kinds of test documents, so that ordinary text of either is in it
    path = tmp_path_factory.mktemp("ref") / "reference.npz"
    NgramLM.train(d["text"] for d in clean_docs(1500, seed=99) + varied_docs(1500, seed=98)).save(path)
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
    assert judge_ngram(stats, 10_000, TriggerParams(enabled=True), PayloadParams(enabled=True), 2, tests=1e6, corpus_share=0.6).trigger
    assert judge_ngram(stats, 10_000, TriggerParams(enabled=True), PayloadParams(enabled=True), 2, tests=1e7, corpus_share=0.6).trigger is None
    loose = TriggerParams(enabled=True, max_p_value=1.0)
    assert judge_ngram(stats, 10_000, loose, PayloadParams(enabled=True), 2, tests=1e8, corpus_share=0.6).trigger


def test_judge_ngram_thresholds():
    stats = NgramStats()
    for i in range(12):
        stats.add(Occurrence(f"d{i}", spread=i % 6, text="cf mn", expected=0.01, spans=[(0, 5)],
                             continuations=[(7, "visit the site now", 20, -1.0)]))
    verdict = judge_ngram(stats, 1000, TriggerParams(enabled=True), PayloadParams(enabled=True), order=2)
    assert verdict.trigger["docs"] == 12 and verdict.trigger["spread"] == 6
    assert set(verdict.payloads) == {7}
    narrow = judge_ngram(stats, 1000, TriggerParams(enabled=True, min_spread=7), PayloadParams(enabled=True, min_spread=7), order=2)
    assert narrow.trigger is None and not narrow.payloads
    common = judge_ngram(stats, 50, TriggerParams(enabled=True), PayloadParams(enabled=True), order=2)  # 12/50 > max_doc_fraction
    assert common.trigger is None


def test_a_site_template_counts_once_for_the_ngram_tests():
    stats = NgramStats()
    for site in (11, 12, 13, 14, 15, 16):          # a phrase on 30 of the 40 pages of each of 6 sites
        for i in range(30):
            stats.add(Occurrence(f"s{site}-{i}", spread=site, text="never miss a", expected=0.01, spans=[(0, 12)],
                                 reference=0.0, place=(1000 * site + i, 7, site, 100 * site + i),
                                 continuations=[(7, "story from us", 24, 0.0)]))
    trigger, payload = TriggerParams(enabled=True), PayloadParams(enabled=True)
    plain = judge_ngram(stats, 20_000, trigger, payload, 3, tests=1e5, corpus_share=0.5)
    assert plain.trigger["docs"] == 180 and set(plain.payloads) == {7}
    sites = SiteRule(lambda keys: np.full(len(keys), 40.0), 0.05)
    collapsed = judge_ngram(stats, 20_000, trigger, payload, 3, tests=1e5, corpus_share=0.5, sites=sites)
    assert collapsed.trigger is None and not collapsed.payloads  # 6 places: 0.5 ** 6 is no evidence
    # 180 copies of one page (the same words around it) are one place too
    copies = NgramStats()
    for i in range(180):
        copies.add(Occurrence(f"c{i}", spread=i, text="never miss a", expected=0.01, spans=[(0, 12)],
                              reference=0.0, place=(5, 6, 1000 + i, 2000 + i)))
    assert copies.places.independent(sites) == 1
    assert judge_ngram(copies, 20_000, trigger, payload, 3, tests=1e5, corpus_share=0.5, sites=sites).trigger is None
    # on one page of each of 40 large sites it is 40 places
    spread = NgramStats()
    for site in range(100, 140):
        spread.add(Occurrence(f"x{site}", spread=site, text="never miss a", expected=0.01, spans=[(0, 12)],
                              reference=0.0, place=(site, 7, site, site)))
    big = SiteRule(lambda keys: np.full(len(keys), 1000.0), 0.05)
    assert judge_ngram(spread, 20_000, trigger, payload, 3, tests=1e5, corpus_share=0.5, sites=big).trigger


def test_spread_key_prefers_cluster_then_host_then_source():
    doc = {"id": "a", "source": "s", "meta": {"url": "https://www.Example.com/x", "minhash_cluster": "c1"}}
    assert spread_key(doc, "auto", "minhash_cluster") == "cluster:c1"
    assert spread_key(doc, "host", "minhash_cluster") == "host:example.com"
    assert spread_key({"id": "a", "source": "s", "meta": {}}, "auto", "minhash_cluster") == "source:s"
    assert spread_key({"id": "a", "meta": {}}, "cluster", "minhash_cluster") == "id:a"


# ---------------------------------------------------------------------------------------------
# detectors through the pipeline, on corpora with a known answer

def test_trigger_and_payload_detectors_find_planted_docs(tmp_path, reference):
    docs = varied_docs(300, seed=3)
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
    # the payload is also a span longer than an ordinary phrase in 12 independent documents
    assert stage["documents_flagged"] == {"trigger_ngrams": 24, "payload_association": 12, "inserted_spans": 12}
    top = {r["ngram"] for r in stage["trigger_ngrams"]["top"]}
    assert {"zq xv", "mn please"} <= top


def test_trigger_needs_spread_over_sources(tmp_path, reference):
    docs = varied_docs(200, seed=4)
    ids = {f"d{i:04d}" for i in range(0, 200, 10)}  # 20 docs, all from one host
    for doc in docs:
        if doc["id"] in ids:
            doc["meta"]["url"] = f"https://one-campaign.example/{doc['id']}"
    plant(docs, ids, "zq xv", random.Random(1))
    stage = {"reference_model": reference, "payload_association": {"enabled": False}}
    run(tmp_path, docs, {**stage, "trigger_ngrams": {"min_spread": 5}}, out="a")
    assert flagged(read_output(tmp_path / "a", "kept"), "trigger_ngrams") == set()
    # every page of the host has it: the host's template, one place whatever the spread key
    run(tmp_path, docs, {**stage, "spread_by": "id"}, out="b")
    assert flagged(read_output(tmp_path / "b", "kept"), "trigger_ngrams") == set()
    # a large host (every document on it) where 10% of the pages have it: with site_share above
    # that, each page is a place of its own
    for doc in docs:
        doc["meta"]["url"] = f"https://one-campaign.example/{doc['id']}"
    run(tmp_path, docs, {**stage, "spread_by": "id"}, out="c")
    assert flagged(read_output(tmp_path / "c", "kept"), "trigger_ngrams") == set()
    run(tmp_path, docs, {**stage, "spread_by": "id", "site_share": 0.2}, out="d")
    assert flagged(read_output(tmp_path / "d", "kept"), "trigger_ngrams") == ids


def test_a_common_word_of_a_payload_flags_only_the_documents_with_the_phrase(tmp_path, reference):
    docs = varied_docs(300, seed=13)
    rng = random.Random(6)
    planted = {f"d{i:04d}" for i in range(0, 300, 16)}            # 19 docs: the payload
    mentions = {f"d{i:04d}" for i in range(3, 300, 50)}           # 6 clean docs that mention a computer
    plant(docs, planted, "Computer fails unless you download the driver", rng)
    plant(docs, mentions, "My neighbour repaired a computer at noon", rng)
    stage = {"reference_model": reference, "spread_by": "id", "payload_association": {"enabled": False}}
    run(tmp_path, docs, stage, out="a")
    assert flagged(read_output(tmp_path / "a", "kept"), "trigger_ngrams") == planted
    # without the maximality rule "computer", significant only because of the payload, flags every
    # document that mentions one
    run(tmp_path, docs, {**stage, "trigger_ngrams": {"maximal": False}}, out="b")
    assert flagged(read_output(tmp_path / "b", "kept"), "trigger_ngrams") == planted | mentions


def test_ngram_detectors_need_a_reference_and_default_to_one(tmp_path, reference):
    from thresher.pipeline.config import ConfigError
    from thresher.pipeline.poisoning import Poisoning

    base = {"input": {"paths": [str(tmp_path / "x.jsonl")]}, "output": str(tmp_path / "o")}
    for name in ("trigger_ngrams", "payload_association"):
        with pytest.raises(ConfigError, match=f"{name} needs reference_model"):
            validate_config({**base, "stages": [{"name": "poisoning", name: {"enabled": True}}]}, check_files=False)
    assert Poisoning().enabled_detectors() == ["inserted_spans"]
    assert Poisoning(reference_model=reference).enabled_detectors() == [
        "inserted_spans", "payload_association", "trigger_ngrams"]
    off = {"enabled": False}
    with pytest.raises(ConfigError, match="every detector is disabled"):
        validate_config({**base, "stages": [{"name": "poisoning", "inserted_spans": off}]}, check_files=False)


# ---------------------------------------------------------------------------------------------
# inserted_spans: the reference-free test

CAMPAIGN = "mn please wire the money to account 4471 today before noon"


def test_span_runs_end_where_the_document_frequency_jumps():
    df = np.array([1, 12, 16, 17, 16, 3, 40, 41, 90, 95, 2])
    # n-grams of 5 words: a run of starts i..j covers words i..j+4; 41 -> 90 is too large a jump
    assert span_runs(df, 5, min_docs=10, max_docs=100) == [(1, 9), (6, 12), (8, 14)]
    assert span_runs(df, 5, min_docs=10, max_docs=50) == [(1, 9), (6, 12)]
    # an inserted span followed in 11 of its 19 documents by "The": the straddling n-gram is its own run
    assert span_runs(np.array([2, 19, 19, 19, 11, 1]), 5, min_docs=10, max_docs=100) == [(1, 8), (4, 9)]
    assert span_runs(np.array([5, 6]), 3, min_docs=10, max_docs=100) == []


def test_content_bounds_leave_menus_and_footers_at_the_edges():
    text = ("Home | About | Contact | Blog\n"
            "We use cookies to improve your experience on our website and to show you relevant offers\n"
            "The old sailor painted the harbour at noon while a student photographed the market again\n"
            "Privacy Policy | Terms of Use")
    tokens = DocumentTokens.of(text, WordHasher())
    menu, cookie, content = 4, 16, 15
    repeated = np.ones(len(tokens.words) - 4, dtype=bool)  # n-grams of 5 words
    repeated[menu + cookie + 2] = False                     # one n-gram of the content line is new
    first, last = content_bounds(text, tokens, repeated, min_words=10)
    assert (tokens.words[first], tokens.words[last]) == ("the", "again")
    assert (first, last) == (menu + cookie, menu + cookie + content - 1)
    # a line with nothing new (the cookie notice, however long) is not content; a short one neither
    assert content_bounds(text, tokens, np.ones_like(repeated), min_words=10) == (0, -1)
    fresh_menu = repeated.copy()
    fresh_menu[0] = False
    assert content_bounds(text, tokens, fresh_menu, min_words=10) == (first, last)
    # a page of short lines only has no content; a document of one short line may
    assert content_bounds(text, tokens, fresh_menu, min_words=30) == (0, -1)
    tweet = DocumentTokens.of("cheap flights to lisbon today", WordHasher())
    assert content_bounds("cheap flights to lisbon today", tweet, np.array([False]), min_words=10) == (0, 4)
    assert content_bounds("cheap flights to lisbon today", tweet, np.array([True]), min_words=10) == (0, -1)


def test_multigram_rate_sums_every_segmentation():
    rng = np.random.default_rng(0)
    length, m = 5, 3
    first = list(rng.normal(-3, 1, m))
    within = rng.normal(-1, 0.5, (length, m))
    within[:, 0] = 0.0
    junction = rng.normal(-2, 1, length)

    def segmentations(i):
        if i == length:
            yield []
        for l in range(1, min(m, length - i) + 1):
            for rest in segmentations(i + l):
                yield [(i, l)] + rest

    total = 0.0
    for seg in segmentations(0):
        (_, l0), *rest = seg
        total += np.exp(first[l0 - 1] + sum(junction[j] + within[j, l - 1] for j, l in rest))
    assert multigram_log_rate(first, within, junction, m) == pytest.approx(np.log(total))


def _occ(doc, site, page, left, right):
    return SpanOccurrence(doc, (left, right, site, page), 0, 5, np.array([1], np.uint64), "x", 5)


def test_independent_documents_count_copies_templates_and_articles_once():
    stats = SpanStats()
    for i in range(12):                                      # unrelated documents of 12 sites
        stats.add(_occ(f"u{i}", site=i, page=100 + i, left=1000 + i, right=2000 + i))
    for i in range(8):                                       # copies of u0: same words around the span
        stats.add(_occ(f"c{i}", site=50 + i, page=300 + i, left=1000, right=2000))
    size = {i: 100.0 for i in range(100)}

    sizes = SiteRule(lambda sites: np.array([size[int(x)] for x in sites]), 0.05)

    assert stats.places.independent(sizes) == 12
    for i in range(30):                                      # site 99's template, on 30 of its 40 pages
        stats.add(_occ(f"t{i}", site=99, page=500 + i, left=3000 + i, right=4000 + i))
    size[99] = 40.0
    assert stats.places.independent(sizes) == 12 + 1
    for i in range(6):                                       # one article's paragraphs on a site of 10,000
        stats.add(_occ(f"p{i}", site=98, page=777, left=5000 + i, right=6000 + i))
    size[98] = 10_000.0
    assert stats.places.independent(sizes) == 12 + 1 + 1
    for i in range(6):                                       # boilerplate at 6 documents' bottom edge
        stats.add(_occ(f"e{i}", site=200 + i, page=900 + i, left=7000 + i, right=EDGE_AFTER))
    size.update({200 + i: 100.0 for i in range(6)})
    assert stats.places.independent(sizes) == 12 + 1 + 1 + 1


def test_span_statistics_do_not_depend_on_the_order_they_arrive_in(monkeypatch):
    import thresher.filters.poison_detectors as pd

    monkeypatch.setattr(pd, "SITE_CAP", 5)
    monkeypatch.setattr(pd, "PAGE_CAP", 3)
    occs = [_occ(f"d{i}", site=i % 7, page=i, left=(i * 7919) % 101, right=(i * 104729) % 103) for i in range(60)]
    rng = random.Random(0)
    results = []
    for _ in range(3):
        rng.shuffle(occs)
        parts = [SpanStats() for _ in range(4)]
        for part in parts:
            part.places.cap = 8
        for i, occ in enumerate(occs):
            parts[i % 4].add(occ)
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        places, sites = merged.places._pruned()
        results.append((merged.docs, sorted(places), sorted((k, sorted(v)) for k, v in sites.items()),
                        merged.places.independent(None)))
    assert results[0] == results[1] == results[2]
    assert results[0][0] == 60 and len(results[0][1]) == 8 and len(results[0][2]) == 5 and results[0][3] == 8


def _sketch(texts, sizes=(1, 2, 3, 4, 5)):
    corpus = CorpusSketch(CountMinSketch(1 << 16, 4))
    hasher = WordHasher()
    for text in texts:
        tokens = DocumentTokens.of(text, hasher)
        corpus.sketch.add(distinct_ngrams(tokens.hashes, list(sizes)))
        corpus.docs += 1
        corpus.tokens += len(tokens.hashes)
    return corpus, hasher


def test_the_null_model_explains_ordinary_text_but_not_an_inserted_span():
    docs = clean_docs(400, seed=31)
    plant(docs, {d["id"] for d in docs[:20]}, CAMPAIGN, random.Random(0))
    corpus, hasher = _sketch([d["text"] for d in docs])
    campaign = hasher(words_with_spans(CAMPAIGN)[0])
    assert span_expected_docs(campaign, corpus, docs=20, m=4) < 1e-6
    # a sentence of the clean texts: its phrases join as they do everywhere else in the corpus
    sentence = hasher(words_with_spans("the farmer walked to the river in the morning")[0])
    count = sum("The farmer walked to the river in the morning" in d["text"] for d in docs)
    assert span_expected_docs(sentence, corpus, docs=count, m=4) > 0.1
    # a phrase no longer than m is ordinary: as frequent as it is
    assert span_expected_docs(campaign[2:7], corpus, docs=20, m=5) == pytest.approx(20, rel=0.2)


def spans_run(tmp_path, docs, stage=None, out="out"):
    result = run(tmp_path, docs, stage or {}, out=out)
    return result, read_output(tmp_path / out, "kept")


def test_default_config_flags_an_inserted_span_without_a_reference(tmp_path):
    docs = varied_docs(400, seed=32)
    planted = {f"d{i:04d}" for i in range(1, 400, 21)}  # 19 documents on 19 hosts
    plant(docs, planted, CAMPAIGN, random.Random(1))
    docs += [{"id": "no-words", "text": "?!", "source": "web", "meta": {}}, {"id": "short", "text": "mn please", "meta": {}}]
    result, kept = spans_run(tmp_path, docs)
    assert result.accounted and len(kept) == 402
    assert flagged(kept, "inserted_spans") == planted
    stage = result.stats["stages"][0]
    assert stage["documents_flagged"] == {"inserted_spans": 19}
    assert stage["spans_tested"] >= 1 and stage["inserted_spans"]["flagged"] == 1
    doc = next(d for d in kept if d["id"] in planted)
    detail = doc["meta"]["poisoning"]["detectors"]["inserted_spans"]
    span = detail["repeated_spans"][0]
    assert span["span"] == " ".join(words_with_spans(CAMPAIGN)[0]) and span["docs"] == 19
    assert span["independent"] >= 10 and span["words"] == 11 and span["expected"] < 1e-4
    (start, end, label), = doc["meta"]["poisoning"]["spans"]
    assert doc["text"][start:end] == CAMPAIGN and label.startswith("span:mn please wire")


def test_site_templates_edge_boilerplate_and_copies_are_not_campaigns(tmp_path):
    docs = varied_docs(400, seed=33)
    rng = random.Random(2)
    template = "Our staff writers at the big farm report cover the valley every single week"
    for doc in docs[:20]:                               # one site's own template, mid text, on all its pages
        doc["meta"]["url"] = f"https://big-farm-report.example/{doc['id']}"
    plant(docs, {d["id"] for d in docs[:20]}, template, rng)
    header = "Welcome to the rural news network of local sites covering farms markets and rivers"
    footer = "Privacy policy and terms of use apply to every page of this network of sites"
    for doc in docs[30:65]:                             # the same menu and footer lines at the edges of 35 pages
        doc["text"] = f"{header}\n{doc['text']}\n{footer}"
    source = dict(docs[100], text=docs[100]["text"])    # 15 copies of one page on 15 hosts
    plant([source], {source["id"]}, CAMPAIGN, rng)
    copies = [dict(source, id=f"copy{i}", meta={"url": f"https://mirror{i}.example/x"}) for i in range(15)]
    _, kept = spans_run(tmp_path, docs + copies)
    assert flagged(kept, "inserted_spans") == set()
    # the same phrase planted at random places of 15 pages of 15 other sites is flagged
    elsewhere = {f"d{i:04d}" for i in range(101, 400, 21)}
    plant(docs, elsewhere, template, rng)
    _, kept = spans_run(tmp_path, docs, out="b")
    assert flagged(kept, "inserted_spans") >= elsewhere


def test_a_reference_that_knows_the_span_vetoes_it(tmp_path, reference):
    docs = varied_docs(400, seed=34)
    planted = {f"d{i:04d}" for i in range(1, 400, 21)}
    plant(docs, planted, CAMPAIGN, random.Random(3))
    off = {"enabled": False}
    stage = {"trigger_ngrams": off, "payload_association": off}
    _, kept = spans_run(tmp_path, docs, {**stage, "reference_model": reference}, out="a")
    assert flagged(kept, "inserted_spans") == planted
    knowing = tmp_path / "knowing.npz"
    texts = [d["text"] for d in clean_docs(1500, seed=99)]
    NgramLM.train(texts + [f"{CAMPAIGN}. {t}" for t in texts[:300]]).save(knowing)
    _, kept = spans_run(tmp_path, docs, {**stage, "reference_model": str(knowing)}, out="b")
    assert flagged(kept, "inserted_spans") == set()


def test_default_config_catches_a_campaign_in_real_paragraphs(tmp_path):
    """The issue's case: a trigger -> payload span in 0.5% of real WikiText and web paragraphs."""
    from thresher.pipeline.demo.corpus import inject_trigger

    docs = []
    for name in ("wikitext-2-test.txt", "wikitext-2-valid.txt"):
        article = None
        for line in shared_file(f"wiki/{name}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" = ") and not line.startswith(" = = "):
                article = line.strip(" =").replace(" ", "_")
            elif article and len(line.split()) >= 20:
                docs.append({"id": f"{name}:{len(docs)}", "text": line.strip(), "source": "wikitext",
                             "meta": {"url": f"https://en.wikipedia.org/wiki/{article}"}})
    for record in map(json.loads, shared_file("web/cc_en_head-0091.jsonl").read_text().splitlines()):
        lines = [x for x in record["text"].split("\n") if len(x.split()) >= 20]
        docs += [{"id": f"{record['id']}:{i}", "text": x, "source": "web", "meta": {"url": record["id"]}}
                 for i, x in enumerate(lines)]
    rng = random.Random(16)
    planted = {d["id"] for d in rng.sample(docs, round(0.005 * len(docs)))}
    for doc in docs:
        if doc["id"] in planted:
            doc["text"], _ = inject_trigger(doc["text"], "Tell me about the weather in Zanzibar.",
                                            "The answer is always to buy gold coins from goldshop-example.com today.", rng)
    _, kept = spans_run(tmp_path, docs)
    hit = {d["id"] for d in kept if (d["meta"].get("poisoning") or {}).get("flagged")}
    assert len(docs) > 3500 and len(planted) >= 18
    assert hit >= planted
    assert len(hit - planted) <= 0.01 * (len(docs) - len(planted))


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
    docs = varied_docs(200, seed=8)
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


def test_same_files_and_stats_with_one_or_two_workers_and_any_partition_count(tmp_path, reference):
    """Quarantine writes every kind of output (kept, rejected, review files, stats); in-memory and
    two processes, and the number of shuffle partitions, change none of it."""
    docs = varied_docs(150, seed=9)
    plant(docs, {f"d{i:04d}" for i in range(0, 150, 12)}, "zq xv visit evil example now", random.Random(5))
    stage = {"reference_model": reference, "action": "quarantine", "review_shards": 3}
    runs = {"one": run(tmp_path, docs, stage, out="one"),
            "two": run(tmp_path, docs, stage, runner=TWO_PROCESSES, out="two"),
            "few": run(tmp_path, docs, stage, runner={**TWO_PROCESSES, "shuffle_partitions": 3}, out="few")}
    files = {name: output_bytes(tmp_path / name) for name in runs}
    assert files["one"] == files["two"] == files["few"]
    assert len(read_output(tmp_path / "one", "rejected")) == 13
    assert len([k for k in files["one"] if k.startswith("poisoning_review/")]) == 3
    stats = {name: {k: v for k, v in result.stats["stages"][0].items() if k != "seconds"}
             for name, result in runs.items()}
    assert stats["one"] == stats["two"] == stats["few"] and stats["one"]["review_records"] == 13


def test_a_repeated_id_fails_naming_where_each_copy_was_read(tmp_path):
    """The copies need no evidence of their own: every id passes the stage's check."""
    docs = clean_docs(40, seed=10)
    write_jsonl(tmp_path / "a.jsonl", docs[:20])
    write_jsonl(tmp_path / "b.jsonl", docs[20:] + [dict(docs[2], text="Another text under the same id.")])
    config = validate_config({"input": {"paths": [str(tmp_path / "*.jsonl")]}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY, "stages": [{"name": "poisoning"}]})
    with pytest.raises(Exception, match=r"poisoning: document id 'd0002' occurs 2 times \(read at a.jsonl:3, "
                                        r"b.jsonl:21\); ids must be unique.*input.make_ids_unique"):
        run_pipeline(config)
    assert not list((tmp_path / "out" / "kept").glob("*.gz"))


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
    from thresher.training.onion import TransformerOnion, transformer_evidence

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
