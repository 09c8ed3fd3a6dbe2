"""Packed-batch throughput (tokens/s, one process, no DataLoader workers) from local shards:
thresher's ShardDataset vs LitData and MosaicML Streaming on the same tokens, in one run.

Tokens: WikiText-2 valid + test (../shared/data/wiki) encoded with a BPE of 8000 pieces trained on
it, the documents repeated under new ids up to --tokens (a real token distribution at a size that
measures streaming, not start-up). Every loader yields batches of --batch x --seq-len input tokens
(plus targets); throughput counts input tokens. thresher also shuffles (8192-document buffer) and
returns per-document segment ids; LitData's TokensLoader cuts a flat token stream into blocks with no
document boundaries; MosaicML Streaming yields documents, packed here by a small numpy packer.

    python bench/loader.py [--tokens 20000000] [--seq-len 2048] [--batch 8]
    PYTHONPATH=/path/to/peer/libs python bench/loader.py   # where the peers are installed apart
"""

from __future__ import annotations

import sys

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from thresher.tokenization.manifest import LocalShardWriter  # noqa: E402
from thresher.tokenization.shards import ShardRecord, build_table, shard_name  # noqa: E402
from thresher.tokenization.spm import Encoder, TrainerConfig, train_model  # noqa: E402
from thresher.training.data import ShardDataset  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def corpus_tokens(target_tokens: int) -> tuple[bytes, list[np.ndarray]]:
    texts = []
    for name in ("wikitext-2-valid.txt", "wikitext-2-test.txt"):
        path = DATA / "wiki" / name
        if path.exists():
            texts += [t for t in path.read_text(encoding="utf-8").split("\n = ") if t.strip()]
    if not texts:
        raise SystemExit(f"no WikiText under {DATA}; nothing to measure")
    model = train_model(texts[:300], TrainerConfig(vocab_size=8000))
    docs = Encoder(model).encode_batch(texts)
    per_pass = sum(len(d) for d in docs)
    return model, docs * max(1, -(-target_tokens // per_pass))


def write_thresher(directory: Path, model: bytes, docs: list[np.ndarray], shard_tokens: int) -> None:
    writer = LocalShardWriter(directory, model)
    records, tokens, part = [], 0, 0
    for i, tokens_ in enumerate(docs):
        records.append(ShardRecord(f"doc-{i:08d}", "wiki", tokens_, {}))
        tokens += len(tokens_)
        if tokens >= shard_tokens:
            writer.write(shard_name(0, part), build_table(records, writer.schema))
            records, tokens, part = [], 0, part + 1
    if records:
        writer.write(shard_name(0, part), build_table(records, writer.schema))
    writer.close()


def pack(documents, seq_len: int, batch: int):
    """Concatenate documents and cut batches of seq_len + 1 token windows (the peers' packer)."""
    need = batch * seq_len + 1
    pending: list[np.ndarray] = []
    have = 0
    for doc in documents:
        pending.append(np.asarray(doc))
        have += len(pending[-1])
        if have >= need:
            flat = np.concatenate(pending)
            window = flat[:need].astype(np.int64)
            rest = flat[need - 1:]
            pending, have = [rest], len(rest)
            yield window[:-1].reshape(batch, seq_len), window[1:].reshape(batch, seq_len)


def measure(batches, seq_len: int) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = 0
    for item in batches:
        x = item["input_ids"] if isinstance(item, dict) else item[0]
        tokens += x.shape[0] * seq_len if len(x.shape) == 2 else seq_len
    return tokens / (time.perf_counter() - start), tokens


def run_litdata(tmp: Path, docs: list[np.ndarray], seq_len: int, batch: int):
    from litdata import StreamingDataLoader, StreamingDataset, TokensLoader, optimize

    out = tmp / "litdata"
    optimize(fn=_litdata_item, inputs=[(d,) for d in docs], output_dir=str(out), chunk_bytes="64MB",
             item_loader=TokensLoader(), num_workers=1, mode="overwrite")
    dataset = StreamingDataset(input_dir=str(out), item_loader=TokensLoader(block_size=seq_len + 1), shuffle=True)
    loader = StreamingDataLoader(dataset, batch_size=batch, num_workers=0)
    return measure(({"input_ids": b[:, :-1]} for b in loader), seq_len), None


def _litdata_item(item):
    import torch

    return torch.from_numpy(item[0].astype(np.int64))


def run_mosaic(tmp: Path, docs: list[np.ndarray], seq_len: int, batch: int):
    from streaming import MDSWriter, StreamingDataset

    out = tmp / "mds"
    with MDSWriter(out=str(out), columns={"input_ids": "ndarray:uint16"}, size_limit="64mb") as writer:
        for d in docs:
            writer.write({"input_ids": d})
    dataset = StreamingDataset(local=str(out), shuffle=True, batch_size=batch)
    return measure(pack((s["input_ids"] for s in dataset), seq_len, batch), seq_len), None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    model, docs = corpus_tokens(args.tokens)
    total = sum(len(d) for d in docs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_thresher(tmp / "thresher", model, docs, shard_tokens=4_000_000)
        dataset = ShardDataset(tmp / "thresher", seq_len=args.seq_len, batch_size=args.batch, seed=0)
        rate, tokens = measure(iter(dataset), args.seq_len)
        rows.append(("thresher `ShardDataset` (mmap Arrow, shuffle buffer, segment ids)", f"{rate / 1e6:.1f}", tokens))
        for name, runner in (("LitData `StreamingDataset` + `TokensLoader`", run_litdata),
                             ("MosaicML `StreamingDataset` (MDS) + numpy packer", run_mosaic)):
            try:
                (rate, tokens), _ = runner(tmp, docs, args.seq_len, args.batch)
                rows.append((name, f"{rate / 1e6:.1f}", tokens))
            except Exception as exc:  # a peer that does not install or run here is reported, not fatal
                rows.append((name, f"did not run: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}", 0))
    print(f"Packed batches from local shards, {total / 1e6:.1f} M tokens (WikiText-2 BPE 8000, repeated), "
          f"seq_len {args.seq_len}, batch {args.batch}, one process\n")
    print("| loader | M tokens/s | tokens read |")
    print("| --- | ---: | ---: |")
    for name, rate, tokens in rows:
        print(f"| {name} | {rate} | {tokens} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
