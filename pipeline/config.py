"""The pipeline YAML, validated into typed objects before anything runs.

Every problem is reported with its YAML path (``stages[2].threshold: ...``), all of them at once;
unknown keys and unknown stage names are errors that list the valid ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from thresher.filters.base import Stage, Strict
from thresher.pipeline import registry
from thresher.pipeline.outdir import overlap_problems, walk_values

AUTO_RESHUFFLE_FILES = 16
INPUT_FORMATS = ("jsonl", "parquet", "arrow", "text", "text_lines", "hf_dataset", "warc")


class ConfigError(Exception):
    """A config that cannot run; ``problems`` holds (yaml_path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{path}: {msg}" if path else msg for path, msg in problems))


class InputConfig(Strict):
    #: files to read: globs, local or any file system Beam knows (gs://, s3://); for hf_dataset, directories
    paths: list[str] = Field(min_length=1)
    #: jsonl (.gz, .zst), parquet, arrow (IPC file or stream), text (a document per file),
    #: text_lines (a document per non-blank line), hf_dataset (save_to_disk), warc (WARC/WET)
    format: Literal[INPUT_FORMATS] = "jsonl"  # type: ignore[valid-type]
    #: field holding the document text
    text_field: str = "text"
    #: field holding the document id; when absent from a record, the id is derived from file + line
    id_field: str | None = "id"
    #: append "@<file>:<line>" to every id read from id_field, for inputs whose ids repeat (per-file
    #: row numbers of parquet or HF dumps); otherwise a repeated id fails the stages that rely on
    #: ids (minhash_dedup), naming the id and where each copy was read
    make_ids_unique: bool = False
    #: field holding the source name; else ``source`` below; else the file's path relative to its glob root
    source_field: str | None = None
    #: one source name for every document of this input
    source: str | None = None
    #: top-level record fields copied into ``meta`` (e.g. [url, date]); a record's own ``meta``
    #: object is always kept
    meta_fields: list[str] = Field(default_factory=list)
    #: records larger than this are quarantined rather than processed (bytes of text)
    max_document_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: spread documents over workers after reading. "auto": only when there are fewer input
    #: files than AUTO_RESHUFFLE_FILES (many files already spread the work, and a reshuffle
    #: moves every document through the shuffle once more)
    reshuffle: Literal["auto", "always", "never"] = "auto"

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RunnerConfig(Strict):
    #: direct, dataflow, flink, spark, prism, or any Beam runner class name; every runner but
    #: direct runs on workers that share no disk with this machine, so validation then requires
    #: remote (gs://, s3://) input, output, temp and model / reference / eval-set / cache locations
    name: str = "direct"
    #: Beam pipeline options (e.g. direct_num_workers, direct_running_mode, project, region);
    #: flags after `--` on the command line override them. The local runner's default mode is
    #: chosen by input size: in_memory below 128 MB / cores (64 MB on 2 cores, at least 8 MB), else multi_processing with a worker per core
    options: dict[str, Any] = Field(default_factory=dict)
    #: batches per grouping in the corpus stages (dedup): records of one grouping travel as this
    #: many batches per bundle; never changes results. Default: 8 per local worker, 2048 on
    #: remote runners (one batch's records are held in one worker's memory)
    shuffle_partitions: int | None = Field(default=None, ge=1, le=1_000_000)
    #: absolute local folders every worker of a remote runner has too (files baked into the
    #: container image, a mount shared by the cluster): paths under them are not refused
    shared_paths: list[str] = Field(default_factory=list)

    @field_validator("shared_paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        relative = [p for p in paths if not p.startswith("/")]
        if relative:
            raise ValueError(f"must be absolute paths (a worker has no current directory of this machine): {relative}")
        return paths


class OutputConfig(Strict):
    #: number of files in each of kept/, rejected/, quarantine/; fixed so that output does not
    #: depend on worker count (documents are assigned to files by a hash of their id)
    shards: int = Field(default=4, ge=1, le=100_000)
    #: documents per BatchElements batch handed to per-document stages
    batch_size: int = Field(default=256, ge=1, le=100_000)
    #: gzip level of kept/rejected/quarantine files: 1 is ~4x faster than 6 for ~15% more bytes
    compression_level: int = Field(default=1, ge=0, le=9)
    #: the stage-error budget: a per-document stage that raises on more than this fraction of the
    #: documents it sees fails the run, naming the stage and its first errors (below it, each
    #: failing document is rejected with reason stage_error). 1 never fails; 0 fails on any error
    max_stage_error_frac: float = Field(default=0.01, ge=0, le=1)
    #: the text kept in rejected/: full, snippet (the first 1,000 characters) or none; each record
    #: says which in ``text_stored``, with ``text_chars``, the length of the text as the stage saw it
    rejected_text: Literal["full", "snippet", "none"] = "full"


class PipelineConfig(Strict):
    #: what to read (below)
    input: InputConfig
    #: the output directory (local or gs://): kept/, rejected/, quarantine/, shards/, stats.json
    output: str
    #: where to run (below)
    runner: RunnerConfig = RunnerConfig()
    #: how to write (below)
    output_options: OutputConfig = OutputConfig()
    #: the run's seed; stages without their own seed use it
    seed: int = 0
    #: the stages, in order (see Stages)
    stages: list[Stage] = Field(default_factory=list)

    def config_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"stages"})
        data["stages"] = [{"name": s._config_name or s.name, **s.model_dump(mode="json")} for s in self.stages]
        return data


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def yaml_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('stages', 2, 'threshold') -> 'stages[2].threshold'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _format_error(err: dict[str, Any], model: type[BaseModel], prefix: tuple[Any, ...]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    # pydantic reports Literal/union members as extra path parts; they are noise for a user
    loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("literal[", "function"))))
    path = yaml_path(prefix + loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys(model, loc[:-1])
        return path, f"unknown key {loc[-1]!r}; valid keys: {', '.join(valid)}"
    if kind == "missing":
        return path, "required key is missing"
    ctx = err.get("ctx") or {}
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounds = _bounds(model, loc)
        if bounds is not None:
            low, high = bounds
            if low is not None and high is not None:
                return path, f"must be between {low} and {high} (got {err.get('input')!r})"
        words = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}[kind]
        limit = next(iter(ctx.values())) if ctx else "?"
        return path, f"must be {words} {limit} (got {err.get('input')!r})"
    if kind == "literal_error":
        return path, f"must be one of {ctx.get('expected', '?')} (got {err.get('input')!r})"
    return path, f"{err['msg']} (got {err.get('input')!r})" if "input" in err and not isinstance(
        err.get("input"), (dict, list)) else err["msg"]


def _field_model(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel], str] | None:
    """Walk ``loc`` through nested models; return the model owning the last field and its name."""
    current: Any = model
    for part in loc[:-1]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return None
        current = info.annotation
    if isinstance(current, type) and issubclass(current, BaseModel) and loc and isinstance(loc[-1], str):
        return current, loc[-1]
    return None


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            info = current.model_fields.get(part)
            current = info.annotation if info else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    found = _field_model(model, loc)
    if found is None:
        return None
    owner, name = found
    info = owner.model_fields.get(name)
    if info is None:
        return None
    low = high = None
    for item in info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        low = getattr(item, "gt", None) if getattr(item, "gt", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
        high = getattr(item, "lt", None) if getattr(item, "lt", None) is not None else high
    return low, high


def _errors(exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    return [_format_error(e, model, prefix) for e in exc.errors(include_url=False)]


def build_stage(entry: Any, index: int, check_files: bool = True) -> tuple[Stage | None, list[tuple[str, str]]]:
    where = f"stages[{index}]"
    if not isinstance(entry, dict):
        return None, [(where, f"must be a mapping with a 'name' key (got {type(entry).__name__})")]
    params = dict(entry)
    name = params.pop("name", None)
    if name is None:
        return None, [(f"{where}.name", "required key is missing; valid stages: " + ", ".join(registry.stage_names()))]
    if not isinstance(name, str):
        return None, [(f"{where}.name", f"must be a stage name (got {type(name).__name__})")]
    try:
        cls = registry.stage_class(name)
    except (registry.StageNotFound, TypeError) as exc:
        return None, [(f"{where}.name", str(exc))]
    try:
        stage = cls(**params)
    except ValidationError as exc:
        return None, _errors(exc, cls, ("stages", index))
    stage._config_name = name  # the name as written: a plugin's name or a "module:Class" reference
    try:
        problems = stage.check() if check_files else []
    except OSError as exc:  # a URL no installed file system reads (storage.StorageError), a network error
        return stage, [(where, f"could not check the files it names: {exc}")]
    return stage, [(yaml_path(("stages", index, field)), msg) for field, msg in problems]


def validate_config(data: Any, check_files: bool = True, beam_args: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Turn the loaded YAML into a PipelineConfig, or raise ConfigError listing every problem.
    ``beam_args``: the Beam pipeline options given after ``--`` (``--runner``, ``--temp_location``
    override the config's)."""
    if not isinstance(data, dict):
        raise ConfigError([("", f"the config must be a mapping at the top level (got {type(data).__name__})")])
    problems: list[tuple[str, str]] = []
    stages_raw = data.get("stages", [])
    if not isinstance(stages_raw, list):
        problems.append(("stages", f"must be a list of stages (got {type(stages_raw).__name__})"))
        stages_raw = []
    stages: list[Stage] = []
    stage_values: list[tuple[tuple[Any, ...], Any]] = []
    for index, entry in enumerate(stages_raw):
        stage, stage_problems = build_stage(entry, index, check_files)
        problems += stage_problems
        if stage is not None:
            stages.append(stage)
            stage_values += [(("stages", index) + loc, value) for loc, value in walk_values(stage.model_dump(mode="json"))]
    rest = {k: v for k, v in data.items() if k != "stages"}
    config = None
    try:
        config = PipelineConfig(**rest)
    except ValidationError as exc:
        problems += _errors(exc, PipelineConfig)
    if config is not None:
        problems += [(yaml_path(loc), message)
                     for loc, message in overlap_problems(config.input.paths, stage_values, config.output)]
        problems += worker_path_problems(config.model_copy(update={"stages": stages}), beam_args)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config.model_copy(update={"stages": stages})


#: runners that run every stage in this process's machine; any other runner's workers (Dataflow,
#: Flink, Spark, Prism, ...) share no disk with the machine that launches the run
LOCAL_RUNNERS = ("direct", "directrunner", "bundlebaseddirectrunner", "switchingdirectrunner")
#: Beam options naming where a runner keeps its temporary and staged files
TEMP_OPTIONS = ("temp_location", "staging_location", "gcp_temp_location")


def beam_flags(beam_args: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` pairs of Beam pipeline options (bare flags: "")."""
    flags: dict[str, str] = {}
    args = list(beam_args)
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
        flags[name] = value
    return flags


def worker_path_problems(config: PipelineConfig, beam_args: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """With a runner whose workers do not share this machine's disk, every local path they would
    read or write, named by its YAML path (or ``--flag``): the input, the output (with the
    ``_spill/`` folder the corpus stages park documents in), the runner's temp and staging
    locations, and every stage's models, reference and eval sets, templates and caches
    (``Stage.worker_paths``, defaults included). Empty for the local direct runner."""
    from thresher.filters.storage import is_remote

    flags = beam_flags(beam_args)
    runner = flags.get("runner") or config.runner.name
    if runner.lower().rsplit(".", 1)[-1] in LOCAL_RUNNERS:
        return []
    source = "--runner" if flags.get("runner") else "runner.name"
    why = (f"is a path on this machine, but runner {runner} ({source}) runs the pipeline on workers that "
           "do not share its disk: give a gs:// or s3:// URL, or list a folder every worker has in "
           "runner.shared_paths (docs/dataflow.md)")
    found: list[tuple[str, str]] = [(f"input.paths[{i}]", p) for i, p in enumerate(config.input.paths)]
    found.append(("output", config.output))
    for name in TEMP_OPTIONS:
        if name in flags:
            found.append((f"--{name}", flags[name]))
        elif config.runner.options.get(name) is not None:
            found.append((f"runner.options.{name}", str(config.runner.options[name])))
    for index, stage in enumerate(config.stages):
        found += [(f"stages[{index}].{key}", location) for key, location in stage.worker_paths()]
    shared = [p.rstrip("/") + "/" for p in config.runner.shared_paths]
    problems = []
    for where, location in found:
        on_workers = os.path.normpath(os.path.expanduser(location)) + "/"
        if not is_remote(location) and not any(on_workers.startswith(prefix) for prefix in shared):
            extra = " (and OUT/_spill/, where the corpus stages park documents)" if where == "output" else ""
            problems.append((where, f"{location}{extra} {why}"))
    return problems


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["stages.1.min_score=0.7", "output=/tmp/x"]``: each value parsed as YAML (safe_load)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError([("--set", f"expected KEY.PATH=VALUE, got {item!r}")])
        dotted, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        parts = dotted.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            key: Any = int(part) if isinstance(node, list) and part.lstrip("-").isdigit() else part
            if isinstance(node, list):
                if not isinstance(key, int) or not -len(node) <= key < len(node):
                    raise ConfigError([(f"--set {dotted}", f"no list index {part!r} (the list has {len(node)} items)")])
            elif not isinstance(node, dict):
                raise ConfigError([(f"--set {dotted}", f"{'.'.join(parts[:depth])} is not a mapping or list")])
            if last:
                node[key] = value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return data


def load_yaml(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError([("", f"config file not found: {path}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{path} is not valid YAML: {exc}")]) from None


def load_config(path: str | Path, overrides: list[str] | None = None,
                beam_args: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    data = load_yaml(path)
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides)
    return validate_config(data, beam_args=beam_args)
