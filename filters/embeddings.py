"""Word embeddings trained on the corpus itself, and the synonym tables built from them.

``thresher train-embeddings`` trains a fastText skip-gram model on JSON-lines or text files, then
writes, for the most frequent words, their nearest neighbours by cosine similarity (above a
threshold) as a synonym table the ``augment`` stage reads. Nearest neighbours in a skip-gram space
are "words used in the same contexts": mostly synonyms and close relatives, sometimes antonyms
(hot/cold): fine for augmentation noise, not a thesaurus.

Synonym files (user-written or from this command):
- ``.json``: ``{"word": ["synonym", ...], ...}``
- anything else: one entry a line, ``word: synonym, synonym`` or ``word synonym synonym``
  (``#`` starts a comment). Keys are lower-cased.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from thresher.filters.jsonl import json_objects, open_text

_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def words_of(text: str) -> list[str]:
    """Lower-cased alphabetic words (apostrophes and hyphens inside a word kept)."""
    return _WORD.findall(text.lower())


# --- synonym files -----------------------------------------------------------------------------


def load_synonyms(path: str | Path) -> dict[str, list[str]]:
    """Read a synonym file (see the module docstring); ValueError naming the line on bad input."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"synonym file {path}: cannot read ({exc.strerror})") from None
    table: dict[str, list[str]] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"synonym file {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"synonym file {path}: expected an object word -> list of synonyms")
        for word, syns in data.items():
            if not isinstance(syns, list) or not all(isinstance(s, str) for s in syns):
                raise ValueError(f"synonym file {path}: entry {word!r} is not a list of strings")
            _add(table, word, syns)
        return table
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" in line:
            word, rest = line.split(":", 1)
            syns = [s.strip() for s in re.split(r"[,\t]", rest) if s.strip()]
        else:
            word, *syns = line.split()
        if not syns:
            raise ValueError(f"synonym file {path} line {number}: {word.strip()!r} has no synonyms")
        _add(table, word.strip(), syns)
    return table


def _add(table: dict[str, list[str]], word: str, syns: Iterable[str]) -> None:
    key = word.lower()
    existing = table.setdefault(key, [])
    for s in syns:
        if s.lower() != key and s not in existing:
            existing.append(s)
    if not existing:
        del table[key]


def write_synonyms(table: dict[str, list[str]], path: str | Path) -> None:
    Path(path).write_text(json.dumps(table, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8")


# --- training ----------------------------------------------------------------------------------


def iter_texts(paths: Iterable[str | Path], text_field: str = "text") -> Iterator[str]:
    """Texts of JSON-lines files (``.jsonl``, ``.jsonl.gz``, ``.json``) or plain text files (one
    document each)."""
    for path in paths:
        path = Path(path)
        name = path.name
        if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
            with open_text(path) as handle:
                for number, record in json_objects(handle, path):
                    text = record.get(text_field)
                    if not isinstance(text, str):
                        raise ValueError(f"{path} line {number}: no string field {text_field!r}")
                    yield text
        else:
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                yield handle.read()


def train_skipgram(texts: Iterable[str], dim: int = 100, epoch: int = 5, min_count: int = 5,
                   window: int = 5, threads: int = 1, bucket: int = 200_000):
    """A fastText skip-gram model over the lower-cased words of ``texts``. ``threads=1`` makes
    training deterministic (fastText seeds each thread's generator with its thread id; its Hogwild
    updates are order-dependent with more threads). ``bucket`` sub-word hash rows: fastText's
    default 2,000,000 costs 800 MB at dim 100; 200,000 is plenty for synonym tables."""
    import fasttext

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        lines = 0
        with io.open(corpus, "w", encoding="utf-8") as out:
            for text in texts:
                words = words_of(text)
                if words:
                    out.write(" ".join(words) + "\n")
                    lines += 1
        if lines == 0:
            raise ValueError("no words to train embeddings on")
        return fasttext.train_unsupervised(str(corpus), model="skipgram", dim=dim, epoch=epoch,
                                           minCount=min_count, ws=window, thread=threads, bucket=bucket,
                                           verbose=0)


def nearest_neighbour_synonyms(model, max_words: int = 20000, neighbours: int = 5,
                               min_similarity: float = 0.6, min_length: int = 3,
                               block: int = 2048) -> dict[str, list[str]]:
    """For the ``max_words`` most frequent words of ``model`` (fastText's word list is sorted by
    frequency), up to ``neighbours`` other words among them with cosine similarity at least
    ``min_similarity``. Words sharing a prefix of 4+ letters with the query (plurals, inflections)
    are skipped: they are not the variation synonym replacement is for."""
    vocab = [w for w in model.get_words() if len(w) >= min_length and _WORD.fullmatch(w)][:max_words]
    if not vocab:
        return {}
    vectors = np.stack([model.get_word_vector(w) for w in vocab]).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, 1e-12)
    table: dict[str, list[str]] = {}
    k = min(len(vocab) - 1, neighbours * 4)
    if k <= 0:
        return {}
    for start in range(0, len(vocab), block):
        sims = vectors[start:start + block] @ vectors.T
        for row in range(sims.shape[0]):
            sims[row, start + row] = -1.0
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for row, candidates in enumerate(top):
            word = vocab[start + row]
            ordered = candidates[np.argsort(-sims[row, candidates], kind="stable")]
            found = []
            for j in ordered:
                if sims[row, j] < min_similarity:
                    break
                other = vocab[j]
                if _shares_stem(word, other):
                    continue
                found.append(other)
                if len(found) == neighbours:
                    break
            if found:
                table[word] = found
    return table


def _shares_stem(a: str, b: str) -> bool:
    n = min(len(a), len(b), 4)
    return a[:n] == b[:n] and min(len(a), len(b)) >= 4 or a in b or b in a


# --- command -----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="thresher train-embeddings",
        description="Train fastText skip-gram embeddings on a corpus and write a nearest-neighbour synonym "
                    "table for the augment stage (OUT/embeddings.bin and OUT/synonyms.json).")
    parser.add_argument("inputs", nargs="+", help="JSON-lines (.jsonl, .jsonl.gz) or plain text files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--epoch", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="more than 1 is faster but not deterministic")
    parser.add_argument("--bucket", type=int, default=200_000, help="sub-word hash buckets (memory: bucket x dim x 4 bytes)")
    parser.add_argument("--max-words", type=int, default=20000, help="build synonyms for this many most frequent words")
    parser.add_argument("--neighbours", type=int, default=5)
    parser.add_argument("--min-similarity", type=float, default=0.6)
    args = parser.parse_args(argv)
    missing = [p for p in args.inputs if not Path(p).is_file()]
    if missing:
        print(f"thresher train-embeddings: no such file: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        model = train_skipgram(iter_texts(args.inputs, args.text_field), dim=args.dim, epoch=args.epoch,
                               min_count=args.min_count, window=args.window, threads=args.threads,
                               bucket=args.bucket)
    except ValueError as exc:
        print(f"thresher train-embeddings: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_model(str(out / "embeddings.bin"))
    table = nearest_neighbour_synonyms(model, args.max_words, args.neighbours, args.min_similarity)
    write_synonyms(table, out / "synonyms.json")
    print(json.dumps({"words": len(model.get_words()), "synonym_entries": len(table),
                      "embeddings": str(out / "embeddings.bin"), "synonyms": str(out / "synonyms.json")}))
    return 0
