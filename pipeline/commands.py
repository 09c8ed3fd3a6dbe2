"""`thresher run` and `thresher validate`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from thresher.pipeline.config import ConfigError, PipelineConfig, load_config


def _split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def print_problems(path: str, error: ConfigError) -> None:
    print(f"{path}: {len(error.problems)} problem{'s' if len(error.problems) != 1 else ''}", file=sys.stderr)
    for where, message in error.problems:
        print(f"  {where}: {message}" if where else f"  {message}", file=sys.stderr)


def _load(args: argparse.Namespace, beam_args: list[str]) -> PipelineConfig | None:
    try:
        return load_config(args.config, args.set, beam_args)
    except ConfigError as exc:
        print_problems(args.config, exc)
        return None


def validate_command(argv: list[str]) -> int:
    own, beam_args = _split_beam_args(argv)
    parser = argparse.ArgumentParser(prog="thresher validate", description="Check a pipeline config; "
                                     "print every problem with its YAML path. Arguments after `--` are the "
                                     "Beam pipeline options `thresher run` would get (--runner, --temp_location).")
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(own)
    config = _load(args, beam_args)
    if config is None:
        return 1
    names = ", ".join(s.name for s in config.stages) or "(none)"
    print(f"{args.config}: ok ({len(config.stages)} stages: {names}; config hash {config.config_hash()[:12]})")
    return 0


def run_command(argv: list[str]) -> int:
    own, beam_args = _split_beam_args(argv)
    parser = argparse.ArgumentParser(prog="thresher run", description="Run a curation pipeline. "
                                     "Arguments after `--` go to Beam as pipeline options.")
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set stages.1.min_score=0.7")
    parser.add_argument("--quiet", action="store_true", help="no progress display or summary table")
    args = parser.parse_args(own)
    config = _load(args, beam_args)
    if config is None:
        return 1
    from thresher.pipeline.graph import StageErrorBudgetExceeded
    from thresher.pipeline.run import run_pipeline
    from thresher.tokenization.spm import TokenizerTrainingError

    try:
        result = run_pipeline(config, beam_args, show_progress=not args.quiet)
    except ConfigError as exc:
        print_problems(args.config, exc)
        return 1
    except StageErrorBudgetExceeded as exc:
        print(f"RUN FAILED: {exc}", file=sys.stderr)
        return 4
    except TokenizerTrainingError as exc:
        print(f"{args.config}: tokenize: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print_summary(result.stats, result.output_dir)
    if not result.accounted:
        t = result.stats["totals"]
        if not t["accounted"]:
            print(f"ACCOUNTING MISMATCH: read {t['read']} + generated {t['generated']} != kept {t['kept']} + "
                  f"rejected {t['rejected']} + quarantined {t['quarantined']}", file=sys.stderr)
        for problem in result.stats.get("shuffle_problems") or []:
            print(f"INCOMPLETE: {problem}; do not use this output", file=sys.stderr)
        return 3
    return 0


def _details(stage: dict[str, Any]) -> str:
    """The stage-specific numbers worth a glance: reasons, PII by type, clusters, tokens."""
    parts = [f"{r} {n:,}" for r, n in sorted(stage.get("reasons", {}).items(), key=lambda kv: -kv[1])[:3]]
    counts = stage.get("counts") or {}
    if counts:
        parts.append(" ".join(f"{k.split('.', 1)[-1]} {v:,}" for k, v in sorted(counts.items())))
    if "clusters" in stage:
        parts.append(f"{stage['clusters']:,} clusters")
    if "tokens" in stage:
        parts.append(f"{stage['tokens']:,} tokens in {stage.get('shards', '?')} shards")
    if stage.get("generated"):
        parts.append(f"generated {stage['generated']:,}")
    return "; ".join(parts)


def print_summary(stats: dict[str, Any], output_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    table = Table(title=f"thresher: {output_dir}", title_justify="left")
    for column in ("stage", "in", "kept", "rejected", "seconds", "details"):
        table.add_column(column, justify="right" if column in ("in", "kept", "rejected", "seconds") else "left")
    for stage in stats["stages"]:
        table.add_row(
            f"{stage['index']}. {stage['name']}", f"{stage['in']:,}", f"{stage['kept']:,}", f"{stage['rejected']:,}",
            "" if stage["seconds"] is None else f"{stage['seconds']:.2f}", _details(stage),
        )
    t = stats["totals"]
    console.print(table)
    generated = f" + generated {t['generated']:,}" if t["generated"] else ""
    verdict = "[green]all accounted for[/green]" if t["accounted"] else "[red]MISMATCH[/red]"
    console.print(f"read {t['read']:,}{generated} = kept {t['kept']:,} + rejected {t['rejected']:,} + "
                  f"quarantined {t['quarantined']:,}: {verdict}   ({stats['wall_seconds']:.1f}s wall)")
    if t["quarantined"]:
        console.print(f"[yellow]{t['quarantined']:,} input records could not be parsed; "
                      f"see {output_dir}/quarantine/[/yellow]")
