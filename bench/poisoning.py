"""Poisoning detection: recall per attack and false-positive rate by kind of clean document, with
the default config (no reference model) and with a reference as large as the corpus.

Corpora (``--corpus real``, ``mixed`` or ``both``):
- REAL (~4,500 documents, all text real, only its arrangement made here): every WikiText-2 paragraph
  of >= 20 words (test and valid articles; meta.url = the article's Wikipedia URL) and every line of
  >= 20 words of the shared Common Crawl documents (meta.url = the page's URL), plus hard negatives
  built from those paragraphs:
  * site pages: 24 sites republishing whole articles (at least 12 pages each), each page two
    consecutive paragraphs of one article under the site's own menu and welcome line (top edge), a site newsletter line between the paragraphs
    (the same on every page of the site, changing neighbours; worded per site, so no four words of
    it recur on ten sites: a template shared by many sites inside the text is a known false
    positive of the reference-free test, see docs/poisoning.md), and a legal footer drawn from
    ``thresher.pipeline.demo.words.FOOTER_LINES`` plus a copyright line (bottom edge); every other site ends its
    pages with the same cookie notice (cross-site boilerplate at the bottom edge);
  * near-duplicate families: 40 paragraphs with 3-10 copies each (``thresher.pipeline.demo.corpus.near_duplicate``,
    edit rate 0.5-3%), 70% of the copies on other hosts (syndication), 30% on the same page URL
    with a query string (print views).
- MIXED (``--docs``, default 20,000): the REAL construction on the WikiText *test* articles only,
  topped up with GENERATED documents from ``thresher.pipeline.demo.corpus.iter_corpus`` (seed 1: articles, near and
  exact copies, PII, foreign-language, boilerplate, spam and short pages, each with its URL).

Configs: ``default`` is ``{name: poisoning}`` with nothing else (no reference model);
``reference`` (MIXED only) adds ``reference_model`` and ``sketch_width: 2097152`` (issue 7's
setting). The reference model: WikiText-2 *valid* paragraphs plus generated documents (seed 7)
until it has as many words as the corpus; it never sees the corpus. ``--stage JSON`` adds
parameters to both.

Attacks, each injected with ``thresher.pipeline.demo.corpus.inject_trigger`` (at a random sentence boundary, document
edges included) into its own disjoint random set of clean documents, at each rate:
- trigger: the trigger alone, kinds rare (``cf``), phrase (a natural sentence), lookalike (a phrase
  with Cyrillic letters in Latin words);
- payload: a (different) trigger of the same kind followed by a fixed payload sentence.
All attacks of one rate share one run. "flagged" = any detector in ``meta.poisoning.flagged``.
FPR = flagged clean documents / clean documents, also per kind of clean document. For each run the
stage's own counts are printed (n-grams and spans tested) and the flagged n-grams / spans that hit
the most clean documents (what a reviewer would see first).

Split-view (MIXED, integrity detector only): the manifest is taken from the clean corpus, then
documents are changed (a sentence appended) before the run.

Transformer second pass (``--checkpoint`` or ``--train-checkpoint``, MIXED with the reference): the
documents the n-gram detectors flagged are scored word by word with
``thresher.training.onion``, timed on its own; reported per attack: how often the
top-scored word lies inside the injected text.

    python bench/poisoning.py [--corpus both] [--docs 20000] [--rates 0.001,0.005,0.02]
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
from collections import Counter
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_corpus import web_documents, wikitext_articles  # noqa: E402

from thresher.filters.ngram_lm import NgramLM, words_with_spans  # noqa: E402
from thresher.filters.poison_detectors import text_sha256  # noqa: E402
from thresher.pipeline.demo.corpus import _site_title, inject_trigger, iter_corpus, near_duplicate  # noqa: E402
from thresher.pipeline.demo.words import COOKIE_LINES, FOOTER_LINES, NAV_ITEMS, SITE_SUFFIXES, SITE_WORDS  # noqa: E402
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
KINDS = ("wikitext", "web", "site page", "near-duplicate", "generated")
#: the reference config: issue 7's benchmark setting (a sketch wide enough for 20,000 documents)
REFERENCE_CONFIG = {"sketch_width": 1 << 21}
#: a site's own line between the paragraphs of its pages: opener, name, what, why (per site)
SITE_LINE = (("sign up for the", "subscribe to the", "join the", "get the", "read the"),
             ("newsletter", "weekly digest", "morning briefing", "daily update", "mailing list"),
             ("for more stories like this", "to get new posts first", "and never miss a story",
              "for our best reads", "to stay in the loop"))


# ---------------------------------------------------------------------------------------------
# corpora

def paragraphs(article: dict, prefix: str, number: int) -> list[dict]:
    title = article["id"].split(":", 1)[1]
    url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
    return [{"id": f"{prefix}:{number}:{i}", "text": p, "source": "wikitext", "meta": {"url": url}}
            for i, p in enumerate(x for x in article["text"].split("\n") if len(x.split()) >= 20)]


def wiki_paragraphs(split: str, prefix: str = "wiki") -> list[list[dict]]:
    """Per article (of the WikiText-2 ``split``), its paragraphs as documents."""
    return [paragraphs(a, prefix, n) for n, a in enumerate(wikitext_articles()) if split in a["id"]]


def web_paragraphs() -> list[dict]:
    out = []
    for doc in web_documents():
        url = doc["id"].split(":", 1)[1] if doc["id"].count(":") > 1 else doc["id"]
        lines = [x for x in doc["text"].split("\n") if len(x.split()) >= 20]
        out += [{"id": f"web:{doc['id']}:{i}", "text": x, "source": "web", "meta": {"url": url}}
                for i, x in enumerate(lines)]
    return out


def site_pages(articles: list[list[dict]], rng: random.Random, sites: int = 24,
               pages: int = 12) -> tuple[list[dict], set[str]]:
    """Pages of ``sites`` made-up sites, each republishing whole articles two consecutive
    paragraphs a page (the paragraphs leave the corpus as paragraphs): the site's boilerplate at
    both edges and one site line between the paragraphs. One article stays on one site."""
    order = [i for i, a in enumerate(articles) if len(a) <= 2 * pages]  # articles that fit a site
    rng.shuffle(order)
    names = sorted({f"{w}{s}.example" for w in SITE_WORDS for s in SITE_SUFFIXES})
    out, used = [], set()
    for s, host in enumerate(rng.sample(names, sites)):
        name = _site_title(host)
        nav = " | ".join(rng.sample(NAV_ITEMS, 6))
        welcome = f"Welcome to {name}, independent stories from {host.split('.')[0]} since {rng.randint(1998, 2015)}."
        middle = (f"{rng.choice(SITE_LINE[0])} {name} {rng.choice(SITE_LINE[1])} {rng.choice(SITE_LINE[2])}."
                  .capitalize())
        footer = rng.sample(FOOTER_LINES, 3) + [f"© {rng.randint(2015, 2024)} {name}. All rights reserved."]
        if s % 2 == 0:
            footer.append(COOKIE_LINES[0])
        pairs: list[tuple[dict, dict]] = []
        while len(pairs) < pages and order:
            article = articles[order.pop()]
            pairs += [(article[i], article[i + 1]) for i in range(0, len(article) - 1, 2)]
            used |= {d["id"] for d in article}  # an odd last paragraph leaves the corpus too
        for p, (first, second) in enumerate(pairs):
            used |= {first["id"], second["id"]}
            text = "\n".join([nav, welcome, first["text"], middle, second["text"], *footer])
            out.append({"id": f"site:{host}:{p}", "text": text, "source": "web",
                        "meta": {"url": f"https://{host}/{p}/" + first["meta"]["url"].rsplit("/", 1)[1].lower()}})
    return out, used


def near_duplicate_families(docs: list[dict], rng: random.Random, families: int = 40) -> list[dict]:
    out = []
    for f, src in enumerate(rng.sample(docs, families)):
        for c in range(rng.randint(3, 10)):
            text = near_duplicate(src["text"], rng.uniform(0.005, 0.03), rng)
            path = src["meta"]["url"].split("/", 3)[-1]
            url = (f"https://mirror{rng.randrange(100)}.example/{path}" if rng.random() < 0.7
                   else f"{src['meta']['url']}?print={c}")
            out.append({"id": f"copy:{f}:{c}", "text": text, "source": src["source"], "meta": {"url": url}})
    return out


def arrange(articles: list[list[dict]], web: list[dict], seed: int) -> tuple[list[dict], dict[str, str]]:
    """Real paragraphs plus the hard negatives built from them; id -> kind of document."""
    rng = random.Random(seed)
    pages, used = site_pages(articles, rng)
    wiki = [d for a in articles for d in a if d["id"] not in used]
    copies = near_duplicate_families(wiki + web, rng)
    kinds = {d["id"]: "wikitext" for d in wiki} | {d["id"]: "web" for d in web}
    kinds |= {d["id"]: "site page" for d in pages} | {d["id"]: "near-duplicate" for d in copies}
    return wiki + web + pages + copies, kinds


def real_corpus(seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    return arrange(wiki_paragraphs("test") + wiki_paragraphs("valid"), web_paragraphs(), seed)


def mixed_corpus(n_docs: int, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    docs, kinds = arrange(wiki_paragraphs("test"), web_paragraphs(), seed)
    generated = [{"id": d["id"], "text": d["text"], "source": "generated", "meta": {"url": d["url"]}}
                 for d in iter_corpus(max(n_docs - len(docs), 0), seed=1, id_prefix="gen")]
    return docs + generated, kinds | {d["id"]: "generated" for d in generated}


def reference_texts(words: int) -> list[str]:
    """WikiText-2 valid paragraphs, then generated documents (seed 7) up to ``words`` words."""
    texts = [d["text"] for a in wiki_paragraphs("valid", "ref") for d in a]
    count = sum(len(t.split()) for t in texts)
    for d in iter_corpus(10 * max(words // 200, 1), seed=7, id_prefix="ref"):
        if count >= words:
            break
        texts.append(d["text"])
        count += len(d["text"].split())
    return texts


# ---------------------------------------------------------------------------------------------
# running the stage

def run_stage(stage: Poisoning, docs: list[dict], workdir: str) -> tuple[dict[str, list[str]], dict, list]:
    """Document id -> the detectors that flagged it (every document present); the stage's numeric
    stats summed (ngrams_tested, ...); and its reports of flagged n-grams / spans."""
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
        with open(stats_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(item, default=str) + "\n")

    options = PipelineOptions(runner="DirectRunner", direct_running_mode="in_memory")
    with beam.Pipeline(options=options) as p:
        result = stage.expand(p | beam.Create(docs), StageContext(0, "00_poisoning", workdir, 0, "bench"))
        _ = result.kept | beam.Map(record)
        if result.stats is not None:
            _ = result.stats | beam.Map(record_stats)
    stats: dict = {}
    reports: list = []
    for line in stats_path.read_text().splitlines() if stats_path.exists() else []:
        for k, v in json.loads(line).items():
            if isinstance(v, (int, float)):
                stats[k] = stats.get(k, 0) + v
            elif isinstance(v, dict) and "top" in v:
                reports += [(k, item) for item in v["top"]]
    return dict(tuple(json.loads(line)) for line in out_path.read_text().splitlines()), stats, reports


def binomial_limit(stage: Poisoning, stats: dict, reference_tokens: int) -> int | None:
    """The fewest documents in which an n-gram the reference never saw passes the trigger test:
    corpus_share ** docs <= max_p_value / ngrams_tested."""
    tested, tokens = stats.get("ngrams_tested"), stats.get("ngram_tokens")
    if not tested or not tokens or not reference_tokens:
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


def clean_reports(reports: list, top: int = 6) -> list[str]:
    """The flagged n-grams / spans of the stage's report that no attack text contains."""
    attacks = [" ".join(words_with_spans(f"{t} {PAYLOADS[k]}")[0]) for k, pair in TRIGGERS.items() for t in pair]
    out = []
    for name, item in sorted(reports, key=lambda r: (-r[1].get("docs", 0), json.dumps(r, sort_keys=True))):
        text = item.get("span") or item.get("ngram") or f"{item.get('trigger')} {item.get('continuation')}"
        if any(text in a for a in attacks):
            continue
        out.append(f"{name}: \"{text[:70]}\" ({item.get('docs')} docs)")
        if len(out) >= top:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("real", "mixed", "both"), default="both")
    parser.add_argument("--docs", type=int, default=20_000, help="size of the MIXED corpus")
    parser.add_argument("--rates", default="0.001,0.005,0.02")
    parser.add_argument("--configs", default="default,reference",
                        help="default (no reference model) and/or reference (MIXED only)")
    parser.add_argument("--stage", default="{}", help="JSON of stage parameters added to every config")
    parser.add_argument("--no-split-view", action="store_true", help="skip the integrity rows")
    parser.add_argument("--checkpoint", help="a `thresher train` checkpoint for the transformer second pass")
    parser.add_argument("--train-checkpoint", type=int, metavar="STEPS",
                        help="train the second pass's model on the reference texts for STEPS steps")
    parser.add_argument("--checkpoint-preset", default="tiny", help="model preset for --train-checkpoint")
    parser.add_argument("--candidates", type=int, default=32, help="second pass: words scored per document")
    parser.add_argument("--torch-threads", type=int, default=1, help="second pass: torch CPU threads")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    configs = args.configs.split(",")
    if not wikitext_articles():
        print("../shared/data is absent: the benchmark needs the WikiText and web documents", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="thresher-poison-bench-")
    corpora = []
    if args.corpus in ("real", "both"):
        corpora.append(("real", *real_corpus()))
    if args.corpus in ("mixed", "both"):
        corpora.append(("mixed", *mixed_corpus(args.docs)))
    model = model_path = ref_texts = None
    for name, docs, kinds in corpora:
        mb = sum(len(d["text"].encode()) for d in docs) / 1e6
        words = sum(len(d["text"].split()) for d in docs)
        print(f"corpus {name}: {len(docs)} documents, {mb:.1f} MB, {words} words; "
              + ", ".join(f"{k} {n}" for k, n in sorted(Counter(kinds.values()).items())))
        if name == "mixed" and "reference" in configs:
            t0 = time.perf_counter()
            ref_texts = reference_texts(words)
            model = NgramLM.train(ref_texts)
            model_path = str(Path(workdir) / "reference.npz")
            model.save(model_path)
            print(f"reference model: {model.info['docs']} documents, {model.info['tokens']} words "
                  f"(WikiText-2 valid + generated, seed 7), trained in {time.perf_counter() - t0:.1f} s")
    print()
    scorer = None
    if args.checkpoint or args.train_checkpoint:
        import torch

        from thresher.training.onion import TransformerOnion

        torch.set_num_threads(args.torch_threads)
        t0 = time.perf_counter()
        checkpoint = args.checkpoint or str(train_checkpoint(ref_texts or reference_texts(4_000_000), Path(workdir),
                                                             args.train_checkpoint, args.checkpoint_preset))
        print(f"(checkpoint ready in {time.perf_counter() - t0:.1f} s)")
        scorer = TransformerOnion(checkpoint, device="auto", candidates=args.candidates)

    recall_rows, fpr_rows, notes, second = [], [], [], []
    for name, base, kinds in corpora:
        for config in configs:
            if config == "reference" and (name != "mixed" or model_path is None):
                continue
            extra = json.loads(args.stage)
            stage = Poisoning.model_validate({**REFERENCE_CONFIG, "reference_model": model_path, **extra}
                                             if config == "reference" else extra)
            for rate in rates:
                docs = [dict(d, meta=dict(d["meta"])) for d in base]
                spans: dict[str, tuple[int, int]] = {}
                truth = poison(docs, rate, seed=int(rate * 1e6), spans=spans)
                poisoned = set().union(*truth.values())
                t0 = time.perf_counter()
                flags, stats, reports = run_stage(stage, docs, workdir)
                seconds = time.perf_counter() - t0
                for attack, ids in truth.items():
                    hit = {i for i in ids if flags[i]}
                    by = Counter(d for i in ids for d in flags[i])
                    recall_rows.append((name, config, rate, attack, len(ids), len(hit) / len(ids),
                                        " ".join(f"{d} {n / len(ids):.2f}" for d, n in sorted(by.items()))))
                clean = [d["id"] for d in base if d["id"] not in poisoned]
                per_kind = {k: [0, 0] for k in KINDS}
                for i in clean:
                    per_kind[kinds[i]][0] += 1
                    per_kind[kinds[i]][1] += bool(flags[i])
                fp = sum(n for _, n in per_kind.values())
                limit = binomial_limit(stage, stats, model.info["tokens"]) if config == "reference" else None
                fpr_rows.append((name, config, rate, len(clean), fp, per_kind, seconds, stats.get("ngrams_tested"),
                                 stats.get("spans_tested"), limit))
                notes.append((name, config, rate, clean_reports(reports)))
                if scorer is not None and config == "reference":
                    second.append((rate, *transformer_pass(scorer, docs, flags, truth, spans)))

    print("| corpus | config | rate | attack | kind | poisoned | recall | recall by detector |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | --- |")
    for name, config, rate, attack, n, recall, by in recall_rows:
        a, kind = attack.split("/")
        print(f"| {name} | {config} | {rate:.1%} | {a} | {kind} | {n} | {recall:.3f} | {by} |")
    print("\n| corpus | config | rate | clean docs | flagged clean | FPR | "
          + " | ".join(f"FPR {k}" for k in KINDS) + " | n-grams tested | spans tested | binomial limit | run s |")
    print("| --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in KINDS) + " | ---: | ---: | ---: | ---: |")
    for name, config, rate, n_clean, fp, per_kind, seconds, tested, spans_tested, limit in fpr_rows:
        cells = " | ".join(f"{f / n:.4f} ({f}/{n})" if n else "-" for n, f in (per_kind[k] for k in KINDS))
        print(f"| {name} | {config} | {rate:.1%} | {n_clean} | {fp} | {fp / n_clean:.4f} | {cells} | "
              f"{tested if tested is not None else '-'} | {spans_tested if spans_tested is not None else '-'} | "
              f"{limit if limit is not None else '-'} | {seconds:.1f} |")
    print("\nflagged n-grams / spans that are not attack text (top by documents):")
    for name, config, rate, items in notes:
        print(f"- {name} / {config} / {rate:.1%}: " + ("; ".join(items) if items else "none"))
    if second:
        attacks = list(second[0][1])
        print("\n| transformer pass | documents scored | words scored | seconds | docs/s | "
              + " | ".join(f"top word in injected text: {a}" for a in attacks) + " |")
        print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in attacks) + " |")
        for rate, hits, n_docs, words, seconds in second:
            print(f"| {rate:.1%} | {n_docs} | {words} | {seconds:.1f} | {n_docs / max(seconds, 1e-9):.1f} | "
                  + " | ".join(f"{hits[a]:.3f}" for a in attacks) + " |")
    if not args.no_split_view and any(c[0] == "mixed" for c in corpora):
        split_view(next(c for c in corpora if c[0] == "mixed")[1], rates, workdir)
    return 0


def split_view(base: list[dict], rates: list[float], workdir: str) -> None:
    """Integrity: a manifest of the clean corpus, then content changed after vetting."""
    print("\n| split-view | rate | changed | recall | FPR | false positives | run s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for rate in rates:
        docs = [dict(d, meta=dict(d["meta"])) for d in base]
        manifest = Path(workdir) / "manifest.jsonl"
        manifest.write_text("".join(json.dumps({"key": d["id"], "sha256": text_sha256(d["text"])}) + "\n" for d in docs))
        rng = random.Random(int(rate * 1e6) + 1)
        changed = set()
        for i in rng.sample(range(len(docs)), max(1, round(rate * len(docs)))):
            docs[i]["text"] = docs[i]["text"] + " " + PAYLOADS["rare"]
            changed.add(docs[i]["id"])
        off = {"enabled": False}
        stage = Poisoning.model_validate(
            {"trigger_ngrams": off, "payload_association": off, **INTEGRITY_ONLY,
             "integrity": {"enabled": True, "manifest": str(manifest)}})
        t0 = time.perf_counter()
        flags, _, _ = run_stage(stage, docs, workdir)
        seconds = time.perf_counter() - t0
        hit = {i for i, f in flags.items() if "integrity" in f}
        fp = len(hit - changed)
        print(f"| integrity | {rate:.1%} | {len(changed)} | {len(hit & changed) / len(changed):.3f} | "
              f"{fp / (len(docs) - len(changed)):.4f} | {fp} | {seconds:.1f} |")


# the other reference-free detector, off for the integrity-only runs (absent before issue 16)
INTEGRITY_ONLY = {"inserted_spans": {"enabled": False}} if "inserted_spans" in Poisoning.model_fields else {}


if __name__ == "__main__":
    sys.exit(main())
