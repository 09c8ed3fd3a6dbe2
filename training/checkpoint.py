"""Checkpoints: ``OUT/checkpoints/step-000100/``

    model.safetensors   full (unsharded) model weights, written by rank 0
    trainer.pt          optimizer, scheduler, step, config: written by rank 0
    rank-00000.pt       that rank's RNG, sampler and packer state (each rank draws its own stream)
    COMPLETE            written last: a directory without it was interrupted and is ignored

Everything but the weights goes through ``torch.save`` of tensors, numbers and plain containers and is
read back with ``torch.load(weights_only=True)``. Weights and optimizer state are gathered to full
tensors with ``torch.distributed.checkpoint.state_dict``, which handles plain, DDP and FSDP2 models
alike, so a run can resume under another parallelism.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from thresher.filters import storage

COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"step-(\d+)")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_dir(out: str | Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step-{step:06d}"


def step_number(name: str) -> int | None:
    """The step of a checkpoint directory name (``step-001000`` -> 1000), None for other names."""
    match = _STEP_DIR.fullmatch(name)
    return int(match.group(1)) if match else None


def complete_checkpoints(out: str | Path) -> list[Path]:
    """The complete ``step-N`` directories under ``OUT/checkpoints``, oldest first by step number
    (the names are zero-padded to six digits, so past step 999,999 they no longer sort as strings)."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    steps = []
    for path in root.iterdir():
        step = step_number(path.name)
        if step is not None and (path / COMPLETE).is_file():
            steps.append((step, path))
    return [path for _, path in sorted(steps)]


def latest_checkpoint(out: str | Path) -> Path | None:
    done = complete_checkpoints(out)
    return done[-1] if done else None


def save_checkpoint(out: str | Path, step: int, model, optimizer, scheduler, rank_state: dict[str, Any],
                    config: dict[str, Any]) -> Path:
    """Collective under torch.distributed: every rank must call it."""
    path = checkpoint_dir(out, step)
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=full)
    optim_sd = get_optimizer_state_dict(model, optimizer, options=full)
    if _rank() == 0:
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in model_sd.items()}, str(path / "model.safetensors"))
        torch.save({"optimizer": optim_sd, "scheduler": scheduler.state_dict(), "step": step,
                    "config": json.dumps(config)}, path / "trainer.pt")
    _barrier()
    torch.save({"step": step, **rank_state}, path / f"rank-{_rank():05d}.pt")
    _barrier()
    if _rank() == 0:
        (path / COMPLETE).write_text(f"{step}\n")
    _barrier()
    return path


def load_model_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load ``model.safetensors`` from a checkpoint directory into a (possibly wrapped) model."""
    weights = load_file(str(Path(path) / "model.safetensors"))
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def load_checkpoint(path: str | Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore model, optimizer and scheduler; return this rank's state (RNG, sampler, packer) with
    the step. A run with more ranks than the checkpoint's is refused: their streams do not exist."""
    path = Path(path)
    rank_file = path / f"rank-{_rank():05d}.pt"
    if not rank_file.is_file():
        raise FileNotFoundError(f"{path}: no state for rank {_rank()} (the checkpoint was written by fewer ranks)")
    load_model_weights(path, model)
    trainer = torch.load(path / "trainer.pt", weights_only=True)
    set_optimizer_state_dict(model, optimizer, trainer["optimizer"], options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(trainer["scheduler"])
    state = torch.load(rank_file, weights_only=True)
    state["step"] = int(trainer["step"])
    return state


def saved_config(path: str | Path) -> dict[str, Any]:
    return json.loads(torch.load(Path(path) / "trainer.pt", map_location="cpu", weights_only=True)["config"])


def remove_older(out: str | Path, keep: int = 2) -> None:
    """Keep only the newest ``keep`` complete checkpoints (rank 0 only)."""
    if _rank() != 0:
        return
    done = complete_checkpoints(out)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def local_checkpoint(location: str | os.PathLike) -> Path | None:
    """A ``thresher train`` checkpoint as a local directory: ``location`` is a ``step-N``
    directory (with model.safetensors) or a training OUT, whose newest complete
    ``checkpoints/step-N`` is taken. A remote OUT copies that one checkpoint only. None when there
    is none."""
    location = os.fspath(location)
    if not storage.is_remote(location):
        path = Path(location).expanduser()
        return path if (path / "model.safetensors").is_file() else latest_checkpoint(path)
    if storage.isfile(storage.join(location, "model.safetensors")):
        return storage.local_copy(location)
    root = storage.join(location, "checkpoints")
    if not storage.isdir(root):
        return None
    steps = []
    for relative in storage.files_under(root):
        parts = relative.split("/")
        step = step_number(parts[0]) if len(parts) == 2 and parts[1] == COMPLETE else None
        if step is not None:
            steps.append((step, parts[0]))
    return storage.local_copy(storage.join(root, max(steps)[1])) if steps else None


__all__ = [
    "checkpoint_dir", "complete_checkpoints", "latest_checkpoint", "load_checkpoint", "load_model_weights",
    "local_checkpoint", "remove_older", "rng_state", "save_checkpoint", "saved_config", "set_rng_state", "step_number",
]
