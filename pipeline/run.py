"""Running a validated config: runner options, output directory, the Beam run, stats.json, and
the accounting check records read (+ generated) = kept + rejected + quarantined."""

from __future__ import annotations

import json
import platform
import posixpath
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from thresher.filters.storage import atomic_write
from thresher.pipeline.config import ConfigError, PipelineConfig
from thresher.pipeline.graph import (NAMESPACE, STAGE_ERROR, STATS_DIR, StageErrorBudgetExceeded, build_graph,
                                     error_line, stage_label)
from thresher.pipeline.io import SPILL_DIR, match_inputs
from thresher.pipeline.local_runner import direct_options, input_bytes
from thresher.pipeline.outdir import ForeignFiles, owned_part_reached, prepare_output, remove_owned
from thresher.pipeline.progress import Progress
from thresher.pipeline.shuffle import LOCAL_PARTITIONS_PER_WORKER, REMOTE_PARTITIONS, check_shuffle_counts

RUNNER_NAMES = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner",
                "spark": "SparkRunner", "prism": "PrismRunner"}
VERSIONED_PACKAGES = ("thresher", "apache-beam", "pydantic", "numpy", "pyarrow", "datasketch",
                      "fasttext-community", "cld3-py", "sentencepiece", "torch")


@dataclass
class RunResult:
    stats: dict[str, Any]
    output_dir: str

    @property
    def accounted(self) -> bool:
        """Every record accounted for, and every grouping received all that was packed for it."""
        return bool(self.stats["totals"]["accounted"]) and not self.stats.get("shuffle_problems")


def pipeline_options(config: PipelineConfig, beam_args: list[str], input_size: int = 0) -> PipelineOptions:
    """Config runner options, overridden by any flag given after ``--`` on the command line. The
    local DirectRunner gets its mode from ``local_runner.direct_options`` unless one is given."""
    flagged = PipelineOptions(list(beam_args)).get_all_options(drop_default=True)
    runner = RUNNER_NAMES.get(config.runner.name.lower(), config.runner.name)
    options: dict[str, Any] = dict(config.runner.options)
    if str(flagged.get("runner") or runner) in ("DirectRunner", "direct"):
        chosen = direct_options({**options, **{k: v for k, v in flagged.items() if k.startswith("direct_")}},
                                input_size)
        options.update({k: v for k, v in chosen.items() if k not in flagged})
    # Beam's construction-time type checks cost half the time of building the graph (about a
    # second for a dedup pipeline) and check nothing thresher relies on; runner.options:
    # {pipeline_type_check: true} turns them back on
    options.setdefault("pipeline_type_check", False)
    options = {k: v for k, v in options.items() if k not in flagged}
    if "runner" not in flagged:
        options["runner"] = runner
    return PipelineOptions(flags=list(beam_args), **options)


def shuffle_partitions(config: PipelineConfig, options: PipelineOptions) -> int:
    """Batches per grouping of the corpus stages: 8 per local worker, REMOTE_PARTITIONS elsewhere
    (a partition is held in one worker's memory), unless runner.shuffle_partitions says."""
    if config.runner.shuffle_partitions:
        return config.runner.shuffle_partitions
    all_options = options.get_all_options()
    if str(all_options.get("runner") or "DirectRunner") in ("DirectRunner", "direct"):
        workers = int(all_options.get("direct_num_workers") or 1)
        return max(8, LOCAL_PARTITIONS_PER_WORKER * workers)
    return REMOTE_PARTITIONS


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _counters(result) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    out: dict[str, int] = {}
    for item in query["counters"]:
        try:
            value = item.committed
        except Exception:  # noqa: BLE001 - some runners only report attempted values
            value = None
        if value is None:
            value = item.attempted
        out[item.key.metric.name] = out.get(item.key.metric.name, 0) + int(value or 0)
    return out


def _read_stage_stats(output_dir: str) -> dict[str, dict]:
    directory = posixpath.join(output_dir, STATS_DIR)
    if not FileSystems.exists(directory):
        return {}
    found: dict[str, dict] = {}
    for match in FileSystems.match([posixpath.join(directory, "*.json")])[0].metadata_list:
        with FileSystems.open(match.path) as fh:
            found[posixpath.basename(match.path)[: -len(".json")]] = json.loads(fh.read())
    remove_owned(output_dir, (STATS_DIR,), strict=False)
    return found


def collect_stats(config: PipelineConfig, counters: dict[str, int], stage_stats: dict[str, dict],
                  wall_seconds: float, runner: str) -> dict[str, Any]:
    stages = []
    for index, stage in enumerate(config.stages):
        label = stage_label(index, stage)
        prefix = f"stage/{label}/"
        mine = {k[len(prefix):]: v for k, v in counters.items() if k.startswith(prefix)}
        entry: dict[str, Any] = {
            "index": index,
            "name": stage.name,
            "in": mine.get("in", 0),
            "kept": mine.get("kept", 0),
            "rejected": mine.get("rejected", 0),
            # corpus stages are spread over several fused Beam steps; their time is in the
            # runner's own monitoring (Dataflow UI), not measured here
            "seconds": round(mine["microseconds"] / 1e6, 3) if "microseconds" in mine else None,
            "reasons": {k[len("reason/"):]: v for k, v in sorted(mine.items()) if k.startswith("reason/")},
        }
        if "generated" in mine:
            entry["generated"] = mine["generated"]
        extra = {k[len("extra/"):]: v for k, v in sorted(mine.items()) if k.startswith("extra/")}
        if extra:
            entry["counts"] = extra
        entry.update(stage_stats.get(label, {}))
        stages.append(entry)
    read = counters.get("records_read", 0)
    generated = counters.get("documents_generated", 0)
    kept = counters.get("written_kept", 0)
    rejected = counters.get("written_rejected", 0)
    quarantined = counters.get("written_quarantine", 0)
    totals = {
        "read": read,
        "generated": generated,
        "kept": kept,
        "rejected": rejected,
        "quarantined": quarantined,
        "accounted": read + generated == kept + rejected + quarantined,
    }
    return {
        "config_hash": config.config_hash(),
        "runner": runner,
        "wall_seconds": round(wall_seconds, 3),
        "totals": totals,
        "stages": stages,
        "versions": package_versions(),
        "config": config.to_dict(),
    }


def check_stage_errors(config: PipelineConfig, counters: dict[str, int], output_dir: str) -> None:
    """Fail the run (StageErrorBudgetExceeded, before stats.json is written) when a stage's
    stage_error rejections are over ``output_options.max_stage_error_frac`` of its input.

    Beam's counters are final only when the pipeline has finished, so the budget over the whole
    run is checked here, in the driver; RunDocumentStages stops a run early only when a worker's
    first documents for a stage all fail, which needs no global count."""
    budget = config.output_options.max_stage_error_frac
    over = []
    for index, stage in enumerate(config.stages):
        label = stage_label(index, stage)
        errors = counters.get(f"stage/{label}/reason/{STAGE_ERROR}", 0)
        seen = counters.get(f"stage/{label}/in", 0)
        if errors and errors > budget * seen:
            first = " | ".join(first_stage_errors(output_dir, stage.name))
            over.append(f"stage {label} ({stage.name}) raised on {errors:,} of {seen:,} documents "
                        f"({errors / seen:.1%}; output_options.max_stage_error_frac: {budget}); first errors: {first}")
    if over:
        raise StageErrorBudgetExceeded("; ".join(over) + f". Every failing document is in {output_dir}/rejected/ "
                                       f"with reason {STAGE_ERROR} and its traceback; stats.json was not written")


def first_stage_errors(output_dir: str, stage_name: str, limit: int = 3) -> list[str]:
    """The last lines of the first ``limit`` stage_error tracebacks of ``stage_name`` in rejected/."""
    import gzip

    found: list[str] = []
    pattern = posixpath.join(output_dir, "rejected", "*.jsonl.gz")
    for match in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
            for line in fh:
                if STAGE_ERROR not in line:
                    continue
                record = json.loads(line)
                if record.get("reason") == STAGE_ERROR and record.get("stage") == stage_name:
                    found.append(error_line(str((record.get("meta") or {}).get("error", ""))))
                    if len(found) >= limit:
                        return found
    return found


def run_pipeline(config: PipelineConfig, beam_args: list[str] | None = None,
                 show_progress: bool = False) -> RunResult:
    """Run ``config`` to completion and write OUT/stats.json. Raises ConfigError for problems found
    before any work (an input pattern that matches nothing)."""
    beam_args = list(beam_args or [])
    try:
        files = match_inputs(config.input)
    except ValueError as exc:
        raise ConfigError([(p.split(": ", 1)[0], p.split(": ", 1)[1]) for p in str(exc).split("; ")]) from None
    output_dir = config.output.rstrip("/")
    reached = [(f"input.paths ({path})", f"matches {part} of the output directory, which this run deletes and "
                f"rewrites before reading its input; give this run another output directory")
               for path, _ in files if (part := owned_part_reached(path, output_dir))]
    if reached:  # a symlink into OUT, say: the globs themselves were checked by validation
        raise ConfigError(reached)
    try:
        prepare_output(output_dir)
    except ForeignFiles as exc:
        raise ConfigError([("output", str(exc))]) from None
    options = pipeline_options(config, beam_args, input_bytes(files))
    all_options = options.get_all_options()
    runner = all_options["runner"] or "DirectRunner"
    partitions = shuffle_partitions(config, options)
    progress = Progress(output_dir, enabled=show_progress and "://" not in output_dir)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, config, files, output_dir, progress_dir=progress.directory, partitions=partitions)
    start = time.perf_counter()
    with progress:
        try:
            result = pipeline.run()
            result.wait_until_finish()
        except Exception as exc:
            marker = StageErrorBudgetExceeded.MARKER
            if marker in str(exc):
                # the runner wraps the worker's error: give the user the stage's own message
                detail = str(exc).rsplit(marker + ": ", 1)[1].split("\n", 1)[0].split(" [while running", 1)[0]
                raise StageErrorBudgetExceeded(detail) from None
            raise
    wall = time.perf_counter() - start
    remove_owned(output_dir, (SPILL_DIR,), strict=False)  # parts of retried bundles that nobody read
    counters = _counters(result)
    check_stage_errors(config, counters, output_dir)
    stats = collect_stats(config, counters, _read_stage_stats(output_dir), wall, str(runner))
    stats["input_files"] = len(files)
    if str(runner) in ("DirectRunner", "direct"):
        stats["local_runner"] = {"mode": all_options.get("direct_running_mode"),
                                 "workers": all_options.get("direct_num_workers"), "shuffle_partitions": partitions}
    stats["shuffle_problems"] = check_shuffle_counts(counters)
    atomic_write(posixpath.join(output_dir, "stats.json"),
                 (json.dumps(stats, indent=2, sort_keys=True, default=str) + "\n").encode())
    return RunResult(stats=stats, output_dir=output_dir)
