"""Corpus-level deduplication in Beam: ``exact_dedup`` (whole documents and CCNet-style repeated
lines) and ``minhash_dedup`` (MinHash LSH, verification, connected components).

Nothing here gathers the corpus (or all edges) on one worker, and the documents themselves are never
shuffled: the first step parks each bundle's documents in temporary files
(``thresher.pipeline.parking``) and only small records go through the groupings (text hash or
signature, policy key, and where the document is parked as (file token, row)). Every grouping moves
its records in batches (``thresher.pipeline.shuffle``), and every group is handled in a linear pass:
an LSH bucket of 100,000 copies of one boilerplate page yields 99,999 edges (each member linked to the
bucket's minimum id, a star), not 5 * 10^9 pairs. The removal decisions are routed to the parked file
that holds each removed document (by row, so a repeated id can never remove the wrong document), and
one pass per file emits the kept documents and the rejection records.

Determinism: cluster roots are component minima, the kept document of a cluster is the minimum of
a total order (policy key, then id), so the output does not depend on worker count, bundle order or
the number of shuffle partitions. ``minhash_dedup`` identifies documents by id in its graph: a
repeated id fails the stage, naming the id and where each copy was read (``input.make_ids_unique``
makes ids unique instead).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any, ClassVar, Iterable, Literal

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam.metrics import Metrics
from pydantic import Field, model_validator

from thresher.filters.base import Decision, Document, rejection_record
from thresher.pipeline.components import ConnectedComponents
from thresher.pipeline.parking import (
    ApplyToParked,
    ParkAndPack,
    ParkingDoFn,
    origin_of,
    repeated_id_error,
    spill_directory,
)
from thresher.pipeline.shuffle import ArrayPacker, GroupArrays, GroupInBatches, Packer, flush_packers
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext

KeepPolicy = Literal["smallest_id", "longest", "meta_score"]


# --------------------------------------------------------------------------------------------
# shared helpers

def normalise_for_exact(text: str) -> str:
    """What exact dedup compares: NFC, lowercased, every whitespace run collapsed to one space,
    stripped at both ends."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def text_hash(text: str) -> bytes:
    """128-bit xxh3 of the normalised text (collisions are negligible at 10^12 documents)."""
    return xxhash.xxh3_128_digest(normalise_for_exact(text).encode("utf-8"))


def policy_key(doc: Document, keep: str, score_field: str | None) -> tuple:
    """Smaller is better; the id always breaks ties, so the choice is a total order."""
    doc_id = str(doc["id"])
    if keep == "smallest_id":
        return (doc_id,)
    if keep == "longest":
        return (-len(doc["text"]), doc_id)
    value = (doc.get("meta") or {}).get(score_field)
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = math.nan
    # documents without a usable score rank after every scored one
    return (1, 0.0, doc_id) if math.isnan(score) else (0, -score, doc_id)


def size_bucket(size: int) -> str:
    """Cluster-size histogram buckets: "2", "3-4", "5-8", "9-16", ..."""
    if size <= 2:
        return str(size)
    upper = 1 << (size - 1).bit_length()
    return f"{upper // 2 + 1}-{upper}"


def _cluster_stats(sizes: Iterable[int]) -> dict[str, Any]:
    hist: dict[str, int] = {}
    clusters = removed = 0
    for size in sizes:
        clusters += 1
        removed += size - 1
        hist[size_bucket(size)] = hist.get(size_bucket(size), 0) + 1
    return {"clusters": clusters, "duplicates_removed": removed, "cluster_size_histogram": hist}


class _ClusterStatsFn(beam.CombineFn):
    """Combines cluster sizes into one stats dict (bounded: a histogram, two counters)."""

    def create_accumulator(self):
        return {"clusters": 0, "duplicates_removed": 0, "cluster_size_histogram": {}}

    def add_input(self, acc, size):
        return self.merge_accumulators([acc, _cluster_stats([size])])

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for acc in accs:
            out["clusters"] += acc["clusters"]
            out["duplicates_removed"] += acc["duplicates_removed"]
            for key, value in acc["cluster_size_histogram"].items():
                out["cluster_size_histogram"][key] = out["cluster_size_histogram"].get(key, 0) + value
        return out

    def extract_output(self, acc):
        return acc


def _removal_outputs(stage_name: str):
    """The ``apply`` of ``ApplyToParked`` for dedup: payloads are (expected id, kept id, value)."""

    def apply(docs: list[Document], by_row: dict[int, list]) -> Iterable[Any]:
        for row, doc in enumerate(docs):
            payloads = by_row.get(row)
            if payloads is None:
                yield doc
                continue
            expected, kept_id, value = payloads[0]
            if str(doc["id"]) != expected:
                raise RuntimeError(f"{stage_name}: row {row} of a parked file holds {doc['id']!r}, "
                                   f"not the removed document {expected!r}")
            record = rejection_record(doc, Decision.reject("duplicate", value), stage_name, duplicate_of=kept_id)
            yield beam.pvalue.TaggedOutput("rejected", record)

    return apply


def _cluster_stats_of(sizes) -> beam.PCollection:
    return sizes | "ClusterStats" >> beam.CombineGlobally(_ClusterStatsFn())


# --------------------------------------------------------------------------------------------
# exact dedup

class _ParkForExact(ParkAndPack):
    """Parks documents; packs (text hash, (policy key, token, row)) for the grouping by text."""

    def __init__(self, directory: str, label: str, partitions: int, keep: str, score_field: str | None):
        super().__init__(directory, label, partitions)
        self.keep, self.score_field = keep, score_field

    def records(self, doc: Document, token: str, row: int):
        yield text_hash(doc["text"]), (policy_key(doc, self.keep, self.score_field), token, row)


def _exact_removals(_, values):
    """A text-hash group -> a removal (token, (row, (id, kept id, 1.0))) for every member but the
    best, and the group's size."""
    members = values[0]
    if len(members) < 2:
        return None
    best = min(members, key=lambda m: m[0])
    kept_id = best[0][-1]
    out: list[Any] = [beam.pvalue.TaggedOutput("sizes", len(members))]
    for key, token, row in members:
        if (token, row) != (best[1], best[2]):
            out.append((token, (row, (key[-1], kept_id, 1.0))))
    return out


class _ParkForLines(ParkAndPack):
    """Parks documents; packs (line hash, (token, row)) for every distinct normalised line."""

    def records(self, doc: Document, token: str, row: int):
        for line_hash in _line_hashes(doc["text"]):
            yield line_hash, (token, row)


class _FrequentLines:
    def __init__(self, min_count: int):
        self.min_count = min_count

    def __call__(self, line_hash, values):
        owners = values[0]
        if len(owners) < self.min_count:
            return None
        return [(token, (row, line_hash)) for token, row in owners]


def _strip_lines(stage_name: str, drop_empty: bool):
    """The ``apply`` of line dedup: payloads are the frequent line hashes of each document."""

    def apply(docs: list[Document], by_row: dict[int, list]) -> Iterable[Any]:
        for row, doc in enumerate(docs):
            frequent = by_row.get(row)
            if not frequent:
                yield doc
                continue
            frequent = set(frequent)
            kept_lines, removed = [], 0
            for line in doc["text"].splitlines(keepends=True):
                norm = normalise_for_exact(line)
                if norm and xxhash.xxh3_64_digest(norm.encode("utf-8")) in frequent:
                    removed += 1
                else:
                    kept_lines.append(line)
            text = "".join(kept_lines)
            out = dict(doc, text=text, meta={**(doc.get("meta") or {}), "line_dedup_removed": removed})
            yield beam.pvalue.TaggedOutput("stats", {"lines_removed": removed, "docs_with_lines_removed": 1})
            if drop_empty and not text.strip():
                decision = Decision.reject("empty_after_line_dedup", float(removed),
                                           meta={"line_dedup_removed": removed})
                yield beam.pvalue.TaggedOutput("rejected",
                                               rejection_record(doc, decision, stage_name, duplicate_of=None))
            else:
                yield out

    return apply


def _line_hashes(text: str) -> set[bytes]:
    return {xxhash.xxh3_64_digest(norm.encode("utf-8"))
            for norm in (normalise_for_exact(line) for line in text.splitlines()) if norm}


def _sum_dicts(values: Iterable[dict]) -> dict:
    out: dict[str, int] = {}
    for value in values:
        for key, n in value.items():
            out[key] = out.get(key, 0) + n
    return out


class ExactDedup(CorpusStage):
    """Document-level exact dedup on ``normalise_for_exact`` text (NFC, lowercase, whitespace runs
    collapsed), plus optional CCNet-style line dedup.

    Line dedup (``line_dedup_min_count: N``): a line (compared after the same normalisation; blank
    lines never count) that occurs in at least N documents of the corpus is removed from every
    document. Counts are taken over the documents that survive document-level dedup (otherwise the
    surviving copy of an exact duplicate would lose all its lines). The number of lines removed goes
    to ``meta["line_dedup_removed"]``; a document left without text is rejected with reason
    ``empty_after_line_dedup`` unless ``drop_empty`` is false.
    """

    name: ClassVar[str] = "exact_dedup"

    document: bool = True
    keep: KeepPolicy = "smallest_id"
    score_field: str | None = None
    line_dedup_min_count: int | None = Field(default=None, ge=2)
    drop_empty: bool = True

    @model_validator(mode="after")
    def _score_field_given(self):
        if self.keep == "meta_score" and not self.score_field:
            raise ValueError("keep: meta_score needs score_field")
        return self

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        return docs | ctx.label >> _exact_dedup(self, ctx)


@beam.ptransform_fn
def _exact_dedup(docs, s: ExactDedup, ctx: StageContext):
    directory, partitions = spill_directory(ctx.output_dir, ctx.label), ctx.partitions
    rejected, stats = [], []
    if s.document:
        parked = docs | "ParkAndHash" >> beam.ParDo(
            _ParkForExact(directory, f"{ctx.label}/texts", partitions, s.keep, s.score_field)
        ).with_outputs(ParkingDoFn.FILES, main="batches")
        decided = parked.batches | "ByText" >> GroupInBatches(
            f"{ctx.label}/by_text", partitions, _exact_removals, with_outputs=("sizes",), main="removals",
            packed=(0,))
        split = ((decided.removals, parked[ParkingDoFn.FILES])
                 | "Remove" >> ApplyToParked(f"{ctx.label}/remove", directory, s.name, partitions,
                                             _removal_outputs(s.name)))
        docs = split.kept
        rejected.append(split.rejected)
        stats.append(_cluster_stats_of(decided.sizes))
    if s.line_dedup_min_count:
        lines_dir = directory + "-lines"
        parked = docs | "ParkAndHashLines" >> beam.ParDo(
            _ParkForLines(lines_dir, f"{ctx.label}/lines", partitions)
        ).with_outputs(ParkingDoFn.FILES, main="batches")
        frequent = parked.batches | "ByLine" >> GroupInBatches(
            f"{ctx.label}/by_line", partitions, _FrequentLines(s.line_dedup_min_count), packed=(0,))
        split = ((frequent, parked[ParkingDoFn.FILES])
                 | "StripLines" >> ApplyToParked(f"{ctx.label}/strip", lines_dir, s.name, partitions,
                                                 _strip_lines(s.name, s.drop_empty), outputs=("rejected", "stats")))
        docs = split.kept
        rejected.append(split.rejected)
        stats.append(split.stats | "LineStats" >> beam.CombineGlobally(_sum_dicts))
    all_rejected = (rejected | "FlattenRejected" >> beam.Flatten()) if rejected else None
    all_stats = (stats | "FlattenStats" >> beam.Flatten()) if stats else None
    return CorpusResult(kept=docs, rejected=all_rejected, stats=all_stats)


# --------------------------------------------------------------------------------------------
# MinHash LSH dedup

class _Signatures(ParkingDoFn):
    """Batches of documents -> parked documents, and packed records for the groupings: band key ->
    id (for the LSH buckets) and id -> node record (signature, verification value, policy key,
    token, row, origin). Documents without a shingle are parked and always kept."""

    def __init__(self, stage: "MinHashDedup", directory: str, label: str, partitions: int):
        super().__init__(directory)
        self.stage, self.label, self.partitions = stage, label, partitions
        # chosen here, at graph construction: datasketch's parameter search imports scipy, which
        # would cost every worker process a second at start-up
        self.banding = stage.banding()

    def setup(self):
        self.hasher = self.stage.hasher(self.banding)
        self.no_shingles = Metrics.counter(self.stage.name, "docs_without_shingles")

    def start_bundle(self):
        super().start_bundle()
        self.bands = ArrayPacker(f"{self.label}/bands", self.partitions)
        self.nodes = Packer(f"{self.label}/nodes", self.partitions)

    def process(self, batch: list[Document]):
        from thresher.filters.minhash import shingle_hash_batch

        s = self.stage
        texts = [d["text"] for d in batch]
        sigs, counts = self.hasher.signatures_with_counts(texts)
        exact_sets = shingle_hash_batch(texts, s.ngram, s.shingle) if s.verify == "jaccard" else None
        compared = np.flatnonzero(counts > 0)  # a document without shingles is kept, never in a cluster
        self.no_shingles.inc(len(batch) - len(compared))
        band_keys = self.hasher.band_hashes(sigs[compared])
        ids = [str(batch[i]["id"]) for i in compared]
        self.bands.add(band_keys.ravel(), [doc_id for doc_id in ids for _ in range(band_keys.shape[1])])
        for i, doc in enumerate(batch):
            token, row = self.parking.add(doc)
            if counts[i] == 0:
                continue
            doc_id = str(doc["id"])
            sig = sigs[i]
            verify_value = np.unique(exact_sets[i].astype(np.uint32)).tobytes() if exact_sets is not None else None
            self.nodes.add(doc_id, (sig.tobytes(), verify_value, policy_key(doc, s.keep, s.score_field), token, row,
                                    origin_of(doc)))
        yield from self.flush_if_full()
        if self.bands.full() or self.nodes.full():
            yield from flush_packers([("bands", self.bands), ("nodes", self.nodes)])

    def finish_bundle(self):
        yield from super().finish_bundle()
        yield from flush_packers([("bands", self.bands), ("nodes", self.nodes)], final=True)


def _bucket_star(keys: np.ndarray, ids: list[str]) -> list[tuple[str, str]]:
    """A partition's band keys and ids -> for each LSH bucket with two or more documents, each
    member linked to the bucket's minimum id (a star: linear in bucket size). Buckets of one,
    nearly all of them, are skipped in the sort without a Python operation."""
    if len(keys) < 2:
        return []
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    lengths = np.diff(np.r_[starts, len(ordered)])
    edges = []
    for start, length in zip(starts[lengths > 1].tolist(), lengths[lengths > 1].tolist()):
        members = {ids[j] for j in order[start:start + length].tolist()}
        if len(members) > 1:
            root = min(members)
            edges.extend((root, doc_id) for doc_id in members if doc_id != root)
    return edges


def _lost_data(stage_name: str, what: str) -> RuntimeError:
    return RuntimeError(f"{stage_name}: {what}: data was lost between pipeline steps (a runner fault)")


class _AttachLeft:
    """u, [node records, candidates v] -> (v, (u, u's verification value)) once per distinct v.
    Every document's node record passes through this grouping once, and a key with several node
    records is always handed here (``unique=(0,)``): the stage's repeated-id check."""

    def __init__(self, stage_name: str, use_sets: bool):
        self.stage_name, self.use_sets = stage_name, use_sets

    def __call__(self, u, values):
        nodes, candidates = values
        if len(nodes) > 1:
            raise repeated_id_error(self.stage_name, u, [n[5] for n in nodes])
        if not candidates:
            return None
        if not nodes:
            raise _lost_data(self.stage_name, f"candidate pair endpoint {u!r} has no signature")
        value = nodes[0][1] if self.use_sets else nodes[0][0]
        return [(v, (u, value)) for v in set(candidates)]


class _VerifyPairs:
    def __init__(self, stage_name: str, use_sets: bool, similarity, threshold: float):
        self.stage_name, self.use_sets, self.similarity, self.threshold = stage_name, use_sets, similarity, threshold

    def __call__(self, v, values):
        nodes, lefts = values
        if not lefts:
            return None
        if not nodes:
            raise _lost_data(self.stage_name, f"candidate pair endpoint {v!r} has no signature")
        value_v = nodes[0][1] if self.use_sets else nodes[0][0]
        return [(u, v) for u, value_u in lefts if self.similarity(value_u, value_v) >= self.threshold]


class _ClusterMembers:
    """node, [node records, roots] -> (root, (policy key, token, row, signature))."""

    def __init__(self, stage_name: str):
        self.stage_name = stage_name

    def __call__(self, node, values):
        nodes, roots = values
        if not roots:
            return None
        if not nodes:
            raise _lost_data(self.stage_name, f"clustered document {node!r} has no node record")
        roots = set(roots)
        if len(roots) != 1:
            raise RuntimeError(f"{self.stage_name}: document {node!r} got several cluster roots {sorted(roots)[:3]}")
        sig, _, policy, token, row, _ = nodes[0]
        return [(roots.pop(), (policy, token, row, sig))]


class _PickKept:
    """root, [members] -> the cluster's size, and (token, (row, (id, kept id, estimated Jaccard
    with the kept document))) for every member but the best by policy key."""

    def __init__(self, similarity):
        self.similarity = similarity

    def __call__(self, _, values):
        members = values[0]
        best = min(members, key=lambda m: m[0])
        kept_id, kept_sig = best[0][-1], best[3]
        out: list[Any] = [beam.pvalue.TaggedOutput("sizes", len(members))]
        for policy, token, row, sig in members:
            if (token, row) != (best[1], best[2]):
                out.append((token, (row, (policy[-1], kept_id, round(self.similarity(sig, kept_sig), 6)))))
        return out


class _SignatureSimilarity:
    def __init__(self, itemsize: int):
        self.dtype = np.uint32 if itemsize == 4 else np.uint64

    def __call__(self, a: bytes, b: bytes) -> float:
        x, y = np.frombuffer(a, dtype=self.dtype), np.frombuffer(b, dtype=self.dtype)
        return float(np.count_nonzero(x == y)) / len(x)


def _set_similarity(a: bytes, b: bytes) -> float:
    x, y = np.frombuffer(a, dtype=np.uint32), np.frombuffer(b, dtype=np.uint32)
    inter = np.intersect1d(x, y, assume_unique=True).size
    union = len(x) + len(y) - inter
    return inter / union if union else 1.0


class MinHashDedup(CorpusStage):
    """Near-duplicate removal with MinHash LSH (see ``thresher.filters.minhash`` for shingles,
    hashing and signature equality with datasketch).

    Graph: signatures (batched, compiled), documents parked -> LSH buckets (grouping by band key)
    -> star edges to the bucket's minimum id -> optional verification (estimated Jaccard from
    signatures, or exact Jaccard of the shingle-hash sets; two groupings by id, which also check
    that ids are unique) -> connected components (``thresher.pipeline.components``) -> members
    grouped by cluster root: the kept document is the best by the keep policy -> each removal
    routed to the parked file holding the document -> one pass per file: kept documents, and
    rejection records with ``duplicate_of`` and ``value``: the signature-estimated Jaccard between
    the removed and the kept document.

    Caveat of star linking with verification: a bucket's member is only compared with the bucket's
    minimum id. Two true duplicates whose shared bucket is headed by an unrelated false positive
    still meet in any other band they share (a pair at Jaccard 0.8 shares ~2.6 of 9 bands at the
    default b=9, r=13), so the recall loss is small; ``bench/dedup_quality.py`` measures it.
    """

    name: ClassVar[str] = "minhash_dedup"

    num_perm: int = Field(default=128, ge=2, le=1024)
    ngram: int = Field(default=5, ge=1)
    shingle: Literal["word", "char"] = "word"
    threshold: float = Field(default=0.8, gt=0.0, lt=1.0)
    bands: int | None = Field(default=None, ge=1)
    rows: int | None = Field(default=None, ge=1)
    false_positive_weight: float = Field(default=0.5, ge=0.0)
    false_negative_weight: float = Field(default=0.5, ge=0.0)
    seed: int = 1
    scheme: Literal["affine32", "legacy"] = "affine32"
    verify: Literal["none", "signature", "jaccard"] = "signature"
    keep: KeepPolicy = "smallest_id"
    score_field: str | None = None
    batch_size: int = Field(default=512, ge=1)
    max_rounds: int = Field(default=20, ge=1, le=200)

    @model_validator(mode="after")
    def _check(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then they follow from threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        if self.keep == "meta_score" and not self.score_field:
            raise ValueError("keep: meta_score needs score_field")
        return self

    def banding(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        from thresher.filters.minhash import optimal_bands

        return optimal_bands(self.threshold, self.num_perm, self.false_positive_weight, self.false_negative_weight)

    def hasher(self, banding: tuple[int, int] | None = None):
        from thresher.filters.minhash import MinHasher

        return MinHasher(self.num_perm, self.ngram, self.shingle, self.seed, self.scheme, *(banding or self.banding()))

    def signature_similarity(self) -> _SignatureSimilarity:
        return _SignatureSimilarity(4 if self.scheme == "affine32" else 8)

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        return docs | ctx.label >> _minhash_dedup(self, ctx)


@beam.ptransform_fn
def _minhash_dedup(docs, s: MinHashDedup, ctx: StageContext):
    label, partitions = ctx.label, ctx.partitions
    directory = spill_directory(ctx.output_dir, label)
    out = (docs
           | "Batch" >> beam.BatchElements(min_batch_size=min(32, s.batch_size), max_batch_size=s.batch_size)
           | "Signatures" >> beam.ParDo(_Signatures(s, directory, label, partitions))
           .with_outputs(ParkingDoFn.FILES, "bands", "nodes"))
    nodes = out.nodes  # packed node records, tag 0 of the three groupings by id below
    candidates = out.bands | "Buckets" >> GroupArrays(f"{label}/buckets", _bucket_star)
    use_sets = s.verify == "jaccard"
    if s.verify == "none":
        left = ((nodes, candidates)
                | "CheckIds" >> GroupInBatches(f"{label}/check_ids", partitions, _AttachLeft(s.name, use_sets),
                                                 packed=(0,), unique=(0,), drive=(1,)))
        edges = left | "Unverified" >> beam.Map(lambda e: (e[1][0], e[0]))
    else:
        similarity = _set_similarity if use_sets else s.signature_similarity()
        left = ((nodes, candidates)
                | "JoinLeft" >> GroupInBatches(f"{label}/join_left", partitions, _AttachLeft(s.name, use_sets),
                                                 packed=(0,), unique=(0,), drive=(1,)))
        edges = ((nodes, left)
                 | "Verify" >> GroupInBatches(f"{label}/verify", partitions,
                                              _VerifyPairs(s.name, use_sets, similarity, s.threshold),
                                              packed=(0,), unique=(0,), drive=(1,)))
    labels = edges | "Components" >> ConnectedComponents(s.max_rounds, label=f"{label}/cc",
                                                         partitions=partitions, distinct=False)
    members = ((nodes, labels)
               | "Members" >> GroupInBatches(f"{label}/members", partitions, _ClusterMembers(s.name),
                                               packed=(0,), unique=(0,), drive=(1,)))
    decided = (members | "Clusters" >> GroupInBatches(
        f"{label}/clusters", partitions, _PickKept(s.signature_similarity()),
        with_outputs=("sizes",), main="removals"))
    split = ((decided.removals, out[ParkingDoFn.FILES])
             | "Remove" >> ApplyToParked(f"{label}/remove", directory, s.name, partitions, _removal_outputs(s.name)))
    return CorpusResult(kept=split.kept, rejected=split.rejected, stats=_cluster_stats_of(decided.sizes))
