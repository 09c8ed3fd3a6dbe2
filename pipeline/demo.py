"""`thresher demo`: generate the built-in demo corpus, run configs/demo.yaml over it, print the
summary. Needs no download: language id uses cld3, whose model is inside its wheel."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from thresher.pipeline.commands import print_problems, print_summary
from thresher.pipeline.config import ConfigError, apply_overrides, load_yaml, validate_config

DEMO_CONFIG = "demo.yaml"


def demo_config_path() -> Path:
    return Path(str(resources.files("thresher.configs").joinpath(DEMO_CONFIG)))


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    parser.add_argument("--docs", type=int, default=3000, help="documents in the generated corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="DirectRunner worker processes (default: cores)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    args = parser.parse_args(argv)

    from thresher.pipeline.corpus_gen import generate_demo_corpus, write_jsonl
    from thresher.pipeline.run import run_pipeline

    out = Path(args.out).resolve()
    corpus = out / "input" / "demo.jsonl.gz"
    count = write_jsonl(generate_demo_corpus(args.docs, args.seed), corpus)
    print(f"generated {count:,} demo documents -> {corpus}")

    overrides = [f"input.paths=['{corpus}']", f"output={out}", f"seed={args.seed}"]
    if args.workers:
        overrides.append(f"runner.options.direct_num_workers={args.workers}")
    try:
        config = validate_config(apply_overrides(load_yaml(demo_config_path()), overrides + args.set))
        result = run_pipeline(config, show_progress=True)
    except ConfigError as exc:
        print_problems(str(demo_config_path()), exc)
        return 1
    print_summary(result.stats, result.output_dir)
    print(f"\nkept documents: {out}/kept/   rejections with reasons: {out}/rejected/   stats: {out}/stats.json")
    return 0 if result.accounted else 3


if __name__ == "__main__":
    sys.exit(demo_command(sys.argv[1:]))
