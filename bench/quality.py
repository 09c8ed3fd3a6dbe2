"""Quality classifier: held-out accuracy and the score distribution of held-out Common Crawl web
documents vs held-out WikiText articles (and tweets), with the built-in model.

Held-out means not trained on: scripts/train_models.py splits at the document level (seeded), so
no chunk of these documents was in training. There is no peer here: the issue asks for the
model's own held-out accuracy and score distributions.

    python bench/quality.py [--data ../shared/data]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import argparse  # noqa: E402
import statistics  # noqa: E402

import train_models  # noqa: E402

from thresher.filters.classifier_training import metrics_from_predictions  # noqa: E402
from thresher.filters.fasttext_classifier import QualityClassifierStage  # noqa: E402


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def describe(scores: list[float]) -> str:
    q = statistics.quantiles(scores, n=4) if len(scores) > 1 else [scores[0]] * 3
    return f"{min(scores):.3f} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} | {max(scores):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=train_models.DEFAULT_DATA)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    qd = train_models.quality_data(args.data)
    stage = QualityClassifierStage(action="annotate", threshold=args.threshold)
    stage.setup()

    def score(texts: list[str]) -> list[float]:
        return stage.positive_probabilities(texts)

    held_scores = score([ex.text for ex in qd.held_out])
    gold = [ex.label for ex in qd.held_out]
    ev = metrics_from_predictions(gold, ["hq" if s >= args.threshold else "lq" for s in held_scores])
    print(f"held-out chunks: {ev.n} (hq {gold.count('hq')}, lq {gold.count('lq')}), threshold {args.threshold}: "
          f"accuracy {ev.accuracy:.3f}, hq F1 {ev.per_label['hq'].f1:.3f}, lq F1 {ev.per_label['lq'].f1:.3f}\n")

    fixtures = args.data / "fixtures"
    groups = [("WikiText articles (held out)", score(qd.held_out_wiki)),
              ("CC web documents (held out)", score(qd.held_out_web)),
              ("tweets (held out)", score(qd.held_out_tweets))]
    if fixtures.exists():
        groups.append(("CS336 fixture: wiki reference page", score([(fixtures / "high_quality_wiki_reference.txt").read_text()])))
        groups.append(("CS336 fixture: low-quality CC page", score([(fixtures / "low_quality_cc.txt").read_text()])))
    print("| documents | n | min | p25 | median | p75 | max | share >= threshold |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, scores in groups:
        share = sum(s >= args.threshold for s in scores) / len(scores)
        print(f"| {name} | {len(scores)} | {describe(scores)} | {share:.2f} |")
    print(f"\nAUC WikiText vs CC web documents (held out): {auc(groups[0][1], groups[1][1]):.3f}")


if __name__ == "__main__":
    main()
