"""Toxicity across domains: the false-positive rate on clean text of many registers and the recall
on held-out toxic tweets, thresher's built-in model beside alt-profanity-check (and, with
``--baseline``, another fastText model such as the one before issue 16), on the same texts.

Held-out Davidson tweets are the seeded, stratified 10% that no built-in model was trained on; the
clean sets are listed by scripts/train_models.py ``clean_test_sets`` (held-out documents of the
trained domains, and domains never trained on). alt-profanity-check sees the raw text and was
trained on Davidson's data itself (its README says so), so its Davidson row is not held out.

    python bench/toxicity.py [--data ../shared/data] [--baseline OLD.ftz [--baseline-threshold 0.5]] [--no-system-docs]
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


class System:
    def __init__(self, name: str, flag):
        self.name, self.flag = name, flag  # flag(texts) -> list[bool] (True = toxic)
        self.seconds = 0.0
        self.texts = 0

    def __call__(self, texts: list[str]) -> list[bool]:
        start = time.perf_counter()
        flags = self.flag(texts)
        self.seconds += time.perf_counter() - start
        self.texts += len(texts)
        return flags


def fasttext_system(model: str, threshold: float | None) -> System:
    stage = ToxicityStage(model=model, action="annotate", **({} if threshold is None else {"threshold": threshold}))
    stage.setup()
    name = f"thresher {'built-in' if model == 'toxicity' else Path(model).name} (threshold {stage.threshold})"
    return System(name, lambda texts: [p >= stage.threshold for p in stage.positive_probabilities(texts)])


def profanity_check_system() -> System | None:
    try:
        from importlib.metadata import version

        from profanity_check import predict
    except Exception as exc:  # noqa: BLE001 - reported
        print(f"alt-profanity-check not importable ({exc!r}); its columns are left out\n")
        return None
    return System(f"alt-profanity-check {version('alt-profanity-check')}", lambda texts: [bool(y) for y in predict(texts)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=train_models.DEFAULT_DATA)
    parser.add_argument("--model", default="toxicity", help="built-in name or fastText model path")
    parser.add_argument("--threshold", type=float, help="default: the stage's default threshold")
    parser.add_argument("--baseline", help="another fastText toxicity model, e.g. the one before issue 16")
    parser.add_argument("--baseline-threshold", type=float, default=0.5)
    parser.add_argument("--no-system-docs", action="store_true", help="skip Debian docs and man pages")
    args = parser.parse_args()

    systems = [fasttext_system(args.baseline, args.baseline_threshold)] if args.baseline else []
    systems.append(fasttext_system(args.model, args.threshold))
    peer = profanity_check_system()
    if peer is not None:
        systems.append(peer)

    _, held = train_models.toxicity_split(args.data)
    tweets = [ex.text for ex in held]
    gold = [ex.label for ex in held]
    n_toxic = gold.count("toxic")
    print(f"held-out Davidson split: {len(held)} tweets ({n_toxic} toxic = hate speech or offensive, "
          f"{len(held) - n_toxic} neither)\n")
    print("| system | P toxic | R toxic | F1 toxic | F1 clean | accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = [("Davidson held-out tweets, toxic (recall)", n_toxic, {}),
            ("Davidson held-out tweets, neither (FPR)", len(held) - n_toxic, {})]
    for system in systems:
        flags = system(tweets)
        ev = metrics_from_predictions(gold, ["toxic" if f else "clean" for f in flags])
        t, c = ev.per_label["toxic"], ev.per_label["clean"]
        print(f"| {system.name} | {t.precision:.3f} | {t.recall:.3f} | {t.f1:.3f} | {c.f1:.3f} | {ev.accuracy:.3f} |")
        rows[0][2][system.name] = t.recall
        rows[1][2][system.name] = sum(f and g == "clean" for f, g in zip(flags, gold)) / (len(held) - n_toxic)

    for name, texts in train_models.clean_test_sets(args.data, system_docs=not args.no_system_docs).items():
        rows.append((f"{name}, FPR", len(texts), {s.name: sum(s(texts)) / len(texts) for s in systems}))

    print("\nShare flagged toxic: recall on the toxic tweets, false-positive rate on everything else "
          "(all clean)\n")
    print("| texts | n | " + " | ".join(s.name for s in systems) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in systems) + " |")
    for name, n, shares in rows:
        print(f"| {name} | {n} | " + " | ".join(f"{shares[s.name]:.3f}" for s in systems) + " |")
    print("\n" + "; ".join(f"{s.name}: {s.texts / s.seconds:,.0f} texts/s" for s in systems))


if __name__ == "__main__":
    main()
