"""Running a validated config: runner options, output directory, the Beam run, stats.json, and
the accounting check records read (+ generated) = kept + rejected + quarantined."""

from __future__ import annotations

import json
import os
import platform
import posixpath
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from thresher.pipeline.config import ConfigError, PipelineConfig
from thresher.pipeline.graph import NAMESPACE, STATS_DIR, build_graph, stage_label
from thresher.pipeline.io import SPILL_DIR, atomic_write, match_inputs
from thresher.pipeline.local_runner import direct_options, input_bytes
from thresher.pipeline.progress import Progress
from thresher.pipeline.shuffle import LOCAL_PARTITIONS_PER_WORKER, REMOTE_PARTITIONS, check_shuffle_counts

RUNNER_NAMES = {"direct": "DirectRunner", "dataflow": "DataflowRunner", "flink": "FlinkRunner",
                "spark": "SparkRunner", "prism": "PrismRunner"}
OUTPUT_PARTS = ("kept", "rejected", "quarantine", "shards", STATS_DIR, SPILL_DIR, "_progress", "stats.json",
                "report.html")
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


def prepare_output(output_dir: str) -> None:
    """Remove what an earlier run left in the parts of OUT that thresher owns (nothing else)."""
    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
    for part in OUTPUT_PARTS:
        path = posixpath.join(output_dir, part)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    for part in ("kept", "rejected", "quarantine"):
        if "://" not in output_dir:
            os.makedirs(posixpath.join(output_dir, part), exist_ok=True)


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
    FileSystems.delete([directory])
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
    prepare_output(output_dir)
    options = pipeline_options(config, beam_args, input_bytes(files))
    all_options = options.get_all_options()
    runner = all_options["runner"] or "DirectRunner"
    partitions = shuffle_partitions(config, options)
    progress = Progress(output_dir, enabled=show_progress and "://" not in output_dir)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, config, files, output_dir, progress_dir=progress.directory, partitions=partitions)
    start = time.perf_counter()
    with progress:
        result = pipeline.run()
        result.wait_until_finish()
    wall = time.perf_counter() - start
    spill = posixpath.join(output_dir, SPILL_DIR)
    if FileSystems.exists(spill):  # parts of retried bundles that nobody read
        FileSystems.delete([spill])
    counters = _counters(result)
    stats = collect_stats(config, counters, _read_stage_stats(output_dir), wall, str(runner))
    stats["input_files"] = len(files)
    if str(runner) in ("DirectRunner", "direct"):
        stats["local_runner"] = {"mode": all_options.get("direct_running_mode"),
                                 "workers": all_options.get("direct_num_workers"), "shuffle_partitions": partitions}
    stats["shuffle_problems"] = check_shuffle_counts(counters)
    atomic_write(posixpath.join(output_dir, "stats.json"),
                 (json.dumps(stats, indent=2, sort_keys=True, default=str) + "\n").encode())
    return RunResult(stats=stats, output_dir=output_dir)
