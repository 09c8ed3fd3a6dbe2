"""datatrove's Gopher and C4 filters on a JSON-lines file, timed: the peer of thresher's
gopher_quality -> gopher_repetition -> c4_quality chain.

Run it with the separate datatrove venv (datatrove is not a thresher dependency):

    /work/dt-venv/bin/python bench/peers_datatrove.py --docs FILE.jsonl --repeat N

Each document goes through GopherQualityFilter, GopherRepetitionFilter and C4QualityFilter in
that order (calling their ``filter`` methods directly on datatrove ``Document`` objects, no
executor), stopping at the first rejection; C4 may shorten the text, as in thresher. Prints one
JSON line: {"docs", "bytes", "seconds", "kept"} (seconds: wall-clock, the best of ``--repeat``
passes; "cpu_seconds": this process's CPU time for the same pass, steadier on a shared machine;
per-reason counts under "reasons"). With ``--each``, every filter is also run on its own over all
the original documents, and "each" maps gopher_quality / gopher_repetition / c4_quality to
{"seconds", "cpu_seconds", "kept", "decisions": [bool per document]} for agreement checks.

Offline: datatrove 0.10.1 assigns English to its ``SpaCyTokenizer`` (``spacy.blank("en")`` plus the
rule-based ``sentencizer``: no model download). NLTK's punkt data is needed only by datatrove's
``NLTKTokenizer``, which its tokenizer assignment table gives to no language; the script fails
loudly if a filter would reach for punkt (``NLTK_DATA`` points at an empty directory).
"""

from __future__ import annotations

import os
import sys

# This folder is sys.path[0]; a bench script named like a standard module (bench/tokenize.py)
# would shadow it inside datatrove's imports. Drop it before importing anything else.

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

# Make any attempt to load NLTK data fail instead of silently using a copy somewhere on disk.
os.environ["NLTK_DATA"] = tempfile.mkdtemp(prefix="no-nltk-data-")


def load_docs(path: str) -> list[dict]:
    docs = []
    with open(path, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if line.strip():
                record = json.loads(line)
                docs.append({"id": str(record.get("id", i)), "text": record["text"]})
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True, help="JSON lines with a 'text' field")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--each", action="store_true", help="also time each filter on its own")
    args = parser.parse_args()

    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

    filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter()]
    records = load_docs(args.docs)
    n_bytes = sum(len(r["text"].encode("utf-8")) for r in records)
    # warm-up: loads spaCy's blank English pipeline once, outside the timing
    for flt in filters:
        flt.filter(Document(text="Warm up the tokenizer. It is loaded once.", id="warmup"))

    best, best_cpu, kept, reasons = float("inf"), float("inf"), 0, Counter()
    for _ in range(max(1, args.repeat)):
        docs = [Document(text=r["text"], id=r["id"]) for r in records]
        kept, reasons = 0, Counter()
        start, start_cpu = time.perf_counter(), time.process_time()
        for doc in docs:
            for flt in filters:
                result = flt.filter(doc)
                ok, reason = (result, None) if isinstance(result, bool) else result
                if not ok:
                    reasons[f"{flt.name}: {reason}"] += 1
                    break
            else:
                kept += 1
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    result = {"docs": len(records), "bytes": n_bytes, "seconds": best, "cpu_seconds": best_cpu, "kept": kept,
              "reasons": dict(sorted(reasons.items()))}
    if args.each:
        result["each"] = {}
        for label, flt in zip(("gopher_quality", "gopher_repetition", "c4_quality"), filters):
            seconds, cpu_seconds = float("inf"), float("inf")
            for _ in range(max(1, args.repeat)):
                docs = [Document(text=r["text"], id=r["id"]) for r in records]
                start, start_cpu = time.perf_counter(), time.process_time()
                decisions = [flt.filter(doc) for doc in docs]
                seconds = min(seconds, time.perf_counter() - start)
                cpu_seconds = min(cpu_seconds, time.process_time() - start_cpu)
            decisions = [d if isinstance(d, bool) else d[0] for d in decisions]
            result["each"][label] = {"seconds": seconds, "cpu_seconds": cpu_seconds, "kept": sum(decisions),
                                     "decisions": decisions}
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
