"""ShardDataset: exactly-once over ranks and workers, exact resumption, follow mode, remote reads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pytest
import torch

from thresher.filters.storage import atomic_write
from thresher.tokenization.manifest import build_manifest, manifest_bytes
from thresher.tokenization.shards import (ShardError, ShardInfo, ShardRecord, build_table, shard_name, shard_schema,
                                          table_to_stream_bytes)
from thresher.tokenization.spm import sha256_hex
from thresher.training.data import IGNORE_INDEX, ShardDataset, ShardLoader

SCHEMA = shard_schema(np.dtype(np.uint32), ["quality"])


def unique_token_shards(n_shards: int, docs_per_shard: int, seed: int = 0):
    """Shards whose tokens are 1, 2, 3, ... in corpus order: each token says where it came from."""
    rng = np.random.default_rng(seed)
    counter = 1
    for s in range(n_shards):
        records = []
        for d in range(docs_per_shard):
            n = int(rng.integers(1, 120))
            records.append(ShardRecord(f"s{s}-d{d:04d}", "test", np.arange(counter, counter + n, dtype=np.uint32),
                                       {"quality": float(d % 10) / 10}))
            counter += n
        data = table_to_stream_bytes(build_table(records, SCHEMA))
        yield shard_name(s, 0), data, ShardInfo(shard_name(s, 0), sha256_hex(data), counter, len(records), len(data))
    return counter


def write_dir(directory: Path, n_shards: int = 5, docs_per_shard: int = 150, complete: bool = True,
              delay: float = 0.0) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    infos, total = [], 0
    for name, data, info in unique_token_shards(n_shards, docs_per_shard):
        atomic_write(directory / name, data)
        infos.append(info)
        total = info.tokens - 1
        if delay:
            write_manifest(directory, infos, complete=False)
            time.sleep(delay)
    write_manifest(directory, infos, complete=complete)
    return total


def write_manifest(directory: Path, infos: list[ShardInfo], complete: bool) -> None:
    manifest = build_manifest(infos, tokenizer_sha256="", vocab_size=1 << 20, eos_id=2, dtype=np.dtype(np.uint32),
                              add_eos=False, score_columns=["quality"], config_hash="", complete=complete)
    atomic_write(directory / "manifest.json", manifest_bytes(manifest))


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> tuple[Path, int]:
    directory = tmp_path_factory.mktemp("shards")
    return directory, write_dir(directory)


def input_tokens(items) -> list[int]:
    out = []
    for item in items:
        ids, seg = item["input_ids"].reshape(-1), item["segment_ids"].reshape(-1)
        out.extend(ids[seg >= 0].tolist())
    return out


def check_sample_structure(item) -> None:
    ids, tgt, seg = item["input_ids"], item["targets"], item["segment_ids"]
    real = seg >= 0
    same_doc_next = real[..., :-1] & (seg[..., 1:] == seg[..., :-1])
    # inside a document tokens are consecutive, and each target is the next input
    assert torch.all((ids[..., 1:] - ids[..., :-1])[same_doc_next] == 1)
    assert torch.all(tgt[..., :-1][same_doc_next] == ids[..., 1:][same_doc_next])
    assert torch.all(tgt[..., :-1][real[..., :-1] & ~same_doc_next] == IGNORE_INDEX)
    assert torch.all(tgt[~real] == IGNORE_INDEX)


def test_every_token_exactly_once_across_two_workers_and_two_ranks(shard_dir):
    directory, total = shard_dir
    seen: list[int] = []
    for rank in range(2):
        ds = ShardDataset(directory, seq_len=64, batch_size=4, seed=3, rank=rank, world_size=2, shuffle_buffer=50,
                          block_docs=40)
        items = list(ShardLoader(ds, num_workers=2))
        assert {item["worker"] for item in items} == {0, 1}
        for item in items:
            check_sample_structure(item)
        seen.extend(input_tokens(items))
    assert len(seen) == total
    assert np.array_equal(np.sort(np.array(seen)), np.arange(1, total + 1))


def test_shuffle_is_seeded(shard_dir):
    directory, _ = shard_dir
    run = lambda seed: input_tokens(ShardDataset(directory, seq_len=32, batch_size=8, seed=seed))
    assert run(1) == run(1) != run(2)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_yields_exactly_the_uninterrupted_batches(shard_dir, num_workers):
    directory, _ = shard_dir
    make = lambda: ShardDataset(directory, seq_len=48, batch_size=3, seed=11, shuffle_buffer=64, block_docs=32)
    full = [b["input_ids"] for b in ShardLoader(make(), num_workers=num_workers)]
    loader = ShardLoader(make(), num_workers=num_workers)
    it = iter(loader)
    head = [next(it)["input_ids"] for _ in range(7)]
    state = loader.state_dict()
    del it
    resumed_loader = ShardLoader(make(), num_workers=num_workers)
    resumed_loader.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed_loader]
    assert len(head) + len(rest) == len(full)
    for a, b in zip(head + rest, full):
        assert torch.equal(a, b)
    assert resumed_loader.state_dict()["epoch"] == 1


def test_second_epoch_differs_and_covers_everything(shard_dir):
    directory, total = shard_dir
    ds = ShardDataset(directory, seq_len=64, seed=5)
    first, second = input_tokens(ds), input_tokens(ds)
    assert first != second and sorted(first) == sorted(second) == list(range(1, total + 1))


def test_doc_filter_sees_scores(shard_dir):
    directory, _ = shard_dir
    seen = []
    keep = lambda doc: (seen.append(doc), doc.scores["quality"] >= 0.5)[1]
    kept = list(ShardDataset(directory, seq_len=64, doc_filter=keep).iter_documents())
    assert kept and all(doc.scores["quality"] >= 0.5 for doc, _ in kept)
    assert all(len(tokens) == doc.length for doc, tokens in kept)
    assert len(kept) == sum(1 for d in seen if d.scores["quality"] >= 0.5) < len(seen)


def test_follow_mode_reads_shards_as_they_appear(tmp_path):
    directory = tmp_path / "growing"
    writer = threading.Thread(target=write_dir, args=(directory,), kwargs={"n_shards": 4, "docs_per_shard": 60,
                                                                          "delay": 0.15})
    writer.start()
    try:
        ds = ShardDataset(directory, seq_len=64, follow=True, poll_seconds=0.02, follow_timeout=10, world_size=2, rank=0)
        other = ShardDataset(directory, seq_len=64, follow=True, poll_seconds=0.02, follow_timeout=10, world_size=2,
                             rank=1)
        seen = input_tokens(ds) + input_tokens(other)
    finally:
        writer.join()
    total = write_dir(tmp_path / "reference", n_shards=4, docs_per_shard=60)
    assert sorted(seen) == list(range(1, total + 1))


def test_incomplete_directory_without_follow_is_an_error(tmp_path):
    write_dir(tmp_path, n_shards=1, docs_per_shard=5, complete=False)
    with pytest.raises(ShardError, match="not complete"):
        list(ShardDataset(tmp_path, seq_len=8))


def test_reads_fsspec_urls(shard_dir):
    directory, total = shard_dir
    fs = fsspec.filesystem("memory")
    for p in directory.iterdir():
        fs.pipe(f"/shardtest/{p.name}", p.read_bytes())
    remote = input_tokens(ShardDataset("memory://shardtest", seq_len=64, seed=2))
    local = input_tokens(ShardDataset(f"file://{directory}", seq_len=64, seed=2))
    assert remote == local and sorted(remote) == list(range(1, total + 1))


def test_corrupt_and_truncated_shards_name_the_file(shard_dir, tmp_path):
    directory, _ = shard_dir
    for p in directory.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    victim = sorted(tmp_path.glob("*.arrow"))[2]
    victim.write_bytes(victim.read_bytes()[:-9])
    with pytest.raises(ShardError, match=f"{victim.name}.*truncated"):
        list(ShardDataset(tmp_path, seq_len=64, shuffle=False))
    victim.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ShardError, match=f"{victim.name}.*corrupt"):
        list(ShardDataset(tmp_path, seq_len=64, shuffle=False))
    pa_table = pa.ipc.open_stream(pa.memory_map(str(directory / victim.name))).read_all()
    victim.write_bytes(table_to_stream_bytes(pa_table.slice(0, 10)))  # valid stream, wrong document count
    with pytest.raises(ShardError, match=f"{victim.name}: 10 documents"):
        list(ShardDataset(tmp_path, seq_len=64, shuffle=False))


def test_resume_with_other_worker_count_is_refused(shard_dir):
    directory, _ = shard_dir
    loader = ShardLoader(ShardDataset(directory, seq_len=64, batch_size=2), num_workers=2)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    del it
    other = ShardLoader(ShardDataset(directory, seq_len=64, batch_size=2), num_workers=0)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="readers"):
        next(iter(other))
