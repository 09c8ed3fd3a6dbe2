"""Poisoning detection: precision, recall and false-positive rate per attack, trigger kind and rate.

Corpus (>= 20,000 documents): REAL = WikiText-2 *test* articles split into paragraphs (one document
per paragraph, meta.url = the article's Wikipedia URL) + the shared Common Crawl documents; the rest
is GENERATED filler from ``thresher.pipeline.demo.corpus.iter_corpus`` (seed 1; its URL in meta).
Reference model (trained here, never sees the corpus): WikiText-2 *valid* paragraphs + 10,000
generated documents (seed 7).

Attacks, each injected with ``thresher.pipeline.demo.corpus.inject_trigger`` into its own disjoint random set of clean
documents, at each rate (0.1%, 0.5%, 2% of the corpus):
- trigger: the trigger alone (no payload), kinds rare (``cf``), phrase (a natural sentence),
  lookalike (a phrase with Cyrillic letters in Latin words);
- payload: a (different) trigger of the same kind followed by a fixed payload sentence;
- split-view (separate run, integrity detector only): the manifest is taken from the clean corpus,
  then documents are changed (a sentence appended) before the run.
All attacks of one rate share one run, so precision per attack is TP / (TP + flagged clean docs);
FPR = flagged clean documents / clean documents. "n-gram" = flagged by trigger_ngrams or
payload_association (the detectors the stage acts on by default); perplexity_outliers (ONION with
the n-gram model) is reported on its own. Per rate the stage's own numbers are printed too: the
n-grams tested (the Bonferroni family) and the fewest documents in which an n-gram the reference
never saw can be significant.

Transformer second pass (``--checkpoint`` or ``--train-checkpoint``): the documents the n-gram
detectors flagged are scored word by word with ``thresher.filters.onion_transformer`` (what the
stage's perplexity_outliers.checkpoint runs), timed on its own; reported per attack: how often the
top-scored word lies inside the injected text. ``--train-checkpoint STEPS`` first trains a model
(``--checkpoint-preset``) on the reference texts (tokenizer, shards and ``thresher train`` as usual).

    python bench/poisoning.py [--docs 20000] [--rates 0.001,0.005,0.02]
                              [--checkpoint DIR | --train-checkpoint STEPS [--checkpoint-preset tiny]]
"""

from __future__ import annotations

import argparse
import json
import math
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
from thresher.pipeline.demo.corpus import inject_trigger, iter_corpus  # noqa: E402
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


def run_stage(stage: Poisoning, docs: list[dict], workdir: str) -> tuple[dict[str, list[str]], dict]:
    """Document id -> the detectors that flagged it (every document present), and the stage's
    numeric stats (ngrams_tested, ngram_tokens, ...)."""
    out_path = Path(workdir) / "flags.jsonl"
    stats_path = Path(workdir) / "stats.jsonl"
    for path in (out_path, stats_path):
        if path.exists():
            path.unlink()

    def record(doc):
        flagged = (doc["meta"].get("poisoning") or {}).get("flagged", [])
        with open(out_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps([doc["id"], flagged]) + "\n")

    def record_stats(item):
        numbers = {k: v for k, v in item.items() if isinstance(v, (int, float))}
        if numbers:
            with open(stats_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(numbers) + "\n")

    options = PipelineOptions(runner="DirectRunner", direct_running_mode="in_memory")
    with beam.Pipeline(options=options) as p:
        result = stage.expand(p | beam.Create(docs), StageContext(0, "00_poisoning", workdir, 0, "bench"))
        _ = result.kept | beam.Map(record)
        if result.stats is not None:
            _ = result.stats | beam.Map(record_stats)
    stats: dict = {}
    for line in stats_path.read_text().splitlines() if stats_path.exists() else []:
        for k, v in json.loads(line).items():
            stats[k] = stats.get(k, 0) + v
    return dict(tuple(json.loads(line)) for line in out_path.read_text().splitlines()), stats


def detection_limit(stage: Poisoning, stats: dict, reference_tokens: int) -> int | None:
    """The fewest documents in which an n-gram the reference never saw passes the trigger test:
    corpus_share ** docs <= max_p_value / ngrams_tested."""
    tested, tokens = stats.get("ngrams_tested"), stats.get("ngram_tokens")
    if not tested or not tokens:
        return None
    share = tokens / (tokens + reference_tokens)
    need = -math.log10(stage.trigger_ngrams.max_p_value) + math.log10(max(tested, 1))
    return math.ceil(need / -math.log10(share))


def train_checkpoint(texts: list[str], workdir: Path, steps: int, preset: str) -> Path:
    """A `thresher train` run on the reference texts: tokenizer, shards (last one held out), model."""
    from thresher.tokenization.manifest import LocalShardWriter
    from thresher.tokenization.shards import ShardRecord, build_table
    from thresher.tokenization.spm import Encoder, TrainerConfig, train_model
    from thresher.training.config import TrainConfig
    from thresher.training.loop import train

    model_bytes = train_model(texts, TrainerConfig(vocab_size=8000))
    encoder = Encoder(model_bytes)
    writer = LocalShardWriter(workdir / "ref-shards", model_bytes)
    tokens = encoder.encode_batch(texts)
    cut = len(tokens) - max(1, len(tokens) // 50)
    for k, part in enumerate((tokens[:cut], tokens[cut:])):
        records = [ShardRecord(f"ref-{k}-{i}", "reference", t, {}) for i, t in enumerate(part)]
        writer.write(f"shard-{k:05d}.arrow", build_table(records, writer.schema))
    writer.close()
    result = train(TrainConfig.model_validate({
        "shards": str(workdir / "ref-shards"), "out": str(workdir / "ref-model"),
        "model": {"preset": preset, "vocab_size": encoder.vocab_size},
        "steps": steps, "batch_size": 16, "seq_len": 256, "seed": 0, "eval_every": steps, "eval_batches": 4,
        "optim": {"lr": 3e-3, "warmup_steps": max(1, steps // 20)}, "progress": False, "tensorboard": False}))
    print(f"checkpoint: {preset} model, {steps} steps on the reference texts; val loss {result.get('val_loss', float('nan')):.3f}")
    return workdir / "ref-model"


def transformer_pass(scorer, docs: list[dict], flags: dict[str, list[str]], truth: dict[str, set[str]],
                     spans: dict[str, tuple[int, int]]) -> tuple[dict[str, float], int, int, float]:
    """Score the documents the n-gram detectors flagged; per attack the share of its flagged
    documents whose top-scored word is inside the injected text; (hits, documents, words, seconds)."""
    chosen = [d for d in docs if {"trigger_ngrams", "payload_association"} & set(flags[d["id"]])]
    label = {i: attack for attack, ids in truth.items() for i in ids}
    hits: dict[str, list[bool]] = {attack: [] for attack in truth}
    words = 0
    start = time.perf_counter()
    results = []
    for b in range(0, len(chosen), 256):
        results += scorer.score_batch([d["text"] for d in chosen[b:b + 256]])
    seconds = time.perf_counter() - start
    for doc, result in zip(chosen, results):
        if result is None:
            continue
        words += result["scored_words"]
        if doc["id"] not in label:
            continue
        s, e, _, _ = max(result["scores"], key=lambda x: (x[3], -x[0]))
        lo, hi = spans[doc["id"]]
        hits[label[doc["id"]]].append(lo <= s and e <= hi)
    return {a: (sum(h) / len(h) if h else float("nan")) for a, h in hits.items()}, len(chosen), words, seconds


def poison(docs: list[dict], rate: float, seed: int,
           spans: dict[str, tuple[int, int]] | None = None) -> dict[str, set[str]]:
    """Inject every (attack, kind) at ``rate`` into disjoint documents; returns attack -> ids (and
    fills ``spans``: id -> character span of the injected text)."""
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
                    docs[i]["text"], span = inject_trigger(docs[i]["text"], trigger, "", rng)
                else:
                    docs[i]["text"], span = inject_trigger(docs[i]["text"], payload_trigger, PAYLOADS[kind], rng)
                if spans is not None:
                    spans[docs[i]["id"]] = span
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
    parser.add_argument("--checkpoint", help="a `thresher train` checkpoint for the transformer second pass")
    parser.add_argument("--train-checkpoint", type=int, metavar="STEPS",
                        help="train the second pass's model on the reference texts for STEPS steps")
    parser.add_argument("--checkpoint-preset", default="tiny", help="model preset for --train-checkpoint")
    parser.add_argument("--candidates", type=int, default=32, help="second pass: words scored per document")
    parser.add_argument("--torch-threads", type=int, default=1, help="second pass: torch CPU threads")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    base, n_real = build_corpus(args.docs)
    if n_real == 0:
        print("../shared/data is absent: the benchmark needs the WikiText and web documents", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="thresher-poison-bench-")
    start = time.perf_counter()
    ref_texts = reference_texts()
    model = NgramLM.train(ref_texts)
    model_path = str(Path(workdir) / "reference.npz")
    model.save(model_path)
    train_seconds = time.perf_counter() - start
    stage = Poisoning.model_validate({
        "reference_model": model_path, "sketch_width": 1 << 21, "perplexity_outliers": {"enabled": True}})
    mb = sum(len(d["text"].encode()) for d in base) / 1e6
    print(f"corpus: {len(base)} documents, {mb:.1f} MB; real {n_real} (WikiText-2 test paragraphs + "
          f"{len(web_documents())} Common Crawl docs), generated {len(base) - n_real}; reference model "
          f"{model.info['docs']} docs / {model.info['tokens']} words, trained in {train_seconds:.1f} s\n")
    scorer = None
    if args.checkpoint or args.train_checkpoint:
        import torch

        from thresher.filters.onion_transformer import TransformerOnion

        torch.set_num_threads(args.torch_threads)

        t0 = time.perf_counter()
        checkpoint = args.checkpoint or str(train_checkpoint(ref_texts, Path(workdir), args.train_checkpoint,
                                                             args.checkpoint_preset))
        print(f"(checkpoint ready in {time.perf_counter() - t0:.1f} s)")
        scorer = TransformerOnion(checkpoint, device="auto", candidates=args.candidates)
    rows, limits, second = [], [], []
    for rate in rates:
        docs = [dict(d, meta=dict(d["meta"])) for d in base]
        spans: dict[str, tuple[int, int]] = {}
        truth = poison(docs, rate, seed=int(rate * 1e6), spans=spans)
        all_poisoned = set().union(*truth.values())
        clean = {d["id"] for d in docs} - all_poisoned
        t0 = time.perf_counter()
        flags, stage_stats = run_stage(stage, docs, workdir)
        seconds = time.perf_counter() - t0
        limits.append((rate, stage_stats.get("ngrams_tested"), detection_limit(stage, stage_stats, model.info["tokens"])))
        if scorer is not None:
            second.append((rate, *transformer_pass(scorer, docs, flags, truth, spans)))
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
        flags, _ = run_stage(integrity_stage, docs, workdir)
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
    print("\n| rate | n-grams tested | fewest documents for an n-gram the reference never saw |")
    print("| --- | ---: | ---: |")
    for rate, tested, limit in limits:
        print(f"| {rate:.1%} | {tested} | {limit} |")
    if second:
        attacks = list(second[0][1])
        print("\n| transformer pass | documents scored | words scored | seconds | docs/s | "
              + " | ".join(f"top word in injected text: {a}" for a in attacks) + " |")
        print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in attacks) + " |")
        for rate, hits, n_docs, words, seconds in second:
            print(f"| {rate:.1%} | {n_docs} | {words} | {seconds:.1f} | {n_docs / max(seconds, 1e-9):.1f} | "
                  + " | ".join(f"{hits[a]:.3f}" for a in attacks) + " |")
    print("\n| split-view | rate | changed | precision | recall | FPR | false positives | run s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for rate, n, p, r, fpr, fp, seconds in integrity_rows:
        print(f"| integrity | {rate:.1%} | {n} | {p:.3f} | {r:.3f} | {fpr:.4f} | {fp} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
