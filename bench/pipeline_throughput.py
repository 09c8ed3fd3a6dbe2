"""Heuristic stages (gopher_quality, gopher_repetition, c4_quality) in documents/second/core:
(a) called in a plain Python loop over documents in memory, (a') the same whole job as (b) done
by a plain Python script (read the JSON-lines files, filter, write kept/rejected gzip JSON lines),
(b) through the Beam DirectRunner (the whole `thresher run` job), (c) datatrove's Gopher and C4
filters on the same documents in memory, in the same run. The corpus is written as 16 files, as
a crawl would be. Usage:

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


def plain_job(files: list[Path], out: Path) -> tuple[float, int]:
    """What a careful user would write without a framework: read, filter, write."""
    import gzip

    stages = [stage_class(s["name"])() for s in STAGES]
    for stage in stages:
        stage.setup()
    start = time.perf_counter()
    out.mkdir(parents=True)
    kept = 0
    with gzip.open(out / "kept.jsonl.gz", "wt", compresslevel=1) as kept_fh, \
            gzip.open(out / "rejected.jsonl.gz", "wt", compresslevel=1) as rejected_fh:
        for path in files:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    doc = json.loads(line)
                    doc["meta"] = {}
                    for stage in stages:
                        decision = stage.process_batch([doc])[0]
                        if not decision.keep:
                            rejected_fh.write(json.dumps({"id": doc["id"], "stage": stage.name, "reason": decision.reason,
                                                          "value": decision.value, "text": doc["text"]}) + "\n")
                            break
                        doc["meta"].update(decision.scores)
                        if decision.text is not None:
                            doc["text"] = decision.text
                    else:
                        kept += 1
                        kept_fh.write(json.dumps(doc) + "\n")
    return time.perf_counter() - start, kept


def beam_run(paths: list[str], out: Path, workers: int, mode: str) -> tuple[float, int]:
    config = validate_config({
        "input": {"paths": paths}, "output": str(out), "stages": STAGES,
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
    parser.add_argument("--datatrove-docs", type=int, default=2000)
    args = parser.parse_args()
    docs, real = mixed_corpus(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"part-{i:02d}.jsonl" for i in range(16)]
        nbytes = sum(write_jsonl(docs[i::16], path) for i, path in enumerate(files))
        pattern = [str(Path(tmp) / "part-*.jsonl")]
        rows = []
        seconds, kept = plain_loop(docs)
        rows.append(("(a) stage calls in a plain Python loop, documents in memory", seconds, 1, kept, len(docs), nbytes))
        seconds, kept = plain_job(files, Path(tmp) / "plain")
        rows.append(("(a') plain Python script: read files, filter, write gzip", seconds, 1, kept, len(docs), nbytes))
        seconds, kept = beam_run(pattern, Path(tmp) / "b1", 1, "in_memory")
        rows.append(("(b) `thresher run`, DirectRunner in_memory, 1 worker", seconds, 1, kept, len(docs), nbytes))
        cores = min(2, os.cpu_count() or 1)
        seconds, kept = beam_run(pattern, Path(tmp) / "b2", cores, "multi_processing")
        rows.append((f"(b) `thresher run`, DirectRunner multi_processing, {cores} workers", seconds, cores, kept,
                     len(docs), nbytes))
        # datatrove is ~100x slower: it gets a subset (every k-th document), rates are per document
        subset = docs[:: max(1, len(docs) // args.datatrove_docs)]
        path = Path(tmp) / "subset.jsonl"
        subset_bytes = write_jsonl(subset, path)
        peer = datatrove_run(args.datatrove_python, path, 1)
        if peer:
            rows.append((f"(c) datatrove Gopher+C4 filters, documents in memory, 1 process ({len(subset):,} docs)",
                         peer["seconds"], 1, peer["kept"], len(subset), subset_bytes))
    print(f"\n{len(docs):,} documents ({real:,} real from ../shared/data, {len(docs) - real:,} generated), "
          f"{nbytes / 1e6:.1f} MB\n")
    base = rows[0][1] / rows[0][4]
    job = rows[1][1] / rows[1][4]
    print("| path | seconds | docs/s/core | MB/s/core | kept | core-seconds vs (a) | vs (a') |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds, cores, kept, n, size in rows:
        per_doc = seconds * cores / n
        print(f"| {name} | {seconds:.2f} | {n / seconds / cores:,.0f} | {size / 1e6 / seconds / cores:.2f} | "
              f"{kept:,} | {per_doc / base:.2f}x | {per_doc / job:.2f}x |")


if __name__ == "__main__":
    main()
