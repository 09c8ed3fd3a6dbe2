"""Toxicity: F1 of the toxic class on the held-out Davidson split, thresher's built-in fastText
model vs alt-profanity-check, in the same run on the same examples.

The split is the one scripts/train_models.py trains on (seeded, stratified, 10%): the built-in
model never saw these tweets. alt-profanity-check was trained on other data and sees the raw tweet.

    python bench/toxicity.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_models  # noqa: E402

from thresher.filters.classifier_training import metrics_from_predictions  # noqa: E402
from thresher.filters.fasttext_classifier import ToxicityStage  # noqa: E402


def run_thresher(texts: list[str], threshold: float) -> tuple[list[str], float]:
    stage = ToxicityStage(action="annotate", threshold=threshold)
    stage.setup()
    start = time.perf_counter()
    decisions = stage.process_batch([{"id": str(i), "text": t, "source": "", "meta": {}} for i, t in enumerate(texts)])
    seconds = time.perf_counter() - start
    return ["toxic" if d.scores["toxicity"] >= threshold else "clean" for d in decisions], seconds


def run_profanity_check(texts: list[str]) -> tuple[list[str] | None, float, str]:
    try:
        from profanity_check import predict
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return None, 0.0, f"alt-profanity-check not importable: {exc!r}"
    start = time.perf_counter()
    labels = predict(texts)
    seconds = time.perf_counter() - start
    return ["toxic" if y == 1 else "clean" for y in labels], seconds, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=train_models.DEFAULT_DATA)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    _, held = train_models.toxicity_split(args.data)
    texts = [ex.text for ex in held]
    gold = [ex.label for ex in held]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    rows = []
    ours, seconds = run_thresher(texts, args.threshold)
    rows.append(("thresher toxicity (fastText, built-in)", ours, seconds))
    theirs, their_seconds, note = run_profanity_check(texts)
    if theirs is not None:
        rows.append(("alt-profanity-check 1.9.1", theirs, their_seconds))
    toxic = sum(g == "toxic" for g in gold)
    print(f"held-out Davidson split: {len(held)} tweets ({toxic} toxic = hate speech or offensive, "
          f"{len(held) - toxic} neither), threshold {args.threshold}\n")
    print("| system | P toxic | R toxic | F1 toxic | F1 clean | accuracy | tweets/s | MB/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, predicted, secs in rows:
        ev = metrics_from_predictions(gold, predicted)
        t, c = ev.per_label["toxic"], ev.per_label["clean"]
        print(f"| {name} | {t.precision:.3f} | {t.recall:.3f} | {t.f1:.3f} | {c.f1:.3f} | {ev.accuracy:.3f} "
              f"| {len(texts) / secs:,.0f} | {mb / secs:.2f} |")
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
