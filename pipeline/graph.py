"""The Beam graph: read -> stages in YAML order -> kept / rejected / quarantine writers.

Consecutive per-document stages run fused in one DoFn over batches (one BatchElements, one
pickling hop), each stage still counted on its own. Corpus-level stages are PTransforms that get
the documents and return kept, rejected and optional stats.
"""

from __future__ import annotations

import json
import posixpath
import time
import traceback
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from thresher.filters.base import Decision, DocumentStage, Stage, apply_decision, rejection_record
from thresher.filters.storage import atomic_write
from thresher.pipeline.config import AUTO_RESHUFFLE_FILES, PipelineConfig
from thresher.pipeline.io import QUARANTINE, ReadDocuments, WriteRecords
from thresher.pipeline.progress import Heartbeat
from thresher.pipeline.stage_api import CorpusStage, StageContext

REJECTED = "rejected"
STATS_DIR = "_stage_stats"
NAMESPACE = "thresher"


def stage_label(index: int, stage: Stage) -> str:
    return f"{index:02d}_{stage.name}"


def counter(label: str, what: str):
    return Metrics.counter(NAMESPACE, f"stage/{label}/{what}")


class StageCounters:
    """The counters every stage reports, under ``stage/<label>/<what>`` in Beam Metrics."""

    def __init__(self, label: str):
        self.label = label
        self.inputs = counter(label, "in")
        self.kept = counter(label, "kept")
        self.rejected = counter(label, "rejected")
        self.microseconds = counter(label, "microseconds")
        self._reasons: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}

    def reason(self, reason: str):
        if reason not in self._reasons:
            self._reasons[reason] = counter(self.label, f"reason/{reason}")
        return self._reasons[reason]

    def extra(self, key: str):
        if key not in self._extra:
            self._extra[key] = counter(self.label, f"extra/{key}")
        return self._extra[key]


STAGE_ERROR = "stage_error"
#: a worker whose first this-many documents for a stage all raised stops the run at once
FAST_FAIL_DOCUMENTS = 100


class StageErrorBudgetExceeded(RuntimeError):
    """A stage raised on more documents than ``output_options.max_stage_error_frac`` allows. The
    message starts with MARKER, so the driver can find it inside a runner's wrapped error."""

    MARKER = "stage-error budget exceeded"

    def __init__(self, detail: str):
        # runners re-raise a worker's error as type(error)(message + context): keep one marker
        super().__init__(detail if detail.startswith(self.MARKER) else f"{self.MARKER}: {detail}")


def error_line(error: str) -> str:
    """The last line of a formatted traceback (``ValueError: cannot handle BOOM``)."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else error


class RunDocumentStages(beam.DoFn):
    """Applies a run of per-document stages to a batch. Loads models once per worker in
    ``setup()``. A stage that raises on a batch is retried document by document, and only the
    documents that still fail are rejected (reason ``stage_error``): a pathological document never
    takes the worker down, and nothing is dropped silently.

    A broken stage is not a filter, though: a worker whose first FAST_FAIL_DOCUMENTS documents for a
    stage all raised stops the run here (StageErrorBudgetExceeded), and the driver checks every
    stage's error fraction against ``max_error_frac`` when the run ends (run.check_stage_errors).
    MemoryError is re-raised, never turned into a rejection (KeyboardInterrupt and SystemExit are
    not Exceptions and pass through), so the runner retries or fails the bundle."""

    def __init__(self, stages: list[tuple[str, DocumentStage]], progress_dir: str | None = None,
                 max_error_frac: float = 1.0):
        self.stages = stages
        self.progress_dir = progress_dir
        self.max_error_frac = max_error_frac

    def setup(self) -> None:
        self.heartbeat = Heartbeat(self.progress_dir, "stages")
        self.counters = {label: StageCounters(label) for label, _ in self.stages}
        self.seen = {label: 0 for label, _ in self.stages}
        self.failures = {label: 0 for label, _ in self.stages}
        self.errors: dict[str, list[str]] = {label: [] for label, _ in self.stages}
        for _, stage in self.stages:
            stage.setup()

    def process(self, batch: list[dict]) -> Iterable[Any]:
        alive = batch
        for label, stage in self.stages:
            counters = self.counters[label]
            counters.inputs.inc(len(alive))
            start = time.perf_counter()
            decisions, failed = self._decide(stage, alive)
            counters.microseconds.inc(int((time.perf_counter() - start) * 1e6))
            self._check_budget(label, stage, len(alive), failed)
            survivors = []
            for doc, decision in zip(alive, decisions):
                if decision.keep:
                    survivors.append(apply_decision(doc, decision))
                else:
                    counters.reason(decision.reason or "rejected").inc()
                    record = rejection_record(doc, decision, stage.name)
                    yield beam.pvalue.TaggedOutput(REJECTED, record)
            counters.kept.inc(len(survivors))
            counters.rejected.inc(len(alive) - len(survivors))
            for key, value in stage.stats().items():
                if value:
                    counters.extra(key).inc(int(value))
            self.heartbeat.add(rejected=len(alive) - len(survivors))
            alive = survivors
            if not alive:
                break
        self.heartbeat.add(passed=len(alive))
        yield from alive

    def teardown(self) -> None:
        self.heartbeat.flush()

    def _check_budget(self, label: str, stage: DocumentStage, seen: int, failed: list[str]) -> None:
        self.seen[label] += seen
        self.failures[label] += len(failed)
        self.errors[label] += [error_line(e) for e in failed[: max(0, 3 - len(self.errors[label]))]]
        if (self.max_error_frac < 1 and self.seen[label] >= FAST_FAIL_DOCUMENTS
                and self.failures[label] == self.seen[label]):
            raise StageErrorBudgetExceeded(
                f"stage {label} ({stage.name}) raised on all of the first {self.seen[label]} documents a worker "
                f"gave it (output_options.max_stage_error_frac: {self.max_error_frac}); first errors: "
                + " | ".join(self.errors[label]))

    @staticmethod
    def _decide(stage: DocumentStage, docs: list[dict]) -> tuple[list[Decision], list[str]]:
        """One decision per document, and the formatted errors of the documents that raised."""
        try:
            decisions = stage.process_batch(docs)
            if len(decisions) != len(docs):
                raise RuntimeError(f"{stage.name} returned {len(decisions)} decisions for {len(docs)} documents")
            return decisions, []
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - isolate the failing documents, below
            if len(docs) == 1:
                error = traceback.format_exc(limit=3)
                return [Decision.reject(STAGE_ERROR, scores={}, meta={"error": error})], [error]
        decisions, errors = [], []
        for doc in docs:
            (decision,), failed = RunDocumentStages._decide(stage, [doc])
            decisions.append(decision)
            errors += failed
        return decisions, errors


class CountDocuments(beam.DoFn):
    """Counts elements as the stage's ``what`` and, given ``run_total``, also in that run-wide
    counter (a corpus stage's generated documents: ``documents_generated``)."""

    def __init__(self, label: str, what: str, run_total: str | None = None):
        self.label = label
        self.what = what
        self.run_total = run_total

    def setup(self) -> None:
        self.counters = [counter(self.label, self.what)]
        if self.run_total:
            self.counters.append(Metrics.counter(NAMESPACE, self.run_total))

    def process(self, element):
        for c in self.counters:
            c.inc()
        yield element


class CountRejections(beam.DoFn):
    def __init__(self, label: str, stage_name: str):
        self.label = label
        self.stage_name = stage_name

    def setup(self) -> None:
        self.counters = StageCounters(self.label)

    def process(self, record: dict):
        self.counters.rejected.inc()
        self.counters.reason(str(record.get("reason") or "rejected")).inc()
        record.setdefault("stage", self.stage_name)
        yield record


def merge_stats(values: Iterable[dict]) -> dict:
    """Numbers are summed; dicts merged key by key (recursively); anything else: last wins."""
    out: dict[str, Any] = {}
    for value in values:
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (int, float, dict)):
                out[key] = item
            elif isinstance(item, dict):
                out[key] = merge_stats([out.get(key) or {}, item])
            else:
                out[key] = (out.get(key) or 0) + item
    return out


class WriteStageStats(beam.DoFn):
    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def process(self, element: tuple[str, Iterable[dict]]):
        label, values = element
        merged = merge_stats(sorted(values, key=lambda v: json.dumps(v, sort_keys=True, default=str)))
        data = json.dumps(merged, sort_keys=True, default=str).encode()
        atomic_write(posixpath.join(self.output_dir, STATS_DIR, f"{label}.json"), data)
        yield label


SNIPPET_CHARS = 1000


def stored_text(record: dict, mode: str) -> dict:
    """A rejection record with its text as ``output_options.rejected_text`` asks: ``snippet``
    (the first SNIPPET_CHARS characters) or ``none`` (``full`` records are written as they are).
    ``text_stored`` says which and ``text_chars`` gives the length of the whole text, so a reader
    knows what is missing."""
    text = record.get("text")
    if mode == "full" or not isinstance(text, str):
        return record
    out = dict(record)
    out["text_stored"] = mode
    out["text_chars"] = len(text)
    if mode == "snippet":
        out["text"] = text[:SNIPPET_CHARS]
    elif mode == "none":
        del out["text"]
    return out


def kept_record(doc: dict) -> dict:
    return {"id": doc["id"], "text": doc["text"], "source": doc.get("source", ""), "meta": doc.get("meta") or {}}


def _runs(stages: list[Stage]) -> list[tuple[str, list[tuple[int, Stage]]]]:
    """Group consecutive per-document stages; each corpus stage stands alone."""
    runs: list[tuple[str, list[tuple[int, Stage]]]] = []
    for index, stage in enumerate(stages):
        if stage.kind == "document" and runs and runs[-1][0] == "document":
            runs[-1][1].append((index, stage))
        else:
            runs.append((stage.kind, [(index, stage)]))
    return runs


def _unbatch(batch: list) -> list:
    return batch


def build_graph(pipeline: beam.Pipeline, config: PipelineConfig, files: list[tuple[str, str]],
                output_dir: str, progress_dir: str | None = None, partitions: int = 16) -> None:
    """Add the whole curation graph for ``config`` to ``pipeline``; ``partitions``: batches per
    grouping of the corpus stages (``thresher.pipeline.shuffle``)."""
    read = (
        pipeline
        | "ListInputFiles" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadDocuments" >> beam.ParDo(ReadDocuments(config.input, progress_dir)).with_outputs(QUARANTINE, main="docs")
    )
    docs = read.docs
    spread = config.input.reshuffle
    if spread == "always" or (spread == "auto" and len(files) < AUTO_RESHUFFLE_FILES):
        # in batches: one shuffled element per batch of documents, not one per document
        docs = (docs
                | "BatchToSpread" >> beam.BatchElements(min_batch_size=config.output_options.batch_size,
                                                        max_batch_size=config.output_options.batch_size)
                | "SpreadDocuments" >> beam.Reshuffle()
                | "Unbatch" >> beam.FlatMap(_unbatch))
    rejected: list[beam.PCollection] = []
    stage_stats: list[beam.PCollection] = []
    options = config.output_options
    batch = options.batch_size

    for kind, members in _runs(config.stages):
        if kind == "document":
            labelled = [(stage_label(i, s), s) for i, s in members]
            name = "+".join(label for label, _ in labelled)
            outputs = (
                docs
                | f"Batch[{name}]" >> beam.BatchElements(min_batch_size=min(16, batch), max_batch_size=batch)
                | f"Apply[{name}]" >> beam.ParDo(RunDocumentStages(labelled, progress_dir, options.max_stage_error_frac))
                                   .with_outputs(REJECTED, main="kept")
            )
            docs = outputs.kept
            rejected.append(outputs[REJECTED])
            continue
        index, stage = members[0]
        assert isinstance(stage, CorpusStage)
        label = stage_label(index, stage)
        ctx = StageContext(index=index, label=label, output_dir=output_dir, seed=config.seed,
                           config_hash=config.config_hash(), partitions=partitions)
        counted_in = docs | f"CountIn[{label}]" >> beam.ParDo(CountDocuments(label, "in"))
        result = stage.expand(counted_in, ctx)
        docs = result.kept
        if result.generated is not None:
            added = result.generated | f"CountGenerated[{label}]" >> beam.ParDo(
                CountDocuments(label, "generated", run_total="documents_generated"))
            docs = (docs, added) | f"AddGenerated[{label}]" >> beam.Flatten()
        docs = docs | f"CountKept[{label}]" >> beam.ParDo(CountDocuments(label, "kept"))
        if result.rejected is not None:
            rejected.append(result.rejected | f"CountRejected[{label}]" >> beam.ParDo(CountRejections(label, stage.name)))
        if result.stats is not None:
            stage_stats.append(result.stats | f"TagStats[{label}]" >> beam.Map(lambda v, lab=label: (lab, v)))

    shards, level = config.output_options.shards, config.output_options.compression_level
    _ = (docs | "KeptRecords" >> beam.Map(kept_record)
         | "WriteKept" >> WriteRecords(output_dir, "kept", shards, level))
    # each source of rejections spills where it is produced: the records are never merged
    sources = rejected or [pipeline | "NoRejections" >> beam.Create([])]
    if options.rejected_text != "full":
        sources = [pcoll | f"RejectedText{i}" >> beam.Map(stored_text, options.rejected_text)
                   for i, pcoll in enumerate(sources)]
    _ = tuple(sources) | "WriteRejected" >> WriteRecords(output_dir, "rejected", shards, level)
    _ = read[QUARANTINE] | "WriteQuarantine" >> WriteRecords(output_dir, "quarantine", shards, level)
    if stage_stats:
        _ = (stage_stats | "FlattenStageStats" >> beam.Flatten()
             | "GroupStageStats" >> beam.GroupByKey()
             | "WriteStageStats" >> beam.ParDo(WriteStageStats(output_dir)))
