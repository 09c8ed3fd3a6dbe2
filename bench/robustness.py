"""What the issue-15 read-path guards cost, measured in one process.

1. Reader throughput with the I/O guard (``open_input``: a failed read raises InputReadError so the
   runner retries the bundle) against the bare ``FileSystems.open`` it wraps, on a generated
   jsonl.gz of ``--docs`` documents; plain and guarded alternate, best of ``--repeats``.
2. The reader fuzz of tests/test_reader_fuzz.py at a larger size: ``--mutants`` damaged copies of
   every base file (jsonl plain/gz/zst/bz2/xz, text, text_lines, parquet, arrow file and stream,
   generated and real WARC), read by ReadDocuments: files, documents, quarantine records, crashes,
   seconds.

    python bench/robustness.py [--docs 200000] [--repeats 3] [--mutants 300]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from thresher.pipeline import io as tio
from thresher.pipeline.config import InputConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def reader_throughput(work: Path, docs: int, repeats: int) -> None:
    path = work / "docs.jsonl.gz"
    with gzip.open(path, "wt", compresslevel=1) as fh:
        for i in range(docs):
            fh.write(json.dumps({"id": f"d{i}", "text": f"document {i} " + "some words of text " * 20}) + "\n")
    guarded = tio.open_input
    openers = {"bare FileSystems.open": lambda p: FileSystems.open(p, compression_type=CompressionTypes.UNCOMPRESSED),
               "open_input (guarded)": guarded}
    fn = tio.ReadDocuments(InputConfig(paths=[str(path)]))
    fn.setup()
    best: dict[str, float] = {}
    try:
        for _ in range(repeats):
            for name, opener in openers.items():
                tio.open_input = opener
                start = time.perf_counter()
                count = sum(1 for _ in fn.process((str(path), path.name)))
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
    finally:
        tio.open_input = guarded
    print(f"| reader | documents | best of {repeats} (s) | docs/s |")
    print("| --- | --- | --- | --- |")
    for name, seconds in best.items():
        print(f"| {name} | {count:,} | {seconds:.3f} | {count / seconds:,.0f} |")


def fuzz(work: Path, mutants: int) -> None:
    from test_reader_fuzz import base_files, mutate

    counts = {"files": 0, "documents": 0, "quarantined": 0, "crashes": 0}
    start = time.perf_counter()
    for index, (fmt, name, data) in enumerate(base_files(work)):
        rng = random.Random(90_000 + index)
        fn = tio.ReadDocuments(InputConfig(paths=["unused"], format=fmt))
        fn.setup()
        for number in range(mutants):
            kind, mutated = mutate(data, rng)
            path = work / f"{number:04d}-{kind}-{name}"
            path.write_bytes(mutated)
            counts["files"] += 1
            try:
                for item in fn.process((str(path), path.name)):
                    item = item.value if isinstance(item, TaggedOutput) else item
                    counts["quarantined" if isinstance(item, tio.QuarantineRecord) else "documents"] += 1
            except Exception as exc:  # noqa: BLE001 - counted and shown
                counts["crashes"] += 1
                print(f"CRASH {name} mutant {number} ({kind}): {type(exc).__name__}: {exc}")
            path.unlink()
    seconds = time.perf_counter() - start
    print(f"\nfuzz: {counts['files']:,} damaged files, {counts['documents']:,} documents, "
          f"{counts['quarantined']:,} quarantine records, {counts['crashes']} crashes, {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mutants", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reader_throughput(Path(tmp), args.docs, args.repeats)
        fuzz(Path(tmp), args.mutants)


if __name__ == "__main__":
    main()
