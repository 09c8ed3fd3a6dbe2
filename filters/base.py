"""The per-document stage contract, with no Beam in sight.

A per-document stage is a pydantic model: its fields are the YAML keys (the same class gives the
stage name, the schema and the defaults). The pipeline calls ``setup()`` once per worker, then
``process_batch(docs)`` with a list of documents, and gets back one ``Decision`` per document.

Documents are plain dicts ``{"id": str, "text": str, "source": str, "meta": dict}``: cheap to pickle
between Beam workers and easy to write as JSON lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

Document = dict[str, Any]


@dataclass(slots=True)
class Decision:
    """What a stage decided about one document.

    keep:   whether the document goes on.
    text:   replacement text when the stage changed it (None: unchanged).
    reason: for a rejection, the rule that fired (e.g. ``"mean_word_length"``).
    value:  for a rejection, the measured value behind the reason.
    scores: numbers the stage measured; they go into ``meta`` of kept documents and into the
            rejected record, so later stages and the curriculum can use them.
    meta:   other (non-numeric) annotations for ``meta``, e.g. PII spans.
    """

    keep: bool
    text: str | None = None
    reason: str | None = None
    value: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def accept(cls, scores: dict[str, float] | None = None, text: str | None = None,
               meta: dict[str, Any] | None = None) -> "Decision":
        return cls(True, text=text, scores=scores or {}, meta=meta or {})

    @classmethod
    def reject(cls, reason: str, value: float | None = None,
               scores: dict[str, float] | None = None, meta: dict[str, Any] | None = None) -> "Decision":
        return cls(False, reason=reason, value=value, scores=scores or {}, meta=meta or {})


def utf8_safe(text: str) -> str:
    """``text`` with every lone surrogate (JSON's ``"\\ud800"``: not encodable as UTF-8, and
    refused by the C++ models, cld3 and fastText) replaced by ``?``; ``text`` itself when it has none."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


class Strict(BaseModel):
    """Base of every model read from YAML or built from options (stage parameters and their nested
    options, the pipeline and training configs): unknown keys are errors, instances are frozen.
    Pydantic only, so the training side and ``thresher validate`` import it without Beam or torch."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(Strict):
    """Base of every stage's parameters. Unknown YAML keys are errors."""

    name: ClassVar[str]
    #: "document" stages map a batch of documents to decisions; "corpus" stages are Beam PTransforms.
    kind: ClassVar[str] = "document"
    #: the name as the config wrote it (a built-in's name, a plugin's, or "module:Class")
    _config_name: str | None = PrivateAttr(default=None)

    def check(self) -> list[tuple[str, str]]:
        """Problems only the file system can reveal (a model file that is missing, say), as
        (field, message) pairs. ``thresher validate`` and ``thresher run`` call it before any work
        starts, so a bad path is a validation error with its YAML path, not a crash in a worker."""
        return []

    def worker_paths(self) -> list[tuple[str, str]]:
        """(key, location) of every file or directory the stage's workers read or write, as they
        resolve (default locations included; files inside the installed package are not listed).
        A runner whose workers do not share this machine's disk needs remote URLs for all of them:
        ``thresher validate`` names each local one. Locations go through
        ``thresher.filters.storage``, so any of them may be a ``gs://`` or ``s3://`` URL."""
        return []


class DocumentStage(Stage):
    """A stage that decides about each document on its own.

    Subclasses implement ``process_batch`` (or ``process`` for one document at a time) and may
    override ``setup`` to load models once per worker. Private attributes (``self._model``) hold
    what ``setup`` loaded; they are not part of the schema.
    """

    kind: ClassVar[str] = "document"

    def setup(self) -> None:
        """Load models, compile regexes, read files: called once per worker before any batch."""

    def process(self, doc: Document) -> Decision:
        raise NotImplementedError(f"{type(self).__name__} must implement process or process_batch")

    def process_batch(self, docs: list[Document]) -> list[Decision]:
        return [self.process(doc) for doc in docs]

    def stats(self) -> dict[str, float]:
        """Extra per-stage counters to add to stats.json (e.g. PII counts by type). Summed across
        workers; called after every batch and reset by the caller."""
        return {}


def apply_decision(doc: Document, decision: Decision) -> Document:
    """Return the document as the next stage sees it (scores and annotations in ``meta``)."""
    meta = dict(doc.get("meta") or {})
    for key, value in decision.scores.items():
        meta[key] = value
    for key, value in decision.meta.items():
        meta[key] = value
    out = dict(doc)
    out["meta"] = meta
    if decision.text is not None:
        out["text"] = decision.text
    return out


def rejection_record(doc: Document, decision: Decision, stage_name: str, **fields: Any) -> dict[str, Any]:
    """The record written to ``rejected/``: id, stage, reason, the measured value and scores,
    the text as the rejecting stage saw it, and the document's source and meta; ``fields`` are a
    stage's own additions (dedup's ``duplicate_of``, poisoning's ``evidence``)."""
    scores = dict(decision.scores)
    record: dict[str, Any] = {
        "id": doc["id"],
        "stage": stage_name,
        "reason": decision.reason or "rejected",
        "value": decision.value,
        "scores": scores,
        "source": doc.get("source", ""),
        "text": doc["text"],
        "meta": {**(doc.get("meta") or {}), **decision.meta},
        **fields,
    }
    return record
