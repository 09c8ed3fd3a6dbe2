"""Where a run's time goes, from a py-spy raw profile (``py-spy record -f raw``): every sample is put
in one bucket by its stack, and the buckets are printed as shares. Used for the before/after
profiles of issue 14 (docs/benchmarks.md):

    py-spy record -f raw -r 50 -o prof.txt --subprocesses -- thresher run CONFIG --quiet
    python bench/profile_buckets.py prof.txt

Buckets, first match wins: start-up (a frame inside importlib: importing Beam, numba, thresher),
graph (building the Beam graph and the runner's translation of it, before any bundle runs),
idle (a thread waiting: condition variables, gRPC polling), thresher (the innermost frame is in
thresher's own code or in numpy / numba / xxhash called from it), serialization (json, gzip, zlib,
pickle, called by thresher's readers, writers and parking), Beam (everything else: the runner's
per-element encoding and decoding, grouping tables, bundle scheduling, the data plane)."""

from __future__ import annotations

import sys
from collections import Counter

IDLE = ("Condition.wait", "_serve ", "channel_spin", "_try_wait", "_wait_for_tstate_lock", "Event.wait",
        "Thread.run (threading.py", "select ", "_poll ", "Queue.get")
THRESHER = ("pipeline/", "filters/", "tokenization/", "training/")  # in a frame outside apache_beam
NUMERIC = ("numpy/", "numba/", "xxhash", "llvmlite")
SERIAL = ("json/", "gzip.py", "zlib", "pickle", "encoder.py", "decoder.py", "bz2.py")


def bucket(frames: list[str]) -> str:
    leaf = frames[-1]
    if any("importlib._bootstrap" in f or "<frozen importlib" in f for f in frames):
        return "start-up (imports)"
    if any(f.startswith("build_graph ") or "to_runner_api" in f or "translations.py" in f
           or "create_stages" in f for f in frames) and not any("_execute_bundle" in f for f in frames):
        return "graph build and translation"
    if any(s in leaf for s in IDLE):
        return "idle"
    if any(s in leaf for s in THRESHER) and "apache_beam" not in leaf and "site-packages" not in leaf:
        return "thresher"
    if any(s in leaf for s in NUMERIC) and any(any(t in f for t in THRESHER) and "apache_beam" not in f
                                               for f in frames[-6:]):
        return "thresher"
    if any(s in leaf for s in SERIAL):
        return "serialization (json, gzip, pickle)"
    return "Beam runner machinery"


def main(path: str) -> None:
    counts: Counter = Counter()
    for line in open(path, encoding="utf-8"):
        stack, n = line.rsplit(" ", 1)
        counts[bucket(stack.split(";"))] += int(n)
    busy = sum(n for b, n in counts.items() if b != "idle")
    print("| bucket | share of busy samples |")
    print("| --- | ---: |")
    for name, n in counts.most_common():
        if name != "idle":
            print(f"| {name} | {100 * n / busy:.1f}% |")
    print(f"\n{busy:,} busy samples, {counts['idle']:,} idle")


if __name__ == "__main__":
    main(sys.argv[1])
