"""End-to-end curation throughput (issue 9): thresher's whole pipeline (normalize, language id,
Gopher quality + repetition, C4, MinHash dedup, tokenize) through `run_pipeline` on the Beam
DirectRunner, side by side with datatrove doing the comparable stages (language id, Gopher and C4
filters, its 4-step MinHash dedup, tokenization) in the same script run. Usage:

    python bench/end_to_end.py --docs 100000 [--datatrove-docs 2000] [--mp-workers 2]

Corpus: `shared_corpus.mixed_corpus` (the real WikiText articles and Common Crawl pages from
../shared/data, topped up with generated documents), written as 16 JSON-lines files.

``--engines`` compares thresher with itself instead: the local runner's default engine (a worker
process per core from 128 MB / cores of input) against one process (``direct_running_mode: in_memory``) on
the acceptance pipeline of issue 14 (normalize, gopher_repetition, c4_quality, pii, exact_dedup,
minhash_dedup), same corpus, alternating, ``--repeats`` times; wall time, CPU time of every process,
peak memory of all of them, and whether the output files are byte-identical:

    python -P bench/end_to_end.py --engines --docs 26400 --repeats 3

Both sides tokenize with a model trained once beforehand on the same deterministic sample (every
k-th document), outside the timing: thresher a SentencePiece BPE model (`model_path`), datatrove a
Hugging Face `tokenizers` SentencePiece-style BPE of the same vocabulary size (datatrove's
`DocumentTokenizer` only takes HF tokenizers). Language id: thresher's cld3 backend, datatrove's
`LanguageFilter` with fastText lid.176 (the local ~/.cache/thresher/models/lid.176.ftz from
`thresher models fetch lid176`; nothing is downloaded); both keep English at score >= 0.65.
MinHash: 5-word shingles, 9 bands x 13 rows on both sides (thresher: num_perm 128, threshold 0.8,
for which it picks b=9, r=13; datatrove: 9 buckets x 13 hashes).

datatrove is about 100x slower per document on the Gopher filters, so it runs on a deterministic
subset (every k-th document, about --datatrove-docs of them); thresher also runs on that same subset
so one row compares identical input. Rates are per document and per MB of input text, per core:
docs/s/core = documents / (wall seconds x cores).
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
from thresher.pipeline.run import run_pipeline  # noqa: E402
from thresher.tokenization.spm import TrainerConfig, train_model  # noqa: E402

LANGUAGE_MIN_SCORE = 0.65
DEFAULT_LID = Path(os.environ.get("THRESHER_MODELS", Path.home() / ".cache" / "thresher" / "models")) / "lid.176.ftz"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers_datatrove_pipeline.py"


def thresher_stages(model_path: Path) -> list[dict]:
    return [
        {"name": "normalize"},
        {"name": "language", "backend": "cld3", "keep": ["en"], "min_score": LANGUAGE_MIN_SCORE},
        {"name": "gopher_quality"},
        {"name": "gopher_repetition"},
        {"name": "c4_quality"},
        {"name": "minhash_dedup", "threshold": 0.8, "ngram": 5, "num_perm": 128},
        {"name": "tokenize", "model_path": str(model_path)},
    ]


def write_parts(docs: list[dict], folder: Path, parts: int) -> int:
    folder.mkdir(parents=True)
    return sum(write_jsonl(docs[i::parts], folder / f"part-{i:02d}.jsonl") for i in range(parts))


def thresher_run(folder: Path, out: Path, model_path: Path, workers: int, mode: str) -> dict:
    config = validate_config({
        "input": {"paths": [str(folder / "part-*.jsonl")]}, "output": str(out),
        "stages": thresher_stages(model_path),
        "runner": {"name": "direct", "options": {"direct_num_workers": workers, "direct_running_mode": mode}},
    })
    start, start_cpu = time.perf_counter(), time.process_time()
    result = run_pipeline(config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if not result.stats["totals"]["accounted"]:
        raise RuntimeError(f"thresher run in {out} lost documents: {result.stats['totals']}")
    tokens = next((s.get("tokens") for s in result.stats["stages"] if s["name"] == "tokenize"), None)
    # in_memory runs in this process, so its CPU time is the job's; multi_processing work is elsewhere
    return {"seconds": seconds, "cpu_seconds": cpu if mode == "in_memory" else None,
            "kept": result.stats["totals"]["kept"], "tokens": tokens, "stages": result.stats["stages"]}


ENGINE_STAGES = [{"name": "normalize"}, {"name": "gopher_repetition"}, {"name": "c4_quality"}, {"name": "pii"},
                 {"name": "exact_dedup"}, {"name": "minhash_dedup"}]


def engines(args) -> int:
    """One process against the default local engine, same script, same corpus."""
    import statistics

    from dedup_scale import measured

    docs, real = mixed_corpus(args.docs)
    runs: dict[str, list] = {"one process (in_memory)": [], "default engine": []}
    outputs = {}
    with tempfile.TemporaryDirectory(prefix="thresher-engines-") as tmp_name:
        tmp = Path(tmp_name)
        size = write_parts(docs, tmp / "in", args.files)
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
            for name in order:
                options = {"direct_running_mode": "in_memory"} if name.startswith("one") else {}
                out = tmp / ("one" if name.startswith("one") else "default")
                config = validate_config({"input": {"paths": [str(tmp / "in" / "part-*.jsonl")]}, "output": str(out),
                                          "stages": ENGINE_STAGES, "runner": {"name": "direct", "options": options}})

                def run_once(config=config):
                    start = time.perf_counter()
                    result = run_pipeline(config)
                    return time.perf_counter() - start, result

                wall, cpu, result, peak = measured(run_once)
                if not result.accounted:
                    raise RuntimeError(f"run in {out} lost documents: {result.stats['totals']}")
                runs[name].append((wall, cpu, peak, result.stats))
                outputs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.jsonl.gz"))}
                print(f"repeat {repeat + 1}, {name}: {wall:.1f} s", file=sys.stderr)
    same = outputs["one process (in_memory)"] == outputs["default engine"]
    base = statistics.median(r[0] for r in runs["one process (in_memory)"])
    engine = runs["default engine"][0][3].get("local_runner")
    print(f"\n{len(docs):,} documents ({real:,} real, the rest generated), {size / 1e6:.1f} MB in {args.files} "
          f"JSON-lines files; stages: {', '.join(s['name'] for s in ENGINE_STAGES)}; {os.cpu_count()} CPUs; "
          f"median of {args.repeats}; default engine: {engine}\n")
    print("| engine | wall s | vs one process | CPU s (all processes) | peak RSS MB (all processes) | kept | rejected | quarantined |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, rows in runs.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        peak = max(r[2] for r in rows)
        t = rows[0][3]["totals"]
        print(f"| {name} | {wall:.1f} | {wall / base:.2f}x | {cpu:.1f} | {peak:,.0f} | {t['kept']:,} | "
              f"{t['rejected']:,} | {t['quarantined']:,} |")
    print(f"\nbyte-identical kept/, rejected/ and quarantine/ files: {'yes' if same else 'NO'}")
    return 0


def datatrove(python: str, *args: str) -> dict:
    proc = subprocess.run([python, str(PEER_SCRIPT), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"datatrove {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--datatrove-docs", type=int, default=2000, help="about this many docs for datatrove")
    parser.add_argument("--datatrove-python", default="/work/dt-venv/bin/python")
    parser.add_argument("--vocab-size", type=int, default=16000,
                        help="the generated documents repeat: 3,000 of them support at most ~27,000 pieces")
    parser.add_argument("--tokenizer-sample", type=int, default=3000, help="documents the tokenizers train on")
    parser.add_argument("--mp-workers", type=int, default=2, help="also run multi_processing with N workers; 0: skip")
    parser.add_argument("--lid-model", default=str(DEFAULT_LID), help="lid.176 fastText model for datatrove")
    parser.add_argument("--engines", action="store_true",
                        help="no datatrove: the default local engine against one process (see the module docstring)")
    parser.add_argument("--repeats", type=int, default=3, help="with --engines: runs of each engine")
    args = parser.parse_args()
    if args.engines:
        return engines(args)
    for path, what in ((args.datatrove_python, "datatrove venv python"), (args.lid_model, "lid.176 model")):
        if not Path(path).exists():
            parser.error(f"{what} {path} does not exist (lid.176: `thresher models fetch lid176`)")

    docs, real = mixed_corpus(args.docs)
    step = max(1, len(docs) // args.datatrove_docs)
    subset = docs[::step]
    sample = docs[:: max(1, len(docs) // args.tokenizer_sample)]
    rows, stage_tables = [], {}
    with tempfile.TemporaryDirectory(prefix="thresher-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        full_bytes = write_parts(docs, tmp / "full", args.files)
        subset_bytes = write_parts(subset, tmp / "subset", args.files)
        write_jsonl(sample, tmp / "sample.jsonl")

        start = time.perf_counter()
        model_path = tmp / "spm.model"
        model_path.write_bytes(train_model([d["text"] for d in sample], TrainerConfig(vocab_size=args.vocab_size)))
        spm_seconds = time.perf_counter() - start
        start = time.perf_counter()
        datatrove(args.datatrove_python, "train-tokenizer", "--sample", str(tmp / "sample.jsonl"),
                  "--vocab-size", str(args.vocab_size), "--out", str(tmp / "tokenizer.json"))
        hf_seconds = time.perf_counter() - start

        run = thresher_run(tmp / "full", tmp / "t-full", model_path, 1, "in_memory")
        rows.append(("thresher, DirectRunner in_memory, 1 worker, all documents", len(docs), full_bytes, 1, run))
        stage_tables["thresher in_memory, all documents"] = run["stages"]
        if args.mp_workers:
            run = thresher_run(tmp / "full", tmp / "t-mp", model_path, args.mp_workers, "multi_processing")
            rows.append((f"thresher, DirectRunner multi_processing, {args.mp_workers} workers, all documents",
                         len(docs), full_bytes, args.mp_workers, run))
        run = thresher_run(tmp / "subset", tmp / "t-subset", model_path, 1, "in_memory")
        rows.append((f"thresher, DirectRunner in_memory, 1 worker, datatrove's subset (every {step}th)",
                     len(subset), subset_bytes, 1, run))
        peer = datatrove(args.datatrove_python, "run", "--input", str(tmp / "subset"), "--work", str(tmp / "dt"),
                         "--lid-model", args.lid_model, "--tokenizer", str(tmp / "tokenizer.json"))
        rows.append((f"datatrove 0.10.1, LocalPipelineExecutor 1 task 1 worker, subset (every {step}th)",
                     len(subset), subset_bytes, 1, peer))

    print(f"\n{len(docs):,} documents ({real:,} real from ../shared/data: WikiText articles and Common Crawl "
          f"pages; {len(docs) - real:,} generated by pipeline/demo/corpus.py), {full_bytes / 1e6:.1f} MB, "
          f"{args.files} JSON-lines files; datatrove subset: every {step}th document, {len(subset):,} documents, "
          f"{subset_bytes / 1e6:.2f} MB. Tokenizers trained once beforehand on {len(sample):,} documents, "
          f"vocabulary {args.vocab_size:,} (untimed: SentencePiece {spm_seconds:.1f} s, HF tokenizers "
          f"{hf_seconds:.1f} s including process start).\n")
    peer_rate = len(subset) / peer["seconds"]
    print("| side | documents | MB | seconds | CPU s | cores | docs/s/core | MB/s/core | kept | tokens "
          "| docs/s/core vs datatrove |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, size, cores, r in rows:
        rate = n / r["seconds"] / cores
        cpu = f"{r['cpu_seconds']:.1f}" if r.get("cpu_seconds") is not None else "n/a"
        tokens = f"{r['tokens']:,}" if r.get("tokens") is not None else "n/a"
        print(f"| {name} | {n:,} | {size / 1e6:.2f} | {r['seconds']:.1f} | {cpu} | {cores} | {rate:,.1f} | "
              f"{size / 1e6 / r['seconds'] / cores:.3f} | {r['kept']:,} | {tokens} | {rate / peer_rate:.1f}x |")

    print("\nthresher per stage (in_memory, all documents; per-document stages' own seconds as thresher "
          "counts them; corpus stages run as several fused Beam steps and are not timed separately):\n")
    print("| stage | in | kept | rejected | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for s in stage_tables["thresher in_memory, all documents"]:
        seconds = f"{s['seconds']:.2f}" if s.get("seconds") is not None else "n/a"
        print(f"| {s['name']} | {s['in']:,} | {s['kept']:,} | {s['rejected']:,} | {seconds} |")

    print("\ndatatrove per executor and step (its own stats: each step's time excludes the steps before it):\n")
    print("| executor | wall s | step | step s | counters |")
    print("| --- | ---: | --- | ---: | --- |")
    for executor in peer["executors"]:
        for i, s in enumerate(executor["steps"]):
            counters = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v:.0f}" for k, v in s["stats"].items()
                                 if k not in ("doc_len",) and not k.startswith("line-"))
            label, wall = (executor["label"], f"{executor['seconds']:.2f}") if i == 0 else ("", "")
            print(f"| {label} | {wall} | {s['name'].split(': ', 1)[-1]} | {s['seconds']:.2f} | {counters} |")
    print(f"\ndatatrove: {peer['read']:,} read, {peer['after_filters']:,} after the filters, {peer['kept']:,} after "
          f"dedup, {peer['tokens']:,} tokens; total {peer['seconds']:.1f} s wall, {peer['cpu_seconds']:.1f} s CPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
