"""datatrove doing the curation stages thresher's end-to-end benchmark runs (language id, Gopher and
C4 filters, MinHash dedup, tokenization) with its own ``LocalPipelineExecutor``, timed.

Run it with the separate datatrove venv (datatrove is not a thresher dependency):

    /work/dt-venv/bin/python bench/peers_datatrove_pipeline.py train-tokenizer --sample S.jsonl \
        --vocab-size 32000 --out tokenizer.json
    /work/dt-venv/bin/python bench/peers_datatrove_pipeline.py run --input DIR --work DIR \
        --lid-model lid.176.ftz --tokenizer tokenizer.json

``train-tokenizer`` (untimed, done once): datatrove's ``DocumentTokenizer`` takes a Hugging Face
``tokenizers`` tokenizer and would download one by name; offline we train a SentencePiece-style BPE
(``SentencePieceBPETokenizer``: Metaspace pre-tokenizer, byte-less BPE) with the ``tokenizers``
library on the same sample and vocabulary size thresher's SentencePiece model is trained on, and
save it as tokenizer.json. ``</s>`` is its end-of-document token, as thresher appends EOS.

``run`` is the pipeline datatrove's own MinHash example (and FineWeb) uses, five executors, one task
and one worker each, run in this process one after another:

1. filter: JsonlReader -> LanguageFilter(en) -> GopherQualityFilter -> GopherRepetitionFilter ->
   C4QualityFilter -> JsonlWriter (the filtered documents, which the dedup steps read again)
2. MinhashDedupSignature (JsonlReader of step 1's output)
3. MinhashDedupBuckets (datatrove requires one task per band: ``bands`` tasks, run one after
   another by the single worker)
4. MinhashDedupCluster
5. JsonlReader -> MinhashDedupFilter -> DocumentTokenizer

Offline: ``LanguageFilter`` downloads lid.176.bin on first use through
``cached_asset_path_or_download(MODEL_URL)``; pointing the filter's ``MODEL_URL`` at a local
lid.176.ftz makes that a local file copy (fsspec), so nothing leaves the machine. The filters' English
word tokenizer is spaCy's blank pipeline (no model download); NLTK data is pointed at an empty
directory so any hidden reach for punkt fails loudly.

Prints one JSON line: per executor the wall seconds and datatrove's per-step stats (each step's
own time and counters), the total wall and CPU seconds, and the document counts after filtering and dedup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ["NLTK_DATA"] = tempfile.mkdtemp(prefix="no-nltk-data-")
EOS = "</s>"


def train_tokenizer(sample: str, vocab_size: int, out: str) -> None:
    from tokenizers import SentencePieceBPETokenizer

    texts = []
    with open(sample, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                texts.append(json.loads(line)["text"])
    tokenizer = SentencePieceBPETokenizer()
    tokenizer.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<unk>", "<s>", EOS],
                                  show_progress=False)
    tokenizer.save(out)


def step_stats(stats) -> list[dict]:
    """datatrove's per-step stats: name, the step's own seconds, and its counters."""
    rows = []
    for step in stats.stats:
        counters = {key: metric.total for key, metric in step.stats.items()}
        rows.append({"name": step.name, "seconds": step.time_stats.total, "stats": counters})
    return rows


def run(args: argparse.Namespace) -> dict:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    work = args.work
    language = LanguageFilter(languages=["en"], language_threshold=args.language_threshold)
    language.model.MODEL_URL = os.path.abspath(args.lid_model)  # a local file: copied, not downloaded
    config = MinhashConfig(n_grams=args.ngram, num_buckets=args.bands, hashes_per_bucket=args.rows,
                           hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    filtered = f"{work}/filtered"
    executors = {
        "filter (read, language, Gopher quality + repetition, C4, write)": [
            JsonlReader(args.input, glob_pattern="*.jsonl", compression=None),
            language, GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(),
            JsonlWriter(filtered),
        ],
        "minhash 1: signatures": [JsonlReader(filtered), MinhashDedupSignature(f"{work}/sigs", config=config)],
        "minhash 2: buckets": [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=config)],
        "minhash 3: cluster": [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove_ids", config=config)],
        "minhash 4: filter + tokenize": [
            JsonlReader(filtered), MinhashDedupFilter(f"{work}/remove_ids"),
            DocumentTokenizer(f"{work}/tokens", tokenizer_name_or_path=args.tokenizer, eos_token=EOS,
                              local_working_dir=f"{work}/tokens-tmp", seed=0),
        ],
    }
    report: dict = {"executors": [], "seconds": 0.0}
    start_cpu = time.process_time()
    for i, (label, pipeline) in enumerate(executors.items()):
        # the buckets step needs one task per band; they run one after another in this process
        tasks = args.bands if label.startswith("minhash 2") else 1
        executor = LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=f"{work}/logs/{i}",
                                         skip_completed=False)
        start = time.perf_counter()
        stats = executor.run()
        seconds = time.perf_counter() - start
        report["seconds"] += seconds
        report["executors"].append({"label": label, "seconds": seconds, "steps": step_stats(stats)})
    report["cpu_seconds"] = time.process_time() - start_cpu
    steps = report["executors"]
    report["read"] = _counter(steps[0]["steps"], "READER", "documents")
    report["after_filters"] = _counter(steps[0]["steps"], "WRITER", "total")
    report["kept"] = _counter(steps[4]["steps"], "MinHash stage 4", "forwarded")
    report["tokens"] = _counter(steps[4]["steps"], "Tokenizer", "tokens")
    return report


def _counter(steps: list[dict], name_part: str, key: str) -> int | None:
    for step in steps:
        if name_part.lower() in step["name"].lower() and key in step["stats"]:
            return int(step["stats"][key])
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-tokenizer")
    train.add_argument("--sample", required=True, help="JSON lines with a 'text' field")
    train.add_argument("--vocab-size", type=int, default=32000)
    train.add_argument("--out", required=True)
    go = sub.add_parser("run")
    go.add_argument("--input", required=True, help="folder of *.jsonl files")
    go.add_argument("--work", required=True, help="empty folder for datatrove's intermediate files")
    go.add_argument("--lid-model", required=True, help="a local lid.176 fastText model")
    go.add_argument("--tokenizer", required=True, help="tokenizer.json from train-tokenizer")
    go.add_argument("--language-threshold", type=float, default=0.65)
    go.add_argument("--ngram", type=int, default=5)
    go.add_argument("--bands", type=int, default=9)
    go.add_argument("--rows", type=int, default=13)
    args = parser.parse_args()
    if args.command == "train-tokenizer":
        train_tokenizer(args.sample, args.vocab_size, args.out)
        print(json.dumps({"tokenizer": args.out}))
        return 0
    for path, what in ((args.input, "input folder"), (args.lid_model, "lid.176 model"),
                       (args.tokenizer, "tokenizer.json")):
        if not os.path.exists(path):
            print(f"{what} {path} does not exist", file=sys.stderr)
            return 2
    print(json.dumps(run(args), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
