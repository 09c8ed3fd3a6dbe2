"""``poisoning``: corpus-level data-poisoning detection (see docs/poisoning.md).

Graph (every grouping keyed; nothing gathers the corpus on one worker, and the documents
themselves are never shuffled: as in dedup, they are parked in temporary files as they are first
read, ``thresher.pipeline.parking``, and only small records go through the groupings):

  docs -> parked; per document its address (id -> parked file, row, origin), packed for the join
       by id (``thresher.pipeline.shuffle``)
  docs -> batches -> pass one: every document's distinct word n-gram hashes, and one key for its
       site, into a count-min sketch (CombineGlobally over fixed-size numpy tables; bounded
       whatever the corpus size)
  docs -> batches -> pass two (sketch as side input):
       - ``inserted_spans``: each document's spans (maximal runs of repeated n-grams, usually none)
         -> CombinePerKey by span: documents, distinct contexts, pages per site (bounded sets)
         -> the spans tested are counted (CombineGlobally, a number) -> joined with the span's
         (document id, character range) occurrences -> evidence per document for flagged spans.
         New shuffles: one record per span occurrence for the statistics (lifted into per-bundle
         accumulators) and one small (id, start, end) record per occurrence for the join; a
         document with no repeated run of n-grams sends nothing.
       - with a reference model: candidate n-grams per document (sketched document frequency high
         enough, expected frequency low enough) -> exact per-n-gram stats (CombinePerKey:
         documents, distinct spread keys, continuations) -> joined back with the occurrences ->
         evidence per document for flagged trigger n-grams and (n-gram, continuation) payload
         pairs; ONION perplexity evidence is computed in the same pass, per document
  (manifest key, id, sha256) per document <- manifest lines: integrity evidence (changed / missing)
  addresses + all evidence, joined by id (GroupInBatches; every address passes, so a repeated id
       fails here with ``parking.repeated_id_error``) -> each document's evidence routed to its
       parked (file, row) -> one pass per parked file (``ApplyToParked``): the transformer second
       pass on the file's flagged documents, then the verdict: meta.poisoning,
       meta.poisoning_score, and the action (annotate / drop / quarantine); quarantine parks its
       review records per review shard, and only (shard, parked file) pairs are grouped to write
       OUT/poisoning_review/.

Memory per key: a span's or n-gram's statistics are capped sets; the occurrence lists joined per
key hold at most ``max_doc_fraction`` of the documents (more frequent n-grams end spans and are no
candidates).

Determinism: n-gram and word hashes are xxh3 (not Python's salted hash), accumulators are sets and
sums (capped sets keep their smallest hashes), reports are sorted, review files are sharded by a
hash of the id and sorted inside: the output does not depend on worker count, bundle order or
the number of shuffle partitions. Document ids must be unique.
"""

from __future__ import annotations

import json
import math
import struct
import posixpath
from pathlib import Path
from typing import ClassVar, Literal

import apache_beam as beam
import numpy as np
from pydantic import Field, model_validator

from thresher.filters import storage
from thresher.filters.storage import atomic_write
from thresher.filters.base import Decision, rejection_record
from thresher.filters.poison_detectors import (
    DETECTORS,
    CandidateScanner,
    CorpusSketch,
    CountMinSketch,
    DocumentTokens,
    IntegrityParams,
    NgramStats,
    PayloadParams,
    PerplexityParams,
    SiteRule,
    SpanParams,
    SpanScanner,
    SpanStats,
    SpreadBy,
    TriggerParams,
    batch_frequencies,
    combine_evidence,
    content_bounds,
    distinct_ngrams,
    document_page,
    document_site,
    integrity_evidence,
    manifest_key,
    parse_manifest_line,
    perplexity_evidence_batch,
    site_key,
    span_candidate,
    span_testable,
    spread_key,
    stable_hash,
    text_sha256,
)
from thresher.pipeline.io import encode_record, shard_of
from thresher.pipeline.parking import (
    ApplyToParked,
    DocumentParking,
    ParkAndPack,
    ParkingDoFn,
    origin_of,
    read_parked,
    repeated_id_error,
    spill_directory,
)
from thresher.pipeline.shuffle import GroupInBatches
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext

REVIEW_DIR = "poisoning_review"


class Poisoning(CorpusStage):
    """Flag documents that look poisoned; see the module docstring and docs/poisoning.md."""

    name: ClassVar[str] = "poisoning"

    #: what a flag does: annotate (meta only), drop (rejected/), quarantine (rejected/ + review files)
    action: Literal["annotate", "drop", "quarantine"] = "annotate"
    #: detectors whose flags trigger the action; null: every enabled one
    act_on: list[str] | None = None
    #: a `thresher poisoning train-reference` .npz of trusted clean text; enables trigger_ngrams,
    #: payload_association and the reference veto of inserted_spans
    reference_model: str | None = None
    #: what counts as one independent place for trigger_ngrams / payload_association
    spread_by: SpreadBy = "auto"
    #: meta field with a dedup cluster id (spread, and the page of inserted_spans)
    cluster_field: str = "minhash_cluster"
    #: counters per row of the n-gram count-min sketch (a power of two; 4 bytes each)
    sketch_width: int = Field(default=1 << 20, ge=16)
    #: rows of the sketch (an estimate is the smallest of its rows')
    sketch_depth: int = Field(default=4, ge=1, le=16)
    #: a content line has at least this many words, not all of them repeated text; the lines before
    #: a document's first and after its last content line are its edges (menus, footers, banners):
    #: n-gram occurrences there are no evidence, and spans there count once
    content_line_words: int = Field(default=10, ge=1, le=1000)
    #: an n-gram or span on at least this share of one site's documents is the site's template:
    #: that site's documents count as one (sites: ``document_site``, the host of the URL)
    site_share: float = Field(default=0.05, gt=0.0, le=1.0)
    #: words on each side of an occurrence that make its context: documents with the same words
    #: on both sides (copies) count once
    context_words: int = Field(default=2, ge=1, le=8)
    #: character spans kept per document in meta.poisoning
    max_spans: int = Field(default=50, ge=1)
    #: flagged n-grams / spans listed per detector in stats.json
    report_top: int = Field(default=20, ge=0)
    #: files of OUT/poisoning_review/ (quarantine)
    review_shards: int = Field(default=1, ge=1, le=4096)
    #: documents per vectorised batch
    batch_size: int = Field(default=256, ge=1)
    inserted_spans: SpanParams = SpanParams()
    trigger_ngrams: TriggerParams = TriggerParams()
    payload_association: PayloadParams = PayloadParams()
    perplexity_outliers: PerplexityParams = PerplexityParams()
    integrity: IntegrityParams = IntegrityParams()

    @model_validator(mode="after")
    def _consistent(self):
        if self.sketch_width & (self.sketch_width - 1):
            raise ValueError(f"sketch_width must be a power of two, got {self.sketch_width}")
        for name in ("trigger_ngrams", "payload_association"):
            if getattr(self, name).enabled and not self.reference_model:
                raise ValueError(f"{name} needs reference_model (train one with `thresher poisoning "
                                 "train-reference`): without one its only expectation is word independence, "
                                 "which every fixed phrase exceeds; inserted_spans needs no reference")
        if self.perplexity_outliers.enabled and not self.reference_model and not self.perplexity_outliers.checkpoint:
            raise ValueError("perplexity_outliers needs reference_model (train one with `thresher poisoning "
                             "train-reference`) or perplexity_outliers.checkpoint (a `thresher train` checkpoint)")
        unknown = sorted(set(self.act_on or []) - set(DETECTORS))
        if unknown:
            raise ValueError(f"act_on names unknown detectors {unknown}; known: {list(DETECTORS)}")
        if not self.enabled_detectors():
            raise ValueError("every detector is disabled: enable at least one")
        return self

    def params(self, name: str):
        """A detector's parameters with ``enabled: null`` resolved (on with a reference model)."""
        params = getattr(self, name)
        if params.enabled is None:
            return params.model_copy(update={"enabled": bool(self.reference_model)})
        return params

    def detector_on(self, name: str) -> bool:
        return bool(self.params(name).enabled)

    def enabled_detectors(self) -> list[str]:
        return [name for name in DETECTORS if self.detector_on(name)]

    def acting_detectors(self) -> list[str]:
        return list(self.act_on) if self.act_on is not None else self.enabled_detectors()

    def worker_paths(self) -> list[tuple[str, str]]:
        found = [("reference_model", self.reference_model)] if self.reference_model else []
        if self.integrity.enabled and self.integrity.manifest:
            found.append(("integrity.manifest", self.integrity.manifest))
        if self.perplexity_outliers.checkpoint:
            found.append(("perplexity_outliers.checkpoint", self.perplexity_outliers.checkpoint))
        if self.perplexity_outliers.tokenizer:
            found.append(("perplexity_outliers.tokenizer", self.perplexity_outliers.tokenizer))
        return found

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.reference_model and not storage.exists(self.reference_model):
            problems.append(("reference_model", f"{self.reference_model} does not exist "
                             "(train one with `thresher poisoning train-reference`)"))
        if self.integrity.enabled and self.integrity.manifest and not storage.exists(self.integrity.manifest):
            problems.append(("integrity.manifest", f"{self.integrity.manifest} does not exist "
                             "(write one with `thresher manifest`)"))
        if self.perplexity_outliers.checkpoint:
            from thresher.training.onion import CheckpointError, resolve_checkpoint

            try:
                resolve_checkpoint(self.perplexity_outliers.checkpoint, self.perplexity_outliers.tokenizer)
            except CheckpointError as err:
                problems.append(("perplexity_outliers.checkpoint", str(err)))
        return problems

    def ngram_onion(self) -> bool:
        """The n-gram ONION pass over every document (needs the reference model)."""
        return self.perplexity_outliers.enabled and bool(self.reference_model)

    def transformer_onion(self) -> bool:
        """The transformer ONION pass over the documents any detector flagged."""
        return self.perplexity_outliers.enabled and bool(self.perplexity_outliers.checkpoint)

    def ngram_sizes(self) -> list[int]:
        """The n-gram orders pass one sketches."""
        sizes: set[int] = set()
        if self.detector_on("trigger_ngrams"):
            sizes |= set(self.trigger_ngrams.ngram_sizes)
        if self.detector_on("payload_association"):
            sizes |= set(self.payload_association.ngram_sizes)
        if self.inserted_spans.enabled:
            sizes |= set(range(1, self.inserted_spans.run_order() + 1))
        return sorted(sizes)

    def ngram_detection(self) -> bool:
        return self.detector_on("trigger_ngrams") or self.detector_on("payload_association")

    def sketching(self) -> bool:
        return self.ngram_detection() or self.inserted_spans.enabled

    def site_rule(self, corpus: CorpusSketch) -> SiteRule:
        """Site templates count once; the sites' sizes come from the corpus sketch."""
        return SiteRule(lambda sites: corpus.sketch.query(sites).astype(np.float64), self.site_share)

    def content_rule(self) -> tuple[int, int]:
        """(n-gram order, documents): an n-gram of this order in at least that many documents is
        repeated text, for ``content_bounds``."""
        if self.inserted_spans.enabled:
            return self.inserted_spans.run_order(), self.inserted_spans.min_docs
        limits = [self.params(name).min_docs for name in ("trigger_ngrams", "payload_association")
                  if self.detector_on(name)]
        return max(self.ngram_sizes()), min(limits)

    def load_reference(self):
        return _reference(self.reference_model) if self.reference_model else None

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        return docs | ctx.label >> _PoisoningTransform(self, ctx)


_REFERENCES: dict[str, object] = {}


def _reference(path: str):
    """One copy of a reference model per worker process, whichever DoFns use it."""
    from thresher.filters.ngram_lm import NgramLM

    if path not in _REFERENCES:
        _REFERENCES.clear()
        _REFERENCES[path] = NgramLM.load(storage.local_copy(path))
    return _REFERENCES[path]


# --------------------------------------------------------------------------------------------
# pass one

class _BatchNgrams(beam.DoFn):
    """A batch of documents -> (documents, tokens, their per-document distinct n-gram hashes and,
    for ``inserted_spans``, each document's site key)."""

    def __init__(self, stage: Poisoning):
        self.stage = stage

    def setup(self):
        from thresher.filters.ngram_lm import WordHasher

        self.hasher = WordHasher()

    def process(self, batch):
        sizes = self.stage.ngram_sizes()
        parts, tokens = [], 0
        for doc in batch:
            doc_tokens = DocumentTokens.of(doc["text"], self.hasher)
            tokens += len(doc_tokens.hashes)
            parts.append(distinct_ngrams(doc_tokens.hashes, sizes))
        parts.append(np.array([site_key(document_site(doc)) for doc in batch], dtype=np.uint64))
        yield (len(batch), tokens, np.concatenate(parts) if parts else np.zeros(0, np.uint64))


class _SketchCoder(beam.coders.Coder):
    """Raw bytes of the sketch table plus a header: the default pickling coder would compress
    the (mostly incompressible) tens of megabytes every time the side input moves."""

    _HEADER = struct.Struct("<QQQQ")

    def encode(self, value: CorpusSketch) -> bytes:
        sk = value.sketch
        return self._HEADER.pack(sk.width, sk.depth, value.docs, value.tokens) + sk.table.astype("<u4").tobytes()

    def decode(self, encoded: bytes) -> CorpusSketch:
        width, depth, docs, tokens = self._HEADER.unpack_from(encoded)
        table = np.frombuffer(encoded, dtype="<u4", offset=self._HEADER.size).reshape(depth, width).astype(np.uint32)
        return CorpusSketch(CountMinSketch(width, depth, table), docs, tokens)

    def is_deterministic(self) -> bool:
        return True


beam.coders.registry.register_coder(CorpusSketch, _SketchCoder)


class _SketchFn(beam.CombineFn):
    """Folds n-gram hash batches into one count-min sketch per bundle (combiner lifting), then
    sums the few per-bundle sketches: memory is one table per worker, whatever the corpus."""

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth

    def create_accumulator(self):
        return CorpusSketch(CountMinSketch(self.width, self.depth))

    def get_accumulator_coder(self):
        return _SketchCoder()

    def add_input(self, acc, part):
        docs, tokens, hashes = part
        acc.sketch.add(hashes)
        acc.docs += docs
        acc.tokens += tokens
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0]
        for acc in accs[1:]:
            out.sketch.merge(acc.sketch)
            out.docs += acc.docs
            out.tokens += acc.tokens
        return out

    def extract_output(self, acc):
        return acc


# --------------------------------------------------------------------------------------------
# pass two

class _Scan(beam.DoFn):
    """Per batch: candidate n-gram occurrences (main output, keyed by n-gram hash), span
    occurrences (``span``, keyed by span hash) and ONION evidence (``evidence``, keyed by
    document id)."""

    def __init__(self, stage: Poisoning):
        self.stage = stage

    def setup(self):
        from thresher.filters.ngram_lm import WordHasher

        self.hasher = WordHasher()
        self.lm = self.stage.load_reference()
        self.scanner = None
        self.span_scanner = None

    def process(self, batch, corpus: CorpusSketch):
        s = self.stage
        if s.inserted_spans.enabled and self.span_scanner is None:
            self.span_scanner = SpanScanner(corpus, s.inserted_spans)
        if s.ngram_detection() and self.scanner is None:
            t, p = s.params("trigger_ngrams"), s.params("payload_association")
            limits = [(x.min_docs, x.min_lift) for x in (t, p) if x.enabled]
            self.scanner = CandidateScanner(
                corpus, self.lm, s.ngram_sizes(), min(m for m, _ in limits), min(l for _, l in limits),
                p.continuation_words, p.ngram_sizes if p.enabled else [], t.max_doc_fraction,
                context_words=max(t.ngram_sizes) if t.enabled and t.maximal else 0)
        tokens = [DocumentTokens.of(doc["text"], self.hasher) for doc in batch]
        ids = [str(doc["id"]) for doc in batch]
        if s.sketching():
            order, repeated = s.content_rule()
            frequencies = batch_frequencies(tokens, corpus.sketch, order)
            bounds = [content_bounds(doc["text"], t, df >= repeated, s.content_line_words)
                      for doc, t, df in zip(batch, tokens, frequencies)]
        sites = [site_key(document_site(doc)) for doc in batch]
        pages = [stable_hash(document_page(doc, s.cluster_field)) for doc in batch]
        if self.span_scanner is not None:
            found = self.span_scanner.scan_batch(list(zip(ids, sites, pages, tokens)), frequencies, bounds,
                                                 s.context_words)
            for key, occ in found:
                yield beam.pvalue.TaggedOutput("span", (key, occ))
        if self.scanner is not None:
            spreads = [stable_hash(spread_key(doc, s.spread_by, s.cluster_field)) for doc in batch]
            found_per_doc, tested = self.scanner.scan_batch(list(zip(ids, spreads, sites, pages, tokens)), bounds,
                                                            s.context_words)
            for found in found_per_doc:
                yield from found
            reference_tokens = float(self.lm.info["tokens"]) if self.lm is not None else 0.0
            yield beam.pvalue.TaggedOutput("family", (tested, reference_tokens))
        if s.ngram_onion():
            for doc_id, ev in zip(ids, perplexity_evidence_batch(tokens, self.lm, s.perplexity_outliers)):
                if ev is not None:
                    yield beam.pvalue.TaggedOutput("evidence", (doc_id, ("perplexity_outliers", ev)))


class _StatsFn(beam.CombineFn):
    """Folds occurrences into an accumulator with ``add(occurrence)`` and ``merge(other)``
    (``NgramStats``, ``SpanStats``)."""

    def __init__(self, accumulator: type):
        self.accumulator = accumulator

    def create_accumulator(self):
        return self.accumulator()

    def add_input(self, acc, occ):
        return acc.add(occ)

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0]
        for acc in accs[1:]:
            out.merge(acc)
        return out

    def extract_output(self, acc):
        return acc


class _FamilyFn(beam.CombineFn):
    """(hypotheses tested, reference tokens) per batch -> the corpus's totals."""

    def create_accumulator(self):
        return (0.0, 0.0)

    def add_input(self, acc, item):
        return (acc[0] + item[0], max(acc[1], item[1]))

    def merge_accumulators(self, accs):
        accs = list(accs)
        return (sum(a[0] for a in accs), max(a[1] for a in accs))

    def extract_output(self, acc):
        return acc


def _judge(element, stage: Poisoning, corpus: CorpusSketch, family: tuple[float, float]):
    """(n-gram hash, {"stats": [NgramStats], "occ": [Occurrence...]}) -> evidence per document,
    plus reports of flagged n-grams and pairs for stats.json."""
    from thresher.filters.poison_detectors import judge_ngram, trigger_occurrences

    _, group = element
    stats_list = list(group["stats"])
    if not stats_list:
        return
    stats = stats_list[0]
    order = len(stats.text.split(" "))
    tests, reference_tokens = family
    share = corpus.tokens / (corpus.tokens + reference_tokens) if reference_tokens > 0 else None
    t, p = stage.params("trigger_ngrams"), stage.params("payload_association")
    sites = stage.site_rule(corpus)
    verdict = judge_ngram(stats, corpus.docs, t, p, order, tests=tests, corpus_share=share, sites=sites)
    if verdict.trigger is None and not verdict.payloads:
        return
    if verdict.trigger is not None:
        yield beam.pvalue.TaggedOutput("report", ("trigger_ngrams", verdict.trigger))
    for pair in verdict.payloads.values():
        yield beam.pvalue.TaggedOutput("report", ("payload_association", pair))
    occurrences = list(group["occ"])
    if verdict.trigger is not None:
        strength = max(1.0, math.log(max(verdict.trigger["lift"], 1.0)) / math.log(max(t.min_lift, 1.0 + 1e-9)))
        for occ, spans in trigger_occurrences(stats, occurrences, verdict, corpus.docs, t, order, tests, share, sites):
            yield (occ.doc_id, ("trigger_ngrams", {"flagged": True, "strength": strength, "ngram": verdict.trigger,
                                                   "spans": [list(occ.spans[i]) for i in spans]}))
    for occ in occurrences:
        if verdict.payloads:
            for (start, _), (h, _, cont_end, _) in zip(occ.spans, occ.continuations):
                pair = verdict.payloads.get(h)
                if pair is not None:
                    strength = pair["share"] / p.min_share
                    yield (occ.doc_id, ("payload_association", {"flagged": True, "strength": strength,
                                                                "pair": pair, "spans": [[start, cont_end]]}))


# --------------------------------------------------------------------------------------------
# inserted spans

def _span_tested(element, stage: Poisoning, corpus: CorpusSketch) -> float:
    _, stats = element
    p = stage.inserted_spans
    if not span_candidate(stats, p):
        return 0.0
    return float(span_testable(stats, stats.places.independent(stage.site_rule(corpus)), p))


class _JudgeSpans(beam.DoFn):
    """(span hash, {"stats": [SpanStats], "occ": [(document id, start, end)...]}) -> evidence per
    document for flagged spans, and their reports. The reference model, when there is one, is
    loaded once per worker (shared with pass two)."""

    def __init__(self, stage: Poisoning):
        self.stage = stage

    def setup(self):
        self.lm = self.stage.load_reference()
        self.noise = None

    def process(self, element, corpus: CorpusSketch, tests: float):
        _, group = element
        verdict = self._judge(list(group["stats"]), corpus, tests)
        if verdict is not None:
            report, strength = verdict
            yield beam.pvalue.TaggedOutput("report", ("inserted_spans", report))
            for doc_id, start, end in sorted(set(group["occ"])):
                yield (doc_id, ("inserted_spans", {"flagged": True, "strength": strength, "span": report,
                                                   "spans": [[start, end]]}))

    def _judge(self, stats_list: list[SpanStats], corpus: CorpusSketch, tests: float):
        from thresher.filters.poison_detectors import judge_span, reference_span_expected_docs

        p = self.stage.inserted_spans
        if not stats_list or not span_candidate(stats_list[0], p):
            return None
        stats = stats_list[0]
        reference = None
        if self.lm is not None:
            def reference(words):
                return reference_span_expected_docs(words, self.lm, corpus.docs, corpus.tokens, p.max_phrase_words)
        if self.noise is None:  # one sketch per run: measured once per worker
            self.noise = corpus.sketch.overcount()
        independent = stats.places.independent(self.stage.site_rule(corpus))
        return judge_span(stats, independent, corpus, p, tests, reference, self.noise)


class _TopReports(beam.CombineFn):
    """The flagged n-grams and pairs for stats.json: counts, and the top ones by documents."""

    def __init__(self, top: int):
        self.top = top

    def create_accumulator(self):
        return {}

    def add_input(self, acc, item):
        return self.merge_accumulators([acc, {item[0]: (1, [item[1]])}])

    def merge_accumulators(self, accs):
        out: dict = {}
        for acc in accs:
            for name, (count, items) in acc.items():
                n, kept = out.get(name, (0, []))
                merged = sorted(kept + items, key=lambda r: (-r["docs"], json.dumps(r, sort_keys=True)))
                out[name] = (n + count, merged[: self.top])
        return out

    def extract_output(self, acc):
        return {name: {"flagged": n, "top": items} for name, (n, items) in sorted(acc.items())}


# --------------------------------------------------------------------------------------------
# integrity

def _manifest_entries(path: str):
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as raw:
        data = raw.read()
    if path.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
        entry = parse_manifest_line(line, f"{path} line {number}")
        if entry is not None:
            yield entry


def _integrity_key(doc, key: str):
    k = manifest_key(doc, key)
    # documents without a key (no URL) cannot be in the manifest: a key no manifest line can have
    return (k if k is not None else f"\x00nokey:{doc['id']}", (str(doc["id"]), text_sha256(doc["text"])))


def _integrity_check(element, require: bool):
    key, group = element
    vetted = list(group["vetted"])
    for doc_id, digest in group["docs"]:
        ev = integrity_evidence(digest, vetted, require, None if key.startswith("\x00nokey:") else key)
        if ev is not None:
            yield (doc_id, ("integrity", ev))


# --------------------------------------------------------------------------------------------
# parking, and the verdict applied to the parked documents

class _Park(ParkAndPack):
    """Parks documents; packs (id, (token, row, origin)) for the grouping of evidence by id."""

    def records(self, doc, token: str, row: int):
        yield str(doc["id"]), (token, row, origin_of(doc))


class _RouteEvidence:
    """id, [addresses, evidence] -> (token, (row, (id, evidence))): a document's evidence routed to
    the parked file that holds it. Every document's address passes through this grouping, and an
    id with several addresses is always handed here (``unique=(0,)``): the stage's repeated-id check."""

    def __init__(self, stage_name: str):
        self.stage_name = stage_name

    def __call__(self, doc_id, values):
        addresses, evidence = values
        if len(addresses) > 1:
            raise repeated_id_error(self.stage_name, doc_id, [origin for _, _, origin in addresses])
        if not evidence:
            return None
        if not addresses:
            raise RuntimeError(f"{self.stage_name}: evidence for document {doc_id!r}, which no bundle parked "
                               f"(data was lost between pipeline steps)")
        token, row, _ = addresses[0]
        return [(token, (row, (doc_id, list(evidence))))]


class _Verdicts:
    """The ``apply`` of ``ApplyToParked``: one parked file's documents and the evidence routed to
    them -> kept documents with meta.poisoning, rejection records, stats, and for quarantine the
    review records, parked per review shard (``review``: (shard, token) for ``_WriteReview``).

    Transformer second pass (ONION with a `thresher train` checkpoint): the file's flagged
    documents, and only those, are scored ``batch_size`` at a time before the verdict; the model
    and tokenizer are loaded on first use, once per worker."""

    def __init__(self, stage: Poisoning, review_dir: str):
        self.stage, self.review_dir = stage, review_dir
        self.scorer = None

    def __call__(self, docs: list[dict], by_row: dict[int, list]):
        s = self.stage
        evidence: dict[int, list] = {}
        for row, payloads in by_row.items():
            (doc_id, items), = payloads
            if str(docs[row]["id"]) != doc_id:
                raise RuntimeError(f"{s.name}: row {row} of a parked file holds {docs[row]['id']!r}, "
                                   f"not the document {doc_id!r} the evidence is for")
            evidence[row] = items
        if s.transformer_onion():
            yield from self._rescore(docs, evidence)
        reviews: dict[int, DocumentParking] = {}
        for row, doc in enumerate(docs):
            for out in _decide(doc, evidence.get(row, []), s):
                if isinstance(out, beam.pvalue.TaggedOutput) and out.tag == "review":
                    shard, record = out.value
                    reviews.setdefault(shard, DocumentParking(self.review_dir)).add(record)
                else:
                    yield out
        for shard, parking in sorted(reviews.items()):
            yield beam.pvalue.TaggedOutput("review", (shard, parking.flush()))

    def _rescore(self, docs: list[dict], evidence: dict[int, list]):
        from thresher.training.onion import TransformerOnion, transformer_evidence

        p = self.stage.perplexity_outliers
        rows = [row for row in sorted(evidence) if any(item.get("flagged") for _, item in evidence[row])]
        if not rows:
            return
        if self.scorer is None:
            self.scorer = TransformerOnion(p.checkpoint, p.tokenizer, p.device, p.window_tokens, p.candidates, p.rows)
        size = self.stage.batch_size
        for i in range(0, len(rows), size):
            batch = rows[i:i + size]
            for row, result in zip(batch, self.scorer.score_batch([docs[r]["text"] for r in batch])):
                ev = transformer_evidence(result, p.checkpoint_threshold, p.max_spans)
                if ev is not None:
                    evidence[row].append(("perplexity_outliers", ev))
        yield beam.pvalue.TaggedOutput("stats", {"perplexity_transformer_documents": len(rows)})


def _decide(doc: dict, evidence: list, stage: Poisoning):
    evidence = sorted(evidence, key=lambda e: (e[0], json.dumps(e[1], sort_keys=True, default=str)))
    meta = dict(doc.get("meta") or {})
    if not evidence:
        meta["poisoning_score"] = 0.0
        yield dict(doc, meta=meta)
        return
    verdict = combine_evidence(evidence, stage.acting_detectors(), stage.max_spans)
    meta["poisoning"] = {k: verdict[k] for k in ("score", "detectors", "spans", "flagged")}
    meta["poisoning_score"] = verdict["score"]
    for name in verdict["flagged"]:
        yield beam.pvalue.TaggedOutput("stats", {"documents_flagged": {name: 1}})
    if verdict["flagged"]:
        yield beam.pvalue.TaggedOutput("stats", {"documents_flagged_any": 1})
    out = dict(doc, meta=meta)
    if stage.action == "annotate" or not verdict["acting"]:
        yield out
        return
    first = verdict["acting"][0]
    reason = f"poisoning:{first}" if stage.action == "drop" else "poisoning_quarantine"
    decision = Decision.reject(reason, verdict["score"], scores={"poisoning_score": verdict["score"]})
    yield beam.pvalue.TaggedOutput("rejected", rejection_record(out, decision, stage.name, evidence=meta["poisoning"]))
    if stage.action == "quarantine":
        review = {"id": doc["id"], "source": doc.get("source", ""), "detectors": verdict["acting"],
                  "score": verdict["score"], "evidence": meta["poisoning"], "text": doc["text"],
                  "snippets": [[s, e, label, doc["text"][max(0, s - 60):e + 60]] for s, e, label in verdict["spans"]]}
        yield beam.pvalue.TaggedOutput("review", (shard_of(str(doc["id"]), stage.review_shards), review))


class _WriteReview:
    """shard, [review file tokens, [None]] -> the shard's review file: the records parked for it,
    sorted by id (every shard is written, empty or not)."""

    def __init__(self, output_dir: str, review_dir: str, shards: int):
        self.output_dir, self.review_dir, self.shards = output_dir, review_dir, shards

    def __call__(self, shard: int, values):
        tokens, _ = values
        records = sorted((r for token in tokens for r in read_parked(self.review_dir, token)), key=lambda r: str(r["id"]))
        data = "".join(encode_record(r) + "\n" for r in records).encode("utf-8")
        path = posixpath.join(self.output_dir, REVIEW_DIR, f"review-{shard:05d}-of-{self.shards:05d}.jsonl")
        if "://" not in self.output_dir:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        return [len(records)]


class _PoisoningTransform(beam.PTransform):
    def __init__(self, stage: Poisoning, ctx: StageContext):
        super().__init__()
        self.stage, self.ctx = stage, ctx

    def expand(self, docs):
        s, ctx = self.stage, self.ctx
        label, partitions = ctx.label, ctx.partitions
        directory = spill_directory(ctx.output_dir, label)
        evidence = []
        stats = []
        parked = docs | "Park" >> beam.ParDo(_Park(directory, f"{label}/ids", partitions)).with_outputs(
            ParkingDoFn.FILES, main="addresses")
        batches = docs | "Batch" >> beam.BatchElements(min_batch_size=min(16, s.batch_size), max_batch_size=s.batch_size)
        if s.sketching() or s.ngram_onion():
            if s.sketching():
                corpus = (batches
                          | "BatchNgrams" >> beam.ParDo(_BatchNgrams(s))
                          | "Sketch" >> beam.CombineGlobally(_SketchFn(s.sketch_width, s.sketch_depth))
                          .with_output_types(CorpusSketch))
            else:
                corpus = docs.pipeline | "NoSketch" >> beam.Create([CorpusSketch(CountMinSketch(16, 1))])
            scanned = batches | "Scan" >> beam.ParDo(_Scan(s), beam.pvalue.AsSingleton(corpus)).with_outputs(
                "evidence", "family", "span", main="occ")
            evidence.append(scanned.evidence)
            if s.sketching():
                stats.append(corpus | "CorpusTotals" >> beam.Map(
                    lambda c: {"ngram_documents": c.docs, "ngram_tokens": c.tokens}))
            if s.inserted_spans.enabled:
                span_stats = scanned.span | "SpanStats" >> beam.CombinePerKey(_StatsFn(SpanStats))
                tested = (span_stats | "SpanTested" >> beam.Map(_span_tested, s, beam.pvalue.AsSingleton(corpus))
                          | "SpansTested" >> beam.CombineGlobally(sum))
                located = scanned.span | "SpanPlaces" >> beam.Map(lambda kv: (kv[0], (kv[1].doc_id, kv[1].start, kv[1].end)))
                spans = ({"stats": span_stats, "occ": located} | "JoinSpans" >> beam.CoGroupByKey()
                         | "JudgeSpans" >> beam.ParDo(_JudgeSpans(s), beam.pvalue.AsSingleton(corpus),
                                                      beam.pvalue.AsSingleton(tested))
                         .with_outputs("report", main="evidence"))
                evidence.append(spans.evidence)
                stats.append(spans.report | "SpanReports" >> beam.CombineGlobally(_TopReports(s.report_top)))
                stats.append(tested | "SpanTotals" >> beam.Map(lambda n: {"spans_tested": round(n)}))
            if s.ngram_detection():
                family = scanned.family | "Family" >> beam.CombineGlobally(_FamilyFn())
                ngram_stats = scanned.occ | "NgramStats" >> beam.CombinePerKey(_StatsFn(NgramStats))
                judged = ({"stats": ngram_stats, "occ": scanned.occ} | "JoinNgrams" >> beam.CoGroupByKey()
                          | "Judge" >> beam.FlatMap(_judge, s, beam.pvalue.AsSingleton(corpus),
                                                    beam.pvalue.AsSingleton(family))
                          .with_outputs("report", main="evidence"))
                evidence.append(judged.evidence)
                stats.append(judged.report | "TopReports" >> beam.CombineGlobally(_TopReports(s.report_top)))
                stats.append(family | "FamilyTotals" >> beam.Map(lambda f: {"ngrams_tested": round(f[0])}))
        if s.integrity.enabled:
            i = s.integrity
            vetted = (docs.pipeline | "ManifestPath" >> beam.Create([i.manifest])
                      | "ReadManifest" >> beam.FlatMap(_manifest_entries))
            keyed = docs | "IntegrityKeys" >> beam.Map(_integrity_key, i.key)
            evidence.append({"docs": keyed, "vetted": vetted} | "JoinManifest" >> beam.CoGroupByKey()
                            | "IntegrityCheck" >> beam.FlatMap(_integrity_check, i.require_manifest))
        all_evidence = evidence | "FlattenEvidence" >> beam.Flatten()
        routed = ((parked.addresses, all_evidence)
                  | "JoinEvidence" >> GroupInBatches(f"{label}/evidence", partitions, _RouteEvidence(s.name),
                                                     packed=(0,), unique=(0,), drive=(1,)))
        review_dir = directory + "-review"
        outputs = ("rejected", "stats", "review") if s.action == "quarantine" else ("rejected", "stats")
        decided = ((routed, parked[ParkingDoFn.FILES])
                   | "Decide" >> ApplyToParked(f"{label}/decide", directory, s.name, partitions,
                                               _Verdicts(s, review_dir), outputs=outputs))
        stats.append(decided.stats)
        if s.action == "quarantine":
            shards = docs.pipeline | "ReviewShards" >> beam.Create([(i, None) for i in range(s.review_shards)])
            written = ((decided.review, shards)
                       | "GroupReview" >> GroupInBatches(f"{label}/review", partitions,
                                                         _WriteReview(ctx.output_dir, review_dir, s.review_shards)))
            stats.append(written | "ReviewCount" >> beam.Map(lambda n: {"review_records": n}))
        all_stats = stats | "FlattenStats" >> beam.Flatten()
        return CorpusResult(kept=decided.kept, rejected=decided.rejected, stats=all_stats)
