"""Throughput of the toxicity, quality_classifier and pii stages on real documents, one core.

Documents: the shared Common Crawl web documents (30) and WikiText-2 articles (124), all real
text, repeated to ``--repeat`` passes; each stage runs ``process_batch`` on batches of 64 (as the
pipeline does) after ``setup``. Peers in the same run: alt-profanity-check's ``predict`` on the same
documents (the toxicity peer) and Presidio's pattern recognizers (the PII peer) on a subset.

    python bench/classifier_throughput.py [--repeat 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import train_models  # noqa: E402

from thresher.filters.fasttext_classifier import QualityClassifierStage, ToxicityStage  # noqa: E402
from thresher.filters.pii import PiiStage  # noqa: E402

BATCH = 64


def timed(fn, docs) -> float:
    start = time.process_time()
    for i in range(0, len(docs), BATCH):
        fn(docs[i:i + BATCH])
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=train_models.DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    texts = train_models.web_documents(args.data) + train_models.wikitext_articles(args.data)
    docs = [{"id": str(i), "text": t, "source": "bench", "meta": {}} for i, t in enumerate(texts)] * args.repeat
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    rows = []
    for name, stage in [("thresher toxicity (max_chars 10000)", ToxicityStage(action="annotate")),
                        ("thresher quality_classifier (max_chars 10000)", QualityClassifierStage(action="annotate")),
                        ("thresher pii (redact, all entities)", PiiStage())]:
        stage.setup()
        seconds = timed(stage.process_batch, docs)
        rows.append((name, len(docs), mb, seconds))
    try:
        from profanity_check import predict
        rows.append(("alt-profanity-check predict (whole text)", len(docs), mb,
                     timed(lambda batch: predict([d["text"] for d in batch]), docs)))
    except ImportError as exc:
        print(f"alt-profanity-check not available: {exc}")
    try:
        logging.getLogger("tldextract").setLevel(logging.CRITICAL)
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
            UsSsnRecognizer)
        recognizers = [EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(),
                       UsSsnRecognizer(), PhoneRecognizer()]
        subset = docs[: len(docs) // args.repeat]  # Presidio is slow: one pass

        def presidio(batch):
            for d in batch:
                for r in recognizers:
                    r.analyze(d["text"], r.supported_entities, nlp_artifacts=None)

        rows.append(("presidio pattern recognizers (6)", len(subset),
                     sum(len(d["text"].encode()) for d in subset) / 1e6, timed(presidio, subset)))
    except ImportError as exc:
        print(f"presidio-analyzer not available: {exc}")
    print(f"{len(texts)} real documents (30 Common Crawl, {len(texts) - 30} WikiText-2 articles), "
          f"mean {mb * 1e6 / len(docs) / 1e3:.1f} kB, x{args.repeat}; CPU time of one process "
          f"(os.cpu_count()={os.cpu_count()})\n")
    print("| stage | docs | MB | CPU s | docs/s/core | MB/s/core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, n, size, seconds in rows:
        print(f"| {name} | {n} | {size:.2f} | {seconds:.2f} | {n / seconds:,.0f} | {size / seconds:.2f} |")


if __name__ == "__main__":
    main()
