"""Heuristic stages (gopher_quality, gopher_repetition, c4_quality) in documents/second/core:
(a) called in a plain Python loop, (b) through the Beam DirectRunner (whole job: read JSON lines,
filter, write kept/rejected), (c) datatrove's Gopher and C4 filters on the same documents, in the
same run. Usage:

    python bench/pipeline_throughput.py --docs 20000 [--datatrove-python /work/dt-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_corpus import mixed_corpus, write_jsonl  # noqa: E402

from thresher.pipeline.config import validate_config  # noqa: E402
from thresher.pipeline.registry import stage_class  # noqa: E402
from thresher.pipeline.run import run_pipeline  # noqa: E402

STAGES = [{"name": "gopher_quality"}, {"name": "gopher_repetition"}, {"name": "c4_quality"}]


def plain_loop(docs: list[dict]) -> tuple[float, int]:
    stages = [stage_class(s["name"])() for s in STAGES]
    for stage in stages:
        stage.setup()
    start = time.perf_counter()
    kept = 0
    for doc in docs:
        current = {**doc, "meta": {}}
        for stage in stages:
            decision = stage.process_batch([current])[0]
            if not decision.keep:
                break
            if decision.text is not None:
                current["text"] = decision.text
        else:
            kept += 1
    return time.perf_counter() - start, kept


def beam_run(path: Path, out: Path, workers: int, mode: str) -> tuple[float, int]:
    config = validate_config({
        "input": {"paths": [str(path)]}, "output": str(out), "stages": STAGES,
        "runner": {"name": "direct", "options": {"direct_num_workers": workers, "direct_running_mode": mode}},
    })
    start = time.perf_counter()
    result = run_pipeline(config)
    return time.perf_counter() - start, result.stats["totals"]["kept"]


def datatrove_run(python: str, path: Path, repeat: int) -> dict | None:
    script = Path(__file__).resolve().parent / "peers_datatrove.py"
    if not Path(python).exists() or not script.exists():
        return None
    proc = subprocess.run([python, str(script), "--docs", str(path), "--repeat", str(repeat)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"datatrove failed: {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--datatrove-python", default="/work/dt-venv/bin/python")
    args = parser.parse_args()
    docs, real = mixed_corpus(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.jsonl"
        nbytes = write_jsonl(docs, path)
        rows = []
        seconds, kept = plain_loop(docs)
        rows.append(("(a) plain Python loop, 1 process", seconds, 1, kept))
        seconds, kept = beam_run(path, Path(tmp) / "b1", 1, "in_memory")
        rows.append(("(b) Beam DirectRunner, in_memory, 1 worker (whole job)", seconds, 1, kept))
        cores = min(2, os.cpu_count() or 1)
        seconds, kept = beam_run(path, Path(tmp) / "b2", cores, "multi_processing")
        rows.append((f"(b) Beam DirectRunner, multi_processing, {cores} workers (whole job)", seconds, cores, kept))
        peer = datatrove_run(args.datatrove_python, path, 1)
        if peer:
            rows.append(("(c) datatrove Gopher+C4 filters, 1 process", peer["seconds"], 1, peer["kept"]))
    print(f"\n{len(docs):,} documents ({real:,} real from ../shared/data, {len(docs) - real:,} generated), "
          f"{nbytes / 1e6:.1f} MB\n")
    base = rows[0][1]
    print("| path | seconds | docs/s/core | MB/s/core | kept | time vs (a) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds, cores, kept in rows:
        print(f"| {name} | {seconds:.2f} | {len(docs) / seconds / cores:,.0f} | {nbytes / 1e6 / seconds / cores:.2f} | "
              f"{kept:,} | {seconds * cores / base:.2f}x |")


if __name__ == "__main__":
    main()
