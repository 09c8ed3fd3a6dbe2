"""Synthetic data: diversity of the template generator, and survival through the heuristic filters.

Part 1 (``--samples``, default 100,000): generation speed, the share of distinct examples and the
distinct-n-gram ratio (distinct n-grams / all n-grams over lower-cased words, n = 1, 2, 4) of the
built-in template set, per task and overall; the reference rows measure the same ratios on real
text of about the same number of words (WikiText-2 from ../shared/data when present; the demo
corpus otherwise), since a distinct-n ratio only means something next to another at a like size.

Part 2: a small pipeline on the demo corpus, ``synthetic`` (template; once with one example per
document, once with several, ``examples_per_document``) + ``augment`` followed by
gopher_quality, gopher_repetition and c4_quality, run with the DirectRunner; survival per kind of
document (original, synthetic, augmented) is read from kept/ and rejected/, and the per-stage
counts from stats.json.

    python bench/synthetic.py [--samples 100000] [--docs 1000] [--synthetic 1000] [--per-document 1 8]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
import time
from pathlib import Path

from thresher.pipeline.synthetic.checks import check_example
from thresher.pipeline.synthetic.templates import TemplateGenerator, TemplateSet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_WORD = re.compile(r"\w+")
NS = (1, 2, 4)


class NgramStats:
    def __init__(self):
        self.seen = {n: set() for n in NS}
        self.total = {n: 0 for n in NS}
        self.words = 0

    def add(self, text: str) -> None:
        words = _WORD.findall(text.lower())
        self.words += len(words)
        for n in NS:
            grams = [hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)]
            self.total[n] += len(grams)
            self.seen[n].update(grams)

    def ratios(self) -> list[float]:
        return [len(self.seen[n]) / max(1, self.total[n]) for n in NS]


def reference_texts(words_wanted: int) -> tuple[str, list[str]]:
    wiki = SHARED / "wiki" / "wikitext-2-valid.txt"
    if wiki.is_file():
        lines = [line.strip() for line in wiki.read_text(encoding="utf-8").splitlines() if line.strip()]
        name = "WikiText-2 valid (real text)"
    else:
        from thresher.pipeline.demo.corpus import generate_demo_corpus

        lines = [d["text"] for d in generate_demo_corpus(3000, seed=2)]
        name = "demo corpus (generated)"
    out, words = [], 0
    for line in lines:
        if words >= words_wanted:
            break
        out.append(line)
        words += len(_WORD.findall(line))
    return f"{name}, {words:,} words", out


def diversity(samples: int) -> None:
    generator = TemplateGenerator(TemplateSet.builtin(), seed=0)
    start = time.perf_counter()
    examples = []
    for offset in range(0, samples, 10_000):
        examples += generator.generate(range(offset, min(samples, offset + 10_000)))
    seconds = time.perf_counter() - start
    failed = sum(not check_example(e.meta)[0] for e in examples)
    by_task: dict[str, list[str]] = collections.defaultdict(list)
    for e in examples:
        by_task[e.meta["task"]].append(e.text)
    overall = NgramStats()
    rows = []
    for task, texts in sorted(by_task.items()):
        stats = NgramStats()
        for t in texts:
            stats.add(t)
            overall.add(t)
        rows.append((task, len(texts), len(set(texts)) / len(texts), stats.ratios(), stats.words))
    print(f"## template generator: {samples:,} samples, {samples / seconds:,.0f} examples/s on one core, "
          f"{failed} failed their checker\n")
    print("| texts | samples | distinct examples | distinct-1 | distinct-2 | distinct-4 | words |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    all_texts = [e.text for e in examples]
    print(f"| all built-in templates | {len(all_texts):,} | {len(set(all_texts)) / len(all_texts):.4f} | "
          + " | ".join(f"{r:.4f}" for r in overall.ratios()) + f" | {overall.words:,} |")
    for task, count, distinct, ratios, words in rows:
        print(f"| task {task} | {count:,} | {distinct:.4f} | " + " | ".join(f"{r:.4f}" for r in ratios)
              + f" | {words:,} |")
    name, texts = reference_texts(overall.words)
    ref = NgramStats()
    for t in texts:
        ref.add(t)
    print(f"| reference: {name} | {len(texts):,} lines | {len(set(texts)) / len(texts):.4f} | "
          + " | ".join(f"{r:.4f}" for r in ref.ratios()) + f" | {ref.words:,} |")


def read_records(directory: Path) -> list[dict]:
    out = []
    for file in sorted(directory.glob("*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as fh:
            out += [json.loads(line) for line in fh]
    return out


def kind_of(source: str) -> str:
    if source.endswith("/augmented"):
        return "augmented (of synthetic)" if source.startswith("synthetic/") else "augmented (of demo)"
    return "synthetic/template" if source.startswith("synthetic/") else "original demo"


def survival(docs: int, synthetic: int, per_document: int) -> None:
    from thresher.pipeline.config import validate_config
    from thresher.pipeline.demo.corpus import generate_demo_corpus
    from thresher.pipeline.run import run_pipeline

    filters = ["gopher_quality", "gopher_repetition", "c4_quality"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo.jsonl"
        data.write_text("".join(json.dumps({"id": d["id"], "text": d["text"], "source": d["source"]}) + "\n"
                                for d in generate_demo_corpus(docs, seed=3)))
        config = validate_config({
            "input": {"paths": [str(data)], "source_field": "source"},
            "output": str(Path(tmp) / "out"),
            "runner": {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}},
            "stages": [{"name": "synthetic", "count": synthetic, "seed": 1, "examples_per_document": per_document},
                       {"name": "augment", "ratio": 0.3, "seed": 1}]
                      + [{"name": f} for f in filters],
        })
        start = time.perf_counter()
        result = run_pipeline(config)
        seconds = time.perf_counter() - start
        kept = read_records(Path(tmp) / "out" / "kept")
        rejected = read_records(Path(tmp) / "out" / "rejected")
    print(f"\n## survival through the heuristic filters ({docs:,} demo documents, {synthetic:,} synthetic "
          f"with {per_document} example(s) each, augment ratio 0.3; {seconds:.0f} s, accounted: {result.accounted})\n")
    print("| stage | in | kept | rejected | generated |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for stage in result.stats["stages"]:
        print(f"| {stage['name']} | {stage['in']:,} | {stage['kept']:,} | {stage['rejected']:,} | "
              f"{stage.get('generated', 0):,} |")
    entered: collections.Counter = collections.Counter()
    survived: collections.Counter = collections.Counter()
    removed: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    reasons: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for d in kept:
        entered[kind_of(d["source"])] += 1
        survived[kind_of(d["source"])] += 1
    for r in rejected:
        entered[kind_of(r["source"])] += 1
        removed[kind_of(r["source"])][r["stage"]] += 1
        reasons[kind_of(r["source"])][f"{r['stage']}: {r['reason']}"] += 1
    print("\n| documents | entered the filters | " + " | ".join(f"rejected by {f}" for f in filters)
          + " | survived | most common reasons |")
    print("| --- | ---: | " + " | ".join("---:" for _ in filters) + " | ---: | --- |")
    for kind in sorted(entered):
        top = ", ".join(f"{reason} ({count})" for reason, count in reasons[kind].most_common(2))
        print(f"| {kind} | {entered[kind]:,} | " + " | ".join(f"{removed[kind][f]:,}" for f in filters)
              + f" | {survived[kind]:,} ({survived[kind] / entered[kind]:.1%}) | {top} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--per-document", type=int, nargs="+", default=[1, 8],
                        help="examples_per_document values to run the survival pipeline with")
    args = parser.parse_args()
    diversity(args.samples)
    for per_document in args.per_document:
        survival(args.docs, args.synthetic, per_document)


if __name__ == "__main__":
    main()
