"""`thresher run` with `minhash_dedup` alone against the plain datasketch script
(bench/peers_datasketch_dedup.py) on the same generated corpus, both started as commands the way a
user starts them, in the same script run, alternating, repeated:

    python -P bench/dedup_vs_datasketch.py --docs 66000 --doc-bytes 740 --repeats 3

thresher runs three times per repeat: with the local runner's default (a worker process per core from
128 MB / cores of input, else one process), forced to one process (``direct_running_mode:
in_memory``) and forced to a worker per core (``multi_processing``). Wall time is the
command's; CPU time is user + system of the command and every process it started. Quality: the
corpus generator knows each document's family (``bench/dedup_scale.py``), so a removal whose kept
document is from another family is a false merge, and planted recall is the share of planted
near-duplicates removed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_scale import TreeMemory, corpus_for, removal_pairs  # noqa: E402

PEER = Path(__file__).resolve().parent / "peers_datasketch_dedup.py"


def timed(command: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with TreeMemory() as memory:
        done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "peak_mb": memory.peak_mb}


def quality(pairs: list[tuple[str, str]], family: np.ndarray) -> tuple[int, int, float]:
    index = lambda doc_id: int(doc_id[1:])  # noqa: E731 - "d000001234" -> 1234
    planted = int(np.count_nonzero(family != np.arange(len(family))))
    false = sum(family[index(a)] != family[index(b)] for a, b in pairs)
    caught = sum(family[index(a)] != index(a) for a, _ in pairs)
    return len(pairs), false, caught / max(planted, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=66_000)
    parser.add_argument("--doc-bytes", type=int, default=740)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup_vs_datasketch_"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, text_bytes, family, _ = corpus_for(workdir, args)
    configs = {}
    for name, options in (("default", {}), ("in_memory", {"direct_running_mode": "in_memory"}),
                          ("multi_processing", {"direct_running_mode": "multi_processing"})):
        config = {"input": {"paths": [str(corpus)]}, "output": str(workdir / f"out-{name}"),
                  "runner": {"name": "direct", "options": options}, "stages": [{"name": "minhash_dedup"}]}
        configs[name] = workdir / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(config))
    commands = {
        "thresher run (default engine)": [sys.executable, "-m", "thresher.pipeline", "run", str(configs["default"]), "--quiet"],
        "thresher run (in_memory, 1 process)": [sys.executable, "-m", "thresher.pipeline", "run",
                                                str(configs["in_memory"]), "--quiet"],
        "thresher run (multi_processing, a worker per core)": [sys.executable, "-m", "thresher.pipeline", "run",
                                                               str(configs["multi_processing"]), "--quiet"],
        "datasketch script": [sys.executable, str(PEER), str(corpus), str(workdir / "datasketch-removed.tsv")],
    }
    results: dict[str, list[dict]] = {name: [] for name in commands}
    for repeat in range(args.repeats):
        order = list(commands) if repeat % 2 == 0 else list(reversed(commands))
        for name in order:
            results[name].append(timed(commands[name]))
            print(f"repeat {repeat + 1} {name}: {results[name][-1]['wall']:.1f} s", file=sys.stderr)

    keys = {"thresher run (default engine)": "default", "thresher run (in_memory, 1 process)": "in_memory",
            "thresher run (multi_processing, a worker per core)": "multi_processing"}
    runs = {name: json.loads((workdir / f"out-{key}" / "stats.json").read_text()) for name, key in keys.items()}
    pairs = {name: removal_pairs(workdir / f"out-{key}", "thresher") for name, key in keys.items()}
    with open(workdir / "datasketch-removed.tsv", encoding="utf-8") as fh:
        pairs["datasketch script"] = [tuple(line.rstrip("\n").split("\t")) for line in fh]
    same = all((workdir / f"out-{key}" / kind / f.name).read_bytes() == f.read_bytes() for key in ("default", "multi_processing")
               for kind in ("kept", "rejected") for f in (workdir / "out-in_memory" / kind).glob("*.gz"))
    ds = statistics.median(r["wall"] for r in results["datasketch script"])
    print(f"corpus: {args.docs:,} generated documents, {text_bytes / 1e6:.1f} MB of text, one JSON-lines file; "
          f"{os.cpu_count()} CPUs; median of {args.repeats}; default engine: "
          f"{runs['thresher run (default engine)'].get('local_runner')}\n")
    print("| command | wall s | vs datasketch | CPU s | peak RSS MB (all processes) | removed | false merges | planted recall |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in results.items():
        wall = statistics.median(r["wall"] for r in rows)
        cpu = statistics.median(r["cpu"] for r in rows)
        peak = max(r["peak_mb"] for r in rows)
        removed, false, recall = quality(pairs[name], family)
        print(f"| {name} | {wall:.1f} | {wall / ds:.2f}x | {cpu:.1f} | {peak:,.0f} | {removed:,} | {false:,} | {recall:.4f} |")
    print(f"\nthresher's runs wrote byte-identical kept/ and rejected/ files: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
