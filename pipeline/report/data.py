"""Reading OUT_DIR for the report, with bounded work: ``stats.json`` holds the exact counts;
documents are a seeded reservoir sample of at most ``sample`` records per side drawn from the
first ``max_scan`` lines (files visited in a seeded order); shards contribute at most
``max_shard_rows`` rows (only the ``length`` and ``source`` columns are read)."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import math
import os
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from thresher.filters.base import Strict

SNIPPET_CHARS = 300
#: meta fields that are not scores (they get their own sections, or are identifiers)
NON_SCORE_PREFIXES = ("pii_counts.", "pii_spans", "poisoning.", "minhash_cluster")
#: sub-directories of OUT that hold documents or shards, never a training run's metrics
DATA_DIRS = {"kept", "rejected", "quarantine", "shards", "input", "_progress", "_stage_stats"}


class ReportError(ValueError):
    """OUT_DIR cannot be reported on: missing, or its stats.json is missing or unreadable."""


def _open_binary(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith((".zst", ".zstd")):
        import io

        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb")))
    return path.open("rb")


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def record_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd")))


def iter_lines(files: Sequence[Path], limit: int, seed: int) -> Iterator[bytes]:
    """Up to ``limit`` non-empty lines (bytes, undecoded), files visited in a seeded order (a
    truncated or corrupt file ends its own contribution, not the report)."""
    order = list(files)
    random.Random(seed).shuffle(order)
    seen = 0
    for path in order:
        carry = b""
        try:
            with _open_binary(path) as fh:
                while True:
                    # big reads split here: far cheaper than readline() through gzip per line
                    chunk = fh.read(1 << 22)
                    if not chunk:
                        break
                    lines = (carry + chunk).split(b"\n")
                    carry = lines.pop()
                    for line in lines:
                        if seen >= limit:
                            return
                        if line.strip():
                            seen += 1
                            yield line
        except _read_errors():
            pass  # a truncated file still gives the lines before the damage
        if carry.strip() and seen < limit:
            seen += 1
            yield carry


def numeric_fields(mapping: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping, keys joined with "."; booleans are not scores."""
    out: dict[str, float] = {}
    for key, value in (mapping or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            if math.isfinite(value):
                out[name] = float(value)
        elif isinstance(value, Mapping):
            out.update(numeric_fields(value, f"{name}."))
    return out


@functools.lru_cache(maxsize=4096)
def _is_score(name: str) -> bool:
    return not any(name == p.rstrip(".") or name.startswith(p) for p in NON_SCORE_PREFIXES)


def snippet(text: str, chars: int = SNIPPET_CHARS) -> str:
    return text if len(text) <= chars else text[:chars] + "…"


@dataclass
class PoisonExample:
    id: str
    side: str                       # "kept" or "rejected"
    score: float
    flagged: list[str]
    windows: list[tuple[str, str, str, str]]  # (before, span, after, label)


def poison_windows(text: str, spans: Sequence[Sequence[Any]], limit: int = 3, context: int = 60
                   ) -> list[tuple[str, str, str, str]]:
    out = []
    for span in list(spans)[:limit]:
        try:
            start, end, label = int(span[0]), int(span[1]), str(span[2]) if len(span) > 2 else ""
        except (TypeError, ValueError, IndexError):
            continue
        start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
        before = ("…" if start > context else "") + text[max(0, start - context):start]
        after = text[end:end + context] + ("…" if end + context < len(text) else "")
        out.append((before, text[start:end], after, label))
    return out


@dataclass
class RecordSample:
    """What one side (kept or rejected) contributes: a reservoir of per-document numbers plus
    examples collected while scanning."""

    scanned: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)   # from the reservoir
    sampled: int = 0                                               # documents in the reservoir
    counted: int = 0                                               # documents behind the counters
    pii_docs: Counter = field(default_factory=Counter)             # documents with >= 1 of a type
    pii_mentions: Counter = field(default_factory=Counter)
    examples: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    poison: list[PoisonExample] = field(default_factory=list)
    quarantine_errors: Counter = field(default_factory=Counter)


class RecordSampler(Strict):
    """Reads one of kept/ rejected/ quarantine/ with bounded work."""

    sample: int = Field(20_000, ge=1)
    max_scan: int = Field(1_000_000, ge=1)
    seed: int = 0
    examples_per_reason: int = Field(3, ge=0)
    poison_examples: int = Field(4, ge=0)

    def read(self, directory: Path, side: str, expected: int | None = None,
             wanted: Sequence[tuple[str, str]] = ()) -> RecordSample:
        """Scan ``directory``; ``expected`` (the count stats.json gives) sets the sampling rate so the
        sample spreads over everything scanned; ``wanted`` (stage, reason) pairs are rare enough that
        a random sample may miss them, so lines mentioning them are parsed for examples too."""
        sample = RecordSample()
        population = min(expected, self.max_scan) if expected else self.max_scan
        rate = 1.0 if side == "quarantine" else min(1.0, self.sample / max(population, 1))
        chooser = random.Random(f"{self.seed}:{side}:choose")
        replacer = random.Random(f"{self.seed}:{side}:replace")
        probes = [f'"reason"{sep}{json.dumps(reason, ensure_ascii=False)}'.encode()
                  for _, reason in wanted for sep in (":", ": ")]
        probe = re.compile(b"|".join(re.escape(p) for p in probes + [b'"poisoning":{', b'"poisoning": {']))
        reservoir: list[dict[str, float]] = []
        chosen_count = 0
        for line in iter_lines(record_files(directory), self.max_scan, self.seed):
            sample.scanned += 1
            chosen = rate >= 1.0 or chooser.random() < rate
            if not chosen and not probe.search(line):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            self._examples(record, side, sample)
            if not chosen:
                continue
            self._count(record, side, sample)
            chosen_count += 1
            numbers = self._numbers(record, side)
            if len(reservoir) < self.sample:  # a reservoir caps the sample should `expected` be wrong
                reservoir.append(numbers)
            else:
                j = replacer.randrange(chosen_count)
                if j < self.sample:
                    reservoir[j] = numbers
        sample.sampled = len(reservoir)
        sample.counted = chosen_count
        for numbers in reservoir:
            for name, value in numbers.items():
                sample.scores.setdefault(name, []).append(value)
        return sample

    @staticmethod
    def _numbers(record: dict, side: str) -> dict[str, float]:
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        source = meta if side == "kept" else (record.get("scores") if isinstance(record.get("scores"), dict) else {})
        return {k: v for k, v in numeric_fields(source).items() if _is_score(k)}

    @staticmethod
    def _count(record: dict, side: str, sample: RecordSample) -> None:
        """Counters over the random sample only (so they estimate the whole)."""
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        pii = meta.get("pii_counts")
        if side == "kept" and isinstance(pii, dict):
            for entity, count in pii.items():
                if isinstance(count, (int, float)) and count > 0:
                    sample.pii_docs[str(entity)] += 1
                    sample.pii_mentions[str(entity)] += int(count)
        if side == "quarantine":
            sample.quarantine_errors[str(record.get("error", "unknown error"))] += 1

    def _examples(self, record: dict, side: str, sample: RecordSample) -> None:
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        text = record.get("text") if isinstance(record.get("text"), str) else ""
        if side == "rejected":
            key = (str(record.get("stage", "?")), str(record.get("reason", "?")))
            bucket = sample.examples.setdefault(key, [])
            if len(bucket) < self.examples_per_reason:
                bucket.append({"id": str(record.get("id", "")), "value": record.get("value"),
                               "duplicate_of": record.get("duplicate_of"), "text": snippet(text)})
        if side == "quarantine":
            key = ("quarantine", str(record.get("error", "unknown error")))
            bucket = sample.examples.setdefault(key, [])
            if len(bucket) < self.examples_per_reason:
                bucket.append({"id": f"{record.get('file', '?')} line {record.get('line', '?')}",
                               "value": record.get("raw_bytes"), "duplicate_of": None,
                               "text": snippet(str(record.get("raw_preview", "")))})
        poisoning = meta.get("poisoning")
        if isinstance(poisoning, dict) and poisoning.get("flagged") and len(sample.poison) < self.poison_examples:
            sample.poison.append(PoisonExample(
                id=str(record.get("id", "")), side=side, score=float(poisoning.get("score") or 0.0),
                flagged=[str(x) for x in poisoning.get("flagged") or []],
                windows=poison_windows(text, poisoning.get("spans") or [])))


@dataclass
class ShardLengths:
    files: int
    rows_read: int
    lengths_by_source: dict[str, np.ndarray]
    manifest: dict[str, Any] | None


def read_shard_lengths(shards_dir: Path, max_rows: int) -> ShardLengths | None:
    """``length`` and ``source`` of up to ``max_rows`` shard rows (shards in name order)."""
    files = sorted(shards_dir.glob("*.arrow")) if shards_dir.is_dir() else []
    manifest = None
    manifest_path = shards_dir / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except ValueError:
            manifest = None
    if not files:
        return None
    import pyarrow as pa

    lengths: list[np.ndarray] = []
    sources: list[np.ndarray] = []
    rows = 0
    for path in files:
        if rows >= max_rows:
            break
        try:
            with pa.memory_map(str(path)) as source, pa.ipc.open_stream(source) as reader:
                if "length" not in reader.schema.names:
                    continue
                for batch in reader:
                    take = min(batch.num_rows, max_rows - rows)
                    lengths.append(batch.column("length").to_numpy(zero_copy_only=False)[:take].astype(np.int64))
                    if "source" in batch.schema.names:
                        sources.append(np.asarray(batch.column("source").to_pylist()[:take], dtype=object))
                    else:
                        sources.append(np.full(take, "", dtype=object))
                    rows += take
                    if rows >= max_rows:
                        break
        except (OSError, pa.ArrowInvalid):
            continue
    if not lengths:
        return None
    all_lengths = np.concatenate(lengths)
    all_sources = np.concatenate(sources)
    by_source = {str(s) or "(no source)": all_lengths[all_sources == s] for s in sorted(set(all_sources.tolist()))}
    return ShardLengths(files=len(files), rows_read=rows, lengths_by_source=by_source, manifest=manifest)


@dataclass
class TrainingRun:
    path: str
    rows: list[dict[str, float]]


def find_metrics(out_dir: Path, max_depth: int = 4) -> list[TrainingRun]:
    """Every ``metrics.csv`` under OUT_DIR (outside the document and shard folders)."""
    runs = []
    for root, dirs, files in os.walk(out_dir):
        depth = len(Path(root).relative_to(out_dir).parts)
        dirs[:] = sorted(d for d in dirs if not (depth == 0 and d in DATA_DIRS)) if depth < max_depth else []
        if "metrics.csv" in files:
            path = Path(root) / "metrics.csv"
            rows = read_metrics(path)
            if rows:
                runs.append(TrainingRun(str(path.relative_to(out_dir)), rows))
    return sorted(runs, key=lambda r: r.path)


def read_metrics(path: Path) -> list[dict[str, float]]:
    rows = []
    try:
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                parsed = {}
                for key, value in row.items():
                    try:
                        number = float(value)
                    except (TypeError, ValueError):
                        continue
                    if math.isfinite(number):
                        parsed[str(key)] = number
                if "step" in parsed:
                    rows.append(parsed)
    except (OSError, csv.Error):
        return []
    return rows


def load_stats(out_dir: Path) -> dict[str, Any]:
    if not out_dir.is_dir():
        raise ReportError(f"{out_dir} is not a directory")
    path = out_dir / "stats.json"
    if not path.is_file():
        raise ReportError(f"{path} does not exist: is {out_dir} the output directory of `thresher run`?")
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(stats, dict) or not isinstance(stats.get("stages", []), list):
        raise ReportError(f"{path} is not a thresher stats.json (expected an object with a 'stages' list)")
    return stats


@dataclass
class RunData:
    out_dir: Path
    stats: dict[str, Any]
    kept: RecordSample
    rejected: RecordSample
    quarantine: RecordSample
    shards: ShardLengths | None
    training: list[TrainingRun]
    review_files: int

    @property
    def stages(self) -> list[dict[str, Any]]:
        return [s for s in self.stats.get("stages", []) if isinstance(s, dict)]
