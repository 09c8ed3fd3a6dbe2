"""``thresher manifest``: write an integrity manifest (id or URL -> sha256 of the text) from a run's
``kept/`` output; ``thresher poisoning train-reference``: train the n-gram reference model the
``poisoning`` stage uses."""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from thresher.filters.jsonl import json_objects, open_text
from thresher.filters.storage import atomic_write
from thresher.filters.poison_detectors import manifest_key, text_sha256


def _records(paths: list[str]) -> Iterator[dict]:
    for path in paths:
        with open_text(path) as fh:
            for number, record in json_objects(fh, path):
                if not isinstance(record.get("text"), str) or "id" not in record:
                    raise ValueError(f"{path} line {number}: expected an object with 'id' and 'text'")
                yield record


def _input_files(source: str) -> list[str]:
    if os.path.isdir(source):
        kept = os.path.join(source, "kept")
        directory = kept if os.path.isdir(kept) else source
        files = sorted(glob.glob(os.path.join(directory, "*.jsonl.gz")) + glob.glob(os.path.join(directory, "*.jsonl")))
    else:
        files = sorted(glob.glob(source))
    if not files:
        raise ValueError(f"no .jsonl or .jsonl.gz files found for {source!r}")
    return files


def build_manifest(records: Iterator[dict], key: str) -> tuple[list[tuple[str, str]], int]:
    """Sorted, distinct (key, sha256) entries and the number of records without a key."""
    entries: set[tuple[str, str]] = set()
    missing = 0
    for record in records:
        k = manifest_key(record, key)
        if k is None:
            missing += 1
            continue
        entries.add((k, text_sha256(record["text"])))
    return sorted(entries), missing


def write_manifest(entries: list[tuple[str, str]], path: str) -> None:
    data = "".join(json.dumps({"key": k, "sha256": h}, ensure_ascii=False) + "\n" for k, h in entries)
    raw = data.encode("utf-8")
    atomic_write(path, gzip.compress(raw, mtime=0) if path.endswith(".gz") else raw)


def manifest_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="thresher manifest",
        description="Write an integrity manifest (one JSON line per document: key, sha256 of the text) "
                    "from a run's output directory (its kept/ files) or a glob of JSON-lines files.")
    parser.add_argument("source", help="a run's OUT directory, a directory of .jsonl(.gz), or a glob")
    parser.add_argument("-o", "--output", help="manifest path (.jsonl or .jsonl.gz); default SOURCE/manifest.jsonl")
    parser.add_argument("--key", choices=["id", "url"], default="id",
                        help="what identifies a document: its id, or meta.url (default: id)")
    args = parser.parse_args(argv)
    try:
        files = _input_files(args.source)
        entries, missing = build_manifest(_records(files), args.key)
    except (ValueError, OSError) as err:
        print(f"thresher manifest: {err}", file=sys.stderr)
        return 2
    output = args.output or os.path.join(args.source if os.path.isdir(args.source) else ".", "manifest.jsonl")
    write_manifest(entries, output)
    keys = {k for k, _ in entries}
    print(f"wrote {len(entries)} entries ({len(keys)} keys) from {len(files)} files to {output}"
          + (f"; {missing} documents had no {args.key} and were left out" if missing else ""))
    return 0


def poisoning_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher poisoning", description="poisoning-detection helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-reference", help="train the n-gram reference model on clean text")
    train.add_argument("inputs", nargs="+", help="JSON-lines files (.jsonl/.jsonl.gz; globs allowed) or "
                                                 "plain .txt files (one document per blank-line-separated block)")
    train.add_argument("-o", "--output", required=True, help="model file to write (.npz)")
    train.add_argument("--text-field", default="text")
    train.add_argument("--max-trigrams", type=int, default=5_000_000, help="memory bound: distinct trigrams kept")
    train.add_argument("--discount", type=float, default=0.75)
    args = parser.parse_args(argv)
    from thresher.filters.ngram_lm import NgramLM

    try:
        files = sorted({f for pattern in args.inputs for f in (glob.glob(pattern) or [pattern])})
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise ValueError(f"input files not found: {missing}")
        model = NgramLM.train(_texts(files, args.text_field), discount=args.discount, max_trigrams=args.max_trigrams)
    except (ValueError, OSError) as err:
        print(f"thresher poisoning train-reference: {err}", file=sys.stderr)
        return 2
    model.save(args.output)
    info = model.info
    print(f"trained on {info['docs']} documents, {info['tokens']} words: {info['trigrams']} trigrams "
          f"({info['pruned_trigrams']} pruned), vocabulary {info['vocabulary']} -> {args.output}")
    return 0


def _texts(files: list[str], field: str) -> Iterator[str]:
    for path in files:
        name = path[:-3] if path.endswith(".gz") else path
        if name.endswith((".jsonl", ".json")):
            with open_text(path) as fh:
                for number, record in json_objects(fh, path):
                    if not isinstance(record.get(field), str):
                        raise ValueError(f"{path} line {number}: no text field {field!r}")
                    yield record[field]
        else:
            text = Path(path).read_text(encoding="utf-8")
            yield from (block for block in text.split("\n\n") if block.strip())
