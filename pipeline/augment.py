"""``augment``: add augmented copies of (some) documents.

A corpus stage because it adds documents: one ParDo passes each input document on unchanged and,
for a selected document, emits ``copies`` augmented copies as the stage's generated documents.
Selection is deterministic: a document is
eligible when ``select`` matches (source globs, a ``meta`` score range) and is chosen when a fixed
hash of (seed, id) falls below ``ratio``. Each copy's random generator is seeded from (seed, id,
copy index), so the output does not depend on worker count or order.

A copy has id ``<id>#aug<k>``, source ``<source>/augmented``, ``meta.augmented_from`` = the
original id and ``meta.augment_ops`` = the operations applied, in order. Every copy counts as a
generated document (returned as ``CorpusResult.generated``, counted by the pipeline), which keeps the
accounting read + generated = kept + rejected + quarantined.
"""

from __future__ import annotations

import fnmatch
import random
from typing import ClassVar

import apache_beam as beam
from pydantic import Field, model_validator

from thresher.filters import storage
from thresher.filters.augment_ops import CHAR_NOISE_KINDS, Augmenter, OperationSpec, stable_seed, stable_unit
from thresher.filters.base import Document, Strict
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext


class ScoreRange(Strict):
    """Select documents whose ``meta[field]`` is a number in [min, max]."""

    field: str
    min: float | None = None
    max: float | None = None

    def matches(self, meta: dict) -> bool:
        value = meta.get(self.field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Select(Strict):
    """Which documents may be augmented: all conditions given must hold."""

    #: fnmatch globs on ``source`` (e.g. ``["wiki*", "books"]``); None: any source
    sources: list[str] | None = None
    score: ScoreRange | None = None

    def matches(self, doc: Document) -> bool:
        if self.sources is not None:
            source = doc.get("source") or ""
            if not any(fnmatch.fnmatchcase(source, pattern) for pattern in self.sources):
                return False
        if self.score is not None and not self.score.matches(doc.get("meta") or {}):
            return False
        return True


class RateOp(Strict):
    p: float = Field(default=0.0, ge=0.0, le=1.0)
    rate: float = Field(default=0.1, ge=0.0, le=1.0)


class CharNoiseOp(Strict):
    p: float = Field(default=0.0, ge=0.0, le=1.0)
    rate: float = Field(default=0.02, ge=0.0, le=1.0)
    kinds: list[str] = Field(default_factory=lambda: list(CHAR_NOISE_KINDS))

    @model_validator(mode="after")
    def _known_kinds(self):
        unknown = sorted(set(self.kinds) - set(CHAR_NOISE_KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {list(CHAR_NOISE_KINDS)}, got {self.kinds}")
        return self


class ShuffleOp(Strict):
    p: float = Field(default=0.0, ge=0.0, le=1.0)


class SpanMaskOp(Strict):
    p: float = Field(default=0.0, ge=0.0, le=1.0)
    rate: float = Field(default=0.15, ge=0.0, le=1.0)
    mean_span: float = Field(default=3.0, ge=1.0)
    mask_token: str = "<mask>"


class Operations(Strict):
    """Per-operation probability ``p`` (that a copy gets it) and parameters. Defaults: the four
    synonym-free EDA-style operations on, synonym replacement off unless synonyms are given."""

    synonym_replace: RateOp = RateOp(p=0.0, rate=0.1)
    random_insert: RateOp = RateOp(p=0.3, rate=0.05)
    random_swap: RateOp = RateOp(p=0.3, rate=0.05)
    random_delete: RateOp = RateOp(p=0.3, rate=0.05)
    char_noise: CharNoiseOp = CharNoiseOp(p=0.3)
    sentence_shuffle: ShuffleOp = ShuffleOp(p=0.3)
    span_mask: SpanMaskOp = SpanMaskOp(p=0.0)

    def specs(self) -> list[OperationSpec]:
        out = []
        for name in type(self).model_fields:
            op = getattr(self, name)
            params = op.model_dump(exclude={"p"})
            out.append(OperationSpec(name, op.p, params))
        return out


class Augment(CorpusStage):
    """Add ``copies`` augmented copies of a ``ratio`` of the documents ``select`` matches."""

    name: ClassVar[str] = "augment"

    #: None: the run's seed
    seed: int | None = None
    ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    copies: int = Field(default=1, ge=1, le=1000)
    select: Select = Select()
    ops: Operations = Operations()
    #: a synonym file (``thresher train-embeddings`` writes one; see ``thresher.filters.embeddings``);
    #: this and ``embeddings`` may be gs:// or s3:// URLs
    synonyms: str | None = None
    #: a fastText ``.bin`` model: synonyms are its nearest neighbours (built once per worker)
    embeddings: str | None = None
    neighbours: int = Field(default=5, ge=1)
    min_similarity: float = Field(default=0.6, ge=-1.0, le=1.0)
    max_words: int = Field(default=20000, ge=1)

    @model_validator(mode="after")
    def _synonym_source(self):
        if self.synonyms and self.embeddings:
            raise ValueError("give synonyms or embeddings, not both")
        if self.ops.synonym_replace.p > 0 and not (self.synonyms or self.embeddings):
            raise ValueError("ops.synonym_replace needs `synonyms` (a file) or `embeddings` (a fastText .bin)")
        if all(spec.p == 0 for spec in self.ops.specs()):
            raise ValueError("every operation in ops has p = 0: nothing to augment with")
        return self

    def worker_paths(self) -> list[tuple[str, str]]:
        return [(key, getattr(self, key)) for key in ("synonyms", "embeddings") if getattr(self, key)]

    def check(self) -> list[tuple[str, str]]:
        return [(key, f"{path} does not exist") for key, path in self.worker_paths() if not storage.isfile(path)]

    # -- Beam-free core, used by the DoFn and directly by tests

    def load_synonyms(self) -> dict[str, list[str]]:
        from thresher.filters import embeddings

        if self.synonyms:
            return embeddings.load_synonyms(storage.local_copy(self.synonyms))
        if self.embeddings:
            import fasttext

            model = fasttext.load_model(str(storage.local_copy(self.embeddings)))
            return embeddings.nearest_neighbour_synonyms(model, self.max_words, self.neighbours, self.min_similarity)
        return {}

    def build_augmenter(self, synonyms: dict[str, list[str]] | None = None) -> Augmenter:
        return Augmenter(self.ops.specs(), self.load_synonyms() if synonyms is None else synonyms)

    def selected(self, doc: Document, seed: int) -> bool:
        return self.select.matches(doc) and stable_unit(seed, "select", doc["id"]) < self.ratio

    def copies_of(self, doc: Document, augmenter: Augmenter, seed: int) -> list[Document]:
        """The augmented copies of ``doc`` (none when it is not selected)."""
        if not self.selected(doc, seed):
            return []
        out = []
        for k in range(self.copies):
            rng = random.Random(stable_seed(seed, doc["id"], k))
            text, applied = augmenter.apply(doc["text"], rng)
            meta = dict(doc.get("meta") or {})
            meta["augmented_from"] = doc["id"]
            meta["augment_ops"] = applied
            out.append({"id": f"{doc['id']}#aug{k}", "text": text,
                        "source": f"{doc.get('source') or ''}/augmented", "meta": meta})
        return out

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        seed = ctx.seed if self.seed is None else self.seed
        out = docs | f"{ctx.label}/Augment" >> beam.ParDo(_AugmentDoFn(self, seed, ctx.label)).with_outputs(
            _COPIES, main="kept")
        return CorpusResult(kept=out.kept, generated=out[_COPIES])


_COPIES = "copies"


class _AugmentDoFn(beam.DoFn):
    def __init__(self, stage: Augment, seed: int, label: str):
        self.stage = stage
        self.seed = seed
        self.label = label

    def setup(self) -> None:
        from thresher.pipeline.graph import counter

        self.augmenter = self.stage.build_augmenter()
        self.selected = counter(self.label, "extra/selected")

    def process(self, doc: Document):
        yield doc
        copies = self.stage.copies_of(doc, self.augmenter, self.seed)
        if copies:
            self.selected.inc()
        for copy in copies:
            yield beam.pvalue.TaggedOutput(_COPIES, copy)
