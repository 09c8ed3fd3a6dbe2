"""Uniform vs curriculum vs active sampling: same model, data and step budget, learning rate fully
decayed in every arm (cosine to 0), several seeds. Reports steps and wall-clock to reach uniform's
final validation loss, and the final validation loss, whichever arm wins.

    python bench/curriculum.py                       # 3 seeds, 300 steps, CPU (about 45 min here)
    python bench/curriculum.py --seeds 1 --steps 60  # smoke run

Data (real text): WikiText-2 from ../shared/data/wiki, byte-level tokens (vocabulary 256), one
document per paragraph. The training pool is the validation split (about 1.1 MB) plus generated junk
paragraphs (``--junk``, default 10%: random printable characters with the same length distribution,
standing in for the boilerplate a web crawl leaves in); validation is the clean second half of the
test split; the RHO-LOSS reference model trains on the clean first half of the test split (a
holdout, as in the paper). Arms that need reference losses pay for training the reference model and
for the `thresher score` pass in their wall-clock.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from thresher.training.config import parse_train_config
from thresher.training.loop import train
from thresher.training.model import GPT
from thresher.training.checkpoint import latest_checkpoint, load_model_weights
from thresher.training.loop import score_documents
from thresher.training.samplers import DocumentPool, shard_paths

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wiki"
TITLE = re.compile(r"^ = [^=].* = $")


def paragraphs(path: Path) -> list[bytes]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if len(line) >= 40 and not TITLE.match(" " + line + " "):
            out.append(line.encode("utf-8"))
    return out


def write_shard(path: Path, docs: list[bytes], prefix: str) -> None:
    arrays = [np.frombuffer(d, dtype=np.uint8).astype(np.uint16) for d in docs]
    lengths = np.array([len(a) for a in arrays], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(arrays), pa.uint16())),
        "id": pa.array([f"{prefix}-{i}" for i in range(len(docs))]),
        "source": pa.array([prefix] * len(docs)),
        "length": pa.array(lengths),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def build_data(root: Path, junk: float, seed: int) -> dict[str, Path]:
    rng = np.random.default_rng(seed)
    train_docs = paragraphs(DATA / "wikitext-2-valid.txt")
    test_docs = paragraphs(DATA / "wikitext-2-test.txt")
    half = len(test_docs) // 2
    printable = np.frombuffer(bytes(range(32, 127)), dtype=np.uint8)
    n_junk = int(junk * len(train_docs))
    junk_docs = [rng.choice(printable, size=len(train_docs[int(rng.integers(len(train_docs)))])).tobytes()
                 for _ in range(n_junk)]
    mixed = train_docs + junk_docs
    order = rng.permutation(len(mixed))
    write_shard(root / "train" / "shard-00000-00000.arrow", [mixed[i] for i in order], "train")
    write_shard(root / "val" / "shard-00000-00000.arrow", test_docs[half:], "val")
    write_shard(root / "ref" / "shard-00000-00000.arrow", test_docs[:half], "ref")
    return {"train": root / "train", "val": root / "val", "ref": root / "ref",
            "text_mb": sum(len(d) for d in mixed) / 1e6, "docs": len(mixed), "junk": n_junk}


def base_config(args, shards: Path, val: Path, out: Path, seed: int) -> dict:
    return {
        "shards": str(shards), "val_shards": str(val), "out": str(out),
        "model": {"preset": None, "n_layer": args.layers, "n_head": 4, "d_model": args.width, "vocab_size": 256},
        "attention": {"name": "sdpa"},
        "steps": args.steps, "batch_size": args.batch, "seq_len": args.seq_len, "seed": seed,
        "eval_every": args.eval_every, "eval_batches": 8, "progress": False, "tensorboard": False,
        "resume": False, "optim": {"lr": args.lr, "warmup_steps": max(1, args.steps // 10), "min_lr_ratio": 0.0},
    }


def arms(args) -> dict[str, dict]:
    warm = {"seq_len_start": max(8, args.seq_len // 4), "seq_len_warmup_steps": args.steps // 2}
    return {
        "uniform": {"name": "uniform"},
        "seq-len warmup": {"name": "curriculum", "difficulty": "length", "start_competence": 1.0, **warm},
        "curriculum (ref loss, root) + warmup": {"name": "curriculum", "difficulty": "ref_loss", "pacing": "root",
                                                 "start_competence": 0.2, "pacing_steps": args.steps // 2, **warm},
        "active (recent loss)": {"name": "active", "priority": "loss", "epsilon": 0.3},
        "active (RHO-LOSS)": {"name": "active", "priority": "rho", "epsilon": 0.3},
    }


def read_metrics(out: Path) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def reference_scores(args, data: dict, root: Path) -> float:
    """Train the reference model on the holdout and write scores-ref_loss.arrow next to the training
    shard; returns the seconds it took (charged to the arms that use it)."""
    t0 = time.perf_counter()
    out = root / "reference"
    cfg = base_config(args, data["ref"], data["val"], out, seed=1234)
    cfg["steps"] = args.ref_steps
    train(parse_train_config(cfg))
    model = GPT(parse_train_config(cfg).model)
    load_model_weights(latest_checkpoint(out), model)
    pool = DocumentPool.from_shards(shard_paths(data["train"]))
    losses = score_documents(model, pool, args.seq_len, torch.device("cpu"), batch_rows=128)
    table = pa.table({"id": pa.array(pool.ids), "ref_loss": pa.array(losses, pa.float64())})
    with pa.OSFile(str(data["train"] / "scores-ref_loss.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--ref-steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--junk", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not DATA.is_dir():
        print(f"{DATA} is absent: this benchmark needs WikiText-2 from ../shared/data", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = build_data(root, args.junk, seed=0)
        ref_seconds = reference_scores(args, data, root)
        results: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            for name, sampler in arms(args).items():
                out = root / f"{name.split()[0]}-{abs(hash(name)) % 10**6}-{seed}"
                cfg = base_config(args, data["train"], data["val"], out, seed)
                cfg["sampler"] = sampler
                train(parse_train_config(cfg))
                uses_ref = "ref_loss" in str(sampler) or sampler.get("priority") == "rho"
                results.setdefault(name, []).append({"rows": read_metrics(out), "extra_s": ref_seconds if uses_ref else 0.0})
    target = statistics.mean(float(r["rows"][-1]["val_loss"]) for r in results["uniform"])

    def reach(run):
        for row in run["rows"]:
            if row["val_loss"] and float(row["val_loss"]) <= target:
                return int(row["step"]), float(row["elapsed_s"]) + run["extra_s"]
        return None

    print(f"\nSampler comparison: {args.layers}-layer d={args.width} GPT, byte tokens, seq {args.seq_len}, batch "
          f"{args.batch}, {args.steps} steps (cosine to 0), {args.seeds} seeds; train pool {data['docs']} WikiText-2 "
          f"paragraphs ({data['text_mb']:.2f} MB) of which {data['junk']} generated junk; target = uniform's mean "
          f"final val loss {target:.4f} (nats/byte); reference model + scoring pass {ref_seconds:.1f} s, charged to "
          f"the arms that use it\n")
    print("| sampler | final val loss (mean ± sd) | per seed | runs reaching target | steps to target (mean) | "
          "wall-clock to target, s (mean) | total wall-clock, s (mean) | time to target / uniform's total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    uniform_time = statistics.mean(float(r["rows"][-1]["elapsed_s"]) for r in results["uniform"])
    for name, runs in results.items():
        finals = [float(r["rows"][-1]["val_loss"]) for r in runs]
        reached = [x for x in (reach(r) for r in runs) if x]
        sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
        steps = f"{statistics.mean(s for s, _ in reached):.0f}" if reached else "-"
        secs = f"{statistics.mean(t for _, t in reached):.1f}" if reached else "-"
        total = statistics.mean(float(r["rows"][-1]["elapsed_s"]) + r["extra_s"] for r in runs)
        ratio = f"{statistics.mean(t for _, t in reached) / uniform_time:.2f}x" if reached else "never"
        per_seed = " / ".join(f"{x:.3f}" for x in finals)
        print(f"| {name} | {statistics.mean(finals):.4f} ± {sd:.4f} | {per_seed} | {len(reached)}/{len(runs)} | {steps} | {secs} | "
              f"{total:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
