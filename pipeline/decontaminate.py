"""``decontaminate``: drop or mask documents that share word n-grams with evaluation sets.

N-grams are word n-grams (13 by default, as in GPT-3 and Dolma) over the same lowercased words
minhash uses (``thresher.filters.minhash.words``), hashed to 64 bits (``ngram_hash64``).

Eval sets are JSON lines (one item per line, the text in ``field``; a list of fields is joined with
newlines), plain text (one item per non-empty line), or a ``datasets.save_to_disk`` directory
(every split, ``field`` columns). Items with fewer than ``ngram`` words contribute no n-gram: they
are counted (``EvalIndex.short_items``, logged when a worker loads the index) but cannot be matched.
An eval set's path may be a gs:// or s3:// URL: each worker machine copies it once
(``thresher.filters.storage.local_copy``).

Memory: each worker loads the eval sets once in ``setup()`` into a sorted uint64 array of n-gram
hashes plus a uint16 array naming the eval set: 10 bytes per distinct eval n-gram (about 10 MB per
million n-grams; the MMLU test set, ~1.4M words, is ~14 MB). The documents are scanned in batches
with one compiled pass and one ``np.isin``; only contaminated documents are re-tokenised in Python
to name the matched n-grams and to find their character spans for masking.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar, Literal

import apache_beam as beam
import numpy as np
from pydantic import Field, model_validator

from thresher.filters import storage
from thresher.filters.base import Document, Strict
from thresher.filters.jsonl import json_objects, open_text
from thresher.filters.minhash import SEPARATOR_CLASS, ngram_hash64, shingle_hash_batch
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext

_WORD = re.compile(f"[^{SEPARATOR_CLASS}]+")


class EvalSet(Strict):
    name: str
    #: a JSON-lines or text file, or a save_to_disk directory: a path or a gs:// / s3:// URL
    path: str
    format: Literal["jsonl", "text", "datasets"] | None = None  # None: from the path
    field: str | list[str] = "text"

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        if storage.isdir(self.path):
            return "datasets"
        if self.path.endswith((".jsonl", ".jsonl.gz", ".json")):
            return "jsonl"
        return "text"

    def items(self) -> list[str]:
        """The eval items' texts."""
        fields = [self.field] if isinstance(self.field, str) else list(self.field)
        fmt = self.resolved_format()
        local = storage.local_copy(self.path)  # a remote eval set: copied once per machine
        if fmt == "datasets":
            from datasets import DatasetDict, load_from_disk

            data = load_from_disk(str(local))
            splits = list(data.values()) if isinstance(data, DatasetDict) else [data]
            out = []
            for split in splits:
                missing = [f for f in fields if f not in split.column_names]
                if missing:
                    raise ValueError(f"eval set {self.name!r}: columns {missing} not in {split.column_names}")
                columns = [split[f] for f in fields]
                out.extend("\n".join(_as_text(v) for v in row) for row in zip(*columns))
            return out
        with open_text(local) as handle:
            if fmt == "text":
                return [line.strip() for line in handle if line.strip()]
            out = []
            for number, record in json_objects(handle, f"eval set {self.name!r}: {self.path}"):
                missing = [f for f in fields if f not in record]
                if missing:
                    raise ValueError(f"eval set {self.name!r}: {self.path} line {number} lacks {missing}")
                out.append("\n".join(_as_text(record[f]) for f in fields))
            return out


def _as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(_as_text(v) for v in value)
    return str(value)


class EvalIndex:
    """Sorted 64-bit n-gram hashes of all eval sets, with the set each came from."""

    def __init__(self, eval_sets: list[EvalSet], ngram: int):
        self.names = [e.name for e in eval_sets]
        hashes, owners = [], []
        self.short_items = 0
        for index, eval_set in enumerate(eval_sets):
            items = eval_set.items()
            for item_hashes, item in zip(shingle_hash_batch(items, ngram, "word", wide=True), items):
                if len(_WORD.findall(item)) < ngram:
                    self.short_items += 1
                    continue
                hashes.append(item_hashes)
                owners.append(np.full(len(item_hashes), index, dtype=np.uint16))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        all_owners = np.concatenate(owners) if owners else np.zeros(0, np.uint16)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes, self.owners = all_hashes[order], all_owners[order]
        self.ngram = ngram

    def __len__(self) -> int:
        return len(self.hashes)

    def sets_of(self, value: int) -> list[str]:
        lo = np.searchsorted(self.hashes, value, "left")
        hi = np.searchsorted(self.hashes, value, "right")
        return sorted({self.names[i] for i in self.owners[lo:hi]})

    def matches(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, the positions (word index of the first word) of its n-grams found in the index."""
        out = []
        for doc_hashes in shingle_hash_batch(texts, self.ngram, "word", wide=True):
            if len(doc_hashes) == 0 or len(self.hashes) == 0:
                out.append(np.zeros(0, np.int64))
                continue
            out.append(np.flatnonzero(np.isin(doc_hashes, self.hashes)))
        return out


class Decontaminate(CorpusStage):
    """Drop (``action: drop``) or mask (``action: mask``) eval-set overlap.

    A document is contaminated when at least ``min_matches`` of its word n-grams occur in an eval
    set. ``drop`` rejects it (reason ``eval_contamination``, value = matched n-gram count); ``mask``
    keeps it with every matched n-gram's character span replaced by ``mask_token``. Either way
    ``meta["decontamination"]`` records the eval sets and up to ``report_ngrams`` matched n-grams.
    """

    name: ClassVar[str] = "decontaminate"

    eval_sets: list[EvalSet] = Field(min_length=1)
    ngram: int = Field(default=13, ge=1)
    action: Literal["drop", "mask"] = "drop"
    min_matches: int = Field(default=1, ge=1)
    mask_token: str = "|||EVAL_OVERLAP|||"
    report_ngrams: int = Field(default=5, ge=0)
    batch_size: int = Field(default=256, ge=1)

    @model_validator(mode="after")
    def _unique_names(self):
        names = [e.name for e in self.eval_sets]
        if len(set(names)) != len(names):
            raise ValueError(f"eval set names must be unique, got {names}")
        return self

    def worker_paths(self) -> list[tuple[str, str]]:
        return [(f"eval_sets[{i}].path", e.path) for i, e in enumerate(self.eval_sets)]

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for i, eval_set in enumerate(self.eval_sets):
            if not storage.exists(eval_set.path):
                problems.append((f"eval_sets.{i}.path", f"{eval_set.path} does not exist"))
        return problems

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        p = f"{ctx.label}/"
        out = (docs
               | p + "Batch" >> beam.BatchElements(min_batch_size=min(16, self.batch_size), max_batch_size=self.batch_size)
               | p + "Scan" >> beam.ParDo(_Scan(self)).with_outputs("rejected", "stats", main="kept"))
        stats = out.stats | p + "Stats" >> beam.CombineGlobally(_merge_stats)
        return CorpusResult(kept=out.kept, rejected=out.rejected, stats=stats)

    # -- Beam-free core, used by the DoFn and directly by tests

    def build_index(self) -> EvalIndex:
        return EvalIndex(list(self.eval_sets), self.ngram)

    def decide(self, index: EvalIndex, docs: list[Document]) -> list[tuple[str, dict, dict | None]]:
        """Per document: ("keep" or "reject", the document or its rejection record, the match
        report or None when clean)."""
        results = []
        for doc, positions in zip(docs, index.matches([d["text"] for d in docs])):
            if len(positions) < self.min_matches:
                results.append(("keep", doc, None))
                continue
            spans, ngrams = self._spans_and_ngrams(doc["text"], positions)
            hashes = [ngram_hash64(g) for g in ngrams]
            sets = sorted({name for h in hashes for name in index.sets_of(h)})
            report = {"eval_sets": sets, "matched_ngrams": len(positions),
                      "ngrams": ngrams[:self.report_ngrams]}
            meta = {**(doc.get("meta") or {}), "decontamination": report}
            if self.action == "drop":
                results.append(("reject", {
                    "id": doc["id"], "stage": self.name, "reason": "eval_contamination",
                    "value": float(len(positions)), "scores": {}, "source": doc.get("source", ""),
                    "text": doc["text"], "meta": meta}, report))
            else:
                results.append(("keep", dict(doc, text=_mask(doc["text"], spans, self.mask_token), meta=meta), report))
        return results

    def _spans_and_ngrams(self, text: str, positions: np.ndarray) -> tuple[list[tuple[int, int]], list[str]]:
        found = list(_WORD.finditer(text))
        lowered = [m.group(0).lower() for m in found]
        spans, ngrams = [], []
        for pos in positions:
            first, last = int(pos), int(pos) + self.ngram - 1
            spans.append((found[first].start(), found[last].end()))
            ngrams.append(" ".join(lowered[first:last + 1]))
        return spans, ngrams


def _mask(text: str, spans: list[tuple[int, int]], token: str) -> str:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, cursor = [], 0
    for start, end in merged:
        pieces.append(text[cursor:start])
        pieces.append(token)
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _merge_stats(values) -> dict:
    out: dict = {"contaminated_docs": 0, "matched_ngrams": 0, "by_eval_set": {}}
    for value in values:
        out["contaminated_docs"] += value.get("contaminated_docs", 0)
        out["matched_ngrams"] += value.get("matched_ngrams", 0)
        for name, n in value.get("by_eval_set", {}).items():
            out["by_eval_set"][name] = out["by_eval_set"].get(name, 0) + n
    return out


class _Scan(beam.DoFn):
    def __init__(self, stage: Decontaminate):
        self.stage = stage

    def setup(self):
        self.index = self.stage.build_index()
        logging.getLogger(__name__).info(
            "decontaminate: %d eval n-grams (%.1f MB); %d eval items shorter than %d words not indexed",
            len(self.index), self.index.hashes.nbytes * 1.25 / 1e6, self.index.short_items, self.stage.ngram)

    def process(self, batch: list[Document]):
        for verdict, item, report in self.stage.decide(self.index, batch):
            if report is not None:
                yield beam.pvalue.TaggedOutput("stats", {
                    "contaminated_docs": 1, "matched_ngrams": report["matched_ngrams"],
                    "by_eval_set": {name: 1 for name in report["eval_sets"]}})
            if verdict == "keep":
                yield item
            else:
                yield beam.pvalue.TaggedOutput("rejected", item)
