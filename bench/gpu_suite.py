"""The training side on one GPU, in one command (issue 17): every figure into one JSON file.

    python bench/gpu_suite.py --out gpu-results            # one H100 / H200: under 8 minutes
    python bench/gpu_suite.py --out /tmp/smoke --smoke      # the same code paths on CPU, tiny sizes

Phases, in this order, each in its own child process under a hard wall-clock limit (so one that
fails, hangs or kills its CUDA context leaves the others' figures); OUT/gpu_suite.json is rewritten
after every phase and a phase records its progress as it goes, so a time-out keeps what was done:

1. ``train``: a ~124M GPT (GPT-2 small shape: 12 layers, 12 heads, width 768, vocabulary 50304) at
   sequence 1024, bf16 autocast, ``sdpa`` attention, ``torch.compile``'d, trained by thresher's own
   loop (``thresher.training.loop.train``) on shards built here: the real shared text (WikiText-2
   articles and the Common Crawl documents of ../shared/data) run through thresher's pipeline
   (``run_pipeline`` with the ``tokenize`` stage: SentencePiece BPE trained on it, Arrow shards and
   manifest) and streamed by ``ShardDataset`` in DataLoader workers. Figures over the timed window
   (every step after the warm-up steps, whose compile time is reported apart): tokens/s, MFU, the
   loader's share of step time (seconds blocked in ``next_batch`` / step seconds), loss.
2. ``attention``: bench/attention.py's forward+backward sweep (time, peak memory) of every variant
   at 512 .. 32768 tokens on packed documents, plus SDPA on one document per row (the fused causal
   kernel) as a second reference, and where each variant crosses SDPA; before it, FlexAttention
   against the dense-mask reference on this device (outputs and, on CUDA, gradients).
3. ``ablation``: ``bench/ablation.py --size large --device cuda`` with what time is left; it
   records how far it got when the time runs out (``--phases ablation --budget-s 590`` gives it a
   command of its own).

MFU = tokens/s x FLOPs per token / peak, FLOPs per token = 6 N + 12 L T d (PaLM appendix B, as
nanoGPT's ``estimate_mfu``: N all parameters, the tied embedding once; L layers; T sequence length;
d = heads x head dimension; causal masking not discounted). Peak: bf16 dense from the table
``PEAK_FLOPS`` in training/loop.py, matched on the CUDA device name (H100 SXM and H200: 989 TFLOPS),
or ``--peak-tflops``. tokens/s counts input tokens (batch x sequence per step).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

PHASES = ("train", "attention", "ablation")
RESULT_NAME = "gpu_suite.json"
FLOP_FORMULA = ("6*N + 12*L*T*d FLOPs per trained token (PaLM appendix B; nanoGPT estimate_mfu): N = all "
                "parameters (tied embedding once), L layers, T sequence length, d = heads x head_dim; "
                "causal masking not discounted")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: ``gpu`` (the real one) or ``smoke`` (tiny, CPU)."""

    name: str
    budget_s: float
    #: the most of the total budget each phase may take (the last phase gets whatever is left)
    shares: dict[str, float]
    # train
    model: dict[str, Any]
    tokenizer_vocab: int
    shard_tokens: int
    articles: int | None                  # WikiText articles in the corpus (None: all)
    seq_len: int
    batch: int | None                     # None: chosen from the GPU's memory
    loader_workers: int
    warmup_steps: int                     # steps left out of the timed window (compile, warm-up)
    max_steps: int | None                 # stop after this many steps (None: when the phase's time is up)
    lr: float
    save_reserve_s: float                 # phase time kept for the final checkpoint and the figures
    # attention
    lengths: list[int]
    heads: int
    head_dim: int
    mean_doc: int
    repeats: int
    check_len: int
    # ablation
    ablation_size: str
    ablation_workers: int
    threads: int | None = None            # torch CPU threads in the phases (None: torch's default)
    min_phase_s: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)


GPU = Settings(
    # the attention sweep compiles FlexAttention per (variant, length): it gets the larger share
    name="gpu", budget_s=450.0, shares={"train": 0.42, "attention": 0.48, "ablation": 1.0},
    model={"preset": "gpt2-small", "vocab_size": 50304}, tokenizer_vocab=8000, shard_tokens=262_144,
    articles=None, seq_len=1024, batch=None, loader_workers=4, warmup_steps=10, max_steps=None, lr=6e-4,
    save_reserve_s=30.0,
    lengths=[512, 1024, 2048, 4096, 8192, 16384, 32768], heads=12, head_dim=64, mean_doc=1024, repeats=3,
    check_len=1024, ablation_size="large", ablation_workers=8,
)
SMOKE = Settings(
    name="smoke", budget_s=150.0, shares={"train": 0.6, "attention": 0.25, "ablation": 0.15},
    model={"preset": None, "n_layer": 2, "n_head": 2, "d_model": 64, "vocab_size": 1024}, tokenizer_vocab=1000,
    shard_tokens=16_384, articles=12, seq_len=128, batch=4, loader_workers=1, warmup_steps=3, max_steps=25,
    lr=3e-3, save_reserve_s=5.0, lengths=[128, 256], heads=2, head_dim=16, mean_doc=64, repeats=1,
    check_len=128, ablation_size="small", ablation_workers=1,
    # measured on the 2-core development machine under load: 1 thread ran a tiny step 6-30x faster
    threads=1, min_phase_s=10.0,
)


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

def write_json(path: Path, data: dict) -> None:
    from thresher.filters.storage import atomic_write

    atomic_write(path, (json.dumps(data, indent=1, default=str) + "\n").encode())


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class PhaseRecord:
    """A phase's results, rewritten to OUT/phases/NAME.json at every update (the parent reads what
    is there even if the phase is killed)."""

    def __init__(self, out: Path, name: str):
        self.path = out / "phases" / f"{name}.json"
        self.data: dict[str, Any] = {"status": "running"}
        write_json(self.path, self.data)

    def update(self, **values: Any) -> None:
        self.data.update(values)
        write_json(self.path, self.data)


def default_data_dir() -> Path:
    for candidate in (REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


def describe_device(device_name: str, peak_tflops: float | None) -> dict[str, Any]:
    import torch

    from thresher.training.loop import known_peak_flops

    info: dict[str, Any] = {"type": device_name, "torch": torch.__version__, "cuda": torch.version.cuda,
                            "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if device_name == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    if peak_tflops:
        info.update(peak_flops=peak_tflops * 1e12, peak_source=f"--peak-tflops {peak_tflops}")
    elif device_name == "cuda" and (known := known_peak_flops(info["name"])):
        info.update(peak_flops=known[1], peak_source=f"PEAK_FLOPS[{known[0]!r}] in training/loop.py, bf16 dense")
    else:
        info.update(peak_flops=None, peak_source=f"no known peak for {info['name']}: MFU not computed "
                                                 "(pass --peak-tflops)")
    return info


def resolve_device(requested: str, smoke: bool) -> str:
    if smoke:
        return "cpu"
    import torch

    if requested == "auto":
        if not torch.cuda.is_available():  # a 124M model and a 32k sweep on CPU would run for hours
            raise SystemExit("gpu_suite: torch sees no GPU; --smoke runs the tiny CPU rehearsal "
                             "(--device cpu runs the full sizes on CPU anyway)")
        return "cuda"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_suite: --device cuda, but torch sees no GPU")
    return requested


# ---------------------------------------------------------------------------------------------
# Phase 1: a GPT-2-small-shaped model on shards built by the pipeline
# ---------------------------------------------------------------------------------------------

def corpus_documents(data: Path, articles: int | None) -> tuple[list[dict], str]:
    """The real shared text (WikiText-2 articles, then the Common Crawl documents), or the project's
    generated web-like articles when ../shared/data is absent (the description says which)."""
    from shared_corpus import web_documents, wikitext_articles

    wiki = wikitext_articles(data)
    if wiki:
        wiki = wiki[:articles] if articles else wiki
        web = web_documents(data)
        docs = [{"id": d["id"], "text": d["text"], "source": d["source"]} for d in wiki + web]
        return docs, f"real: {len(wiki)} WikiText-2 articles + {len(web)} Common Crawl documents from {data}"
    from thresher.pipeline.demo.corpus import iter_corpus

    n = 3 * (articles or 400)
    docs = [{"id": d["id"], "text": d["text"], "source": d["source"]}
            for d in iter_corpus(n, seed=17, mix={"article": 1.0}, id_prefix="gen", source="generated")]
    return docs, f"generated: {n} articles of thresher's corpus generator ({data} has no WikiText)"


def build_shards(docs: list[dict], work: Path, s: Settings) -> tuple[Path, dict]:
    """Run thresher's pipeline (tokenize stage: SentencePiece BPE trained on the corpus) into shards."""
    from thresher.pipeline.config import validate_config
    from thresher.pipeline.demo.corpus import write_jsonl
    from thresher.pipeline.run import run_pipeline

    write_jsonl(docs, work / "input" / "corpus.jsonl.gz")
    config = {
        "input": {"paths": [str(work / "input" / "*.jsonl.gz")], "format": "jsonl", "text_field": "text",
                  "id_field": "id", "source_field": "source"},
        "output": str(work / "pipeline"),
        "runner": {"name": "direct", "options": {"direct_running_mode": "in_memory"}},
        "seed": 0,
        "stages": [{"name": "tokenize", "vocab_size": s.tokenizer_vocab, "shard_tokens": s.shard_tokens}],
    }
    started = time.perf_counter()
    run_pipeline(validate_config(config))
    shards = work / "pipeline" / "shards"
    manifest = json.loads((shards / "manifest.json").read_text())
    return shards, {"pipeline_s": round(time.perf_counter() - started, 2), "documents": manifest["totals"]["documents"],
                    "tokens": manifest["totals"]["tokens"], "shards": len(manifest["shards"]),
                    "tokenizer_vocab": manifest.get("vocab_size", s.tokenizer_vocab)}


def gpu_batch(device: str) -> int:
    """Rows of 1024 tokens per step: 64 on an 80 GB+ GPU (logits and activations of the 124M model
    at 64 x 1024 need ~55 GB), fewer on smaller ones."""
    import torch

    if device != "cuda":
        return 8
    gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    return 64 if gib >= 70 else 32 if gib >= 35 else 16


def train_figures(metrics_csv: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """Throughput, MFU and the loader's share over the timed window of ``metrics.csv``."""
    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    warm = rec["warmup_steps"]
    if len(rows) <= warm:
        return {"status": "failed", "steps": len(rows),
                "error": f"{len(rows)} steps ran, none after the {warm} warm-up steps (compile took "
                         f"{float(rows[0]['step_s']) if rows else float('nan'):.1f} s of the first step)"}
    step_s = [float(r["step_s"]) for r in rows]
    data_s = [float(r["data_s"]) for r in rows]
    timed, timed_data = step_s[warm:], data_s[warm:]
    window = sum(timed)
    tokens_per_s = len(timed) * rec["tokens_per_step"] / window
    target_tokens = sum(float(r["tokens_per_s"]) * float(r["step_s"]) for r in rows[warm:])
    losses = [float(r["loss"]) for r in rows]
    peak = rec.get("peak_flops")
    return {
        "steps": len(rows), "timed_steps": len(timed), "timed_window_s": round(window, 6),
        "first_step_s": round(step_s[0], 3), "warmup_s": round(sum(step_s[:warm]), 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "target_tokens_per_s": round(target_tokens / window, 1),
        "mfu": round(tokens_per_s * rec["flops_per_token"] / peak, 6) if peak else None,
        "loader_share": round(sum(timed_data) / window, 5),
        "step_ms": {"median": round(1e3 * statistics.median(timed), 2),
                    "p90": round(1e3 * sorted(timed)[int(0.9 * (len(timed) - 1))], 2), "max": round(1e3 * max(timed), 2)},
        "loader_wait_ms": {"median": round(1e3 * statistics.median(timed_data), 3),
                           "max": round(1e3 * max(timed_data), 3)},
        "loss": {"first_step": losses[0], "last_10_steps": round(statistics.mean(losses[-10:]), 4)},
    }


def phase_train(args, s: Settings, out: Path, deadline: float) -> None:
    import torch

    from thresher.training.config import TrainConfig
    from thresher.training.loop import pick_device, train
    from thresher.training.model import GPT, ModelConfig

    rec = PhaseRecord(out, "train")
    work = out / "work" / "train"
    device = pick_device(args.device)
    batch = args.batch or s.batch or gpu_batch(device.type)
    docs, corpus = corpus_documents(args.data, s.articles)
    rec.update(stage="pipeline", corpus=corpus)
    shards, shard_info = build_shards(docs, work, s)
    rec.update(stage="training", shards=shard_info)

    model_cfg = ModelConfig(**s.model)
    with torch.device("meta"):
        meta_model = GPT(model_cfg)
    n_params = meta_model.num_params()
    flops_per_token = meta_model.flops_per_token(s.seq_len)
    assert flops_per_token == 6 * n_params + 12 * model_cfg.layers * s.seq_len * model_cfg.width
    info = describe_device(device.type, args.peak_tflops)
    # links enough for the whole phase at 100% MFU (or 2e5 tokens/s on CPU): no epoch boundary,
    # which would restart the DataLoader workers (not the loader's steady state)
    rate_cap = info["peak_flops"] / flops_per_token if info["peak_flops"] else 2e5
    copies = max(1, min(5000, math.ceil(rate_cap * max(deadline - time.time(), 1) / shard_info["tokens"])))
    from ablation import training_view

    view = training_view(shards, work / "stream", copies)
    base = {
        "shards": str(view), "val_shards": str(shards), "model": s.model, "attention": {"name": "sdpa"},
        "sampler": {"name": "uniform", "stream": True, "num_workers": s.loader_workers},
        "optim": {"lr": s.lr, "warmup_steps": 20}, "steps": 1_000_000, "batch_size": batch,
        "seq_len": s.seq_len, "seed": 0, "eval_every": 1_000_000_000, "eval_batches": 1,
        "checkpoint_every": 0, "resume": False, "device": device.type, "precision": "bf16",
        "progress": False, "tensorboard": False,
        # stop_after, not steps: reaching `steps` would run an evaluation (and compile for it)
        **({"stop_after": s.max_steps} if s.max_steps else {}),
        **({"peak_tflops": args.peak_tflops} if args.peak_tflops else {}),
    }
    rec.update(
        device=info, model={"params": n_params, "layers": model_cfg.layers, "heads": model_cfg.heads,
                            "width": model_cfg.width, "vocab_size": model_cfg.vocab_size},
        seq_len=s.seq_len, batch=batch, tokens_per_step=batch * s.seq_len, precision="bf16 autocast",
        attention="sdpa (packed documents: FlexAttention document mask on CUDA, dense boolean mask on CPU)",
        loader=f"ShardDataset streamed by ShardLoader, {s.loader_workers} DataLoader worker(s), "
               f"{copies} link(s) per shard", flop_formula=FLOP_FORMULA, flops_per_token=flops_per_token,
        peak_flops=info["peak_flops"], peak_source=info["peak_source"], warmup_steps=s.warmup_steps)
    # compiled first; if that run breaks before its timed window, the rest of the phase measures the
    # eager model, so one compiler failure still leaves a tokens/s (labelled compiled: false)
    for compiled in (True, False):
        run_dir = work / ("run" if compiled else "run-eager")
        seconds = deadline - time.time() - s.save_reserve_s
        if not compiled and seconds < 4 * s.min_phase_s:
            break
        cfg = TrainConfig.model_validate({**base, "out": str(run_dir), "compile": compiled,
                                          "stop_after_seconds": max(seconds, 1.0)})
        rec.update(compiled=compiled, stop_after_seconds=round(cfg.stop_after_seconds, 1),
                   metrics_csv=str(run_dir / "metrics.csv"))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            train(cfg)
        except Exception as exc:
            if not compiled or "compile_error" in rec.data:
                raise
            rec.update(compile_error=f"{type(exc).__name__}: {exc}"[:2000],
                       compile_traceback=traceback.format_exc()[-4000:])
            continue
        extra = {"train_s": round(time.perf_counter() - started, 2)}
        if device.type == "cuda":
            extra["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        figures = train_figures(run_dir / "metrics.csv", rec.data)
        rec.update(**extra, **figures, status=figures.pop("status", "ok"))
        return
    raise RuntimeError(f"the compiled run failed ({rec.data.get('compile_error')}) and too little time was "
                       "left for an eager one")


# ---------------------------------------------------------------------------------------------
# Phase 2: the attention sweep
# ---------------------------------------------------------------------------------------------

def flex_check(device, s: Settings) -> dict[str, Any]:
    """FlexAttention (the CUDA path of sdpa-with-documents and sliding_window) against the dense-mask
    SDPA reference on packed documents, fp32: max |difference| of the outputs and, where FlexAttention
    has a backward (CUDA), of the gradients."""
    import torch

    import attention as bench_attention

    g = torch.Generator().manual_seed(0)
    shape = (1, 2, s.check_len, s.head_dim)
    q, k, v = (torch.randn(shape, generator=g).to(device) for _ in range(3))
    docs = bench_attention.packed_doc_ids(1, s.check_len, max(16, s.check_len // 4), 0).to(device)
    backward = device.type == "cuda"
    result: dict[str, Any] = {"length": s.check_len, "head_dim": s.head_dim, "gradients": backward}
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 in either path: the errors are the kernels'
    try:
        _flex_check_variants(device, s, q, k, v, docs, backward, result)
    finally:
        torch.set_float32_matmul_precision(precision)
    return result


def _flex_check_variants(device, s: Settings, q, k, v, docs, backward: bool, result: dict[str, Any]) -> None:
    import torch

    from thresher.training.attention import build_attention

    for name, params in (("sdpa", {}), ("sliding_window", {"window": max(8, s.check_len // 8), "global_tokens": 4})):
        try:
            outs = []
            for use_flex in (True, False):
                attn = build_attention(name, s.head_dim, **params, use_flex=use_flex).to(device)
                leaves = [t.clone().requires_grad_(backward) for t in (q, k, v)]
                with torch.set_grad_enabled(backward):
                    out = attn(*leaves, docs)
                    if backward:
                        out.square().sum().backward()
                outs.append([out.detach()] + ([t.grad for t in leaves] if backward else []))
            errors = [float((a - b).abs().max()) for a, b in zip(*outs)]
            result[name] = {"max_abs_error_output": errors[0]}
            if backward:
                result[name]["max_abs_error_grad_qkv"] = errors[1:]
        except Exception as exc:  # recorded, and the sweep still runs
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}


def attention_crossovers(cells: dict[str, dict[str, Any]], lengths: list[int]) -> dict[str, dict[str, int | None]]:
    """For every row but SDPA's: the shortest length from which it stays faster / leaner than SDPA on
    packed documents at every longer length measured (bench/attention.py's ``crossing``)."""
    import attention as bench_attention

    as_tuples = {name: {int(n): (c["ms"], c["peak_mb"]) if "ms" in c else c.get("failed") for n, c in row.items()}
                 for name, row in cells.items()}

    def measured(name: str, n: int) -> bool:  # a cell the time budget skipped says nothing either way
        return not str(as_tuples.get(name, {}).get(n, "skipped")).startswith("skipped")

    result = {}
    for name in (n for n in cells if n != "sdpa"):
        usable = [n for n in lengths if measured(name, n) and measured("sdpa", n)]
        found = [bench_attention.crossing(as_tuples[name], as_tuples.get("sdpa", {}), usable, i) for i in (0, 1)]
        result[name] = {"faster_than_sdpa_from": None if found[0] == "-" else int(found[0]),
                        "less_memory_than_sdpa_from": None if found[1] == "-" else int(found[1])}
    return result


def phase_attention(args, s: Settings, out: Path, deadline: float) -> None:
    import torch

    import attention as bench_attention

    rec = PhaseRecord(out, "attention")
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.set_float32_matmul_precision("high")
        bench_attention.allow_recompiles()
    rec.update(device=describe_device(device.type, None)["name"])
    if gpu:  # first on CUDA, where correctness of the FlexAttention kernels is the open question
        rec.update(stage="flex check")
        rec.update(flex_check=flex_check(device, s))
    base = argparse.Namespace(device=device.type, batch=1, heads=s.heads, head_dim=s.head_dim, mean_doc=s.mean_doc,
                              no_docs=False, repeats=s.repeats, timeout=120.0)
    nodocs = argparse.Namespace(**{**vars(base), "no_docs": True})
    variants = list(bench_attention.VARIANTS)
    rows = variants + ["sdpa_one_document"]
    cells: dict[str, dict[str, Any]] = {name: {} for name in rows}
    rec.update(stage="sweep", lengths=s.lengths, batch=1, heads=s.heads, head_dim=s.head_dim,
               dtype="bf16" if gpu else "fp32", documents=f"packed, mean length {s.mean_doc}",
               params={name: bench_attention.VARIANTS.get(name, {}) for name in variants},
               sdpa_one_document="sdpa with no document ids: the fused causal kernel (FlashAttention on CUDA)",
               measure=f"min of {s.repeats} forward+backward after one warm-up (which builds the FlexAttention "
                       "block mask, reused by the repeats as by a model's layers); peak = "
                       + ("torch.cuda.max_memory_allocated growth" if gpu else "peak RSS growth of a forked child"),
               cells=cells)
    # on CPU the FlexAttention check runs after the sweep: each cell runs in a forked child, and a
    # child forked after the parent computed with torch's thread pool can hang
    reserve = 0 if gpu else 5
    for seq in s.lengths:
        for name in rows:
            remaining = deadline - time.time() - reserve
            if remaining < (15 if gpu else 3):
                outcome: Any = "skipped: time budget spent"
            else:
                cell_args = nodocs if name == "sdpa_one_document" else base
                cell_args.timeout = min(120.0, remaining - 2)
                outcome = bench_attention.run_isolated("sdpa" if name == "sdpa_one_document" else name, seq, cell_args)
            cells[name][str(seq)] = ({"ms": round(outcome[0] * 1e3, 3), "peak_mb": round(outcome[1], 1)}
                                     if isinstance(outcome, tuple) else {"failed": str(outcome)})
            rec.update(cells=cells)
    rec.update(crossovers=attention_crossovers(cells, s.lengths))
    if not gpu:
        rec.update(stage="flex check")
        rec.update(flex_check=flex_check(device, s))
    rec.update(status="ok")


# ---------------------------------------------------------------------------------------------
# Phase 3: the ablation
# ---------------------------------------------------------------------------------------------

def phase_ablation(args, s: Settings, out: Path, deadline: float) -> None:
    import ablation

    rec = PhaseRecord(out, "ablation")
    command = f"bench/ablation.py --size {s.ablation_size} --device {args.device} --workers {s.ablation_workers}"
    rec.update(command=command, note="progress lines go to the phase log; on a time-out, `reached` is the last one")
    table = ablation.run_ablation(s.ablation_size, out / "work" / "ablation", args.device, s.ablation_workers,
                                  threads=s.threads or 1, data=args.data)
    rec.update(status="ok", table=table)


PHASE_FUNCTIONS = {"train": phase_train, "attention": phase_attention, "ablation": phase_ablation}


def run_child(args, s: Settings) -> int:
    deadline = time.time() + args.phase_budget_s
    if s.threads:
        import torch

        torch.set_num_threads(s.threads)
    try:
        PHASE_FUNCTIONS[args.child](args, s, args.out, deadline)
    except BaseException as exc:  # the record says what broke; the parent goes on with the next phase
        path = args.out / "phases" / f"{args.child}.json"
        data = read_json(path)
        data.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
                    traceback=traceback.format_exc()[-4000:])
        write_json(path, data)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# The parent: budgets, child processes, the JSON and the summary
# ---------------------------------------------------------------------------------------------

def last_progress(log: Path) -> str | None:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    marked = [line for line in lines if line.startswith("[ablation")]
    return marked[-1] if marked else "no progress line yet (building the corpus, tokenizer and reference)"


def run_phase(name: str, budget: float, args, argv: list[str]) -> dict[str, Any]:
    log = args.out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    (args.out / "phases" / f"{name}.json").unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", name, "--phase-budget-s", f"{budget:.1f}"]
    started = time.perf_counter()
    with open(log, "wb") as fh:
        # its own session: on a time-out the whole group (DataLoader workers, compile workers, Beam
        # workers) is killed, and nothing else
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            rc = None
        try:  # also after a normal exit: workers it left behind would hold CPU and GPU memory
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    wall = time.perf_counter() - started
    result = read_json(args.out / "phases" / f"{name}.json")
    if rc is None:
        result["status"] = "timeout"
        result["error"] = f"killed at the phase's time limit of {budget:.0f} s"
        if name == "train" and "tokens_per_s" not in result and "metrics_csv" in result \
                and Path(result["metrics_csv"]).is_file():
            result.update({k: v for k, v in train_figures(Path(result["metrics_csv"]), result).items() if k != "status"})
        if name == "attention" and result.get("cells") and "crossovers" not in result:
            result["crossovers"] = attention_crossovers(result["cells"], result["lengths"])
    elif result.get("status") in (None, "running"):
        result["status"] = "failed"
        result.setdefault("error", f"exit code {rc}; see the log")
    result.update(wall_s=round(wall, 1), budget_s=round(budget, 1), log=str(log),
                  reached=last_progress(log) if name == "ablation" else result.get("stage"))
    return result


def summary(results: dict) -> str:
    lines = [f"gpu_suite ({results['suite']['settings']}) on {results['suite']['device'].get('name')}:"]
    for name in PHASES:
        r = results["phases"].get(name)
        if r is None:
            continue
        head = f"  {name}: {r.get('status')} in {r.get('wall_s')} s of {r.get('budget_s')} s"
        if r.get("status") not in ("ok",):
            head += f" ({str(r.get('error', ''))[:200]}; reached: {r.get('reached')})"
        lines.append(head)
        if name == "train" and "tokens_per_s" in r:
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a (no peak)"
            lines.append(f"    {r['model']['params'] / 1e6:.1f}M params, seq {r['seq_len']}, batch {r['batch']}: "
                         f"{r['tokens_per_s']:,.0f} tokens/s, MFU {mfu}, loader share {r['loader_share']:.2%} "
                         f"over {r['timed_steps']} timed steps ({r['timed_window_s']} s; first step {r['first_step_s']} s)")
            lines.append(f"    loss {r['loss']['first_step']:.3f} -> {r['loss']['last_10_steps']:.3f}; pipeline "
                         f"{r['shards']['pipeline_s']} s for {r['shards']['tokens']:,} tokens")
        if name == "attention" and r.get("cells"):
            lengths = r["lengths"]
            lines.append("    ms / peak MB: | variant | " + " | ".join(map(str, lengths)) + " |")
            for variant, cells in r["cells"].items():
                row = [f"{c['ms']:.1f} / {c['peak_mb']:.0f}" if "ms" in c else c["failed"][:30]
                       for c in (cells.get(str(n), {"failed": "-"}) for n in lengths)]
                cross = r.get("crossovers", {}).get(variant, {})
                lines.append(f"    | {variant} | " + " | ".join(row) + " | faster from "
                             f"{cross.get('faster_than_sdpa_from') or '-'}, less memory from "
                             f"{cross.get('less_memory_than_sdpa_from') or '-'} |")
            fc = r.get("flex_check", {})
            lines.append(f"    FlexAttention vs dense mask: {json.dumps({k: v for k, v in fc.items() if isinstance(v, dict)})}")
        if name == "ablation" and r.get("table"):
            lines += ["    " + line for line in r["table"].splitlines()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="directory for gpu_suite.json, logs and work files")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU: the same code paths in about a minute")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--budget-s", type=float, help="wall-clock budget of all phases (default 450; smoke 150)")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset, in the suite's order")
    p.add_argument("--data", type=Path, default=default_data_dir(), help="the shared data (WikiText, tweets)")
    p.add_argument("--batch", type=int, help="phase 1 rows per step (default: by GPU memory)")
    p.add_argument("--peak-tflops", type=float, help="peak FLOP/s for MFU when the device is not in the table")
    p.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    p.add_argument("--phase-budget-s", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    s = SMOKE if args.smoke else GPU
    args.out = args.out.resolve()
    args.data = args.data.resolve()
    args.device = resolve_device(args.device, args.smoke)
    if args.child:
        return run_child(args, s)

    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        p.error(f"--phases: unknown {sorted(unknown)}; choose from {', '.join(PHASES)}")
    phases = [name for name in PHASES if name in args.phases.split(",")]
    budget = args.budget_s or s.budget_s
    path = args.out / RESULT_NAME
    results = read_json(path) if path.is_file() else {}
    results["suite"] = {
        "command": "python bench/gpu_suite.py " + " ".join(argv), "settings": s.name, "budget_s": budget,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "device": describe_device(args.device, args.peak_tflops),
        "data": str(args.data), "settings_detail": asdict(s), "flop_formula": FLOP_FORMULA,
    }
    results.setdefault("phases", {})
    write_json(path, results)
    started = time.time()
    for name in phases:
        remaining = budget - (time.time() - started)
        phase_budget = min(s.shares[name] * budget, remaining)
        print(f"[gpu_suite {time.strftime('%H:%M:%S')}] {name}: {phase_budget:.0f} s", file=sys.stderr, flush=True)
        if phase_budget < s.min_phase_s:
            results["phases"][name] = {"status": "skipped", "error": f"{remaining:.0f} s of the budget left",
                                       "budget_s": round(max(phase_budget, 0), 1), "wall_s": 0}
        else:
            results["phases"][name] = run_phase(name, phase_budget, args, argv)
        results["suite"]["wall_s"] = round(time.time() - started, 1)
        write_json(path, results)
    text = summary(results)
    results["summary"] = text
    write_json(path, results)
    print(text)
    print(f"\nevery figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
