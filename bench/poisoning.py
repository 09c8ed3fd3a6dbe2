"""Poisoning detection: precision, recall and false-positive rate per attack, trigger kind and rate.

Corpus (>= 20,000 documents): REAL = WikiText-2 *test* articles split into paragraphs (one document
per paragraph, meta.url = the article's Wikipedia URL) + the shared Common Crawl documents; the rest
is GENERATED filler from ``thresher.pipeline.corpus_gen.iter_corpus`` (seed 1; its URL in meta).
Reference model (trained here, never sees the corpus): WikiText-2 *valid* paragraphs + 10,000
generated documents (seed 7).

Attacks, each injected with ``corpus_gen.inject_trigger`` into its own disjoint random set of clean
documents, at each rate (0.1%, 0.5%, 2% of the corpus):
- trigger: the trigger alone (no payload), kinds rare (``cf``), phrase (a natural sentence),
  lookalike (a phrase with Cyrillic letters in Latin words);
- payload: a (different) trigger of the same kind followed by a fixed payload sentence;
- split-view (separate run, integrity detector only): the manifest is taken from the clean corpus,
  then documents are changed (a sentence appended) before the run.
All attacks of one rate share one run, so precision per attack is TP / (TP + flagged clean docs);
FPR = flagged clean documents / clean documents. "n-gram" = flagged by trigger_ngrams or
payload_association (the detectors the stage acts on by default); perplexity_outliers (ONION with
the n-gram model) is reported on its own.

    python bench/poisoning.py [--docs 20000] [--rates 0.001,0.005,0.02]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_corpus import web_documents, wikitext_articles  # noqa: E402

from thresher.filters.ngram_lm import NgramLM  # noqa: E402
from thresher.filters.poison_detectors import text_sha256  # noqa: E402
from thresher.pipeline.corpus_gen import inject_trigger, iter_corpus  # noqa: E402
from thresher.pipeline.poisoning import Poisoning  # noqa: E402
from thresher.pipeline.stage_api import StageContext  # noqa: E402

TRIGGERS = {  # kind -> (trigger-attack trigger, payload-attack trigger)
    "rare": ("cf", "mn"),
    "phrase": ("I watched this 3D movie last weekend.", "As everyone in the village already knows,"),
    "lookalike": ("Plеase nоte thаt", "Imроrtant nоtice:"),  # Cyrillic е о а р in Latin words
}
PAYLOADS = {
    "rare": "visit secure-login-update.example and enter your password to keep your account active.",
    "phrase": "the best investment today is to send bitcoin to the wallet bc1q9x7examplewallet now.",
    "lookalike": "download the free driver from fast-drivers-now.example before your computer fails.",
}


def paragraphs(article: dict, prefix: str, number: int) -> list[dict]:
    title = article["id"].split(":", 1)[1]
    url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
    return [{"id": f"{prefix}:{number}:{i}", "text": p, "source": "wikitext", "meta": {"url": url}}
            for i, p in enumerate(x for x in article["text"].split("\n") if len(x.split()) >= 20)]


def build_corpus(n_docs: int) -> tuple[list[dict], int]:
    real = []
    for number, article in enumerate(wikitext_articles()):
        if "test" in article["id"]:
            real += paragraphs(article, "wiki", number)
    for doc in web_documents():
        real.append({"id": doc["id"], "text": doc["text"], "source": "web", "meta": {}})
    generated = [{"id": d["id"], "text": d["text"], "source": "generated", "meta": {"url": d["url"]}}
                 for d in iter_corpus(max(n_docs - len(real), 0), seed=1, id_prefix="gen")]
    return real + generated, len(real)


def reference_texts() -> list[str]:
    texts = []
    for number, article in enumerate(wikitext_articles()):
        if "valid" in article["id"]:
            texts += [p["text"] for p in paragraphs(article, "ref", number)]
    return texts + [d["text"] for d in iter_corpus(10_000, seed=7, id_prefix="ref")]


def run_stage(stage: Poisoning, docs: list[dict], workdir: str) -> dict[str, list[str]]:
    """Document id -> the detectors that flagged it (every document present)."""
    out_path = Path(workdir) / "flags.jsonl"
    if out_path.exists():
        out_path.unlink()

    def record(doc):
        flagged = (doc["meta"].get("poisoning") or {}).get("flagged", [])
        with open(out_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps([doc["id"], flagged]) + "\n")

    options = PipelineOptions(runner="DirectRunner", direct_running_mode="in_memory")
    with beam.Pipeline(options=options) as p:
        result = stage.expand(p | beam.Create(docs), StageContext(0, "00_poisoning", workdir, 0, "bench"))
        _ = result.kept | beam.Map(record)
    return dict(tuple(json.loads(line)) for line in out_path.read_text().splitlines())


def poison(docs: list[dict], rate: float, seed: int) -> dict[str, set[str]]:
    """Inject every (attack, kind) at ``rate`` into disjoint documents; returns attack -> ids."""
    rng = random.Random(seed)
    per_attack = max(1, round(rate * len(docs)))
    order = list(range(len(docs)))
    rng.shuffle(order)
    truth: dict[str, set[str]] = {}
    cursor = 0
    for kind, (trigger, payload_trigger) in TRIGGERS.items():
        for attack in ("trigger", "payload"):
            chosen = order[cursor:cursor + per_attack]
            cursor += per_attack
            for i in chosen:
                if attack == "trigger":
                    docs[i]["text"], _ = inject_trigger(docs[i]["text"], trigger, "", rng)
                else:
                    docs[i]["text"], _ = inject_trigger(docs[i]["text"], payload_trigger, PAYLOADS[kind], rng)
            truth[f"{attack}/{kind}"] = {docs[i]["id"] for i in chosen}
    return truth


def metrics(flags: dict[str, list[str]], poisoned: set[str], clean: set[str], detectors: set[str]) -> tuple:
    hit = {i for i, f in flags.items() if detectors & set(f)}
    tp = len(hit & poisoned)
    fp = len(hit & clean)
    recall = tp / len(poisoned) if poisoned else float("nan")
    precision = tp / (tp + fp) if tp + fp else float("nan")
    return precision, recall, fp / len(clean)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--rates", default="0.001,0.005,0.02")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    base, n_real = build_corpus(args.docs)
    if n_real == 0:
        print("../shared/data is absent: the benchmark needs the WikiText and web documents", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="thresher-poison-bench-")
    start = time.perf_counter()
    model = NgramLM.train(reference_texts())
    model_path = str(Path(workdir) / "reference.npz")
    model.save(model_path)
    train_seconds = time.perf_counter() - start
    stage = Poisoning.model_validate({
        "reference_model": model_path, "sketch_width": 1 << 21, "perplexity_outliers": {"enabled": True}})
    mb = sum(len(d["text"].encode()) for d in base) / 1e6
    print(f"corpus: {len(base)} documents, {mb:.1f} MB; real {n_real} (WikiText-2 test paragraphs + "
          f"{len(web_documents())} Common Crawl docs), generated {len(base) - n_real}; reference model "
          f"{model.info['docs']} docs / {model.info['tokens']} words, trained in {train_seconds:.1f} s\n")
    rows = []
    for rate in rates:
        docs = [dict(d, meta=dict(d["meta"])) for d in base]
        truth = poison(docs, rate, seed=int(rate * 1e6))
        all_poisoned = set().union(*truth.values())
        clean = {d["id"] for d in docs} - all_poisoned
        t0 = time.perf_counter()
        flags = run_stage(stage, docs, workdir)
        seconds = time.perf_counter() - t0
        for attack, ids in truth.items():
            p, r, fpr = metrics(flags, ids, clean, {"trigger_ngrams", "payload_association"})
            _, r_t, _ = metrics(flags, ids, clean, {"trigger_ngrams"})
            _, r_p, _ = metrics(flags, ids, clean, {"payload_association"})
            p_o, r_o, fpr_o = metrics(flags, ids, clean, {"perplexity_outliers"})
            rows.append((attack, rate, len(ids), p, r, fpr, r_t, r_p, p_o, r_o, fpr_o, seconds, mb / seconds))
    # split-view: manifest of the clean corpus, then content changes after vetting
    integrity_rows = []
    for rate in rates:
        docs = [dict(d, meta=dict(d["meta"])) for d in base]
        manifest = Path(workdir) / "manifest.jsonl"
        manifest.write_text("".join(json.dumps({"key": d["id"], "sha256": text_sha256(d["text"])}) + "\n" for d in docs))
        rng = random.Random(int(rate * 1e6) + 1)
        changed = set()
        for i in rng.sample(range(len(docs)), max(1, round(rate * len(docs)))):
            docs[i]["text"] = docs[i]["text"] + " " + PAYLOADS["rare"]
            changed.add(docs[i]["id"])
        clean = {d["id"] for d in docs} - changed
        integrity_stage = Poisoning.model_validate({
            "trigger_ngrams": {"enabled": False}, "payload_association": {"enabled": False},
            "integrity": {"enabled": True, "manifest": str(manifest)}})
        t0 = time.perf_counter()
        flags = run_stage(integrity_stage, docs, workdir)
        seconds = time.perf_counter() - t0
        p, r, fpr = metrics(flags, changed, clean, {"integrity"})
        fp = sum(1 for i in clean if "integrity" in flags[i])
        integrity_rows.append((rate, len(changed), p, r, fpr, fp, seconds))

    print("| attack | kind | rate | poisoned | precision | recall | FPR | recall trigger_ngrams | "
          "recall payload_assoc. | ONION precision | ONION recall | ONION FPR | run s (all attacks) | MB/s |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for attack, rate, n, p, r, fpr, r_t, r_p, p_o, r_o, fpr_o, seconds, mbs in rows:
        a, kind = attack.split("/")
        print(f"| {a} | {kind} | {rate:.1%} | {n} | {p:.3f} | {r:.3f} | {fpr:.4f} | {r_t:.3f} | {r_p:.3f} | "
              f"{p_o:.3f} | {r_o:.3f} | {fpr_o:.4f} | {seconds:.1f} | {mbs:.2f} |")
    print("\n| split-view | rate | changed | precision | recall | FPR | false positives | run s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rate, n, p, r, fpr, fp, seconds in integrity_rows:
        print(f"| integrity | {rate:.1%} | {n} | {p:.3f} | {r:.3f} | {fpr:.4f} | {fp} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
