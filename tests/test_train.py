"""Training: loop, checkpoints and exact resume, config, CLI, score, 2-process DDP/FSDP gradients.
The helpers at the top write tiny token shards in the shard format (other test files import them)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from thresher.pipeline.cli import main as cli_main
from thresher.training.config import TrainConfigError, load_train_config, parse_train_config
from thresher.training.loop import lr_factor, train
from thresher.training.samplers import DocumentPool, Packer, UniformSampler, shard_paths

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 64


def synthetic_documents(n: int, seed: int) -> list[np.ndarray]:
    """Each document counts up from a random start with a per-document stride (1 or 2): the next token
    is predictable from the previous two, so a tiny model's loss falls fast."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        length = int(rng.integers(12, 90))
        start, stride = int(rng.integers(0, VOCAB)), int(rng.integers(1, 3))
        docs.append(((start + stride * np.arange(length)) % (VOCAB - 1) + 1).astype(np.uint16))
    return docs


def write_shard(path: Path, docs: list[np.ndarray], first_id: int) -> None:
    lengths = np.array([len(d) for d in docs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(docs), pa.uint16())),
        "id": pa.array([f"doc-{first_id + i}" for i in range(len(docs))]),
        "source": pa.array(["synthetic"] * len(docs)),
        "length": pa.array(lengths.astype(np.int32)),
        "quality": pa.array([float(i % 7) for i in range(len(docs))], pa.float64()),
    })
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def make_shards(directory: Path, shards: int = 3, docs_per_shard: int = 60, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        docs = synthetic_documents(docs_per_shard, seed * 100 + s)
        write_shard(directory / f"shard-00000-{s:05d}.arrow", docs, s * docs_per_shard)
    return directory


def tiny_config(shards: Path, out: Path, **overrides) -> dict:
    cfg = {
        "shards": str(shards),
        "out": str(out),
        "model": {"preset": None, "n_layer": 2, "n_head": 2, "d_model": 32, "vocab_size": VOCAB},
        "attention": {"name": "sdpa"},
        "sampler": {"name": "uniform"},
        "steps": 12,
        "batch_size": 4,
        "seq_len": 32,
        "seed": 0,
        "eval_every": 4,
        "eval_batches": 2,
        "progress": False,
        "tensorboard": False,
        "optim": {"lr": 1e-2, "warmup_steps": 2},
    }
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"))


def read_metrics(out: Path) -> list[dict]:
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_config_errors_name_the_problem(tmp_path):
    good = tiny_config(tmp_path, tmp_path / "out")
    parse_train_config(good)
    with pytest.raises(TrainConfigError, match="stepz"):
        parse_train_config({**good, "stepz": 3})
    with pytest.raises(TrainConfigError, match="sampler"):
        parse_train_config({**good, "sampler": {"name": "random"}})
    with pytest.raises(TrainConfigError, match="not divisible by grad_accum"):
        parse_train_config({**good, "batch_size": 5, "grad_accum": 2})
    with pytest.raises(TrainConfigError, match="sampler.pacing"):
        parse_train_config({**good, "sampler": {"name": "curriculum", "pacing": "cubic"}})
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(good))
    assert load_train_config(path, {"optim.lr": 0.5}).optim.lr == 0.5


def test_lr_schedule_warms_up_then_decays_fully():
    factors = [lr_factor(s, 10, 100, 0.0) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(100, 10, 100, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_packer_rows_continue_documents_and_mask_boundaries(shards):
    pool = DocumentPool.from_shards(shard_paths(shards))
    assert len(pool) == 180 and "quality" in pool.scores
    packer = Packer(pool, UniformSampler(len(pool), seed=3))
    first = packer.next_batch(2, 40)
    second = packer.next_batch(2, 40)
    assert first.input_ids.shape == (2, 40)
    # Every unmasked target is the next token of the same document.
    for batch in (first, second):
        same = batch.segment_ids[:, 1:] == batch.segment_ids[:, :-1]
        assert torch.equal(batch.targets[:, :-1][same], batch.input_ids[:, 1:][same])
        assert (batch.targets[:, :-1][~same] == -100).all()
    # The document cut at the end of row 0 continues at the start of row 1.
    assert first.doc_index[0, -1] == first.doc_index[1, 0]
    assert first.targets[0, -1] == first.input_ids[1, 0]
    # Restoring the packer and sampler state reproduces the stream.
    state = (packer.state_dict(), packer.sampler.state_dict())
    third = packer.next_batch(2, 40)
    replay = Packer(pool, UniformSampler(len(pool), seed=3))
    replay.load_state_dict(state[0])
    replay.sampler.load_state_dict(state[1])
    assert torch.equal(replay.next_batch(2, 40).input_ids, third.input_ids)


def test_loss_falls_and_metrics_are_written(shards, tmp_path):
    out = tmp_path / "run"
    cfg = parse_train_config(tiny_config(shards, out, steps=30, eval_every=10))
    result = train(cfg)
    rows = read_metrics(out)
    assert list(rows[0]) == ["step", "loss", "lr", "tokens_per_s", "val_loss", "elapsed_s", "step_s", "data_s"]
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert all(0 <= float(r["data_s"]) < float(r["step_s"]) for r in rows)
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(vals) == 3 and vals[-1] < vals[0]
    assert result["val_loss"] == pytest.approx(vals[-1], rel=1e-5)
    assert (out / "checkpoints" / "step-000030" / "model.safetensors").is_file()


@pytest.mark.parametrize("sampler", [{"name": "uniform"}, {"name": "active", "epsilon": 0.3},
                                     {"name": "uniform", "stream": True, "shuffle_buffer": 64}])
def test_resume_reproduces_the_uninterrupted_loss_curve(shards, tmp_path, sampler):
    whole = tmp_path / "whole"
    train(parse_train_config(tiny_config(shards, whole, sampler=sampler, grad_accum=2)))
    parts = tmp_path / "parts"
    cfg = tiny_config(shards, parts, sampler=sampler, grad_accum=2, checkpoint_every=5)
    train(parse_train_config({**cfg, "stop_after": 7}))
    assert read_metrics(parts)[-1]["step"] == "7"
    # A crash after step 7 loses what came after the periodic checkpoint at step 5: resume from there
    # (metrics rows 6 and 7 are written again).
    shutil.rmtree(parts / "checkpoints" / "step-000007")
    train(parse_train_config(cfg))
    a, b = read_metrics(whole), read_metrics(parts)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert [(r["loss"], r["lr"], r["val_loss"]) for r in a] == [(r["loss"], r["lr"], r["val_loss"]) for r in b]


def test_streaming_uniform_sampler_trains_from_the_shard_stream(shards, tmp_path):
    out = tmp_path / "stream"
    train(parse_train_config(tiny_config(shards, out, steps=20, eval_every=10,
                                         sampler={"name": "uniform", "stream": True, "num_workers": 1})))
    rows = read_metrics(out)
    assert len(rows) == 20 and float(rows[-1]["val_loss"]) < float(rows[9]["val_loss"]) + 0.5
    assert np.mean([float(r["loss"]) for r in rows[-3:]]) < float(rows[0]["loss"])


def test_data_s_is_the_time_blocked_on_the_loader(shards, tmp_path, monkeypatch):
    from thresher.training import loop

    next_batch = loop.StreamFeed.next_batch

    def slow(self, rows, seq_len):
        time.sleep(0.05)
        return next_batch(self, rows, seq_len)

    monkeypatch.setattr(loop.StreamFeed, "next_batch", slow)
    out = tmp_path / "slow"
    train(parse_train_config(tiny_config(shards, out, steps=4, grad_accum=2, eval_every=100,
                                         sampler={"name": "uniform", "stream": True})))
    rows = read_metrics(out)
    # two micro-batches per step, each 50 ms late; the rest of a tiny step is much shorter
    assert all(0.1 <= float(r["data_s"]) <= float(r["step_s"]) for r in rows), rows
    assert all(float(r["data_s"]) / float(r["step_s"]) > 0.5 for r in rows[1:]), rows


def test_stop_after_seconds_stops_every_rank_and_checkpoints(shards, tmp_path):
    out = tmp_path / "timed"
    result = train(parse_train_config(tiny_config(shards, out, steps=1000, stop_after_seconds=1e-6)))
    assert result["step"] == 1 and len(read_metrics(out)) == 1
    assert (out / "checkpoints" / "step-000001" / "model.safetensors").is_file()


def test_per_document_losses_reach_the_cpu_only_for_a_sampler_that_uses_them(shards, tmp_path, monkeypatch):
    from thresher.training import loop

    calls = []
    real = loop.per_document_losses
    monkeypatch.setattr(loop, "per_document_losses", lambda *a: calls.append(1) or real(*a))
    train(parse_train_config(tiny_config(shards, tmp_path / "u", steps=3, eval_every=100)))
    assert calls == []  # uniform: no copy of the losses to the CPU (it would wait for the GPU)
    train(parse_train_config(tiny_config(shards, tmp_path / "a", steps=3, eval_every=100,
                                         sampler={"name": "active"})))
    assert len(calls) == 3


def test_example_config_validates():
    cfg = load_train_config(REPO / "configs" / "train-tiny.yaml")
    assert cfg.sampler.name == "curriculum" and cfg.model.layers == 2


def test_train_command_and_bad_input(shards, tmp_path, capsys):
    cfg = tiny_config(shards, tmp_path / "cli", steps=3)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli_main(["train", str(path), "--set", "attention={name: sliding_window, window: 8}"]) == 0
    assert len(read_metrics(tmp_path / "cli")) == 3
    path.write_text(yaml.safe_dump({**cfg, "model": {"preset": "tiny", "vocab_size": 10}}))
    assert cli_main(["train", str(path)]) == 1
    assert "vocab_size 10 is too small" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**cfg, "shards": str(tmp_path / "nowhere")}))
    assert cli_main(["train", str(path)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_score_writes_reference_losses_the_samplers_read(shards, tmp_path):
    out = tmp_path / "ref"
    train(parse_train_config(tiny_config(shards, out, steps=4)))
    scores = tmp_path / "scores.arrow"
    assert cli_main(["score", str(out), "--shards", str(shards), "--out", str(scores)]) == 0
    table = pa.ipc.open_stream(pa.OSFile(str(scores))).read_all()
    assert table.num_rows == 180 and table.column_names == ["id", "ref_loss"]
    assert np.isfinite(table.column("ref_loss").to_numpy()).all()
    pool = DocumentPool.from_shards(shard_paths(shards))
    pool.add_scores(scores)
    assert np.allclose(pool.score("ref_loss"), table.column("ref_loss").to_numpy())


GRAD_SCRIPT = r"""
import sys, torch, torch.distributed as dist
from thresher.training.loop import wrap_model
from thresher.training.model import GPT, ModelConfig, shift_targets
out = sys.argv[1]
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
ids = torch.randint(1, 64, (4, 24), generator=torch.Generator().manual_seed(1))
docs = torch.tensor([[0] * 10 + [1] * 14] * 4)
mine = slice(rank * 2, rank * 2 + 2)
for mode in ("ddp", "fsdp"):
    torch.manual_seed(0)
    model = GPT(ModelConfig(preset=None, n_layer=2, n_head=2, d_model=32, vocab_size=64))
    wrapped = wrap_model(model, mode, torch.device("cpu"))
    _, loss = wrapped(ids[mine], docs[mine], targets=shift_targets(ids[mine], docs[mine]))
    loss.backward()
    grads = {}
    for name, p in model.named_parameters():
        g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        grads[name] = g.detach().clone()
    if rank == 0:
        torch.save(grads, f"{out}-{mode}.pt")
# The whole loop under each parallelism (it joins torchrun's process group itself).
import json
from thresher.training.config import parse_train_config
from thresher.training.loop import train
for mode in ("ddp", "fsdp"):
    cfg = json.loads(open(sys.argv[2]).read())
    train(parse_train_config({**cfg, "out": f"{cfg['out']}-{mode}", "parallel": mode}))
dist.destroy_process_group()
"""


def test_two_process_ddp_and_fsdp_gradients_match_single_process(tmp_path):
    """Each of 2 gloo processes (under torchrun) takes half the batch; the DDP-averaged and the
    FSDP2-reduced gradients equal one process's gradient on the whole batch (the halves' mean losses
    have equal token counts here)."""
    script = tmp_path / "grads.py"
    script.write_text(GRAD_SCRIPT)
    out = tmp_path / "grads"
    shards = make_shards(tmp_path / "shards", shards=2, docs_per_shard=30)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(tiny_config(shards, tmp_path / "run", steps=3, eval_every=3, grad_accum=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(out),
         str(cfg_file)],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    from thresher.training.model import GPT, ModelConfig, shift_targets

    torch.manual_seed(0)
    model = GPT(ModelConfig(preset=None, n_layer=2, n_head=2, d_model=32, vocab_size=64))
    ids = torch.randint(1, 64, (4, 24), generator=torch.Generator().manual_seed(1))
    docs = torch.tensor([[0] * 10 + [1] * 14] * 4)
    _, loss = model(ids, docs, targets=shift_targets(ids, docs))
    loss.backward()
    for mode in ("ddp", "fsdp"):
        distributed = torch.load(f"{out}-{mode}.pt", weights_only=True)
        assert set(distributed) == {name for name, _ in model.named_parameters()}
        for name, p in model.named_parameters():
            torch.testing.assert_close(distributed[name], p.grad, atol=1e-6, rtol=1e-5, msg=f"{mode} {name}")
        rows = read_metrics(tmp_path / f"run-{mode}")
        assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[-1]["val_loss"]
        assert (tmp_path / f"run-{mode}" / "checkpoints" / "step-000003" / "rank-00001.pt").is_file()


def test_short_forms_of_model_attention_and_sampler(tmp_path):
    good = tiny_config(tmp_path, tmp_path / "out")
    short = parse_train_config({**good, "model": "tiny", "attention": "sdpa", "sampler": "uniform"})
    assert (short.model.preset, short.attention.name, short.sampler.name) == ("tiny", "sdpa", "uniform")
    assert short.model == parse_train_config({**good, "model": {"preset": "tiny"}}).model
    assert parse_train_config({**good, "sampler": "curriculum"}).sampler.pacing == "root"
    assert parse_train_config({**good, "attention": "sliding_window"}).attention.name == "sliding_window"
    with pytest.raises(TrainConfigError, match="model"):
        parse_train_config({**good, "model": "huge"})
    with pytest.raises(TrainConfigError, match="sampler"):
        parse_train_config({**good, "sampler": "random"})
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump({**good, "model": "tiny", "attention": "sdpa"}))
    cfg = load_train_config(path, {"model.vocab_size": 300, "attention.window": 16})
    assert (cfg.model.preset, cfg.model.vocab_size, cfg.attention.params()) == ("tiny", 300, {"window": 16})


def test_checkpoints_sort_by_step_number(tmp_path):
    from thresher.training.checkpoint import COMPLETE, checkpoint_dir, latest_checkpoint, remove_older

    for step in (999_998, 999_999, 1_000_000, 1_000_001):
        checkpoint_dir(tmp_path, step).mkdir(parents=True)
        (checkpoint_dir(tmp_path, step) / COMPLETE).write_text(f"{step}\n")
    checkpoint_dir(tmp_path, 2_000_000).mkdir()  # interrupted: no COMPLETE
    (tmp_path / "checkpoints" / "step-notes").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-1000001"  # as strings, step-999999 sorts last
    remove_older(tmp_path, keep=2)
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == ["step-1000000", "step-1000001", "step-2000000", "step-notes"]
