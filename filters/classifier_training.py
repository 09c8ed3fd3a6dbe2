"""Train a fastText classifier from labelled files: ``thresher train-classifier``.

Inputs: JSON lines or CSV files with a text column and a label column (names configurable), or one
plain/JSONL file per label (``--label-file LABEL=PATH``). A seeded, per-label (stratified) split
holds out ``--holdout`` of the examples; the command trains on the rest, prints precision, recall
and F1 per label on the held-out part and saves the model (``--quantize`` writes a compressed
``.ftz``).

Training is deterministic only single-threaded: fastText's Hogwild SGD with several threads
depends on thread timing. ``--threads`` defaults to 1 for that reason; more threads are faster
and not reproducible.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from thresher.filters.fasttext_classifier import LABEL_PREFIX, label_name, preprocess
from thresher.filters.jsonl import json_objects, open_text


class TrainingDataError(ValueError):
    """Labelled input that cannot be trained on, with a message naming the file and problem."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str


def _is_jsonl(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith((".jsonl", ".json", ".ndjson"))


def _json_records(handle, path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The JSON-lines records of ``handle``, each checked to have ``fields``."""
    try:
        records = list(json_objects(handle, path))
    except ValueError as exc:
        raise TrainingDataError(str(exc)) from None
    for line_no, record in records:
        for column in fields:
            if column not in record:
                raise TrainingDataError(f"{path} line {line_no}: no {column!r} field (fields: {sorted(record)})")
    return [record for _, record in records]


def read_labelled_file(path: Path, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """Examples from one JSON lines or CSV file with a text and a label column."""
    if not path.exists():
        raise TrainingDataError(f"{path}: file not found")
    examples: list[Example] = []
    with open_text(path) as handle:
        if _is_jsonl(path):
            for record in _json_records(handle, path, (text_field, label_field)):
                examples.append(Example(str(record[text_field]), str(record[label_field])))
        else:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in (text_field, label_field):
                if column not in columns:
                    raise TrainingDataError(f"{path}: no {column!r} column (columns: {columns})")
            for row in reader:
                examples.append(Example(row[text_field] or "", row[label_field] or ""))
    if not examples:
        raise TrainingDataError(f"{path}: no examples (empty file)")
    return examples


def read_label_file(path: Path, label: str, text_field: str = "text") -> list[Example]:
    """All documents of one label: JSON lines (the ``text_field`` of each record) or plain text
    with one document per line."""
    if not path.exists():
        raise TrainingDataError(f"{path}: file not found (for label {label!r})")
    examples: list[Example] = []
    with open_text(path) as handle:
        if _is_jsonl(path):
            for record in _json_records(handle, path, (text_field,)):
                examples.append(Example(str(record[text_field]), label))
        else:
            examples += [Example(line.rstrip("\n"), label) for line in handle if line.strip()]
    if not examples:
        raise TrainingDataError(f"{path}: no examples for label {label!r} (empty file)")
    return examples


def normalise_labels(examples: Iterable[Example]) -> list[Example]:
    """Labels without ``__label__`` and spaces; examples with no text or no label dropped."""
    out = []
    for ex in examples:
        label = label_name(ex.label.strip()).replace(" ", "_")
        if label and ex.text.strip():
            out.append(Example(ex.text, label))
    return out


def clean_examples(examples: Iterable[Example], max_chars: int) -> list[Example]:
    """The text as the stages preprocess it (see fasttext_classifier.preprocess)."""
    return [Example(preprocess(ex.text, max_chars), ex.label) for ex in examples]


def check_labels(examples: list[Example]) -> Counter:
    counts = Counter(ex.label for ex in examples)
    if len(counts) < 2:
        found = f"only {sorted(counts)}" if counts else "none"
        raise TrainingDataError(f"a classifier needs at least two labels; found {found}")
    return counts


def split_holdout(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Stratified, seeded split: ``fraction`` of each label's examples are held out (at least one
    per label when ``fraction`` > 0 and the label has two or more examples)."""
    if not 0.0 <= fraction < 1.0:
        raise TrainingDataError(f"holdout must be in [0, 1), got {fraction}")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    rng = random.Random(seed)
    train, held = [], []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        n_held = round(len(group) * fraction)
        if fraction > 0 and n_held == 0 and len(group) > 1:
            n_held = 1
        held += group[:n_held]
        train += group[n_held:]
    rng.shuffle(train)
    return train, held


@dataclass
class TrainingConfig:
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 50
    min_count: int = 1
    bucket: int = 200_000
    loss: str = "softmax"
    seed: int = 0
    threads: int = 1
    max_chars: int = 10_000
    quantize: bool = False
    quantize_cutoff: int = 50_000


def write_fasttext_file(examples: Iterable[Example], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for ex in examples:
            handle.write(f"{LABEL_PREFIX}{ex.label} {ex.text}\n")


def train_model(train: list[Example], config: TrainingConfig, workdir: Path):
    """A trained (and, with ``config.quantize``, quantized) fastText model."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    train_path = workdir / "train.txt"
    write_fasttext_file(train, train_path)
    model = fasttext.train_supervised(
        input=str(train_path), epoch=config.epoch, lr=config.lr, wordNgrams=config.word_ngrams,
        dim=config.dim, minCount=config.min_count, bucket=config.bucket, loss=config.loss,
        seed=config.seed, thread=config.threads, verbose=0)
    if config.quantize:
        model.quantize(input=str(train_path), qnorm=True, retrain=True, cutoff=config.quantize_cutoff,
                       thread=config.threads, verbose=0)
    return model


@dataclass
class LabelMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Evaluation:
    per_label: dict[str, LabelMetrics] = field(default_factory=dict)
    accuracy: float = 0.0
    n: int = 0

    def table(self) -> str:
        lines = ["| label | precision | recall | F1 | support |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, m in sorted(self.per_label.items()):
            lines.append(f"| {label} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} | {m.support} |")
        lines.append(f"\naccuracy {self.accuracy:.3f} on {self.n} held-out examples")
        return "\n".join(lines)


def metrics_from_predictions(gold: list[str], predicted: list[str]) -> Evaluation:
    labels = sorted(set(gold) | set(predicted))
    evaluation = Evaluation(n=len(gold))
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted) if g == label and p == label)
        n_pred = sum(1 for p in predicted if p == label)
        n_gold = sum(1 for g in gold if g == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        evaluation.per_label[label] = LabelMetrics(precision, recall, f1, n_gold)
    evaluation.accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold) if gold else 0.0
    return evaluation


def evaluate(model, examples: list[Example]) -> Evaluation:
    if not examples:
        return Evaluation()
    labels, _ = model.predict([ex.text for ex in examples], k=1)
    return metrics_from_predictions([ex.label for ex in examples], [label_name(l[0]) for l in labels])


def train_classifier(examples: list[Example], output: Path, config: TrainingConfig,
                     holdout: float = 0.1) -> Evaluation:
    """Split (seeded, per label), preprocess, train, evaluate on the held-out part, save to
    ``output``. The split is taken on the raw examples, so a benchmark can rebuild the same
    held-out set with ``split_holdout(normalise_labels(examples), holdout, seed)``."""
    examples = normalise_labels(examples)
    check_labels(examples)
    train_raw, held_raw = split_holdout(examples, holdout, config.seed)
    check_labels(train_raw)
    train = clean_examples(train_raw, config.max_chars)
    held = clean_examples(held_raw, config.max_chars)
    with tempfile.TemporaryDirectory(prefix="thresher-fasttext-") as tmp:
        model = train_model(train, config, Path(tmp))
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(output))
    return evaluate(model, held)


def _label_file_arg(value: str) -> tuple[str, Path]:
    label, sep, path = value.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected LABEL=PATH, got {value!r}")
    return label, Path(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thresher train-classifier",
        description="Train a fastText classifier from labelled files and report held-out metrics.")
    parser.add_argument("inputs", nargs="*", type=Path,
                        help="JSON lines (.jsonl/.json, optionally .gz) or CSV files with text and label columns")
    parser.add_argument("--label-file", action="append", type=_label_file_arg, default=[], metavar="LABEL=PATH",
                        help="all documents of one label: JSON lines or plain text (one document per line); repeatable")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--label-field", default="label")
    parser.add_argument("--output", "-o", type=Path, required=True, help="model path (.bin, or .ftz with --quantize)")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction held out for evaluation (default 0.1)")
    parser.add_argument("--quantize", action="store_true", help="quantize the model (small .ftz)")
    parser.add_argument("--epoch", type=int, default=25)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--word-ngrams", type=int, default=2)
    parser.add_argument("--dim", type=int, default=50)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--bucket", type=int, default=200_000, help="hash buckets for word n-grams")
    parser.add_argument("--max-chars", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="training threads; only 1 is deterministic (default 1)")
    return parser


def iter_inputs(args: argparse.Namespace) -> Iterator[Example]:
    for path in args.inputs:
        yield from read_labelled_file(path, args.text_field, args.label_field)
    for label, path in args.label_file:
        yield from read_label_file(path, label, args.text_field)


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.inputs and not args.label_file:
        parser.error("give labelled files or --label-file LABEL=PATH")
    if args.quantize and args.output.suffix != ".ftz":
        print(f"note: quantized models are usually named .ftz (writing {args.output})", file=sys.stderr)
    config = TrainingConfig(epoch=args.epoch, lr=args.lr, word_ngrams=args.word_ngrams, dim=args.dim,
                            min_count=args.min_count, bucket=args.bucket, seed=args.seed, threads=args.threads,
                            max_chars=args.max_chars, quantize=args.quantize)
    try:
        examples = list(iter_inputs(args))
        evaluation = train_classifier(examples, args.output, config, args.holdout)
    except TrainingDataError as exc:
        print(f"thresher train-classifier: {exc}", file=sys.stderr)
        return 2
    counts = Counter(ex.label for ex in normalise_labels(examples))
    print(f"trained on {sum(counts.values())} examples ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}), "
          f"saved {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")
    if evaluation.n:
        print(evaluation.table())
    else:
        print("no held-out examples (--holdout 0): nothing evaluated")
    return 0
