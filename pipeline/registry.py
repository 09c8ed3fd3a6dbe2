"""Stage name -> the class that implements it. Adding a stage is one class plus one line here.

Entries are "module:Class" strings imported on first use, so `thresher validate` and the CLI
start fast and a stage's heavy imports (torch, fastText) load only when a config uses it.
"""

from __future__ import annotations

import importlib

from thresher.filters.base import Stage

STAGES: dict[str, str] = {
    # per-document stages (thresher.filters, Beam-free)
    "normalize": "thresher.filters.normalize:Normalize",
    "language": "thresher.filters.language:Language",
    "gopher_quality": "thresher.filters.gopher:GopherQuality",
    "gopher_repetition": "thresher.filters.gopher:GopherRepetition",
    "c4_quality": "thresher.filters.c4:C4Quality",
    "quality_classifier": "thresher.filters.fasttext_classifier:QualityClassifierStage",
    "toxicity": "thresher.filters.fasttext_classifier:ToxicityStage",
    "pii": "thresher.filters.pii:PiiStage",
    # corpus-level stages (thresher.pipeline, Beam PTransforms)
    "tokenize": "thresher.pipeline.tokenize_stage:TokenizeStage",
    "exact_dedup": "thresher.pipeline.dedup:ExactDedup",
    "minhash_dedup": "thresher.pipeline.dedup:MinHashDedup",
    "decontaminate": "thresher.pipeline.decontaminate:Decontaminate",
    "poisoning": "thresher.pipeline.poisoning:Poisoning",
    "augment": "thresher.pipeline.augment:Augment",
    "synthetic": "thresher.pipeline.synthetic:Synthetic",
}


def stage_names() -> list[str]:
    return sorted(STAGES)


def stage_class(name: str) -> type[Stage]:
    """The class registered under ``name``; KeyError if there is none."""
    module_name, class_name = STAGES[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{STAGES[name]} declares name {getattr(cls, 'name', None)!r}, registered as {name!r}")
    return cls
