"""Encode throughput (MB/s of UTF-8 text, one core) through the tokenize stage's encode path vs
SentencePiece called directly, in one run.

Text: WikiText-2 valid + test (real Wikipedia articles, ../shared/data/wiki), one document per
article, plus the Common Crawl samples (../shared/data/web). The model is a BPE of 8000 pieces
trained by thresher on a 300-document seeded sample of the same text (byte fallback, identity
normalisation: the stage defaults). Every row encodes the same documents with the same model.

    python bench/tokenize_throughput.py [--repeat 3]
"""

from __future__ import annotations

import sys

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import sentencepiece  # noqa: E402

from thresher.pipeline.tokenize_stage import EncodeBatchFn  # noqa: E402
from thresher.tokenization.sample import sample_key  # noqa: E402
from thresher.tokenization.spm import Encoder, TrainerConfig, train_model  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_docs() -> list[dict]:
    docs = []
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        path = DATA / "wiki" / name
        if path.exists():
            for i, text in enumerate(path.read_text(encoding="utf-8").split("\n = ")):
                if text.strip():
                    docs.append({"id": f"{name}:{i}", "text": text, "source": "wiki", "meta": {"quality": 0.5}})
    for path in sorted((DATA / "web").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            docs.append({"id": record["id"], "text": record["text"], "source": "cc", "meta": {}})
    return docs


def best_times(repeat: int, runs: list) -> list[float]:
    """Best time of each run; rounds interleave the runs so machine load drifts hit all alike."""
    best = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="documents per encode batch (the stage default)")
    args = parser.parse_args()
    docs = load_docs()
    if not docs:
        print(f"no text under {DATA}; nothing to measure", file=sys.stderr)
        return 1
    texts = [d["text"] for d in docs]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    sample = sorted(docs, key=lambda d: sample_key(d["id"], 0))[:300]
    model = train_model([d["text"] for d in sample], TrainerConfig(vocab_size=8000))
    processor = sentencepiece.SentencePieceProcessor(model_proto=model)
    encoder = Encoder(model, add_eos=True)
    fn = EncodeBatchFn(add_eos=True)
    batches = [docs[i:i + args.batch] for i in range(0, len(docs), args.batch)]
    text_batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]

    rows = [
        ("sentencepiece `encode(text)` per document", lambda: [processor.encode(t, add_eos=True) for t in texts]),
        ("sentencepiece `encode(list)` batch, num_threads=1",
         lambda: [processor.encode(b, add_eos=True, num_threads=1) for b in text_batches]),
        ("thresher `Encoder.encode_batch` (ids to uint16 arrays)", lambda: [encoder.encode_batch(b) for b in text_batches]),
        ("thresher tokenize stage DoFn (`EncodeBatchFn`: encode + shard records)",
         lambda: [list(fn.process(b, model)) for b in batches]),
    ]
    results = [(name, mb / t) for (name, _), t in zip(rows, best_times(args.repeat, [run for _, run in rows]))]
    reference = results[1][1]
    print(f"Encode throughput, {len(docs)} documents, {mb:.2f} MB of text, BPE 8000, 1 core, best of {args.repeat}\n")
    print("| path | MB/s per core | vs SentencePiece batch |")
    print("| --- | ---: | ---: |")
    for name, rate in results:
        print(f"| {name} | {rate:.2f} | {rate / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
