"""Near-duplicate detection quality: precision, recall and F1 of duplicate pairs against the true
shingle Jaccard, for thresher's MinHash dedup and datasketch's MinHashLSH with the same parameters
(128 permutations, bands/rows from the threshold), at thresholds 0.5-0.9 and word shingles of 3 and 5.

Data: real documents (WikiText-2 articles and the Common Crawl documents in ../shared/data/web) are
the originals; the near-duplicates are generated from them with realistic edits, at word edit rates
1, 3, 5, 10, 20 and 30%: typos (swapped, dropped or doubled letters), and independently with
probability 0.3 each: inserted boilerplate lines (cookie banners, navigation), two paragraphs
swapped, truncation of the last 10-30%. Each original has one copy per edit rate (a family of 7).

Truth: a pair is a duplicate when the exact Jaccard of its shingle sets is >= the threshold
(computed for every pair inside a family, and for every predicted pair across families).
Predictions:
- datasketch MinHashLSH: every pair (i, j) with j in lsh.query(minhash_i) (LSH candidates, unverified);
- thresher, pairs: every pair sharing an LSH bucket whose signature-estimated Jaccard >= threshold;
- thresher, clusters: the pairs minhash_dedup actually merges: each bucket linked as a star to its
  minimum id, edges verified by signature, connected components (computed here with union-find,
  which gives the components the Beam stage computes).

    python -P bench/dedup_quality.py [--families 80]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

from thresher.filters import minhash as mh

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EDIT_RATES = (0.01, 0.03, 0.05, 0.10, 0.20, 0.30)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
NUM_PERM = 128
BOILERPLATE = [
    "We use cookies to improve your experience. By continuing you agree to our cookie policy.",
    "Home | About | Contact | Privacy Policy | Terms of Use",
    "Subscribe to our newsletter for the latest updates.",
    "Share this article: Facebook Twitter Email",
    "Copyright 2024 All rights reserved.",
]


def originals(n: int) -> list[str]:
    docs = []
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        text = (DATA / "wiki" / name).read_text(encoding="utf-8")
        docs += [a for a in re.split(r"\n(?= = [^=].* = \n)", text) if 300 <= len(a.split()) <= 3000]
    for name in ("cc_en_head-0091.jsonl", "cc_en_head-0174.jsonl"):
        docs += [json.loads(line)["text"] for line in (DATA / "web" / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    with gzip.open(DATA / "web" / "dolma-documents-000.jsonl.gz", "rt", encoding="utf-8") as handle:
        docs += [json.loads(line)["text"] for line in handle if line.strip()]
    docs = [d for d in docs if len(d.split()) >= 150]
    random.Random(0).shuffle(docs)
    return docs[:n]


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + rng.choice("aeiou")
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def edit(text: str, rate: float, rng: random.Random) -> str:
    paragraphs = [p for p in text.split("\n") if p.strip()]
    if len(paragraphs) > 2 and rng.random() < 0.3:
        i, j = rng.sample(range(len(paragraphs)), 2)
        paragraphs[i], paragraphs[j] = paragraphs[j], paragraphs[i]
    if rng.random() < 0.3:
        for line in rng.sample(BOILERPLATE, 2):
            paragraphs.insert(rng.randrange(len(paragraphs) + 1), line)
    words_by_para = [p.split(" ") for p in paragraphs]
    slots = [(a, b) for a, ws in enumerate(words_by_para) for b in range(len(ws))]
    for a, b in rng.sample(slots, int(rate * len(slots))):
        words_by_para[a][b] = typo(words_by_para[a][b], rng)
    out = "\n".join(" ".join(ws) for ws in words_by_para)
    if rng.random() < 0.3:
        out = out[: int(len(out) * rng.uniform(0.7, 0.9))]
    return out


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def prf(predicted: set, truth: set) -> tuple[float, float, float]:
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def union_find_pairs(edges, n):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return {pair for g in groups.values() if len(g) > 1 for pair in combinations(sorted(g), 2)}


def evaluate(docs, family, ngram, threshold):
    import datasketch

    sets = [set(mh.shingle_hash_batch([d], ngram)[0].tolist()) for d in docs]
    bands, rows = mh.optimal_bands(threshold, NUM_PERM)
    hasher = mh.MinHasher(NUM_PERM, ngram, bands=bands, rows=rows)
    sigs = hasher.signatures(docs)

    truth = set()
    for i, j in combinations(range(len(docs)), 2):
        if family[i] == family[j] and jaccard(sets[i], sets[j]) >= threshold:
            truth.add((i, j))

    def add_cross(pairs):  # cross-family predictions count as true only if truly similar
        for i, j in pairs:
            if family[i] != family[j] and jaccard(sets[i], sets[j]) >= threshold:
                truth.add((i, j))

    buckets = defaultdict(list)
    for i, keys in enumerate(hasher.band_hashes(np.asarray(sigs)).tolist()):
        for key in keys:
            buckets[key].append(i)
    ours_pairs, star_edges = set(), set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        root = min(members)
        for m in members:
            if m != root and mh.estimated_jaccard(sigs[m], sigs[root]) >= threshold:
                star_edges.add((root, m))
        for i, j in combinations(sorted(members), 2):
            if mh.estimated_jaccard(sigs[i], sigs[j]) >= threshold:
                ours_pairs.add((i, j))
    ours_clusters = union_find_pairs(star_edges, len(docs))

    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    minhashes = []
    for i, d in enumerate(docs):
        m = datasketch.MinHash(NUM_PERM, seed=1, hashfunc=mh.shingle_hash)
        m.update_batch(mh.shingles(d, ngram))
        lsh.insert(i, m)
        minhashes.append(m)
    ds_pairs = {tuple(sorted((i, j))) for i, m in enumerate(minhashes) for j in lsh.query(m) if j != i}
    for pairs in (ours_pairs, ours_clusters, ds_pairs):
        add_cross(pairs)
    return (bands, rows), {"thresher, pairs": prf(ours_pairs, truth),
                           "thresher, clusters": prf(ours_clusters, truth),
                           "datasketch MinHashLSH": prf(ds_pairs, truth)}, len(truth)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", type=int, default=80)
    args = parser.parse_args(argv)
    rng = random.Random(1)
    docs, family, rate_of = [], [], []
    for f, original in enumerate(originals(args.families)):
        docs.append(original)
        family.append(f)
        rate_of.append(0.0)
        for rate in EDIT_RATES:
            docs.append(edit(original, rate, rng))
            family.append(f)
            rate_of.append(rate)

    print(f"{len(set(family))} real originals x {len(EDIT_RATES)} edited copies = {len(docs)} documents; "
          f"{NUM_PERM} permutations, word shingles\n")
    print("True Jaccard of copy vs original, mean over families:\n")
    print("| edit rate | word 3-gram | word 5-gram |")
    print("| ---: | ---: | ---: |")
    for rate in EDIT_RATES:
        row = []
        for ngram in (3, 5):
            vals = []
            for i in range(len(docs)):
                if rate_of[i] == rate:
                    orig = family.index(family[i])
                    a = set(mh.shingles(docs[orig], ngram))
                    vals.append(jaccard(a, set(mh.shingles(docs[i], ngram))))
            row.append(f"{np.mean(vals):.3f}")
        print(f"| {rate:.0%} | {row[0]} | {row[1]} |")
    print()
    print("| shingle | threshold | bands x rows | true pairs | method | precision | recall | F1 |")
    print("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for ngram in (3, 5):
        for threshold in THRESHOLDS:
            (b, r), results, n_true = evaluate(docs, family, ngram, threshold)
            for method, (p, rec, f1) in results.items():
                print(f"| word {ngram}-gram | {threshold} | {b} x {r} | {n_true} | {method} | {p:.3f} | {rec:.3f} | {f1:.3f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
