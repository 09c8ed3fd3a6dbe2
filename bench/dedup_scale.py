"""End-to-end MinHash dedup at scale through the DirectRunner: wall time, throughput and peak memory.

The corpus is generated (nothing here is real text except the vocabulary): documents of about
``--doc-bytes`` bytes whose words are drawn from the WikiText-2 vocabulary with its own word
frequencies; ``--dup-rate`` of them are near-duplicates of an earlier document (1-3% of words
replaced, sometimes a boilerplate line added), so the expected number of removals is known. The
corpus is written as JSON lines, then a Beam pipeline reads it, runs ``minhash_dedup`` (defaults:
128 permutations, word 5-grams, threshold 0.8, signature verification, smallest-id policy) and writes
kept and rejected records as JSON lines.

    python -P bench/dedup_scale.py --docs 100000
    python -P bench/dedup_scale.py --docs 1000000 --through thresher --files 16   # the issue's 1M / ~2 GB run
    python -P bench/dedup_scale.py --docs 1000000 --workers 2 --mode multi_processing   # see benchmarks.md

``--through transform`` (default) runs the ``minhash_dedup`` transform alone and writes ids;
``--through thresher`` runs what a user runs: ``thresher run`` on a config reading the JSON lines,
with ``exact_dedup`` then ``minhash_dedup``, writing the kept documents and full rejection records as
sharded gzip JSON lines plus stats.json (whose record accounting the bench checks).

Peak memory: max RSS of this process (the runner), of the largest worker process
(multi_processing mode), and the peak of their sum, sampled every half second from /proc.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def vocabulary() -> tuple[list[str], np.ndarray]:
    words: Counter = Counter()
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        path = DATA / "wiki" / name
        if path.exists():
            words.update(w for w in path.read_text(encoding="utf-8").split() if w.isalpha())
    if not words:
        raise SystemExit(f"no vocabulary: {DATA / 'wiki'} is missing")
    vocab, counts = zip(*words.most_common())
    p = np.asarray(counts, dtype=np.float64)
    return list(vocab), p / p.sum()


def generate(path: Path, n_docs: int, doc_bytes: int, dup_rate: float, seed: int) -> tuple[int, np.ndarray]:
    """Write the corpus; returns (bytes of text, family): family[i] is the index of the original
    document i was copied from (i itself for originals)."""
    vocab, p = vocabulary()
    vocab_arr = np.asarray(vocab, dtype=object)
    rng = np.random.default_rng(seed)
    words_per_doc = max(20, doc_bytes // 6)
    pool = rng.choice(len(vocab), size=4_000_000, p=p)  # word ids with WikiText frequencies
    originals: list[tuple[np.ndarray, int]] = []
    family = np.arange(n_docs, dtype=np.int64)
    total = 0
    with path.open("w", encoding="utf-8") as out:
        for i in range(n_docs):
            if originals and rng.random() < dup_rate:
                source, family[i] = originals[rng.integers(len(originals))]
                ids = source.copy()
                # 0.2-1% of words replaced: word-5-gram Jaccard >= ~0.9, clearly above 0.8
                k = max(1, int(len(ids) * rng.uniform(0.002, 0.01)))
                ids[rng.integers(0, len(ids), k)] = pool[rng.integers(0, len(pool), k)]
            else:
                start = rng.integers(0, len(pool) - words_per_doc)
                ids = np.roll(pool[start:start + words_per_doc], rng.integers(words_per_doc))
                rng.shuffle(ids)
                if len(originals) < 20_000:
                    originals.append((ids, i))
                else:
                    originals[rng.integers(len(originals))] = (ids, i)
            text = " ".join(vocab_arr[ids])
            total += len(text.encode("utf-8"))
            out.write(json.dumps({"id": f"d{i:09d}", "text": text, "source": "generated", "meta": {}}) + "\n")
    return total, family


def corpus_for(workdir: Path, args) -> tuple[Path, int, np.ndarray, float]:
    """The corpus, generated or (same parameters) reused from an earlier run in ``workdir``."""
    corpus, meta_path, family_path = workdir / "corpus.jsonl", workdir / "corpus.meta.json", workdir / "family.npy"
    params = {"docs": args.docs, "doc_bytes": args.doc_bytes, "dup_rate": args.dup_rate, "seed": args.seed}
    if corpus.exists() and meta_path.exists() and family_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["params"] == params:
            return corpus, meta["text_bytes"], np.load(family_path), 0.0
    start = time.perf_counter()
    text_bytes, family = generate(corpus, args.docs, args.doc_bytes, args.dup_rate, args.seed)
    np.save(family_path, family)
    meta_path.write_text(json.dumps({"params": params, "text_bytes": text_bytes}))
    return corpus, text_bytes, family, time.perf_counter() - start


def split_corpus(corpus: Path, n_docs: int, files: int) -> str:
    """Contiguous id ranges of the corpus in ``files`` files (reused if present); returns a glob."""
    if files <= 1:
        return str(corpus)
    folder = corpus.parent / f"parts-{files}"
    pattern = str(folder / "part-*.jsonl")
    if folder.exists() and len(list(folder.glob("part-*.jsonl"))) == files:
        return pattern
    folder.mkdir(exist_ok=True)
    per_file = -(-n_docs // files)
    with corpus.open(encoding="utf-8") as src:
        for k in range(files):
            with (folder / f"part-{k:04d}.jsonl").open("w", encoding="utf-8") as out:
                for _ in range(per_file):
                    line = src.readline()
                    if not line:
                        break
                    out.write(line)
    return pattern


def removal_pairs(out_dir: Path, through: str) -> list[tuple[str, str]]:
    """(removed id, duplicate_of) of every rejection record the run wrote."""
    if through == "transform":
        files = [f.open(encoding="utf-8") for f in out_dir.glob("rejected*")]
    else:
        files = [gzip.open(f, "rt", encoding="utf-8") for f in sorted((out_dir / "rejected").glob("*.jsonl.gz"))]
    pairs = []
    for fh in files:
        with fh:
            for line in fh:
                record = json.loads(line)
                pairs.append((record["id"], record["duplicate_of"]))
    return pairs


class TreeMemory:
    """Samples the summed RSS of this process and all its descendants (Linux /proc)."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss_mb(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            return 0.0

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return out

    def total_mb(self) -> float:
        total, todo = 0.0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += self._rss_mb(pid)
            todo += self._children(pid)
        return total

    def _loop(self):
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.total_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _runner_options(workers: int | None, mode: str) -> dict:
    """``default``: no option at all, so the local runner's own choice is measured."""
    if mode == "default":
        return {}
    return {"direct_running_mode": mode, "direct_num_workers": workers or 1}


def run(input_path: str, out_dir: Path, workers: int, mode: str, max_rounds: int) -> tuple[float, dict]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from thresher.pipeline.dedup import MinHashDedup
    from thresher.pipeline.local_runner import close_data_stream_race
    from thresher.pipeline.stage_api import StageContext

    if mode != "in_memory":
        close_data_stream_race()
    options = PipelineOptions(**_runner_options(workers, "multi_processing" if mode == "default" else mode))
    ctx = StageContext(index=0, label="minhash_dedup", output_dir=str(out_dir), seed=0, config_hash="bench")
    start = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        docs = p | beam.io.ReadFromText(input_path) | beam.Map(json.loads)
        result = MinHashDedup(max_rounds=max_rounds).expand(docs, ctx)
        _ = (result.kept | "KeptIds" >> beam.Map(lambda d: d["id"])
             | "WriteKept" >> beam.io.WriteToText(str(out_dir / "kept"), num_shards=1))
        _ = (result.rejected | "RejJson" >> beam.Map(lambda r: json.dumps({k: r[k] for k in ("id", "duplicate_of", "value")}))
             | "WriteRejected" >> beam.io.WriteToText(str(out_dir / "rejected"), num_shards=1))
        _ = (result.stats | "StatsJson" >> beam.Map(json.dumps)
             | "WriteStats" >> beam.io.WriteToText(str(out_dir / "stats"), num_shards=1))
    wall = time.perf_counter() - start
    removed, kept = count_lines(out_dir / "rejected"), count_lines(out_dir / "kept")
    stats = json.loads((next(out_dir.glob("stats*"))).read_text().splitlines()[0])
    return wall, {"kept": kept, "removed": removed, "clusters": stats["clusters"], "engine": f"{mode}, {workers} workers"}


def run_thresher(input_path: str, out_dir: Path, workers: int | None, mode: str, max_rounds: int) -> tuple[float, dict]:
    from thresher.pipeline.config import validate_config
    from thresher.pipeline.run import run_pipeline

    config = validate_config({
        "input": {"paths": [input_path], "format": "jsonl"},
        "output": str(out_dir),
        "runner": {"name": "direct", "options": _runner_options(workers, mode)},
        "output_options": {"shards": 8},
        "stages": [{"name": "exact_dedup"}, {"name": "minhash_dedup", "max_rounds": max_rounds}],
    })
    start = time.perf_counter()
    result = run_pipeline(config)
    wall = time.perf_counter() - start
    totals = result.stats["totals"]
    if not result.accounted or totals["quarantined"]:
        raise SystemExit(f"accounting failed: {totals}, {result.stats['shuffle_problems']}")
    engine = result.stats["local_runner"]
    return wall, {"kept": totals["kept"], "removed": totals["rejected"],
                  "clusters": sum(stage.get("clusters", 0) for stage in result.stats["stages"]),
                  "engine": f"{engine['mode']}, {engine['workers']} workers ({mode})"}


def count_lines(prefix: Path) -> int:
    return sum(sum(1 for _ in f.open()) for f in prefix.parent.glob(prefix.name + "*"))


def measured(fn) -> tuple[float, float, dict, float]:
    """(wall s, CPU s of this process and every process it started, result, peak MB of all)."""
    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with TreeMemory() as memory:
        wall, result = fn()
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(b, f) - getattr(a, f) for a, b in ((self0, self1), (kids0, kids1)) for f in ("ru_utime", "ru_stime"))
    return wall, cpu, result, memory.peak_mb


def output_files(out_dir: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for kind in ("kept", "rejected")
            for p in sorted((out_dir / kind).glob("*.gz"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--doc-bytes", type=int, default=2000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: the runner's choice)")
    parser.add_argument("--mode", choices=["default", "multi_processing", "in_memory"], default="default",
                        help="DirectRunner mode; default: the local runner's own choice by input size")
    parser.add_argument("--compare", action="store_true",
                        help="run twice on the same corpus: one process (in_memory) and the default engine, and "
                             "say whether their output files are byte-identical")
    parser.add_argument("--workdir", default=None, help="where the corpus and outputs go (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rounds", type=int, default=20, help="connected-components rounds unrolled")
    parser.add_argument("--files", type=int, default=1,
                        help="split the corpus into this many input files (thresher reshuffles the documents of "
                             "fewer than 16 files, in batches)")
    parser.add_argument("--through", choices=["transform", "thresher"], default="transform",
                        help="the minhash_dedup transform alone, or the whole `thresher run` (exact + minhash)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="dedup_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, text_bytes, family, gen_s = corpus_for(workdir, args)
    inputs = split_corpus(corpus, args.docs, args.files)
    planted = int(np.count_nonzero(family != np.arange(len(family))))
    through = "thresher" if args.compare else args.through
    engines = [("in_memory", 1), ("default", args.workers)] if args.compare else [(args.mode, args.workers)]
    rows, outputs = [], {}
    for mode, workers in engines:
        out_dir = workdir / f"out-{mode}"
        runner = run_thresher if through == "thresher" else run
        wall, cpu, result, peak = measured(lambda: runner(inputs, out_dir, workers, mode, args.max_rounds))
        if result["removed"] + result["kept"] != args.docs:
            raise SystemExit(f"accounting failed: {result['kept']} kept + {result['removed']} removed != {args.docs}")
        # every removal should point into its own family; a removal outside it is a false merge
        pairs = removal_pairs(out_dir, through)
        if len(pairs) != result["removed"]:
            raise SystemExit(f"{len(pairs)} rejection records for {result['removed']} removals")
        index = lambda doc_id: int(doc_id[1:])  # noqa: E731 - "d000001234" -> 1234
        correct = sum(family[index(a)] == family[index(b)] for a, b in pairs)
        planted_removed = sum(family[index(a)] != index(a) for a, _ in pairs)
        rows.append((result, wall, cpu, peak, len(pairs) - correct, planted_removed / max(planted, 1)))
        if through == "thresher":
            outputs[mode] = output_files(out_dir)

    print(f"corpus: {args.docs:,} generated documents, {text_bytes / 1e6:.0f} MB of text, {planted:,} planted "
          f"near-duplicates in {args.files} file(s) (generation {gen_s:.0f}s, 0 = reused; not timed below); "
          f"through: {through}; {os.cpu_count()} CPUs\n")
    print("| docs | engine | MB text | removed | false merges | planted recall | kept | clusters | wall s | CPU s | MB/s | docs/s | peak RSS all MB |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result, wall, cpu, peak, false, recall in rows:
        print(f"| {args.docs:,} | {result['engine']} | {text_bytes / 1e6:.0f} | {result['removed']:,} | {false:,} | "
              f"{recall:.4f} | {result['kept']:,} | {result['clusters']:,} | {wall:.0f} | {cpu:.0f} | "
              f"{text_bytes / 1e6 / wall:.2f} | {args.docs / wall:,.0f} | {peak:,.0f} |")
    if args.compare:
        (_, base, *_), (_, default, *_) = rows
        same = outputs["in_memory"] == outputs["default"]
        print(f"\ndefault engine / one process, wall: {default / base:.2f}x; byte-identical kept/ and rejected/: "
              f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
