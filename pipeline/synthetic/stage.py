"""``synthetic``: add ``count`` generated documents to the corpus.

A corpus stage: ``Create`` the ``shards`` index ranges [start, end) of 0..count, generate each
range in a DoFn (the generator is built once per worker in ``setup``), and ``Flatten`` the result
with the incoming documents. Example ``n`` is seeded from (seed, n), so the output does not depend
on worker count or order.

Documents: id ``synthetic/<generator>/<seed>/<n>``, source ``synthetic/<generator>``, meta with
``synthetic_index`` and the generator's annotations (template tasks: ``task``, ``template``,
``question``, ``answer``, ``check``, ``slots``). Each counts as generated
(returned as ``CorpusResult.generated``, counted by the pipeline), which keeps the accounting
read + generated = kept + rejected + quarantined. Where the stage sits in the YAML decides which
filters and dedup stages see them.
"""

from __future__ import annotations

import posixpath
from typing import ClassVar, Literal

import apache_beam as beam
from pydantic import Field, model_validator

from thresher.filters import storage
from thresher.filters.base import Strict
from thresher.pipeline.stage_api import CorpusResult, CorpusStage, StageContext


class TemplateOptions(Strict):
    #: a YAML template file, a path or a gs:// / s3:// URL (see docs/augment-synthetic.md); None: the built-in set
    templates: str | None = None
    #: with ``templates`` given, also use the built-in set
    include_builtin: bool = False
    #: only templates whose name or task is listed
    only: list[str] | None = None

    def load(self):
        from thresher.pipeline.synthetic.templates import TemplateSet

        if self.templates:
            chosen = TemplateSet.from_yaml(self.templates)
            if self.include_builtin:
                chosen = TemplateSet.builtin().merged(chosen)
        else:
            chosen = TemplateSet.builtin()
        return chosen.only(self.only) if self.only else chosen


class LMOptions(Strict):
    #: a thresher checkpoint (OUT/checkpoints/step-N or a training OUT) or a Hugging Face model
    #: directory; a path or a gs:// / s3:// URL (copied once per worker machine)
    model: str
    kind: Literal["auto", "thresher", "hf"] = "auto"
    #: SentencePiece model of a thresher checkpoint; default: tokenizer.model in its training shards
    tokenizer: str | None = None
    #: a list of prompts, or a YAML file holding one (a list, or {prompts: [...]})
    prompts: list[str] | str = Field(default_factory=lambda: [""])
    temperature: float = Field(default=0.8, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=128, ge=1)
    batch_size: int = Field(default=8, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    include_prompt: bool = True


class OpenAIOptions(Strict):
    #: e.g. http://localhost:8000/v1 (vLLM, TGI) or https://api.openai.com/v1
    base_url: str
    model: str
    #: name of the environment variable holding the API key (never the key itself); None: no key
    api_key_env: str | None = "OPENAI_API_KEY"
    endpoint: Literal["chat", "completions"] = "chat"
    system: str | None = None
    prompts: list[str] | str
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1)
    concurrency: int = Field(default=4, ge=1, le=256)
    max_retries: int = Field(default=5, ge=0)
    backoff: float = Field(default=1.0, ge=0.0)
    max_backoff: float = Field(default=60.0, ge=0.0)
    timeout: float = Field(default=60.0, gt=0.0)
    #: a directory path or gs:// / s3:// URL; default: OUT/synthetic_cache/openai (kept across
    #: runs: a re-run pays nothing twice)
    cache_dir: str | None = None
    on_error: Literal["fail", "skip"] = "fail"


class Synthetic(CorpusStage):
    """Generate ``count`` documents with ``generator`` and add them to the corpus."""

    name: ClassVar[str] = "synthetic"

    generator: Literal["template", "lm", "openai"] = "template"
    count: int = Field(ge=1)
    #: None: the run's seed
    seed: int | None = None
    #: index ranges generated in parallel (fixed, so output does not depend on worker count)
    shards: int = Field(default=16, ge=1, le=100_000)
    #: examples joined into one document (short Q/A documents fail length filters such as
    #: gopher_quality's 50-word minimum); meta then lists them under ``examples``
    examples_per_document: int = Field(default=1, ge=1, le=10_000)
    separator: str = "\n\n"
    template: TemplateOptions = TemplateOptions()
    lm: LMOptions | None = None
    openai: OpenAIOptions | None = None

    @model_validator(mode="after")
    def _options_for_generator(self):
        if self.generator == "lm" and self.lm is None:
            raise ValueError("generator lm needs an `lm:` section with at least `model`")
        if self.generator == "openai" and self.openai is None:
            raise ValueError("generator openai needs an `openai:` section with base_url, model and prompts")
        return self

    def worker_paths(self) -> list[tuple[str, str]]:
        found = []
        if self.generator == "template" and self.template.templates:
            found.append(("template.templates", self.template.templates))
        if self.generator == "lm" and self.lm is not None:
            found.append(("lm.model", self.lm.model))
            if self.lm.tokenizer:
                found.append(("lm.tokenizer", self.lm.tokenizer))
        if self.generator == "openai" and self.openai is not None and self.openai.cache_dir:
            found.append(("openai.cache_dir", self.openai.cache_dir))  # default: under OUT
        options = getattr(self, self.generator, None) if self.generator != "template" else None
        if options is not None and isinstance(options.prompts, str):
            found.append((f"{self.generator}.prompts", options.prompts))
        return found

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.generator == "template":
            from thresher.pipeline.synthetic.templates import TemplateError

            if self.template.templates and not storage.isfile(self.template.templates):
                problems.append(("template.templates", f"{self.template.templates} does not exist"))
            else:
                try:
                    self.template.load()
                except TemplateError as exc:
                    problems.append(("template.templates", str(exc)))
        if self.generator == "lm" and self.lm is not None:
            from thresher.training.sampling import detect_model_kind

            if not storage.exists(self.lm.model):
                problems.append(("lm.model", f"{self.lm.model} does not exist"))
            elif self.lm.kind == "auto":
                try:
                    detect_model_kind(self.lm.model)
                except ValueError as exc:
                    problems.append(("lm.model", str(exc)))
            if self.lm.tokenizer and not storage.isfile(self.lm.tokenizer):
                problems.append(("lm.tokenizer", f"{self.lm.tokenizer} does not exist"))
        for section in ("lm", "openai"):
            options = getattr(self, section)
            if self.generator == section and isinstance(options.prompts, str) and not storage.isfile(options.prompts):
                problems.append((f"{section}.prompts", f"{options.prompts} does not exist"))
        return problems

    # -- Beam-free core, used by the DoFn and directly by tests

    def resolved_seed(self, run_seed: int) -> int:
        return run_seed if self.seed is None else self.seed

    def slices(self) -> list[tuple[int, int]]:
        """``shards`` contiguous index ranges covering 0..count (empty ones dropped)."""
        bounds = [self.count * i // self.shards for i in range(self.shards + 1)]
        return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]

    def build_generator(self, seed: int, output_dir: str = "."):
        from thresher.pipeline.synthetic.base import load_prompts

        if self.generator == "template":
            from thresher.pipeline.synthetic.templates import TemplateGenerator

            return TemplateGenerator(self.template.load(), seed)
        if self.generator == "lm":
            from thresher.pipeline.synthetic.lm import LocalLMGenerator

            lm = self.lm
            return LocalLMGenerator(lm.model, load_prompts(lm.prompts), seed, kind=lm.kind,
                                    tokenizer=lm.tokenizer, temperature=lm.temperature, top_p=lm.top_p,
                                    max_tokens=lm.max_tokens, batch_size=lm.batch_size, device=lm.device,
                                    include_prompt=lm.include_prompt)
        from thresher.pipeline.synthetic.openai import OpenAIClient, OpenAIGenerator

        oa = self.openai
        cache = oa.cache_dir or posixpath.join(output_dir, "synthetic_cache", "openai")
        client = OpenAIClient(oa.base_url, oa.model, api_key_env=oa.api_key_env, endpoint=oa.endpoint,
                              system=oa.system, temperature=oa.temperature, top_p=oa.top_p,
                              max_tokens=oa.max_tokens, concurrency=oa.concurrency,
                              max_retries=oa.max_retries, backoff=oa.backoff, max_backoff=oa.max_backoff,
                              timeout=oa.timeout, cache_dir=cache)
        return OpenAIGenerator(client, load_prompts(oa.prompts), seed, on_error=oa.on_error)

    def documents(self, generator, seed: int, start: int, end: int) -> list[dict]:
        """The documents [start, end) (fewer when an openai request was skipped). Document ``n``
        holds examples ``n * k .. n * k + k - 1`` for ``k = examples_per_document``."""
        k = self.examples_per_document
        indices = list(range(start * k, end * k))
        examples = generator.generate(indices)
        out = []
        for n in range(start, end):
            group = [(i, e) for i, e in zip(indices[(n - start) * k:(n - start + 1) * k],
                                            examples[(n - start) * k:(n - start + 1) * k]) if e is not None]
            if not group:
                continue
            if k == 1:
                meta = {"synthetic_index": n, "generator": self.generator, **group[0][1].meta}
            else:
                meta = {"synthetic_index": n, "generator": self.generator,
                        "examples": [{"example_index": i, **e.meta} for i, e in group]}
            out.append({"id": f"synthetic/{self.generator}/{seed}/{n}",
                        "text": self.separator.join(e.text for _, e in group),
                        "source": f"synthetic/{self.generator}", "meta": meta})
        return out

    def expand(self, docs: beam.PCollection, ctx: StageContext) -> CorpusResult:
        seed = self.resolved_seed(ctx.seed)
        p = f"{ctx.label}/"
        generated = (docs.pipeline
                     | p + "Slices" >> beam.Create(self.slices())
                     | p + "SpreadSlices" >> beam.Reshuffle()
                     | p + "Generate" >> beam.ParDo(_GenerateSlice(self, seed, ctx.label, ctx.output_dir)))
        return CorpusResult(kept=docs, generated=generated)


class _GenerateSlice(beam.DoFn):
    def __init__(self, stage: Synthetic, seed: int, label: str, output_dir: str):
        self.stage, self.seed, self.label, self.output_dir = stage, seed, label, output_dir

    def setup(self) -> None:
        from thresher.pipeline.graph import counter

        self.generator = self.stage.build_generator(self.seed, self.output_dir)
        self.failed = counter(self.label, "extra/failed")
        self.requests = counter(self.label, "extra/requests_sent")
        self.cache_hits = counter(self.label, "extra/cache_hits")

    def process(self, bounds: tuple[int, int]):
        start, end = bounds
        client = getattr(self.generator, "client", None)
        before = (self.generator.failed, client.requests_sent, client.cache_hits) if client else None
        docs = self.stage.documents(self.generator, self.seed, start, end)
        if client is not None:
            self.failed.inc(self.generator.failed - before[0])
            self.requests.inc(client.requests_sent - before[1])
            self.cache_hits.inc(client.cache_hits - before[2])
        yield from docs
