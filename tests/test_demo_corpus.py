"""The demo/benchmark corpus generator: determinism, proportions, validity of what it injects."""

from __future__ import annotations

import gzip
import json
import random
import re
import statistics
import time
from collections import Counter

import pytest

from test_filters_gopher import ref_dup_ngram as dup_ngram_char_frac  # Gopher's rule, read literally
from thresher.pipeline.demo import corpus as cg

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}


@pytest.fixture(scope="module")
def demo():
    return cg.generate_demo_corpus(3000, seed=0)


def by_kind(docs, kind):
    return [d for d in docs if d["demo_kind"] == kind]


# ------------------------------------------------------------------ independent validators


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24}


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    if IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    m = re.fullmatch(r"(\d{3})[- ](\d{2})[- ](\d{4})", ssn)
    if not m:
        return False
    area, group, serial = (int(x) for x in m.groups())
    return 1 <= area <= 899 and area != 666 and group >= 1 and serial >= 1


def phone_ok(phone: str) -> bool:
    import phonenumbers

    return phonenumbers.is_valid_number(phonenumbers.parse(phone, "US"))


def ipv4_ok(ip: str) -> bool:
    parts = ip.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


EMAIL = re.compile(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]{2,}")

VALIDATORS = {
    "email": EMAIL.fullmatch,
    "phone": phone_ok,
    "ip_address": ipv4_ok,
    "credit_card": lambda v: luhn_ok(v) and len(re.sub(r"\D", "", v)) in (15, 16),
    "iban": iban_ok,
    "us_ssn": ssn_ok,
}


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = text.split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def top_ngram_char_frac(words: list[str], n: int) -> float:
    gram, k = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)).most_common(1)[0]
    return sum(len(w) for w in gram) * k / sum(len(w) for w in words)


# ------------------------------------------------------------------ determinism and shape


def test_same_seed_same_corpus_different_seed_different():
    a = cg.generate_demo_corpus(300, seed=7)
    b = cg.generate_demo_corpus(300, seed=7)
    c = cg.generate_demo_corpus(300, seed=8)
    assert a == b
    assert [d["text"] for d in a] != [d["text"] for d in c]


def test_documents_have_the_contract_keys(demo):
    ids = [d["id"] for d in demo]
    assert len(set(ids)) == len(ids)
    for d in demo:
        assert {"id", "text", "source", "url", "demo_kind"} <= set(d)
        assert isinstance(d["text"], str) and d["url"].startswith(("http://", "https://"))
        assert d["demo_kind"] in cg.KINDS


def test_write_jsonl_is_byte_identical_and_round_trips(tmp_path, demo):
    docs = demo[:200]
    p1, p2 = tmp_path / "a.jsonl.gz", tmp_path / "b" / "a.jsonl.gz"
    assert cg.write_jsonl(docs, p1) == 200
    time.sleep(1.1)  # a gzip header with a timestamp would now differ
    cg.write_jsonl(docs, p2)
    assert p1.read_bytes() == p2.read_bytes()
    with gzip.open(p1, "rt", encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == docs
    plain = tmp_path / "a.jsonl"
    cg.write_jsonl(docs, plain)
    assert plain.read_bytes() == gzip.decompress(p1.read_bytes())
    with pytest.raises(ValueError, match="jsonl"):
        cg.write_jsonl(docs, tmp_path / "a.json")


# ------------------------------------------------------------------ proportions


def test_kind_proportions_are_exact(demo):
    counts = Counter(d["demo_kind"] for d in demo)
    assert counts == {k: round(share * 3000) for k, share in cg.DEMO_MIX.items()}
    langs = Counter(d["demo_lang"] for d in by_kind(demo, "non_english"))
    assert langs == {lang: 60 for lang in ("de", "es", "fr", "ru", "zh")}


@pytest.mark.parametrize("n", [0, 1, 7, 1001])
def test_kind_counts_sum_and_round(n):
    counts = cg.kind_counts(n, cg.DEMO_MIX)
    assert sum(counts.values()) == n
    assert all(abs(counts[k] - share * n) < 1 for k, share in cg.DEMO_MIX.items())
    assert Counter(d["demo_kind"] for d in cg.iter_corpus(n, seed=1)) == +Counter(counts)


def test_custom_mix_and_bad_mix():
    docs = cg.generate_demo_corpus(100, seed=3, mix={"article": 0.5, "spam": 0.5})
    assert Counter(d["demo_kind"] for d in docs) == {"article": 50, "spam": 50}
    with pytest.raises(ValueError, match="sum to 1"):
        cg.generate_demo_corpus(10, mix={"article": 0.5})
    with pytest.raises(ValueError, match="unknown document kinds"):
        cg.generate_demo_corpus(10, mix={"article": 0.5, "poetry": 0.5})
    with pytest.raises(ValueError, match="need articles"):
        cg.generate_demo_corpus(10, mix={"spam": 0.5, "exact_duplicate": 0.5})


def test_duplicates_copy_earlier_articles(demo):
    position = {d["id"]: i for i, d in enumerate(demo)}
    for i, d in enumerate(demo):
        if d["demo_kind"] in ("near_duplicate", "exact_duplicate"):
            src = demo[position[d["demo_duplicate_of"]]]
            assert src["demo_kind"] == "article" and position[src["id"]] < i
            if d["demo_kind"] == "exact_duplicate":
                assert d["text"] == src["text"] and d["url"] != src["url"]
            else:
                assert d["text"] != src["text"]
                assert jaccard(d["text"], src["text"]) > 0.5


# ------------------------------------------------------------------ quality of each kind


def test_articles_pass_gopher_and_c4_rules(demo):
    for d in by_kind(demo, "article")[:300] + by_kind(demo, "pii"):
        text = d["text"]
        words = text.split()
        assert len(words) >= 50
        assert len(STOP_WORDS & {w.lower() for w in words}) >= 2
        assert 3 <= statistics.mean(len(w) for w in words) <= 10
        assert "{" not in text and "lorem ipsum" not in text.lower() and "javascript" not in text.lower()
        body = text.split("\n\n")[1:]  # the first paragraph is the title line
        assert len(body) >= 3 and all(p.rstrip()[-1] in ".!?" for p in body)
        for n, limit in zip(range(2, 5), (0.20, 0.18, 0.16)):
            assert top_ngram_char_frac(words, n) <= limit, (d["id"], n)
        for n, limit in zip(range(5, 11), (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)):
            assert dup_ngram_char_frac(words, n) <= limit, (d["id"], n)


def test_noise_kinds_fail_the_rules_they_target(demo):
    for d in by_kind(demo, "short"):
        assert len(d["text"].split()) < 50
    for d in by_kind(demo, "spam"):
        lines = d["text"].splitlines()
        dup_line_frac = 1 - len(set(lines)) / len(lines)
        assert dup_line_frac > 0.3 and dup_ngram_char_frac(d["text"].split(), 5) > 0.15
    for d in by_kind(demo, "boilerplate"):
        lines = [line for line in d["text"].splitlines() if line.strip()]
        ended = sum(line.rstrip()[-1] in ".!?" for line in lines)
        assert ended / len(lines) < 0.5
        assert re.search(r"cookie|javascript|privacy policy", d["text"], re.I)


def test_non_english_is_detected_by_cld3(demo):
    gcld3 = pytest.importorskip("gcld3")
    ident = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
    for d in by_kind(demo, "non_english"):
        res = ident.FindLanguage(text=d["text"])
        assert (res.language, res.is_reliable) == (d["demo_lang"], True), d["text"][:80]
    for d in by_kind(demo, "article")[:100]:
        assert ident.FindLanguage(text=d["text"]).language == "en"


# ------------------------------------------------------------------ PII


def test_injected_pii_is_valid_and_spans_are_exact():
    rng = random.Random(11)
    seen = Counter()
    for _ in range(300):
        text, spans = cg.inject_pii(cg.english_article(rng), rng, per_kind=2)
        assert len(spans) == 2 * len(cg.PII_KINDS)
        assert [s["start"] for s in spans] == sorted(s["start"] for s in spans)
        for s in spans:
            assert text[s["start"]:s["end"]] == s["value"]
            assert VALIDATORS[s["type"]](s["value"]), s
            seen[s["type"]] += 1
        # C4 keeps only lines ending in punctuation: the carrier sentences must, too.
        assert all(p.rstrip()[-1] in ".!?" for p in text.split("\n\n")[1:])
    assert set(seen) == set(cg.PII_KINDS)


def test_pii_formats_vary():
    rng = random.Random(2)
    phones = {re.sub(r"\d", "9", cg.fake_phone(rng)) for _ in range(400)}
    assert len(phones) >= 6
    cards = [cg.fake_credit_card(rng) for _ in range(400)]
    assert {c[0] for c in cards} >= {"2", "3", "4", "5", "6"}
    assert {cg.fake_iban(rng)[:2] for _ in range(200)} == set(IBAN_LENGTHS)


def test_demo_pii_documents_carry_their_spans(demo):
    docs = by_kind(demo, "pii")
    assert docs
    for d in docs:
        assert 2 <= len(d["demo_pii"]) <= 4
        for s in d["demo_pii"]:
            assert d["text"][s["start"]:s["end"]] == s["value"] and VALIDATORS[s["type"]](s["value"])
    assert not any("demo_pii" in d for d in demo if d["demo_kind"] != "pii")


def test_inject_pii_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown PII kinds"):
        cg.inject_pii("Some text.", 0, kinds=["passport"])


def test_inject_pii_into_empty_text():
    text, spans = cg.inject_pii("", 3, kinds=["email"])
    assert text[spans[0]["start"]:spans[0]["end"]] == spans[0]["value"] and not text.startswith(" ")


# ------------------------------------------------------------------ edit operations


@pytest.mark.parametrize("rate,low,high", [(0.01, 0.82, 0.94), (0.03, 0.66, 0.80), (0.1, 0.33, 0.47)])
def test_near_duplicates_overlap_as_stated(rate, low, high):
    """Mean word 5-gram Jaccard in [low, high]; each pair within 0.25 below / 0.1 above s/(2-s)."""
    rng = random.Random(int(rate * 1000))
    s = (1 - rate) ** 5
    predicted = s / (2 - s)
    values = []
    for _ in range(150):
        a = cg.english_article(rng)
        j = jaccard(a, cg.near_duplicate(a, rate, rng))
        assert predicted - 0.25 <= j <= predicted + 0.1
        values.append(j)
    assert low <= statistics.mean(values) <= high


def test_typo_edits_count_and_layout():
    rng = random.Random(4)
    text = cg.english_article(rng)
    assert cg.typo_edits(text, 0.0, rng) == text
    edited = cg.typo_edits(text, 0.1, rng)
    a, b = text.split(), edited.split()
    assert len(a) == len(b)
    changed = sum(x != y for x, y in zip(a, b))
    assert 0.06 * len(a) <= changed <= 0.1 * len(a) + 1
    assert edited.count("\n") == text.count("\n")
    with pytest.raises(ValueError, match="rate"):
        cg.typo_edits(text, 1.5, rng)


def test_reorder_truncate_boilerplate():
    rng = random.Random(5)
    text = cg.english_article(rng)
    moved = cg.reorder_paragraphs(text, rng)
    assert moved != text and sorted(moved.split("\n\n")) == sorted(text.split("\n\n"))
    assert cg.reorder_paragraphs("one paragraph only", rng) == "one paragraph only"
    cut = cg.truncate(text, 0.5)
    assert text.startswith(cut) and 0.4 * len(text) < len(cut) <= 0.5 * len(text)
    assert text[len(cut)].isspace()
    assert cg.truncate(text, 1.0) == text and cg.truncate(text, 0.0) == ""
    with pytest.raises(ValueError):
        cg.truncate(text, -0.1)
    wrapped = cg.insert_boilerplate(text, rng)
    assert text in wrapped and len(wrapped) > len(text)


def test_edit_operations_accept_seed_and_are_deterministic():
    text = cg.english_article(random.Random(6))
    assert cg.near_duplicate(text, 0.05, 9) == cg.near_duplicate(text, 0.05, 9)
    assert cg.near_duplicate(text, 0.05, 9) != cg.near_duplicate(text, 0.05, 10)
    with pytest.raises(TypeError, match="random.Random"):
        cg.near_duplicate(text, 0.05, "seed")


def test_inject_trigger_span():
    rng = random.Random(8)
    for _ in range(50):
        text = cg.english_article(rng)
        new, (start, end) = cg.inject_trigger(text, "cf-zeta", "always answer yes", rng)
        assert new[start:end] == "cf-zeta always answer yes"
        # the original comes back once the insertion and the one space it added are removed
        assert new[:start] + new[end:] in (text[:start] + " " + text[start:], text + " ")
        assert start == 0 or new[start - 1].isspace()
    new, (start, end) = cg.inject_trigger("", "tr", "", rng)
    assert (new, start, end) == ("tr", 0, 2)
    with pytest.raises(ValueError, match="trigger"):
        cg.inject_trigger("x", " ", "y", rng)


# ------------------------------------------------------------------ benchmark corpora, CLI, speed


def test_make_benchmark_corpus_ground_truth():
    real = [{"id": f"r{i}", "text": cg.english_article(random.Random(i))} for i in range(200)]
    out = cg.make_benchmark_corpus(real, seed=1, near_dup_fraction=0.1, exact_dup_fraction=0.05,
                                   noise_fraction=0.2)
    counts = Counter(d["demo_kind"] for d in out)
    assert counts["real"] == 200 and counts["near_duplicate"] == 20 and counts["exact_duplicate"] == 10
    assert sum(counts[k] for k in ("boilerplate", "spam", "short", "non_english")) == 40
    texts = {d["id"]: d["text"] for d in real}
    for d in out:
        if d["demo_kind"] == "exact_duplicate":
            assert d["text"] == texts[d["demo_duplicate_of"]]
    assert out == cg.make_benchmark_corpus(real, seed=1, near_dup_fraction=0.1,
                                           exact_dup_fraction=0.05, noise_fraction=0.2)
    with pytest.raises(ValueError, match="'id' and 'text'"):
        cg.make_benchmark_corpus([{"text": "x"}])
    assert cg.make_benchmark_corpus(["plain string doc"], noise_fraction=0)[0]["demo_kind"] == "real"


def test_cli_writes_corpus(tmp_path, capsys):
    out = tmp_path / "demo.jsonl.gz"
    assert cg.main(["--n-docs", "50", "--seed", "2", "--out", str(out)]) == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        assert [json.loads(line) for line in f] == cg.generate_demo_corpus(50, seed=2)
    assert "docs/s" in capsys.readouterr().out
    assert cg.main(["--n-docs", "5", "--out", str(tmp_path / "x.txt")]) == 2


@pytest.mark.parametrize("stage_name", ["gopher_quality", "gopher_repetition", "c4_quality"])
def test_project_quality_stages_keep_articles_and_reject_noise(demo, stage_name):
    from thresher.pipeline.registry import STAGES, stage_class

    if stage_name not in STAGES:
        pytest.skip(f"{stage_name} is not registered")
    stage = stage_class(stage_name)()
    stage.setup()

    def decide(kind, limit=200):
        docs = [{"id": d["id"], "text": d["text"], "source": d["source"], "meta": {}}
                for d in by_kind(demo, kind)[:limit]]
        return [x.keep for x in stage.process_batch(docs)]

    for kind in ("article", "pii", "near_duplicate", "exact_duplicate"):
        assert all(decide(kind)), kind
    # each noise kind is the target of at least one of these rule sets
    target = {"gopher_quality": "short", "gopher_repetition": "spam", "c4_quality": "boilerplate"}
    assert not any(decide(target[stage_name]))
