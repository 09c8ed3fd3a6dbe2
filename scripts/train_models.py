"""Rebuild the two built-in classifiers in filters/models/ from ../shared/data, reproducibly.

    python scripts/train_models.py [--data ../shared/data] [--only toxicity|quality]

toxicity.ftz  Davidson et al. tweets: "toxic" = hate speech (class 0) or offensive (class 1),
              "clean" = neither (class 2).
quality.ftz   "hq" = WikiText-2 articles (Wikipedia Good/Featured articles), "lq" = the shared
              Common Crawl documents (boilerplate left in) and Davidson tweets: the GPT-3 / CS336
              "reference vs random web" recipe on a very small scale.

Training runs single-threaded with a fixed seed (fastText is only deterministic with one thread),
and every split is seeded: the same data gives the same model files byte for byte. The functions
that build the example sets are imported by bench/toxicity.py and bench/quality.py, so the
benchmarks evaluate on exactly the held-out parts used here.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from thresher.filters.classifier_training import (Example, TrainingConfig, clean_examples, evaluate,
                                                  normalise_labels, split_holdout, train_classifier,
                                                  train_model)
from thresher.filters.fasttext_classifier import MODELS_DIR

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SEED = 0
HOLDOUT = 0.1

TOXICITY_CONFIG = TrainingConfig(epoch=10, lr=0.3, word_ngrams=2, dim=32, min_count=1, seed=SEED,
                                 threads=1, quantize=True, quantize_cutoff=50_000)
QUALITY_CONFIG = TrainingConfig(epoch=5, lr=0.3, word_ngrams=2, dim=32, min_count=2, seed=SEED,
                                threads=1, quantize=True, quantize_cutoff=50_000)


# --- toxicity -------------------------------------------------------------------------------

def toxicity_examples(data: Path) -> list[Example]:
    path = data / "toxicity" / "davidson-labeled_data.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return [Example(row["tweet"], "clean" if row["class"] == "2" else "toxic")
                for row in csv.DictReader(handle)]


def toxicity_split(data: Path) -> tuple[list[Example], list[Example]]:
    """(train, held-out) raw examples, the split train_classifier makes."""
    return split_holdout(normalise_labels(toxicity_examples(data)), HOLDOUT, SEED)


# --- quality --------------------------------------------------------------------------------

_WIKI_TITLE = re.compile(r"^ = [^=].* = $")


def detokenize_wikitext(text: str) -> str:
    """Undo WikiText's tokenisation (" @-@ ", " , ", "<unk>") so the model does not learn the
    tokeniser's spacing as the mark of quality."""
    text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", "")
    text = re.sub(r" ([.,;:!?%)\]'])", r"\1", text)
    text = re.sub(r"([(\[$]) ", r"\1", text)
    text = re.sub(r" (n't|'s|'re|'ve|'ll|'d)\b", r"\1", text)
    return re.sub(r"(?m)^ = (=+ )?(.*?) (=+ )?= $", r"\2", text)


def wikitext_articles(data: Path) -> list[str]:
    articles: list[list[str]] = []
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        for line in (data / "wiki" / name).read_text(encoding="utf-8").splitlines():
            if _WIKI_TITLE.match(line):
                articles.append([])
            if articles and line.strip():
                articles[-1].append(line.strip())
    return [detokenize_wikitext("\n".join(lines)) for lines in articles if len(lines) > 1]


def web_documents(data: Path) -> list[str]:
    docs = []
    for name in ("cc_en_head-0091.jsonl", "cc_en_head-0174.jsonl"):
        with (data / "web" / name).open(encoding="utf-8") as handle:
            docs += [json.loads(line)["text"] for line in handle if line.strip()]
    with gzip.open(data / "web" / "dolma-documents-000.jsonl.gz", "rt", encoding="utf-8") as handle:
        docs += [json.loads(line)["text"] for line in handle if line.strip()]
    return docs


def chunk(text: str, size: int = 1500) -> list[str]:
    """Split a document at line boundaries into pieces of about ``size`` characters, so one long
    article does not become one example and a short one another."""
    pieces, current = [], ""
    for line in text.splitlines():
        if current and len(current) + len(line) > size:
            pieces.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current.strip():
        pieces.append(current)
    return pieces


@dataclass
class QualityData:
    train: list[Example]
    held_out: list[Example]           # chunks of held-out documents, and held-out tweets
    held_out_wiki: list[str]          # whole held-out articles, for the score distribution
    held_out_web: list[str]           # whole held-out web documents
    held_out_tweets: list[str]


def _split_docs(docs: list[str], fraction: float, rng: random.Random) -> tuple[list[str], list[str]]:
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_held = max(1, round(len(docs) * fraction))
    held = sorted(order[:n_held])
    train = sorted(order[n_held:])
    return [docs[i] for i in train], [docs[i] for i in held]


def quality_data(data: Path, n_tweets: int = 2000) -> QualityData:
    """Split at the document level (chunks of one document never straddle train and held-out),
    then chunk. Web documents are few (30), so a third of them is held out to measure anything."""
    rng = random.Random(SEED)
    wiki_train, wiki_held = _split_docs(wikitext_articles(data), 0.2, rng)
    web_train, web_held = _split_docs(web_documents(data), 0.3, rng)
    tweets = [ex.text for ex in toxicity_examples(data)]
    rng.shuffle(tweets)
    tweets = tweets[:n_tweets]
    n_tweet_held = round(len(tweets) * HOLDOUT)
    tweets_held, tweets_train = tweets[:n_tweet_held], tweets[n_tweet_held:]

    def examples(wiki: list[str], web: list[str], tw: list[str]) -> list[Example]:
        out = [Example(c, "hq") for doc in wiki for c in chunk(doc)]
        out += [Example(c, "lq") for doc in web for c in chunk(doc)]
        out += [Example(t, "lq") for t in tw]
        return out

    train = examples(wiki_train, web_train, tweets_train)
    random.Random(SEED).shuffle(train)
    return QualityData(train, examples(wiki_held, web_held, tweets_held), wiki_held, web_held, tweets_held)


# --- main -----------------------------------------------------------------------------------

def train_toxicity(data: Path, out: Path) -> None:
    evaluation = train_classifier(toxicity_examples(data), out, TOXICITY_CONFIG, HOLDOUT)
    print(f"toxicity -> {out} ({out.stat().st_size / 1e6:.2f} MB), held-out {HOLDOUT:.0%} of Davidson:")
    print(evaluation.table())


def train_quality(data: Path, out: Path) -> None:
    qd = quality_data(data)
    with tempfile.TemporaryDirectory() as tmp:
        model = train_model(clean_examples(qd.train, QUALITY_CONFIG.max_chars), QUALITY_CONFIG, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(out))
    evaluation = evaluate(model, clean_examples(qd.held_out, QUALITY_CONFIG.max_chars))
    print(f"quality -> {out} ({out.stat().st_size / 1e6:.2f} MB); trained on {len(qd.train)} examples, "
          f"held out {len(qd.held_out_wiki)} articles, "
          f"{len(qd.held_out_web)} web documents and tweets:")
    print(evaluation.table())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the built-in toxicity and quality models.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--only", choices=["toxicity", "quality"])
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"data directory not found: {args.data}", file=sys.stderr)
        return 2
    if args.only in (None, "toxicity"):
        train_toxicity(args.data, args.out_dir / "toxicity.ftz")
    if args.only in (None, "quality"):
        train_quality(args.data, args.out_dir / "quality.ftz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
