"""Quality classifier across domains: the share of clean prose of each register that the built-in
model keeps (P(hq) >= threshold), the share of low-quality text it keeps, and its held-out
accuracy; with ``--baseline``, another fastText quality model (such as the one before issue 16)
beside it on the same texts.

Held out means not trained on: scripts/train_models.py splits by document (seeded), and several
registers (the Python Language Reference, Debian's documentation, man pages, web pages,
generated text) are never trained on. There is no peer here.

    python bench/quality.py [--data ../shared/data] [--baseline OLD.ftz] [--no-system-docs]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import argparse  # noqa: E402

import train_models  # noqa: E402

from thresher.filters.classifier_training import metrics_from_predictions  # noqa: E402
from thresher.filters.fasttext_classifier import QualityClassifierStage  # noqa: E402


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def prose_sets(data: Path, system_docs: bool) -> dict[str, list[str]]:
    """Clean prose the quality model should keep: the toxicity benchmark's clean paragraphs (the
    Common Crawl documents replaced by the 9 the quality model holds out; the chat turns left
    out, as chat is not prose), and whole documents."""
    paragraphs = train_models.clean_test_sets(data, system_docs)
    for name in [n for n in paragraphs if n.startswith(("Common Crawl", "chat-bot", "synthetic"))]:
        del paragraphs[name]
    wiki_test = train_models.wikitext_article_splits(data)[2]
    _, web_test = train_models.web_document_splits(data)
    documents = {
        "WikiText test articles, detokenised (documents)": [train_models.detokenize_wikitext("\n".join(a))
                                                           for a in wiki_test],
        "Python Language Reference (topics)": train_models.python_reference_topics(),
        "WARC test pages (documents)": train_models.warc_page_splits(data).test,
        "synthetic demo articles (documents)": train_models.synthetic_demo_documents()["article"],
        "Common Crawl documents, held out (documents)": web_test,
    }
    fixture = data / "fixtures" / "high_quality_wiki_reference.txt"
    if fixture.exists():
        documents["CS336 fixture: Stanford Encyclopedia of Philosophy page"] = [fixture.read_text(encoding="utf-8")]
    if system_docs:
        documents["Debian /usr/share/doc (documents)"] = train_models.debian_docs()
        documents["man pages, section 1 (documents)"] = train_models.man_pages()
    return {**paragraphs, **{name: texts for name, texts in documents.items() if texts}}


def low_quality_sets(data: Path) -> dict[str, list[str]]:
    demo = train_models.synthetic_demo_documents()
    sets = {"tweets, held out": train_models.quality_tweet_split(data)[1],
            "synthetic boilerplate pages": demo["boilerplate"],
            "synthetic spam pages": demo["spam"]}
    fixture = data / "fixtures" / "low_quality_cc.txt"
    if fixture.exists():
        sets["CS336 fixture: low-quality Common Crawl page"] = [fixture.read_text(encoding="utf-8")]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=train_models.DEFAULT_DATA)
    parser.add_argument("--model", default="quality", help="built-in name or fastText model path")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--baseline", help="another fastText quality model, e.g. the one before issue 16")
    parser.add_argument("--no-system-docs", action="store_true", help="skip Debian docs and man pages")
    args = parser.parse_args()

    models = ([args.baseline] if args.baseline else []) + [args.model]
    stages = {}
    for model in models:
        stage = QualityClassifierStage(model=model, action="annotate", threshold=args.threshold)
        stage.setup()
        stages[f"thresher {'built-in' if model == 'quality' else Path(model).name}"] = stage
    names = list(stages)

    qd = train_models.quality_data(args.data)
    gold = [ex.label for ex in qd.held_out]
    print(f"held-out chunks and docstrings: {len(gold)} (hq {gold.count('hq')}, lq {gold.count('lq')}), "
          f"threshold {args.threshold}\n")
    print("| model | accuracy | hq F1 | lq F1 | AUC WikiText vs CC web documents |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, stage in stages.items():
        scores = stage.positive_probabilities([ex.text for ex in qd.held_out])
        ev = metrics_from_predictions(gold, ["hq" if s >= args.threshold else "lq" for s in scores])
        separation = auc(stage.positive_probabilities(qd.held_out_wiki), stage.positive_probabilities(qd.held_out_web))
        print(f"| {name} | {ev.accuracy:.3f} | {ev.per_label['hq'].f1:.3f} | {ev.per_label['lq'].f1:.3f} "
              f"| {separation:.3f} |")

    for title, sets in (("Clean prose: share kept (higher is better)", prose_sets(args.data, not args.no_system_docs)),
                        ("Low-quality text: share kept (lower is better)", low_quality_sets(args.data))):
        print(f"\n{title}, threshold {args.threshold}\n")
        print("| texts | n | " + " | ".join(names) + " |")
        print("| --- | ---: | " + " | ".join("---:" for _ in names) + " |")
        for set_name, texts in sets.items():
            shares = [sum(p >= args.threshold for p in stages[n].positive_probabilities(texts)) / len(texts)
                      for n in names]
            print(f"| {set_name} | {len(texts)} | " + " | ".join(f"{s:.3f}" for s in shares) + " |")


if __name__ == "__main__":
    main()
