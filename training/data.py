"""Streaming packed training sequences from Arrow token shards.

``ShardDataset`` is a ``torch.utils.data.IterableDataset`` over a shard directory written by the
``tokenize`` stage (``manifest.json`` + ``*.arrow`` stream files), a list of shard files, or a URL
that fsspec / pyarrow understand (``gs://``, ``s3://``, ``memory://``, ``file://``).

How a stream is made, per epoch:

1. Work units are blocks of ``block_docs`` consecutive documents of a shard. The units of all shards
   are permuted with ``seed`` and ``epoch``; reader ``r`` of ``R = world_size * num_workers``
   (``r = rank * num_workers + worker``) takes units ``r, r + R, r + 2R, ...``. Every document
   belongs to exactly one reader: none is lost or repeated across ranks and DataLoader workers.
2. Local shards are memory-mapped and read zero-copy (a stream file cannot be seeked into, but
   parsing a memory-mapped stream only touches its metadata; token pages are read when used).
   Remote shards are fetched whole and kept in a small cache (``cache_shards``).
3. Documents pass an optional ``doc_filter`` (the hook a curriculum or active-learning sampler
   uses: it gets a ``ShardDocument`` with the document's id, length and score columns, e.g.
   ``quality`` or ``toxicity``, and returns whether to train on it), then a seeded shuffle buffer
   of ``shuffle_buffer`` documents.
4. The packer concatenates documents and cuts the stream into samples of ``seq_len`` input tokens.
   Sample ``k`` holds stream tokens ``[k*L, (k+1)*L)`` as ``input_ids`` and the same positions
   shifted by one as ``targets`` (so each token is an input exactly once). ``segment_ids`` numbers
   the documents inside a sample (0, 1, ...; -1 on padding) so attention can be masked per document;
   targets that would cross into the next document are -100 (``mask_cross_document``), as is padding.
   The final partial sample is padded (``pad_id``) unless ``drop_last``.
5. With ``batch_size`` the dataset yields ready batches ([B, L] tensors; use
   ``DataLoader(ds, batch_size=None)``), which is much faster than collating single samples.

Every item also carries ``worker``: the DataLoader worker that made it.

Resumption is position based. The stream of a reader is a pure function of (shards, seed, epoch,
reader), so its state is just how many items the consumer took from it. ``state_dict()`` returns
``{"epoch", "consumed": {worker: items}}``; after ``load_state_dict`` each reader regenerates its
stream and skips that many items, walking document lengths only (no token is copied), and yields
exactly the items an uninterrupted run would have yielded next. Iterated in the main process the
dataset counts what it yields; with DataLoader workers wrap it in ``ShardLoader``, which counts the
items the training loop actually received per worker (prefetched items are not counted, so they
are produced again after a restart). Resume with the same ``world_size`` and ``num_workers``.

``follow=True`` streams a directory that is still being written: shards join the stream as they
appear (listed in the manifest or renamed into place as ``shard-*.arrow``), each block going to the
reader chosen by a hash of (shard, block), until ``manifest.json`` says ``"complete": true``. The
first epoch's order then depends on when shards appeared (its blocks are split by hash, also on a
rank that starts after the writer finished); later epochs read the complete directory in the seeded
order above. Resumption of a follow-mode epoch is exact when shards appear in the
same order.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import torch
import xxhash
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from thresher.tokenization.manifest import MANIFEST_NAME
from thresher.tokenization.shards import RESERVED_COLUMNS, ShardError, check_columns, open_local_shard, read_stream

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ShardDocument:
    """What ``doc_filter`` sees of one document."""

    shard: str
    row: int
    id: str
    length: int
    scores: dict[str, float]


class OpenShard:
    """One shard's token buffer as zero-copy numpy views, plus its score columns."""

    def __init__(self, name: str, table: pa.Table, expected_docs: int | None = None):
        check_columns(table, name)
        if expected_docs is not None and table.num_rows != expected_docs:
            raise ShardError(f"{name}: {table.num_rows} documents, the manifest says {expected_docs}")
        column = table.column("input_ids")
        ids = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        self.name = name
        self.table = table
        self.offsets = ids.offsets.to_numpy().astype(np.int64)
        self.values = ids.values.to_numpy()
        self.lengths = np.diff(self.offsets)
        self.num_docs = table.num_rows
        self._scores: dict[str, np.ndarray] | None = None
        self._ids: list[str] | None = None

    def tokens(self, row: int) -> np.ndarray:
        return self.values[self.offsets[row]:self.offsets[row + 1]]

    def document(self, row: int) -> ShardDocument:
        if self._scores is None:
            self._scores = {name: self.table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
                            for name in self.table.column_names
                            if name not in RESERVED_COLUMNS and pa.types.is_floating(self.table.schema.field(name).type)}
            self._ids = self.table.column("id").to_pylist()
        scores = {k: float(v[row]) for k, v in self._scores.items() if not np.isnan(v[row])}
        return ShardDocument(self.name, row, self._ids[row], int(self.lengths[row]), scores)


class ShardSource:
    """Where shards live: a directory (with or without manifest.json), or explicit shard files;
    local paths or any fsspec URL."""

    def __init__(self, location: str | os.PathLike | Sequence[str | os.PathLike]):
        if isinstance(location, (str, os.PathLike)):
            self.fs, root = fsspec.core.url_to_fs(os.fspath(location))
            self.root: str | None = root.rstrip("/")
            self.files: list[str] | None = None
        else:
            paths = [os.fspath(p) for p in location]
            if not paths:
                raise ValueError("ShardDataset needs at least one shard file")
            self.fs, _ = fsspec.core.url_to_fs(paths[0])
            self.root = None
            self.files = [fsspec.core.url_to_fs(p)[1] for p in paths]
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = "file" in protocols or "local" in protocols

    def path(self, name: str) -> str:
        return name if self.root is None else f"{self.root}/{name}"

    def listing(self, follow: bool = False) -> tuple[list[str], dict[str, int], bool]:
        """(shard names in stable order, document counts known from the manifest, complete?).
        Without a manifest a directory is complete unless we ``follow`` it (its writer may not
        have written the manifest yet)."""
        if self.files is not None:
            return list(self.files), {}, True
        manifest_path = self.path(MANIFEST_NAME)
        manifest = None
        if self.fs.exists(manifest_path):
            with self.fs.open(manifest_path, "rb") as f:
                try:
                    manifest = json.loads(f.read())
                except json.JSONDecodeError as exc:
                    raise ShardError(f"{manifest_path}: not valid JSON ({exc})") from exc
        if manifest is not None and manifest.get("complete"):
            names = [s["file"] for s in manifest["shards"]]
            return names, {s["file"]: int(s["documents"]) for s in manifest["shards"]}, True
        counts = {s["file"]: int(s["documents"]) for s in (manifest or {}).get("shards", [])}
        listed = {p.rsplit("/", 1)[-1] for p in self.fs.glob(self.path("*.arrow"))}
        names = sorted(listed | set(counts))
        # a directory without a manifest is a finished set of files (e.g. written by `datasets`)
        return names, counts, manifest is None and not follow

    def open(self, name: str, expected_docs: int | None = None) -> OpenShard:
        path = self.path(name)
        if self.local:
            table = open_local_shard(path)
        else:
            try:
                with self.fs.open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError as exc:
                raise ShardError(f"{path}: missing") from exc
            table = read_stream(data, path)
        return OpenShard(path, table, expected_docs)


Unit = tuple[int, int, int]  # (shard index in the epoch's list, first row, end row)
DocRef = tuple[int, int, np.ndarray]  # (shard index, row, the document's tokens: a view into the shard)


class ShardDataset(IterableDataset):
    """Packed, shuffled, resumable token sequences from Arrow shards (see the module docstring)."""

    def __init__(self, location: str | os.PathLike | Sequence[str | os.PathLike], seq_len: int, *,
                 batch_size: int | None = None, seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 8192,
                 block_docs: int = 1024, rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False, pad_id: int = 0, mask_cross_document: bool = True,
                 doc_filter: Callable[[ShardDocument], bool] | None = None, follow: bool = False,
                 poll_seconds: float = 2.0, follow_timeout: float = 3600.0, cache_shards: int = 8):
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if rank is None or world_size is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            rank = (dist.get_rank() if initialised else 0) if rank is None else rank
            world_size = (dist.get_world_size() if initialised else 1) if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.source = ShardSource(location)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.block_docs = max(1, block_docs)
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last
        self.pad_id = pad_id
        self.mask_cross_document = mask_cross_document
        self.doc_filter = doc_filter
        self.follow = follow
        self.poll_seconds = poll_seconds
        self.follow_timeout = follow_timeout
        self.cache_shards = max(1, cache_shards)
        self.epoch = 0
        self._consumed: dict[int, int] = {}
        self._resume_readers: int | None = None

    # ----- state -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._consumed = {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": dict(self._consumed), "seed": self.seed,
                "seq_len": self.seq_len, "batch_size": self.batch_size, "world_size": self.world_size,
                "readers": self._resume_readers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "seq_len", "batch_size", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"cannot resume: state has {key}={state[key]!r}, dataset has {getattr(self, key)!r}")
        self.epoch = int(state["epoch"])
        self._consumed = {int(k): int(v) for k, v in state["consumed"].items()}
        self._resume_readers = state.get("readers")

    def mark_consumed(self, worker: int, items: int = 1) -> None:
        """Count items the training loop received from ``worker`` (``ShardLoader`` calls this)."""
        self._consumed[worker] = self._consumed.get(worker, 0) + items

    def _epoch_finished(self) -> None:
        self.epoch += 1
        self._consumed = {}
        self._resume_readers = None

    # ----- readers and units -------------------------------------------------------------------
    def _reader(self) -> tuple[int, int, int]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        readers = self.world_size * workers
        if self._consumed and self._resume_readers not in (None, readers):
            raise ValueError(f"cannot resume: the state was saved with {self._resume_readers} readers "
                             f"(world_size x num_workers), now there are {readers}")
        return worker, self.rank * workers + worker, readers

    def _static_units(self, counts: list[int], reader: int, readers: int) -> list[Unit]:
        units = [(i, start, min(start + self.block_docs, n)) for i, n in enumerate(counts)
                 for start in range(0, n, self.block_docs)]
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 0x5EED]).permutation(len(units))
            units = [units[j] for j in order]
        return units[reader::readers]

    def _doc_refs(self, reader: int, readers: int, cache: "_ShardCache") -> Iterator[DocRef]:
        # in a followed epoch every rank must use the same (hash) assignment, even a rank that
        # starts after the directory is complete
        if not self.follow or self.epoch > 0:
            names, counts, complete = self.source.listing()
            if not complete:
                raise ShardError(f"{self.source.path(MANIFEST_NAME)}: the shard directory is not complete; "
                                 f"pass follow=True to stream it while it is written")
            cache.names = names
            doc_counts = [counts[n] if n in counts else cache.get(i).num_docs for i, n in enumerate(names)]
            cache.expected = {i: counts.get(n) for i, n in enumerate(names)}
            units = self._static_units(doc_counts, reader, readers)
        else:
            units = self._followed_units(reader, readers, cache)
        for shard_index, start, end in units:
            shard = cache.get(shard_index)
            values, offsets = shard.values, shard.offsets
            for row in range(start, end):
                if self.doc_filter is not None and not self.doc_filter(shard.document(row)):
                    continue
                # the view keeps its shard's buffer alive however long it waits in the shuffle buffer
                yield shard_index, row, values[offsets[row]:offsets[row + 1]]

    def _followed_units(self, reader: int, readers: int, cache: "_ShardCache") -> Iterator[Unit]:
        cache.names = []
        seen: set[str] = set()
        idle_since = time.monotonic()
        while True:
            names, counts, complete = self.source.listing(follow=True)
            new = [n for n in names if n not in seen]
            for name in new:
                seen.add(name)
                index = len(cache.names)
                cache.names.append(name)
                cache.expected[index] = counts.get(name)
                n = counts[name] if name in counts else cache.get(index).num_docs
                for block, start in enumerate(range(0, n, self.block_docs)):
                    owner = xxhash.xxh64_intdigest(f"{name}:{block}".encode(), seed=self.seed) % readers
                    if owner == reader:
                        yield index, start, min(start + self.block_docs, n)
            if complete and not new:
                return
            if new:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.follow_timeout:
                raise TimeoutError(f"no new shard in {self.source.root} for {self.follow_timeout:.0f} s "
                                   f"and {MANIFEST_NAME} is not marked complete")
            else:
                time.sleep(self.poll_seconds)

    def _shuffled(self, refs: Iterator[DocRef], reader: int) -> Iterator[DocRef]:
        if not self.shuffle or self.shuffle_buffer <= 1:
            yield from refs
            return
        rng = np.random.default_rng([self.seed, self.epoch, reader, 0xB0FF])
        buffer: list[DocRef] = []
        size = self.shuffle_buffer
        picks = rng.integers(0, size, 4096)
        used = 0
        for ref in refs:
            if len(buffer) < size:
                buffer.append(ref)
                continue
            if used == len(picks):
                picks, used = rng.integers(0, size, 4096), 0
            j = picks[used]
            used += 1
            yield buffer[j]
            buffer[j] = ref
        for j in rng.permutation(len(buffer)):
            yield buffer[j]

    # ----- documents and packing ---------------------------------------------------------------
    def iter_documents(self) -> Iterator[tuple[ShardDocument, np.ndarray]]:
        """This reader's documents for the current epoch, in the order the packer consumes them."""
        _, reader, readers = self._reader()
        cache = _ShardCache(self.source, self.cache_shards)
        for shard_index, row, tokens in self._shuffled(self._doc_refs(reader, readers, cache), reader):
            yield cache.get(shard_index).document(row), tokens

    def _chunks(self, refs: Iterator[DocRef]) -> Iterator[list[tuple[np.ndarray, int, int, int]]]:
        """Spans (document tokens, start, end, document serial) of seq_len stream tokens each."""
        L = self.seq_len
        spans: list[tuple[np.ndarray, int, int, int]] = []
        filled = 0
        for serial, (_, _, tokens) in enumerate(refs):
            start, n = 0, len(tokens)
            while start < n:
                take = min(n - start, L - filled)
                spans.append((tokens, start, start + take, serial))
                start += take
                filled += take
                if filled == L:
                    yield spans
                    spans, filled = [], 0
        if spans:
            yield spans

    def _fill(self, spans, lookahead, inp: np.ndarray, serials: np.ndarray) -> tuple[int, int]:
        """Copy one sample's tokens into ``inp`` (L) and document serials into ``serials`` (L + 1,
        the lookahead's serial at the end, -1 on padding). Returns (tokens, target of the last one)."""
        pos = 0
        for tokens, a, b, serial in spans:
            inp[pos:pos + b - a] = tokens[a:b]
            serials[pos:pos + b - a] = serial
            pos += b - a
        serials[pos:] = -1
        if lookahead is None:
            return pos, IGNORE_INDEX
        tokens, a, _, serial = lookahead
        serials[pos] = serial
        return pos, int(tokens[a])

    def _targets(self, inp: np.ndarray, serials: np.ndarray, ends: np.ndarray, last: np.ndarray,
                 firsts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets and segment ids of a whole batch at once (fewer numpy calls than per sample)."""
        L = self.seq_len
        tgt = np.empty_like(inp)
        tgt[:, :L - 1] = inp[:, 1:]
        rows = np.arange(len(inp))
        tgt[rows, ends - 1] = last
        pad = serials[:, :L] < 0
        if self.mask_cross_document:
            tgt[serials[:, 1:] != serials[:, :L]] = IGNORE_INDEX
        tgt[pad] = IGNORE_INDEX
        inp[pad] = self.pad_id
        seg = (serials[:, :L] - firsts[:, None]).astype(np.int32)
        seg[pad] = -1
        return tgt, seg

    def _sample_spans(self, refs: Iterator[DocRef]) -> Iterator[tuple[list, tuple | None]]:
        previous = None
        for chunk in self._chunks(refs):
            if previous is not None:
                yield previous, chunk[0]
            previous = chunk
        if previous is not None and (not self.drop_last or sum(b - a for _, a, b, _ in previous) == self.seq_len):
            yield previous, None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, reader, readers = self._reader()
        in_main_process = get_worker_info() is None
        skip_items = self._consumed.get(worker, 0)
        cache = _ShardCache(self.source, self.cache_shards)
        samples = self._sample_spans(self._shuffled(self._doc_refs(reader, readers, cache), reader))
        B = self.batch_size or 1
        skip = skip_items * B
        for _ in range(skip):
            if next(samples, None) is None:
                break
        L = self.seq_len
        while True:
            inp = np.empty((B, L), dtype=np.int64)
            serials = np.empty((B, L + 1), dtype=np.int64)
            ends = np.empty(B, dtype=np.int64)
            last = np.empty(B, dtype=np.int64)
            firsts = np.empty(B, dtype=np.int64)
            filled = 0
            for spans, lookahead in samples:
                ends[filled], last[filled] = self._fill(spans, lookahead, inp[filled], serials[filled])
                firsts[filled] = spans[0][3]
                filled += 1
                if filled == B:
                    break
            if filled == 0 or (self.batch_size and self.drop_last and filled < B):
                break
            inp, serials = inp[:filled], serials[:filled]
            tgt, seg = self._targets(inp, serials, ends[:filled], last[:filled], firsts[:filled])
            if self.batch_size is None:
                item = {"input_ids": torch.from_numpy(inp[0]), "targets": torch.from_numpy(tgt[0]),
                        "segment_ids": torch.from_numpy(seg[0]), "worker": worker}
            else:
                item = {"input_ids": torch.from_numpy(inp), "targets": torch.from_numpy(tgt),
                        "segment_ids": torch.from_numpy(seg), "worker": worker}
            if in_main_process:
                self.mark_consumed(worker)  # before the yield: the caller holds the item once next() returns
            yield item
            if filled < B:
                break
        if in_main_process:
            self._epoch_finished()
        else:
            yield {"worker": worker, "end": True}  # lets ShardLoader keep its worker order exact


class _ShardCache:
    """Opened shards by index into the epoch's shard list, least recently used evicted."""

    def __init__(self, source: ShardSource, capacity: int):
        self.source = source
        self.capacity = capacity
        self.names: list[str] = []
        self.expected: dict[int, int | None] = {}
        self._open: OrderedDict[int, OpenShard] = OrderedDict()

    def get(self, index: int) -> OpenShard:
        shard = self._open.get(index)
        if shard is not None:
            self._open.move_to_end(index)
            return shard
        shard = self.source.open(self.names[index], self.expected.get(index))
        self._open[index] = shard
        if len(self._open) > self.capacity:
            self._open.popitem(last=False)
        return shard


class ShardLoader:
    """A DataLoader over a ``ShardDataset`` that counts what the training loop received from each
    worker, so ``state_dict()`` resumes exactly even though workers prefetch.

    Items are delivered in a fixed round-robin over workers (a worker that has finished is
    skipped), whatever order the workers deliver them in; a resumed loader continues the same
    round-robin where the saved one stopped, so it yields exactly the uninterrupted sequence."""

    def __init__(self, dataset: ShardDataset, num_workers: int = 0, **dataloader_kwargs: Any):
        self.dataset = dataset
        self.num_workers = num_workers
        self.dataloader_kwargs = dataloader_kwargs
        self._next_worker = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.num_workers, **self.dataloader_kwargs)
        if self.num_workers == 0:
            yield from loader  # the dataset counts for itself in the main process
            return
        workers = self.num_workers
        self.dataset._resume_readers = self.dataset.world_size * workers
        source = iter(loader)
        pending: dict[int, deque] = {w: deque() for w in range(workers)}
        live = set(range(workers))
        w = self._next_worker
        while live:
            if w not in live:
                w = (w + 1) % workers
                continue
            while not pending[w]:
                item = next(source, None)
                if item is None:
                    break
                pending[int(item["worker"])].append(item)
            item = pending[w].popleft() if pending[w] else {"end": True}
            if item.get("end"):
                live.discard(w)
            else:
                self.dataset.mark_consumed(w)
                self._next_worker = (w + 1) % workers
                yield item
            w = (w + 1) % workers
        self.dataset._epoch_finished()
        self._next_worker = 0

    def state_dict(self) -> dict[str, Any]:
        state = self.dataset.state_dict()
        state["readers"] = self.dataset.world_size * max(1, self.num_workers)
        state["next_worker"] = self._next_worker
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._next_worker = int(state.get("next_worker", 0))
