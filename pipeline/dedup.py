"""Corpus-level deduplication in Beam: ``exact_dedup``, ``minhash_dedup`` and the distributed
connected-components transform they rely on.

Nothing here gathers the corpus (or all edges) on one worker. Every grouping is keyed: by text hash,
by LSH band key, by document id, or by cluster root. Memory per worker is bounded by the largest
group a key holds, and every group is handled in a linear pass: an LSH bucket of 100,000 copies of
one boilerplate page yields 99,999 edges (each member linked to the bucket's minimum id, a star), not
5 * 10^9 pairs.

Documents themselves are never shuffled: the first step parks each bundle's documents in a
temporary file under ``OUT/_spill/<stage label>/`` and only small records (id, hash or signature,
policy key, file token) go through the groupings. The removal decisions are then routed to the file
that holds each removed document, and one pass per file emits the kept documents and the rejection
records. On the local runners every shuffled byte passes through one process (1,000,000 documents
of 2 KB would need about 20 GB there); on Dataflow it is the same file pattern Beam's own sinks use.

Determinism: cluster roots are component minima, the kept document of a cluster is the minimum of
a total order (policy key, then id), so the output does not depend on worker count or bundle order.
Document ids must be unique within the corpus (a repeated id is an error).
"""

from __future__ import annotations

import math
import pickle
import posixpath
import unicodedata
import uuid
from typing import Any, ClassVar, Iterable, Literal

import apache_beam as beam
import numpy as np
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue
from pydantic import Field, model_validator

from thresher.filters.base import Document
from thresher.pipeline.io import SPILL_BYTES, SPILL_DIR
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


def duplicate_record(doc: Document, stage: str, kept_id: str, value: float | None,
                     reason: str = "duplicate") -> dict[str, Any]:
    return {"id": doc["id"], "stage": stage, "reason": reason, "duplicate_of": kept_id, "value": value,
            "scores": {}, "source": doc.get("source", ""), "text": doc["text"], "meta": doc.get("meta") or {}}


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


def _lost_data(what: str) -> RuntimeError:
    """Every id in these joins was emitted by the same step as its signature; a missing one means
    the runner lost data between steps. Failing beats silently keeping near-duplicates."""
    return RuntimeError(f"minhash_dedup: {what}: data was lost between pipeline steps (a runner fault, seen "
                        f"with the local DirectRunner's multi_processing mode on 1,000,000 documents). "
                        f"Re-run; on the local runner use direct_running_mode: in_memory.")


def _check_conservation(stats: dict, written: int, stage_name: str) -> dict:
    """Every removal the clusters call for must come out as a rejection record. A mismatch means
    data was lost between the groupings (it has been seen with the local DirectRunner's
    multi_processing mode on 1,000,000 documents); fail rather than keep the duplicates silently."""
    if stats["duplicates_removed"] != written:
        raise RuntimeError(
            f"{stage_name}: the clusters call for {stats['duplicates_removed']} removals but {written} rejection "
            f"records were written; data was lost between pipeline steps (a runner fault), so this output would "
            f"keep duplicates. Re-run; on the local runner try direct_running_mode: in_memory.")
    return stats


def _check_same_counts(stats: dict, what: str, before: int, after: int) -> dict:
    if before != after:
        raise _lost_data(f"{what}: {before} != {after}")
    return stats


def _conserved_stats(stats, rejected, stage_name: str, prefix: str):
    written = rejected | f"{prefix}CountRemovals" >> beam.combiners.Count.Globally()
    return stats | f"{prefix}CheckRemovals" >> beam.Map(_check_conservation, beam.pvalue.AsSingleton(written), stage_name)


# --------------------------------------------------------------------------------------------
# connected components: alternating large-star / small-star (Kiveris et al., SoCC 2014)

def _large_star(element, changed_tag):
    node, neighbours = element
    neighbours = set(neighbours)  # edges may repeat; a set bounds fan-out by the true degree
    m = node
    larger = 0
    for v in neighbours:
        if v < m:
            m = v
        if v > node:
            larger += 1
    for v in neighbours:
        if v > node:
            yield (v, m)
    if m < node and larger:
        yield beam.pvalue.TaggedOutput(changed_tag, larger)


def _small_star(element, changed_tag):
    node, smaller = element
    smaller = set(smaller)
    m = min(smaller)
    changed = 0
    for v in smaller:
        if v != m:
            changed += 1
            yield (v, m)
    yield (node, m)
    if changed:
        yield beam.pvalue.TaggedOutput(changed_tag, changed)


def _route(edge, changed_before, work_tag):
    """After convergence, rounds pass edges straight through (no shuffle of real data)."""
    if changed_before:
        yield beam.pvalue.TaggedOutput(work_tag, edge)
    else:
        yield edge


def _check_converged(edge, changed, max_rounds):
    if changed:
        raise RuntimeError(
            f"connected components did not converge in {max_rounds} large-star/small-star rounds "
            f"({changed} edges still changed in the last round); raise max_rounds")
    yield edge


class ConnectedComponents(beam.PTransform):
    """Edges ``(u, v)`` (any orientation, duplicates allowed) -> ``(node, root)`` for every node of
    every edge, root being the minimum node of its component (roots map to themselves).

    Alternates large-star and small-star operations, each one GroupByKey over nodes, so no worker
    sees more than one node's neighbourhood. Kiveris et al. prove O(log^2 n) rounds; in practice
    (and in the tests: 2,000-node paths in random id order, stars, random graphs) it converges in
    well under 20. The Beam graph is static, so ``max_rounds`` rounds are unrolled; each round
    counts the edges it changed, and once a round changes nothing the following rounds route the
    edges around their GroupByKeys (a pass-through Map), so spare rounds cost almost nothing.
    If the last round still changed edges the pipeline fails with an error naming ``max_rounds``.
    """

    def __init__(self, max_rounds: int = 20, label: str = "CC"):
        super().__init__()
        if max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        self.max_rounds = max_rounds
        self.prefix = label

    def expand(self, edges):
        p = self.prefix
        edges = (edges
                 | f"{p}Orient" >> beam.Map(lambda e: (e[1], e[0]) if e[1] < e[0] else (e[0], e[1]))
                 | f"{p}DropLoops" >> beam.Filter(lambda e: e[0] != e[1])
                 | f"{p}Distinct0" >> beam.Distinct())
        changed = None
        for r in range(self.max_rounds):
            if changed is None:
                work = edges
                passed = None
            else:
                routed = edges | f"{p}Route{r}" >> beam.FlatMap(
                    _route, beam.pvalue.AsSingleton(changed), "work").with_outputs("work", main="passed")
                work, passed = routed.work, routed.passed
            large = (work
                     | f"{p}LargeAdj{r}" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])])
                     | f"{p}LargeGroup{r}" >> beam.GroupByKey()
                     | f"{p}LargeStar{r}" >> beam.FlatMap(_large_star, "changed").with_outputs("changed", main="edges"))
            small = (large.edges
                     | f"{p}SmallKey{r}" >> beam.Map(lambda e: (e[0], e[1]) if e[0] > e[1] else (e[1], e[0]))
                     | f"{p}SmallGroup{r}" >> beam.GroupByKey()
                     | f"{p}SmallStar{r}" >> beam.FlatMap(_small_star, "changed").with_outputs("changed", main="edges"))
            # small-star emits (leaf, root) with leaf > root; keep (smaller, larger) orientation
            new_edges = small.edges | f"{p}SmallOrient{r}" >> beam.Map(lambda e: (e[1], e[0]) if e[1] < e[0] else e)
            changed = ((large.changed, small.changed) | f"{p}Changes{r}" >> beam.Flatten()
                       | f"{p}Changed{r}" >> beam.CombineGlobally(sum))
            edges = new_edges if passed is None else (
                (passed, new_edges) | f"{p}Merge{r}" >> beam.Flatten())
        checked = edges | f"{p}CheckConverged" >> beam.FlatMap(
            _check_converged, beam.pvalue.AsSingleton(changed), self.max_rounds)
        # converged: every edge is (root, leaf) with root the component minimum
        return (checked
                | f"{p}Labels" >> beam.FlatMap(lambda e: [(e[1], e[0]), (e[0], e[0])])
                | f"{p}DistinctLabels" >> beam.Distinct())



# --------------------------------------------------------------------------------------------
# parking documents in temporary files while their fate is decided

def _park_path(directory: str, token: str) -> str:
    return posixpath.join(directory, f"{token}.pkl")


class _DocumentParking:
    """Buffers a bundle's documents and writes them to ``<directory>/<token>.pkl`` (one pickled
    list per file, at most about ``SPILL_BYTES`` of text). ``add`` returns the token of the file
    the document will land in, so the caller can emit small records that point at it."""

    def __init__(self, directory: str):
        self.directory = directory
        self.docs: list[Document] = []
        self.bytes = 0
        self.token = uuid.uuid4().hex

    def add(self, doc: Document) -> str:
        self.docs.append(doc)
        self.bytes += len(doc["text"])
        return self.token

    def full(self) -> bool:
        return self.bytes >= SPILL_BYTES

    def flush(self) -> str | None:
        """Writes the buffered documents; returns the written file's token (None if empty)."""
        if not self.docs:
            return None
        token = self.token
        with FileSystems.create(_park_path(self.directory, token),
                                compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            fh.write(pickle.dumps(self.docs, protocol=pickle.HIGHEST_PROTOCOL))
        self.docs, self.bytes, self.token = [], 0, uuid.uuid4().hex
        return token


class _ParkingDoFn(beam.DoFn):
    """A DoFn that parks the documents it sees and emits the written files' tokens on "files"."""

    def __init__(self, directory: str):
        self.directory = directory

    def start_bundle(self):
        self.parking = _DocumentParking(self.directory)

    def flush_if_full(self):
        if self.parking.full():
            yield beam.pvalue.TaggedOutput("files", self.parking.flush())

    def finish_bundle(self):
        token = self.parking.flush()
        if token:
            yield beam.pvalue.TaggedOutput(
                "files", WindowedValue(token, GlobalWindow().max_timestamp(), [GlobalWindow()]))


class _ApplyRemovals(beam.DoFn):
    """(token, {"removal": [(doc_id, kept_id, payload)], "file": [None]}) -> the file's kept
    documents, and a rejection record (``duplicate_of`` = kept_id) for each removed one.
    ``value_of(docs, payloads)`` gives the records' ``value`` (default 1.0: exact duplicates).
    The parked files are left for the run to delete (a retried bundle must find them again)."""

    def __init__(self, directory: str, stage_name: str, value_of=None):
        self.directory = directory
        self.stage_name = stage_name
        self.value_of = value_of

    def process(self, element):
        token, group = element
        removals = {doc_id: (kept_id, payload) for doc_id, kept_id, payload in group["removal"]}
        if not group["file"]:
            raise RuntimeError(f"{self.stage_name}: removals routed to parked file {token!r}, which no bundle wrote")
        with FileSystems.open(_park_path(self.directory, token),
                              compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            docs = pickle.loads(fh.read())
        removed = []
        for doc in docs:
            decision = removals.pop(str(doc["id"]), None)
            if decision is None:
                yield doc
            else:
                removed.append((doc, decision))
        if removals:
            raise RuntimeError(f"{self.stage_name}: {len(removals)} removed ids are not in parked file "
                               f"{token!r}, e.g. {sorted(removals)[0]!r}")
        if not removed:
            return
        values = (self.value_of([d for d, _ in removed], [payload for _, (_, payload) in removed])
                  if self.value_of else [1.0] * len(removed))
        for (doc, (kept_id, _)), value in zip(removed, values):
            yield beam.pvalue.TaggedOutput("rejected", duplicate_record(doc, self.stage_name, kept_id, value))


class _ApplyRemovalsTransform(beam.PTransform):
    """(removal_by_file, files) -> kept documents and rejection records: every parked file is read
    once, with or without removals."""

    def __init__(self, directory: str, stage_name: str, value_of=None):
        super().__init__()
        self.directory, self.stage_name, self.value_of = directory, stage_name, value_of

    def expand(self, pcolls):
        removal_by_file, files = pcolls
        return ({"removal": removal_by_file, "file": files | "FileKeys" >> beam.Map(lambda token: (token, None))}
                | "JoinFiles" >> beam.CoGroupByKey()
                | "Apply" >> beam.ParDo(_ApplyRemovals(self.directory, self.stage_name, self.value_of))
                .with_outputs("rejected", main="kept"))


# --------------------------------------------------------------------------------------------
# exact dedup

class _KeepFirst(beam.CombineFn):
    """(best policy key, group size) of a text-hash group."""

    def create_accumulator(self):
        return (None, 0)

    def add_input(self, acc, key):
        best, n = acc
        return (key if best is None or key < best else best, n + 1)

    def merge_accumulators(self, accs):
        best, total = None, 0
        for key, n in accs:
            total += n
            if key is not None and (best is None or key < best):
                best = key
        return (best, total)

    def extract_output(self, acc):
        return acc


def _line_hashes(text: str) -> set[bytes]:
    return {xxhash.xxh3_64_digest(norm.encode("utf-8"))
            for norm in (normalise_for_exact(line) for line in text.splitlines()) if norm}


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
        return _apply_exact(self, docs, posixpath.join(ctx.output_dir, SPILL_DIR, ctx.label), ctx.label)


def _apply_exact(stage: ExactDedup, docs, directory: str, label: str) -> CorpusResult:
    rejected = []
    stats = []
    p = f"{label}/"
    if stage.document:
        parked = docs | p + "ParkAndHash" >> beam.ParDo(
            _ParkForExact(directory, stage.keep, stage.score_field)).with_outputs("files", main="keys")
        best = (parked.keys
                | p + "PolicyKeys" >> beam.Map(lambda kv: (kv[0], kv[1][0]))
                | p + "BestPerText" >> beam.CombinePerKey(_KeepFirst()))
        removal_by_file = ({"member": parked.keys, "best": best} | p + "JoinBest" >> beam.CoGroupByKey()
                           | p + "Decide" >> beam.FlatMap(_exact_removals))
        split = (removal_by_file, parked.files) | p + "Remove" >> _ApplyRemovalsTransform(directory, stage.name)
        docs = split.kept
        rejected.append(split.rejected)
        doc_stats = (best
                     | p + "GroupSizes" >> beam.Map(lambda kv: kv[1][1])
                     | p + "OnlyDupGroups" >> beam.Filter(lambda n: n > 1)
                     | p + "ClusterStats" >> beam.CombineGlobally(_ClusterStatsFn()))
        stats.append(_conserved_stats(doc_stats, split.rejected, stage.name, p))
    if stage.line_dedup_min_count:
        line_docs = docs | p + "LineHashes" >> beam.Map(lambda d: (str(d["id"]), d, _line_hashes(d["text"])))
        frequent = (line_docs
                    | p + "LineOnes" >> beam.FlatMap(lambda t: [(h, 1) for h in t[2]])
                    | p + "LineCounts" >> beam.CombinePerKey(sum)
                    | p + "Frequent" >> beam.Filter(lambda kv, n=stage.line_dedup_min_count: kv[1] >= n))
        hits = ({"count": frequent,
                 "doc": line_docs | p + "LineOwners" >> beam.FlatMap(lambda t: [(h, t[0]) for h in t[2]])}
                | p + "JoinLines" >> beam.CoGroupByKey()
                | p + "FrequentInDoc" >> beam.FlatMap(
                    lambda kv: [(doc_id, kv[0]) for doc_id in kv[1]["doc"]] if kv[1]["count"] else []))
        split = ({"doc": line_docs | p + "KeyById" >> beam.Map(lambda t: (t[0], t[1])), "lines": hits}
                 | p + "JoinDocLines" >> beam.CoGroupByKey()
                 | p + "StripLines" >> beam.FlatMap(_strip_lines, stage.name, stage.drop_empty)
                 .with_outputs("rejected", "stats", main="kept"))
        docs = split.kept
        rejected.append(split.rejected)
        stats.append(split.stats | p + "LineStats" >> beam.CombineGlobally(_sum_dicts))
    all_rejected = (rejected | p + "FlattenRejected" >> beam.Flatten()) if rejected else None
    all_stats = (stats | p + "FlattenStats" >> beam.Flatten()) if stats else None
    return CorpusResult(kept=docs, rejected=all_rejected, stats=all_stats)


def _sum_dicts(values: Iterable[dict]) -> dict:
    out: dict[str, int] = {}
    for value in values:
        for key, n in value.items():
            out[key] = out.get(key, 0) + n
    return out


class _ParkForExact(_ParkingDoFn):
    """Parks documents; emits (text hash, (policy key, file token)) and the written files' tokens."""

    def __init__(self, directory: str, keep: str, score_field: str | None):
        super().__init__(directory)
        self.keep, self.score_field = keep, score_field

    def process(self, doc: Document):
        token = self.parking.add(doc)
        yield (text_hash(doc["text"]), (policy_key(doc, self.keep, self.score_field), token))
        yield from self.flush_if_full()


def _exact_removals(element):
    """(hash, {"member": [(policy key, token)], "best": [(policy key, size)]}) ->
    (token, (removed id, kept id, None)) for every member but the best."""
    _, group = element
    best, _ = group["best"][0]
    kept_id = best[-1]
    for key, token in group["member"]:
        if key[-1] != kept_id:
            yield (token, (key[-1], kept_id, None))


def _strip_lines(element, stage_name: str, drop_empty: bool):
    doc_id, group = element
    docs = list(group["doc"])
    if len(docs) != 1:
        raise ValueError(f"document id {doc_id!r} occurs {len(docs)} times; ids must be unique")
    doc = docs[0]
    frequent = set(group["lines"])
    if not frequent:
        yield doc
        return
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
        record = duplicate_record(doc, stage_name, None, float(removed), reason="empty_after_line_dedup")
        record["meta"] = out["meta"]
        yield beam.pvalue.TaggedOutput("rejected", record)
    else:
        yield out


# --------------------------------------------------------------------------------------------
# MinHash LSH dedup

class _Signatures(_ParkingDoFn):
    """Batches of documents -> signatures, band keys, (id, (policy key, file token)) and shingle
    sets; the documents themselves are parked (see ``_DocumentParking``)."""

    def __init__(self, stage: "MinHashDedup", directory: str):
        super().__init__(directory)
        self.stage = stage

    def setup(self):
        self.hasher = self.stage.hasher()
        self.no_shingles = Metrics.counter(self.stage.name, "docs_without_shingles")

    def process(self, batch: list[Document]):
        from thresher.filters.minhash import shingle_hash_batch

        s = self.stage
        texts = [d["text"] for d in batch]
        sigs, counts = self.hasher.signatures_with_counts(texts)
        exact_sets = (shingle_hash_batch(texts, s.ngram, s.shingle) if s.verify == "jaccard" else None)
        for i, doc in enumerate(batch):
            token = self.parking.add(doc)
            if counts[i] == 0:  # nothing to compare: kept, never in a cluster
                self.no_shingles.inc()
                continue
            doc_id = str(doc["id"])
            sig = sigs[i]
            yield (doc_id, sig.tobytes())
            for key in self.hasher.band_keys(sig):
                yield beam.pvalue.TaggedOutput("bands", (key, doc_id))
            yield beam.pvalue.TaggedOutput("policy", (doc_id, (policy_key(doc, s.keep, s.score_field), token)))
            if exact_sets is not None:
                yield beam.pvalue.TaggedOutput(
                    "sets", (doc_id, np.unique(exact_sets[i].astype(np.uint32)).tobytes()))
        yield from self.flush_if_full()


class _SignatureValue:
    """``value`` of a MinHash rejection: the signature-estimated Jaccard between the removed
    document (its signature recomputed, in one batch per parked file) and the kept one."""

    def __init__(self, stage: "MinHashDedup"):
        self.stage = stage
        self.hasher = None

    def __call__(self, docs: list[Document], kept_sigs: list[bytes]) -> list[float]:
        if self.hasher is None:
            self.hasher = self.stage.hasher()
        similarity = self.stage.signature_similarity()
        sigs, _ = self.hasher.signatures_with_counts([d["text"] for d in docs])
        return [round(similarity(sig.tobytes(), kept), 6) for sig, kept in zip(sigs, kept_sigs)]


def _bucket_star(element):
    """Link each member of an LSH bucket to the bucket's minimum id: linear in bucket size."""
    _, ids = element
    root = min(ids)
    for doc_id in ids:
        if doc_id != root:
            yield (root, doc_id)


def _attach_left(element):
    """(u, {"edge": [v...], "val": [x]}) -> (v, (u, x)) for each edge."""
    u, group = element
    values = group["val"]
    if not values:
        if group["edge"]:
            raise _lost_data(f"candidate pair endpoint {u!r} has no signature")
        return
    value = values[0]
    for v in group["edge"]:
        yield (v, (u, value))


def _verify_pairs(element, similarity, threshold: float):
    v, group = element
    values = group["val"]
    if not values:
        if group["edge"]:
            raise _lost_data(f"candidate pair endpoint {v!r} has no signature")
        return
    value_v = values[0]
    for u, value_u in group["edge"]:
        if similarity(value_u, value_v) >= threshold:
            yield (u, v)


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


def _cluster_members(element):
    """(id, {"root": [root], "policy": [(policy key, token)]}) -> (root, (policy key, token))."""
    doc_id, group = element
    policies = group["policy"]
    if len(policies) > 1:
        raise ValueError(f"document id {doc_id!r} occurs {len(policies)} times; ids must be unique")
    for root in group["root"]:
        yield (root, policies[0])


def _pick_kept(element):
    """(root, {"member": [(policy key, token)], "best": [policy key]}) -> (kept id, (id, token))
    for each removed member."""
    _, group = element
    kept_id = group["best"][0][-1]
    for key, token in group["member"]:
        if key[-1] != kept_id:
            yield (kept_id, (key[-1], token))


def _route_to_file(element):
    """(kept id, {"removed": [(id, token)], "sig": [kept signature]}) -> (token, (id, kept id, kept signature))."""
    kept_id, group = element
    if not group["removed"]:
        return
    if not group["sig"]:
        raise _lost_data(f"kept document {kept_id!r} has no signature")
    kept_sig = group["sig"][0]
    for doc_id, token in group["removed"]:
        yield (token, (doc_id, kept_id, kept_sig))


class MinHashDedup(CorpusStage):
    """Near-duplicate removal with MinHash LSH (see ``thresher.filters.minhash`` for shingles,
    hashing and signature equality with datasketch).

    Graph: signatures (batched, compiled) -> band keys -> GroupByKey per band bucket -> star edges to
    the bucket's minimum id -> distinct -> optional verification (estimated Jaccard from signatures
    or exact Jaccard of the shingle-hash sets, joined by id) -> connected components
    (``ConnectedComponents``) -> keep policy per cluster -> each removal routed to the parked file
    holding the document -> one pass per file: kept documents, and rejection records with
    ``duplicate_of`` and ``value``: the signature-estimated Jaccard between the removed and the kept
    document.

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

    def hasher(self):
        from thresher.filters.minhash import MinHasher

        return MinHasher(self.num_perm, self.ngram, self.shingle, self.seed, self.scheme, *self.banding())

    def signature_similarity(self) -> "_SignatureSimilarity":
        return _SignatureSimilarity(4 if self.scheme == "affine32" else 8)

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        directory = posixpath.join(ctx.output_dir, SPILL_DIR, ctx.label)
        return docs | ctx.label >> _MinHashDedupTransform(self, directory)


class _MinHashDedupTransform(beam.PTransform):
    def __init__(self, stage: MinHashDedup, directory: str):
        super().__init__()
        self.stage = stage
        self.directory = directory

    def expand(self, docs):
        s = self.stage
        out = (docs
               | "Batch" >> beam.BatchElements(min_batch_size=min(32, s.batch_size), max_batch_size=s.batch_size)
               | "Signatures" >> beam.ParDo(_Signatures(s, self.directory))
               .with_outputs("files", "bands", "policy", "sets", main="sigs"))
        sigs = out.sigs
        buckets = out.bands | "GroupBands" >> beam.GroupByKey()
        candidates = (buckets
                      | "BucketStars" >> beam.FlatMap(_bucket_star)
                      | "DistinctCandidates" >> beam.Distinct())
        # two counts of the same thing taken on either side of a grouping: a runner that loses
        # grouped data makes them differ (see _check_same_counts)
        band_entries = (out.bands | "CountBandEntries" >> beam.combiners.Count.Globally(),
                        buckets | "BucketSizes" >> beam.Map(lambda kv: len(kv[1]))
                        | "SumBucketSizes" >> beam.CombineGlobally(sum))
        if s.verify == "none":
            edges = candidates
        else:
            values, similarity = ((sigs, s.signature_similarity()) if s.verify == "signature"
                                  else (out.sets, _set_similarity))
            left = ({"edge": candidates, "val": values} | "JoinLeft" >> beam.CoGroupByKey()
                    | "AttachLeft" >> beam.FlatMap(_attach_left))
            edges = ({"edge": left, "val": values} | "JoinRight" >> beam.CoGroupByKey()
                     | "Verify" >> beam.FlatMap(_verify_pairs, similarity, s.threshold))
        labels = edges | "Components" >> ConnectedComponents(s.max_rounds, label="CC")
        members = ({"root": labels, "policy": out.policy} | "JoinPolicy" >> beam.CoGroupByKey()
                   | "Members" >> beam.FlatMap(_cluster_members))
        best = (members
                | "PolicyKeys" >> beam.Map(lambda kv: (kv[0], kv[1][0]))
                | "BestPerCluster" >> beam.CombinePerKey(min))
        removals = ({"member": members, "best": best} | "JoinClusters" >> beam.CoGroupByKey()
                    | "PickKept" >> beam.FlatMap(_pick_kept))
        removal_by_file = ({"removed": removals, "sig": sigs} | "JoinKeptSig" >> beam.CoGroupByKey()
                           | "RouteToFile" >> beam.FlatMap(_route_to_file))
        decided = ((removal_by_file, out.files)
                   | "Remove" >> _ApplyRemovalsTransform(self.directory, s.name, _SignatureValue(s)))
        stats = (members
                 | "ClusterSizes" >> beam.combiners.Count.PerKey()
                 | "SizesOnly" >> beam.Map(lambda kv: kv[1])
                 | "ClusterStats" >> beam.CombineGlobally(_ClusterStatsFn()))
        edge_nodes = (edges | "EdgeNodes" >> beam.FlatMap(lambda e: e) | "DistinctEdgeNodes" >> beam.Distinct()
                      | "CountEdgeNodes" >> beam.combiners.Count.Globally())
        labelled_nodes = labels | "CountLabelled" >> beam.combiners.Count.Globally()
        stats = (stats
                 | "CheckBands" >> beam.Map(_check_same_counts, "band entries emitted / grouped",
                                            beam.pvalue.AsSingleton(band_entries[0]), beam.pvalue.AsSingleton(band_entries[1]))
                 | "CheckComponents" >> beam.Map(_check_same_counts, "nodes in verified pairs / labelled by components",
                                                 beam.pvalue.AsSingleton(edge_nodes), beam.pvalue.AsSingleton(labelled_nodes)))
        stats = _conserved_stats(stats, decided.rejected, s.name, "")
        return CorpusResult(kept=decided.kept, rejected=decided.rejected, stats=stats)
