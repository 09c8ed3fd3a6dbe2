"""MinHash signature throughput per core, in MB/s of UTF-8 text: datasketch (update loop,
update_batch, bulk), rensa, and thresher's compiled path, on the same documents, the same word
5-gram shingles and 128 permutations, in one process run (ratios within a run are what to compare).

Documents: WikiText-2 articles (valid + test) and the Common Crawl documents in ../shared/data/web,
all real text. Every method starts from the document text: the peers get the shingles from
``thresher.filters.minhash.shingles`` (Python regex split + join: the same shingles thresher hashes
internally), and that shingling time is counted for them; one extra row shows rensa with shingling
excluded. datasketch uses ``hashfunc=shingle_hash`` (xxh32), so its signatures must equal ours, and
the script checks that they do.

    python bench/minhash.py [--mb 2.0] [--slow-mb 0.25]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from pathlib import Path

import numpy as np

from thresher.filters import minhash as mh

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NUM_PERM = 128
NGRAM = 5


def load_documents(max_mb: float) -> list[str]:
    docs: list[str] = []
    for name in ("cc_en_head-0091.jsonl", "cc_en_head-0174.jsonl"):
        docs += [json.loads(line)["text"] for line in (DATA / "web" / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    with gzip.open(DATA / "web" / "dolma-documents-000.jsonl.gz", "rt", encoding="utf-8") as handle:
        docs += [json.loads(line)["text"] for line in handle if line.strip()]
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        text = (DATA / "wiki" / name).read_text(encoding="utf-8")
        # an article starts at a " = Title = " line; " = = Section = = " lines stay inside it
        docs += [a for a in re.split(r"\n(?= = [^=].* = \n)", text) if len(a) > 500]
    out, total = [], 0
    for doc in docs:
        if total >= max_mb * 1e6:
            break
        out.append(doc)
        total += len(doc.encode("utf-8"))
    return out


def mb(docs: list[str]) -> float:
    return sum(len(d.encode("utf-8")) for d in docs) / 1e6


def timed(fn, docs, repeat: int = 1):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(docs)
        best = min(best, time.perf_counter() - start)
    return best, result


def datasketch_update(docs):
    import datasketch

    out = []
    for doc in docs:
        m = datasketch.MinHash(NUM_PERM, seed=1, hashfunc=mh.shingle_hash)
        for s in mh.shingles(doc, NGRAM):
            m.update(s)
        out.append(m.hashvalues)
    return out


def datasketch_update_batch(docs):
    import datasketch

    out = []
    for doc in docs:
        m = datasketch.MinHash(NUM_PERM, seed=1, hashfunc=mh.shingle_hash)
        m.update_batch(mh.shingles(doc, NGRAM))
        out.append(m.hashvalues)
    return out


def datasketch_bulk(docs):
    import datasketch

    return [m.hashvalues for m in datasketch.MinHash.bulk([mh.shingles(d, NGRAM) for d in docs],
                                                          num_perm=NUM_PERM, seed=1, hashfunc=mh.shingle_hash)]


def rensa_loop(docs):
    import rensa

    out = []
    for doc in docs:
        m = rensa.RMinHash(NUM_PERM, 1)
        m.update(mh.shingles(doc, NGRAM))
        out.append(m.digest())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=2.0, help="MB of text for the fast methods")
    parser.add_argument("--slow-mb", type=float, default=0.25, help="MB of text for datasketch update loops")
    args = parser.parse_args(argv)

    docs = load_documents(args.mb)
    slow_docs = load_documents(args.slow_mb)
    hasher = mh.MinHasher(NUM_PERM, NGRAM, "word", seed=1)
    start = time.perf_counter()
    hasher.signatures(docs[:2])  # numba: load (or compile) the cached machine code once
    warmup = time.perf_counter() - start

    rows = []
    ours_t, ours = timed(hasher.signatures, docs, repeat=3)
    rows.append(("thresher (numba: split + xxh32 + affine32 permutations)", mb(docs), ours_t))
    legacy = mh.MinHasher(NUM_PERM, NGRAM, "word", seed=1, scheme="legacy")
    legacy.signatures(docs[:2])
    legacy_t, _ = timed(legacy.signatures, docs, repeat=3)
    rows.append(("thresher, scheme=legacy (datasketch < 2.0 values)", mb(docs), legacy_t))
    try:
        import rensa  # noqa: F401

        rensa_t, _ = timed(rensa_loop, docs, repeat=2)
        rows.append(("rensa 0.x RMinHash per document (+ Python shingling)", mb(docs), rensa_t))
        pre = [mh.shingles(d, NGRAM) for d in docs]

        def rensa_pre(_):
            import rensa as r

            for sh in pre:
                m = r.RMinHash(NUM_PERM, 1)
                m.update(sh)
                m.digest()

        pre_t, _ = timed(rensa_pre, docs, repeat=2)
        rows.append(("rensa, shingles given (shingling time excluded)", mb(docs), pre_t))
    except ImportError:
        rensa_t = None
    bulk_t, bulk = timed(datasketch_bulk, docs)
    rows.append(("datasketch MinHash.bulk (+ Python shingling)", mb(docs), bulk_t))
    batch_t, batch = timed(datasketch_update_batch, slow_docs)
    rows.append(("datasketch update_batch per document", mb(slow_docs), batch_t))
    loop_t, _ = timed(datasketch_update, slow_docs)
    rows.append(("datasketch update loop", mb(slow_docs), loop_t))

    equal = all(np.array_equal(a, b) for a, b in zip(ours, bulk)) and all(
        np.array_equal(a, b) for a, b in zip(ours[:len(batch)], batch))
    rensa_mbs = mb(docs) / rensa_t if rensa_t else None
    print(f"{len(docs)} documents, {mb(docs):.2f} MB (update loops: {len(slow_docs)} docs, {mb(slow_docs):.2f} MB); "
          f"word {NGRAM}-grams, {NUM_PERM} permutations; one core; signatures equal datasketch's: {equal}; "
          f"numba warm-up {warmup:.2f}s (excluded)\n")
    print("| method | MB/s per core | vs rensa |")
    print("| --- | ---: | ---: |")
    for name, size, seconds in rows:
        rate = size / seconds
        ratio = f"{rate / rensa_mbs:.2f}x" if rensa_mbs else "n/a"
        print(f"| {name} | {rate:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
