"""``thresher report OUT_DIR [--out FILE] ...``."""

from __future__ import annotations

import argparse
import sys

from thresher.pipeline.report.builder import REPORT_NAME, ReportBuilder
from thresher.pipeline.report.data import ReportError

def report_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher report",
                                     description="Write a self-contained HTML report of a run's output directory.")
    parser.add_argument("out_dir", help="the output directory of `thresher run` / `thresher demo`")
    parser.add_argument("--out", default=None, help=f"report file (default: OUT_DIR/{REPORT_NAME})")
    parser.add_argument("--sample", type=int, default=20_000, help="documents sampled per side (default 20000)")
    parser.add_argument("--max-scan", type=int, default=1_000_000,
                        help="lines read per side at most (default 1000000; only sampled lines are parsed)")
    parser.add_argument("--max-shard-rows", type=int, default=1_000_000, help="shard rows read at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("sample", "max_scan", "max_shard_rows"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    builder = ReportBuilder(sample=args.sample, max_scan=args.max_scan, max_shard_rows=args.max_shard_rows,
                            seed=args.seed)
    try:
        path = builder.write(args.out_dir, args.out)
    except ReportError as exc:
        print(f"thresher report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
