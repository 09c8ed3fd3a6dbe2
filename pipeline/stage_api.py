"""The corpus-level stage contract: a stage whose decision needs the whole corpus (dedup,
decontamination, poisoning, synthetic data, tokenization) is a Beam PTransform built from typed
parameters, exactly like a per-document stage is built from its YAML keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import apache_beam as beam

from thresher.filters.base import Stage


@dataclass(frozen=True)
class StageContext:
    """What the pipeline builder tells a corpus stage about where it runs."""

    index: int            # position in the YAML stage list
    label: str            # unique Beam label prefix, e.g. "03_minhash_dedup"
    output_dir: str       # the run's OUT directory (local path or gs://...)
    seed: int             # the run's seed
    config_hash: str      # sha256 of the validated config
    partitions: int = 16  # batches per grouping (thresher.pipeline.shuffle); never changes results


@dataclass
class CorpusResult:
    """What a corpus stage returns.

    kept:     documents that go on (dicts with id, text, source, meta).
    rejected: rejection records (see ``thresher.filters.base.rejection_record``), plus any
              stage-specific fields such as ``duplicate_of``.
    stats:    optional PCollection of dicts merged (summed for numbers, merged for dicts)
              into this stage's entry of stats.json, e.g. cluster counts and histograms.
    generated: documents the stage adds to the corpus (not part of ``kept``). The pipeline counts
              them (the stage's ``generated`` and the run's ``totals.generated``, which keep
              read + generated = kept + rejected + quarantined) and passes them on with ``kept``.
    """

    kept: beam.PCollection
    rejected: beam.PCollection | None = None
    stats: beam.PCollection | None = None
    generated: beam.PCollection | None = None


class CorpusStage(Stage):
    kind: ClassVar[str] = "corpus"

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        raise NotImplementedError(f"{type(self).__name__} must implement expand")
