"""PII detection quality on Presidio's synthetic dataset, thresher vs Presidio's pattern recognizers.

Span-level precision and recall per entity type, with two matching rules: exact (same start and
end) and overlap (any shared character, each gold span matched at most once). Presidio runs in
the same process, its PatternRecognizers called directly (no spaCy model: none can be downloaded
here), when presidio-analyzer is installed.

    python bench/pii.py [--data ../shared/data/pii/presidio-synth_dataset_v2.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path

from thresher.filters.pii import PiiDetector

ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"]
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pii" / "presidio-synth_dataset_v2.json"


def thresher_predictor():
    detector = PiiDetector(["email", "phone", "ip_address", "credit_card", "iban", "us_ssn"],
                           ["US", "GB", "DE", "FR", "IN"])
    return lambda text: [(s.start, s.end, s.entity) for s in detector.find(text)]


def presidio_predictor():
    """Presidio's predefined pattern recognizers, called one by one (AnalyzerEngine insists on a
    spaCy NLP engine). Returns (predict, note)."""
    try:
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
            UsSsnRecognizer)
    except Exception as exc:  # noqa: BLE001 - reported in the table note
        return None, f"presidio-analyzer not importable: {exc!r}"
    # tldextract (inside EmailRecognizer) tries to download the public-suffix list, fails offline
    # and falls back to its bundled snapshot; silence the traceback it logs on the way.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    recognizers = [EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(),
                   UsSsnRecognizer(), PhoneRecognizer()]

    def predict(text: str) -> list[tuple[int, int, str]]:
        results = []
        for recognizer in recognizers:
            for r in recognizer.analyze(text, recognizer.supported_entities, nlp_artifacts=None):
                results.append((r.start, r.end, r.entity_type, r.score))
        # Presidio's own default score threshold is 0; keep the best-scoring of overlapping spans.
        results.sort(key=lambda r: (-r[3], -(r[1] - r[0]), r[0]))
        chosen = []
        for r in results:
            if all(r[1] <= c[0] or r[0] >= c[1] for c in chosen):
                chosen.append(r)
        return [(s, e, t) for s, e, t, _ in chosen]

    return predict, "Presidio PatternRecognizers called directly with nlp_artifacts=None"


def evaluate(predict, data) -> tuple[dict[str, dict[str, float]], float, int]:
    exact_tp, overlap_tp, n_pred, n_gold = Counter(), Counter(), Counter(), Counter()
    chars = 0
    start = time.perf_counter()
    predictions = [predict(x["full_text"]) for x in data]
    seconds = time.perf_counter() - start
    for x, pred in zip(data, predictions):
        chars += len(x["full_text"].encode())
        gold = [(s["start_position"], s["end_position"], s["entity_type"]) for s in x["spans"]
                if s["entity_type"] in ENTITIES]
        pred = [p for p in pred if p[2] in ENTITIES]
        n_gold.update(g[2] for g in gold)
        n_pred.update(p[2] for p in pred)
        exact_tp.update(p[2] for p in set(pred) & set(gold))
        used = set()
        for p in pred:
            for i, g in enumerate(gold):
                if i not in used and g[2] == p[2] and p[0] < g[1] and g[0] < p[1]:
                    used.add(i)
                    overlap_tp[p[2]] += 1
                    break
    table = {}
    for e in ENTITIES:
        table[e] = {
            "gold": n_gold[e],
            "P_exact": exact_tp[e] / n_pred[e] if n_pred[e] else 0.0,
            "R_exact": exact_tp[e] / n_gold[e] if n_gold[e] else 0.0,
            "P_overlap": overlap_tp[e] / n_pred[e] if n_pred[e] else 0.0,
            "R_overlap": overlap_tp[e] / n_gold[e] if n_gold[e] else 0.0,
        }
    return table, chars / 1e6 / seconds, len(data) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"dataset not found: {args.data}")
    data = json.loads(args.data.read_text())
    systems = [("thresher pii", thresher_predictor(), "")]
    presidio, note = presidio_predictor()
    if presidio is not None:
        systems.append(("presidio patterns", presidio, note))
    print(f"{len(data)} sentences from {args.data.name}; exact / overlap span match\n")
    print("| system | entity | gold | P exact | R exact | P overlap | R overlap |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    speeds = []
    for name, predict, _ in systems:
        table, mbps, docs_s = evaluate(predict, data)
        speeds.append((name, mbps, docs_s))
        for e, row in table.items():
            print(f"| {name} | {e} | {row['gold']} | {row['P_exact']:.3f} | {row['R_exact']:.3f} "
                  f"| {row['P_overlap']:.3f} | {row['R_overlap']:.3f} |")
    print()
    for name, mbps, docs_s in speeds:
        print(f"{name}: {docs_s:,.0f} sentences/s, {mbps:.2f} MB/s (one core)")
    if presidio is None:
        print(f"presidio: {note}")
    else:
        print(f"presidio: {note}")


if __name__ == "__main__":
    main()
