"""The training loop: ``thresher train CONFIG.yaml [--set key=value ...]`` (under ``torchrun`` for
``parallel: ddp`` / ``fsdp``), and ``thresher score CHECKPOINT --shards DIR --out FILE`` which writes
each document's mean token loss under a trained model (the reference loss curricula and RHO-LOSS use).

Per step: the sampler picks documents, the packer fills ``batch_size / world / grad_accum`` rows per
micro-batch, the loss (importance-weighted for the active sampler) is averaged over target tokens,
gradients are accumulated, clipped, and AdamW steps under warmup + cosine. ``OUT/metrics.csv`` gets
``step, loss, lr, tokens_per_s, val_loss, elapsed_s, step_s, data_s`` (val_loss on evaluation steps
only; ``data_s`` is the part of the step spent waiting for the batch from the loader).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
import yaml

from thresher.filters.storage import atomic_writer

from .checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
    remove_older,
    rng_state,
    save_checkpoint,
    saved_config,
    set_rng_state,
)
from .config import TrainConfig, TrainConfigError, UniformSamplerConfig, load_train_config, parse_train_config
from .model import GPT
from .samplers import (
    Batch,
    DocumentPool,
    Packer,
    Sampler,
    UniformSampler,
    build_sampler,
    shard_paths,
    split_validation,
)

#: bf16 dense (no sparsity) peak FLOP/s by device-name fragment, for the MFU estimate; the first
#: fragment found in torch.cuda.get_device_name() wins, so the PCIe / NVL parts come before the SXM ones.
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200 NVL": 835e12, "H200": 989e12, "H100": 989e12,
              "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12}
#: elapsed_s: wall-clock seconds of training (all invocations of a resumed run), evaluation included;
#: step_s: this step's seconds (what tokens_per_s divides by); data_s: its seconds blocked on the loader
METRIC_COLUMNS = ["step", "loss", "lr", "tokens_per_s", "val_loss", "elapsed_s", "step_s", "data_s"]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine to ``min_ratio`` at ``total`` (fully decayed at the end)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Distributed:
    """Process-group setup from torchrun's environment; a single process when there is none."""

    def __init__(self, parallel: str, device: torch.device):
        self.parallel = parallel
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        if parallel != "none" and "RANK" not in os.environ:
            raise RuntimeError(f"parallel: {parallel} needs torchrun (e.g. `torchrun --nproc_per_node 2 -m "
                               "thresher.pipeline train CONFIG.yaml`)")
        if parallel == "none" and env_world > 1:
            raise RuntimeError(f"started by torchrun with {env_world} processes but the config says parallel: none")
        self.enabled = parallel != "none"
        self.owns_group = self.enabled and not dist.is_initialized()  # else the caller set it up
        if self.owns_group:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.enabled else 0
        self.world = dist.get_world_size() if self.enabled else 1

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t) / self.world

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: cuda requested but torch sees no GPU")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap_model(model: GPT, parallel: str, device: torch.device) -> torch.nn.Module:
    """DDP, or FSDP2 (each block sharded, then the root), or the model itself."""
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
    return model


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, fused=device.type == "cuda")


def batch_loss(model, batch: Batch, device, autocast_dtype, weights: torch.Tensor | None):
    """(loss to backpropagate, unweighted per-position losses detached)."""
    ids, targets = batch.input_ids.to(device, non_blocking=True), batch.targets.to(device, non_blocking=True)
    segs = batch.segment_ids.to(device, non_blocking=True)
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        _, per_pos = model(ids, segs, targets=targets, reduction="none")
    valid = (targets != -100).float()
    count = valid.sum().clamp_min(1)
    w = valid if weights is None else valid * weights.to(device)
    return (per_pos * w).sum() / count, per_pos.detach()


class MetricsLog:
    """``metrics.csv`` (rewritten up to the resumed step on resume) and TensorBoard when installed."""

    def __init__(self, out: Path, resume_step: int, tensorboard: bool):
        self.path = out / "metrics.csv"
        kept = []
        if resume_step and self.path.is_file():
            with self.path.open() as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= resume_step]
        self.file = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=METRIC_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.elapsed_before = float(kept[-1].get("elapsed_s") or 0) if kept else 0.0
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        self.file.flush()
        if self.tb:
            for key in ("loss", "lr", "tokens_per_s", "val_loss"):
                if row.get(key) not in (None, ""):
                    self.tb.add_scalar(key, float(row[key]), int(row["step"]))

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()


class Progress:
    """A rich progress bar with loss, tokens/s and MFU; a no-op when disabled."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

            self.bar = RichProgress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                    TextColumn("{task.fields[info]}"))
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, step: int, info: str) -> None:
        if self.bar:
            self.bar.update(self.task, completed=step, info=info)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


@torch.no_grad()
def evaluate(model, pool: DocumentPool, cfg: TrainConfig, device, autocast_dtype) -> float:
    """Mean token loss over ``eval_batches`` batches of the held-out pool, the same batches every time."""
    was_training = model.training
    model.eval()
    packer = Packer(pool, UniformSampler(len(pool), seed=cfg.seed))
    rows = max(1, cfg.batch_size // cfg.grad_accum)
    total, count = 0.0, 0
    for _ in range(cfg.eval_batches):
        batch = packer.next_batch(rows, cfg.seq_len)
        _, per_pos = batch_loss(model, batch, device, autocast_dtype, None)
        valid = batch.targets.to(device) != -100
        total += float(per_pos[valid].sum())
        count += int(valid.sum())
    model.train(was_training)
    return total / max(count, 1)


def per_document_losses(doc_index: torch.Tensor, targets: torch.Tensor, per_pos: torch.Tensor):
    valid = (targets != -100).cpu().numpy().ravel()
    docs = doc_index.cpu().numpy().ravel()[valid]
    losses = per_pos.float().cpu().numpy().ravel()[valid]
    uniq, inverse = np.unique(docs, return_inverse=True)
    sums = np.bincount(inverse, weights=losses)
    counts = np.bincount(inverse)
    return uniq, sums / counts


class StreamFeed:
    """Uniform batches from ``ShardDataset`` (training/data.py): documents stream from the shards (no
    in-memory pool), shuffled through a buffer, optionally built in DataLoader workers; its position
    is checkpointed like the packer's."""

    def __init__(self, paths: list[Path], rows: int, seq_len: int, seed: int, rank: int, world: int,
                 num_workers: int, shuffle_buffer: int, pin_memory: bool = False):
        from .data import ShardDataset, ShardLoader

        self.dataset = ShardDataset([str(p) for p in paths], seq_len, batch_size=rows, seed=seed, rank=rank,
                                    world_size=world, shuffle_buffer=shuffle_buffer, drop_last=True)
        # Pinned batches: a copy from pageable memory waits for the GPU's queued work first.
        self.loader = ShardLoader(self.dataset, num_workers=num_workers, pin_memory=pin_memory)
        self.rows, self.seq_len = rows, seq_len
        self._items = None

    def next_batch(self, rows: int, seq_len: int) -> Batch:
        if (rows, seq_len) != (self.rows, self.seq_len):
            raise ValueError("stream: batch shape cannot change during training (no sequence-length warmup)")
        for _ in range(2):  # at most one epoch boundary
            if self._items is None:
                self._items = iter(self.loader)
            item = next(self._items, None)
            if item is not None:
                segs = item["segment_ids"]
                return Batch(item["input_ids"], item["targets"], segs, torch.full_like(segs, -1))
            self._items = None
        raise ValueError(f"stream: the training shards hold fewer than {rows} sequences of {seq_len} tokens")

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)
        self._items = None


def stream_split(paths: list[Path], val_location: str | None) -> tuple[list[Path], DocumentPool]:
    """Training shard paths and the in-memory validation pool for streaming: ``val_shards`` when given,
    else the last shard."""
    if val_location:
        return paths, DocumentPool.from_shards(shard_paths(val_location))
    if len(paths) < 2:
        raise ValueError("sampler.stream needs val_shards or at least 2 shards (the last is held out)")
    return paths[:-1], DocumentPool.from_shards(paths[-1:])


def known_peak_flops(device_name: str) -> tuple[str, float] | None:
    """(the PEAK_FLOPS entry matched, its bf16 dense FLOP/s) for a CUDA device name, or None."""
    return next(((k, v) for k, v in PEAK_FLOPS.items() if k in device_name), None)


def peak_flops(cfg: TrainConfig, device: torch.device) -> float | None:
    if cfg.peak_tflops:
        return cfg.peak_tflops * 1e12
    if device.type == "cuda":
        known = known_peak_flops(torch.cuda.get_device_name(device))
        return known[1] if known else None
    return None


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run training to ``cfg.steps`` (or ``stop_after`` steps of this call); returns final metrics."""
    device = pick_device(cfg.device)
    world = Distributed(cfg.parallel, device)
    try:
        return _train(cfg, device, world)
    finally:
        world.close()


def _train(cfg: TrainConfig, device: torch.device, world: Distributed) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_per_micro = cfg.batch_size // cfg.grad_accum
    if rows_per_micro % world.world:
        raise ValueError(f"batch_size / grad_accum = {rows_per_micro} rows is not divisible by {world.world} ranks")
    rows_per_micro //= world.world
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    autocast_dtype = torch.bfloat16 if use_bf16 else None

    streaming = isinstance(cfg.sampler, UniformSamplerConfig) and cfg.sampler.stream
    if streaming:
        train_paths, val_pool = stream_split(shard_paths(cfg.shards), cfg.val_shards)
        top_token = int(val_pool.tokens.max())
    else:
        train_pool, val_pool = split_validation(shard_paths(cfg.shards), cfg.val_shards)
        for score_file in sorted(Path(cfg.shards).glob("scores-*.arrow")) if Path(cfg.shards).is_dir() else []:
            train_pool.add_scores(score_file)
        top_token = int(max(train_pool.tokens.max(), val_pool.tokens.max()))
    if top_token >= cfg.model.vocab_size:
        raise ValueError(f"model.vocab_size {cfg.model.vocab_size} is too small: the shards hold token id {top_token}")

    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model, cfg.attention.name, cfg.attention.params(), cfg.gradient_checkpointing).to(device)
    flops_per_token = model.flops_per_token(cfg.seq_len)
    wrapped = wrap_model(model, cfg.parallel, device)
    optimizer = make_optimizer(wrapped, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio)
    )
    if streaming:
        sampler = Sampler(0, cfg.seed, world.rank, world.world)  # draws nothing: the stream picks documents
        packer = StreamFeed(train_paths, rows_per_micro, cfg.seq_len, cfg.seed, world.rank, world.world,
                            cfg.sampler.num_workers, cfg.sampler.shuffle_buffer, pin_memory=device.type == "cuda")
    else:
        sampler = build_sampler(cfg.sampler, train_pool, cfg.steps, cfg.seed, world.rank, world.world)
        packer = Packer(train_pool, sampler)

    step = 0
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(ckpt, wrapped, optimizer, scheduler)
        sampler.load_state_dict(state["sampler"])
        packer.load_state_dict(state["packer"])
        set_rng_state(state["rng"])
        step = state["step"]
    compiled = torch.compile(wrapped) if cfg.compile else wrapped

    log = MetricsLog(out, step, cfg.tensorboard) if world.rank == 0 else None
    peak = peak_flops(cfg, device)
    progress = Progress(cfg.progress and world.rank == 0, cfg.steps, step)
    config_dict = cfg.model_dump(mode="json")
    if world.rank == 0:
        (out / "config.json").write_text(json.dumps(config_dict, indent=1) + "\n")
    last: dict[str, Any] = {}
    end = cfg.steps if cfg.stop_after is None else min(cfg.steps, step + cfg.stop_after)
    compiled.train()
    started = time.perf_counter()
    try:
        while step < end:
            t0 = time.perf_counter()
            sampler.set_step(step)
            seq = sampler.seq_len_at(step, cfg.seq_len)
            loss_sum, tokens, data_s = torch.zeros((), device=device), 0, 0.0
            for micro in range(cfg.grad_accum):
                t_data = time.perf_counter()
                batch = packer.next_batch(rows_per_micro, seq)
                data_s += time.perf_counter() - t_data
                weights = sampler.weights(batch.doc_index)
                sync = micro == cfg.grad_accum - 1 or cfg.parallel != "ddp"
                with contextlib.nullcontext() if sync else compiled.no_sync():
                    loss, per_pos = batch_loss(compiled, batch, device, autocast_dtype, weights)
                    (loss / cfg.grad_accum).backward()
                if sampler.uses_losses:  # a copy to the CPU: it waits for the GPU
                    docs, doc_losses = per_document_losses(batch.doc_index, batch.targets, per_pos)
                    sampler.update(docs, doc_losses)
                # ignored positions (target -100) have loss 0: the sum stays on the device, no sync
                loss_sum += per_pos.float().sum()
                tokens += int((batch.targets != -100).sum())
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(wrapped.parameters(), cfg.optim.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            train_loss = world.mean(float(loss_sum) / max(tokens, 1))
            tokens_per_s = world.mean(tokens / seconds) * world.world
            row: dict[str, Any] = {"step": step, "loss": f"{train_loss:.6f}", "lr": f"{lr:.6e}",
                                   "tokens_per_s": f"{tokens_per_s:.1f}", "step_s": f"{seconds:.6f}",
                                   "data_s": f"{data_s:.6f}"}
            # every rank stops at the same step (a rank that stopped alone would hang the others)
            if cfg.stop_after_seconds is not None and world.mean(
                    float(time.perf_counter() - started >= cfg.stop_after_seconds)) > 0:
                end = step
            if step % cfg.eval_every == 0 or step == cfg.steps:
                val_loss = evaluate(compiled, val_pool, cfg, device, autocast_dtype)
                row["val_loss"] = f"{val_loss:.6f}"
                last["val_loss"] = val_loss
            if log:
                row["elapsed_s"] = f"{log.elapsed_before + time.perf_counter() - started:.3f}"
                log.write(row)
            mfu = flops_per_token * tokens_per_s / (peak * world.world) if peak else None
            info = f"loss {train_loss:.3f}  {tokens_per_s:,.0f} tok/s" + (f"  MFU {mfu:.1%}" if mfu else "")
            progress.update(step, info)
            last.update(step=step, loss=train_loss, tokens_per_s=tokens_per_s, mfu=mfu)
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == end:
                rank_state = {"sampler": sampler.state_dict(), "packer": packer.state_dict(), "rng": rng_state()}
                save_checkpoint(out, step, wrapped, optimizer, scheduler, rank_state, config_dict)
                remove_older(out)
    finally:
        progress.close()
        if log:
            log.close()
    return last


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise TrainConfigError([("--set", f"expected key=value, got {pair!r}")])
        key, value = pair.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    return overrides


def train_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher train", description="Train a GPT on token shards.")
    parser.add_argument("config", help="training YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_args(argv)
    try:
        cfg = load_train_config(args.config, _parse_overrides(args.set))
    except TrainConfigError as exc:
        print(f"thresher train: {args.config}: invalid config\n{exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"thresher train: {exc}", file=sys.stderr)
        return 1
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items()}, default=float))
    return 0


@torch.no_grad()
def score_documents(model: GPT, pool: DocumentPool, seq_len: int, device: torch.device, batch_rows: int = 16) -> np.ndarray:
    """Mean next-token loss of every document (documents longer than ``seq_len + 1`` are scored in
    pieces); NaN for documents of one token."""
    model.eval()
    losses = np.zeros(len(pool))
    counts = np.zeros(len(pool))
    pieces: list[tuple[int, np.ndarray]] = []
    for i in range(len(pool)):
        doc = pool.document(i)
        for start in range(0, max(1, len(doc) - 1), seq_len):
            piece = doc[start : start + seq_len + 1]
            if len(piece) > 1:
                pieces.append((i, piece))
    pieces.sort(key=lambda p: len(p[1]))  # similar lengths together: less padding
    for b in range(0, len(pieces), batch_rows):
        group = pieces[b : b + batch_rows]
        width = max(len(p) for _, p in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        targets = torch.full((len(group), width - 1), -100, dtype=torch.long)
        for r, (_, piece) in enumerate(group):
            ids[r, : len(piece)] = torch.from_numpy(piece.astype(np.int64))
            targets[r, : len(piece) - 1] = ids[r, 1 : len(piece)]
        _, per_pos = model(ids[:, :-1].to(device), None, targets=targets.to(device), reduction="none")
        valid = targets != -100
        per_pos = per_pos.float().cpu()
        for r, (doc, _) in enumerate(group):
            losses[doc] += float(per_pos[r][valid[r]].sum())
            counts[doc] += int(valid[r].sum())
    with np.errstate(invalid="ignore"):
        return losses / counts


def score_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="thresher score",
        description="Write each document's mean token loss under a trained checkpoint (the reference loss "
                    "for curriculum difficulty and RHO-LOSS). The output, an Arrow stream with columns id "
                    "and the score, is picked up by training when it sits in the shard directory as "
                    "scores-*.arrow.")
    parser.add_argument("checkpoint", help="a checkpoint directory (OUT/checkpoints/step-N) or a training OUT")
    parser.add_argument("--shards", required=True, help="shard directory or manifest to score")
    parser.add_argument("--out", help="output file (default SHARDS/scores-<column>.arrow)")
    parser.add_argument("--column", default="ref_loss", help="name of the score column (default ref_loss)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    ckpt = Path(args.checkpoint)
    if not (ckpt / "model.safetensors").is_file():
        ckpt = latest_checkpoint(ckpt) or ckpt
    if not (ckpt / "model.safetensors").is_file():
        print(f"thresher score: {args.checkpoint}: no checkpoint (model.safetensors) found", file=sys.stderr)
        return 1
    cfg = parse_train_config(saved_config(ckpt))
    device = pick_device(args.device)
    model = GPT(cfg.model, cfg.attention.name, cfg.attention.params()).to(device)
    load_model_weights(ckpt, model)
    try:
        pool = DocumentPool.from_shards(shard_paths(args.shards))
    except (FileNotFoundError, ValueError) as exc:
        print(f"thresher score: {exc}", file=sys.stderr)
        return 1
    losses = score_documents(model, pool, cfg.seq_len, device)
    out = Path(args.out) if args.out else (Path(args.shards) / f"scores-{args.column}.arrow")
    table = pa.table({"id": pa.array(pool.ids, pa.string()), args.column: pa.array(losses, pa.float64())})
    with atomic_writer(out) as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    print(json.dumps({"documents": len(pool), "out": str(out), "mean": float(np.nanmean(losses))}))
    return 0
