"""Stage name -> the class that implements it.

Three sources, one contract (a ``DocumentStage`` or ``CorpusStage`` subclass with a ``name``):
- the built-ins below: adding one to thresher is one class plus one line here;
- installed plugins: a distribution that declares an entry point in the ``thresher.stages`` group
  (``my_filter = my_package.filters:MyFilter``) makes ``name: my_filter`` valid everywhere;
- a class reference in the YAML itself: ``name: my_package.filters:MyFilter``, for a module that
  is importable (installed, or on PYTHONPATH: Beam's workers import it too).

Entries are "module:Class" strings imported on first use, so `thresher validate` and the CLI
start fast and a stage's heavy imports (torch, fastText) load only when a config uses it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from thresher.filters.base import Stage

ENTRY_POINT_GROUP = "thresher.stages"

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
    "synthetic": "thresher.pipeline.synthetic.stage:Synthetic",
}


class StageNotFound(KeyError):
    """A name that is neither a built-in, nor a plugin, nor an importable ``module:Class``."""

    def __str__(self) -> str:
        return str(self.args[0])


def plugin_stages() -> dict[str, str]:
    """name -> "module:Class" of every installed plugin stage (entry point group thresher.stages)."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def all_stages() -> dict[str, str]:
    return {**plugin_stages(), **STAGES}


def stage_names() -> list[str]:
    return sorted(all_stages())


def is_reference(name: str) -> bool:
    return ":" in name


def stage_source(name: str) -> str:
    if name in STAGES:
        return "built-in"
    if name in plugin_stages():
        return f"plugin ({plugin_stages()[name]})"
    return "class reference"


def stage_class(name: str) -> type[Stage]:
    """The class behind a stage name or a "module:Class" reference. Raises StageNotFound for an
    unknown name and TypeError (with the reason) for a reference that is not a usable stage."""
    from thresher.filters.base import DocumentStage
    from thresher.pipeline.stage_api import CorpusStage

    plugins = plugin_stages()
    if name in STAGES:
        target, expected = STAGES[name], name
    elif name in plugins:
        target, expected = plugins[name], name
    elif is_reference(name):
        target, expected = name, None
    else:
        raise StageNotFound(f"unknown stage {name!r}; valid stages: {', '.join(stage_names())}, "
                            f"or a class reference 'package.module:Class'")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TypeError(f"cannot import {module_name!r} for stage {name!r} ({exc}); the module must be installed "
                        f"or on PYTHONPATH, where Beam's workers can import it too") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, (DocumentStage, CorpusStage))):
        raise TypeError(f"{target} is not a thresher stage: it must be a subclass of "
                        f"thresher.filters.base.DocumentStage or thresher.pipeline.stage_api.CorpusStage")
    declared = getattr(cls, "name", None)
    if not isinstance(declared, str) or not declared:
        raise TypeError(f"{target} declares no `name` (a ClassVar string: the stage's name in stats and reports)")
    if expected is not None and declared != expected:
        raise TypeError(f"{target} declares name {declared!r}, registered as {expected!r}")
    if expected is None and declared in STAGES:
        raise TypeError(f"{target} declares name {declared!r}, which is a built-in stage's; give it its own name")
    return cls
