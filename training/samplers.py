"""Which documents the model trains on next, and how they are packed into sequences.

- ``DocumentPool``: the documents of a set of shards (tokens, ids and per-document score columns).
- ``UniformSampler``: every document once per epoch, in a seeded random order.
- ``CurriculumSampler``: documents sorted by a difficulty score; at step t only the easiest
  ``competence(t)`` fraction is drawn from (pacing linear / root / step / exponential, Platanios et
  al. 2019), plus an optional sequence-length warmup (Li et al. 2022).
- ``ActiveSampler``: prioritised sampling with replacement by each document's recent training loss
  (or RHO-LOSS reducible loss: training loss minus a reference model's loss, Mindermann et al. 2022),
  mixed with uniform sampling by ``epsilon``, with importance weights that undo the bias.
- ``Packer``: concatenates drawn documents into rows of ``seq_len + 1`` tokens with per-position
  segment ids (a document cut at the end of a row continues at the start of the next).

Every sampler draws through its own ``torch.Generator`` and has ``state_dict``/``load_state_dict`` of
tensors and numbers only, so a checkpoint restores the exact stream (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from thresher.tokenization.shards import check_columns, open_local_shard

from thresher.tokenization.manifest import parse_manifest

from .config import ActiveSamplerConfig, CurriculumSamplerConfig, UniformSamplerConfig


def shard_paths(location: str | Path) -> list[Path]:
    """The shards of a directory (in its manifest's order when it has one) or of a manifest file."""
    location = Path(location)
    manifest = location / "manifest.json" if location.is_dir() else location
    if manifest.is_file() and manifest.suffix == ".json":
        entries = parse_manifest(manifest.read_bytes(), str(manifest))["shards"]
        paths = [manifest.parent / entry["file"] for entry in entries]
    elif location.is_dir():
        paths = sorted(p for p in location.glob("*.arrow") if not p.name.startswith("scores-"))
    elif location.is_file():
        paths = [location]
    else:
        raise FileNotFoundError(f"shards: {location} does not exist")
    if not paths:
        raise FileNotFoundError(f"shards: no *.arrow shards in {location}")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"shards: listed in the manifest but missing: {', '.join(missing)}")
    return paths


class DocumentPool:
    """Documents held as one flat token array plus offsets; ``scores`` maps a column to float64 values
    (NaN where a document has none). ``length`` is always a score."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, ids: list[str], scores: dict[str, np.ndarray]):
        self.tokens, self.offsets, self.ids = tokens, offsets, ids
        self.scores = dict(scores)
        self.scores["length"] = np.diff(offsets).astype(np.float64)
        if len(ids) == 0:
            raise ValueError("shards: no documents")

    def __len__(self) -> int:
        return len(self.ids)

    def document(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    @classmethod
    def from_tables(cls, tables: list[pa.Table]) -> "DocumentPool":
        chunks, lengths, ids, scores = [], [], [], {}
        numeric = set.intersection(*(
            {f.name for f in t.schema if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)} for t in tables
        )) - {"length"}
        for table in tables:
            col = table.column("input_ids").combine_chunks()
            flat = col.flatten().to_numpy(zero_copy_only=False)
            offs = col.offsets.to_numpy()
            chunks.append(flat[offs[0] : offs[-1]].astype(np.int64))
            lengths.append(np.diff(offs))
            ids += [str(x) for x in table.column("id").to_pylist()]
            for name in numeric:
                values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
                scores.setdefault(name, []).append(np.nan_to_num(values, nan=np.nan))
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
        return cls(np.concatenate(chunks), offsets, ids, {k: np.concatenate(v) for k, v in scores.items()})

    @classmethod
    def from_shards(cls, paths: list[Path]) -> "DocumentPool":
        tables = []
        for path in paths:
            table = open_local_shard(path)
            check_columns(table, str(path))
            tables.append(table)
        return cls.from_tables(tables)

    def subset(self, indices: np.ndarray) -> "DocumentPool":
        lengths = np.diff(self.offsets)[indices]
        tokens = np.concatenate([self.document(int(i)) for i in indices]) if len(indices) else self.tokens[:0]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        scores = {k: v[indices] for k, v in self.scores.items() if k != "length"}
        return DocumentPool(tokens, offsets, [self.ids[int(i)] for i in indices], scores)

    def add_scores(self, path: str | Path) -> None:
        """Join a score file (Arrow stream or file with ``id`` and float columns, as written by
        ``thresher score``) onto the documents by id."""
        path = Path(path)
        table = open_local_shard(path) if path.suffix == ".arrow" else pa.ipc.open_file(path).read_all()
        if "id" not in table.column_names:
            raise ValueError(f"{path}: score file has no 'id' column")
        row_of = {doc_id: i for i, doc_id in enumerate(self.ids)}
        ids = [str(x) for x in table.column("id").to_pylist()]
        for name in table.column_names:
            if name == "id":
                continue
            values = np.full(len(self), np.nan)
            for doc_id, value in zip(ids, table.column(name).to_pylist()):
                if doc_id in row_of and value is not None:
                    values[row_of[doc_id]] = float(value)
            self.scores[name] = values

    def score(self, column: str) -> np.ndarray:
        if column not in self.scores:
            raise ValueError(f"no per-document score column {column!r}; available: {sorted(self.scores)}")
        return self.scores[column]


def split_validation(pool_paths: list[Path], val_location: str | None) -> tuple[DocumentPool, DocumentPool]:
    """(train, validation) pools: ``val_location`` when given; else the last shard when there are
    several; else the last 10% of documents of the only shard."""
    if val_location:
        return DocumentPool.from_shards(pool_paths), DocumentPool.from_shards(shard_paths(val_location))
    if len(pool_paths) > 1:
        return DocumentPool.from_shards(pool_paths[:-1]), DocumentPool.from_shards(pool_paths[-1:])
    pool = DocumentPool.from_shards(pool_paths)
    n_val = max(1, len(pool) // 10)
    if len(pool) - n_val < 1:
        raise ValueError("shards: need at least 2 documents to hold one out for validation")
    return pool.subset(np.arange(len(pool) - n_val)), pool.subset(np.arange(len(pool) - n_val, len(pool)))


class Sampler:
    """Draws document indices; ``rank``/``world`` give each data-parallel process its own stream."""

    #: whether ``update`` uses the per-document losses (the loop copies them to the CPU only then)
    uses_losses = False

    def __init__(self, n_docs: int, seed: int, rank: int = 0, world: int = 1):
        self.n_docs, self.rank, self.world = n_docs, rank, world
        self.generator = torch.Generator().manual_seed(seed * 1000003 + rank)
        self.step = 0

    def set_step(self, step: int) -> None:
        self.step = step

    def seq_len_at(self, step: int, seq_len: int) -> int:
        return seq_len

    def next_index(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement next_index")

    def update(self, doc_index: np.ndarray, losses: np.ndarray) -> None:
        """Per-document mean token losses observed in the last batch (used by the active sampler)."""

    def weights(self, doc_index: torch.Tensor) -> torch.Tensor | None:
        """Per-position loss weights for a batch of document indices (None: unweighted)."""
        return None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])


class UniformSampler(Sampler):
    def __init__(self, n_docs: int, seed: int, rank: int = 0, world: int = 1):
        super().__init__(n_docs, seed, rank, world)
        self.seed, self.epoch, self.position = seed, 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        # The same permutation on every rank; rank r takes positions r, r + world, ...
        return torch.randperm(self.n_docs, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))

    def next_index(self) -> int:
        slot = self.position * self.world + self.rank
        if slot >= self.n_docs:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
            slot = self.rank % self.n_docs
        self.position += 1
        return int(self._order[slot])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)


def competence(step: int, pacing: str, c0: float, total: int, step_count: int = 4) -> float:
    """Fraction of the difficulty-sorted data available at ``step``; reaches 1 at ``total``."""
    x = min(max(step / total, 0.0), 1.0)
    if pacing == "linear":
        c = c0 + (1 - c0) * x
    elif pacing == "root":
        c = math.sqrt(c0 * c0 + (1 - c0 * c0) * x)
    elif pacing == "step":
        c = c0 + (1 - c0) * math.floor(x * step_count) / step_count
    elif pacing == "exponential":
        c = c0 * (1 / c0) ** x
    else:
        raise ValueError(f"unknown pacing {pacing!r}")
    return min(1.0, c)


class CurriculumSampler(Sampler):
    def __init__(self, pool: DocumentPool, cfg: CurriculumSamplerConfig, total_steps: int, seed: int,
                 rank: int = 0, world: int = 1):
        super().__init__(len(pool), seed, rank, world)
        difficulty = pool.score(cfg.difficulty).copy()
        if np.isnan(difficulty).all():
            raise ValueError(f"curriculum: score column {cfg.difficulty!r} has no values")
        # Documents without a score go last (hardest): nothing says they are easy.
        difficulty = np.where(np.isnan(difficulty), np.inf if not cfg.descending else -np.inf, difficulty)
        key = -difficulty if cfg.descending else difficulty
        self.order = torch.from_numpy(np.argsort(key, kind="stable"))
        self.cfg = cfg
        self.pacing_steps = cfg.pacing_steps or max(1, total_steps // 2)
        self.warmup_steps = cfg.seq_len_warmup_steps or self.pacing_steps

    def competence(self) -> float:
        return competence(self.step, self.cfg.pacing, self.cfg.start_competence, self.pacing_steps, self.cfg.step_count)

    def next_index(self) -> int:
        available = max(1, math.ceil(self.competence() * self.n_docs))
        pick = int(torch.randint(available, (1,), generator=self.generator))
        return int(self.order[pick])

    def seq_len_at(self, step: int, seq_len: int) -> int:
        start = self.cfg.seq_len_start
        if not start or step >= self.warmup_steps:
            return seq_len
        length = start + (seq_len - start) * step / self.warmup_steps
        return max(8, min(seq_len, int(length) // 8 * 8))


class ActiveSampler(Sampler):
    uses_losses = True

    def __init__(self, pool: DocumentPool, cfg: ActiveSamplerConfig, seed: int, rank: int = 0, world: int = 1):
        super().__init__(len(pool), seed, rank, world)
        self.cfg = cfg
        self.loss = torch.full((len(pool),), float("nan"), dtype=torch.float64)
        if cfg.priority == "rho":
            ref = pool.score(cfg.reference_column)
            if np.isnan(ref).any():
                raise ValueError(
                    f"active/rho: {int(np.isnan(ref).sum())} documents lack {cfg.reference_column!r}; "
                    "run `thresher score` over these shards with a reference checkpoint"
                )
            self.reference = torch.from_numpy(ref.astype(np.float64))
        else:
            self.reference = None
        self._probs: torch.Tensor | None = None

    def priorities(self) -> torch.Tensor:
        seen = ~self.loss.isnan()
        value = self.loss if self.reference is None else self.loss - self.reference
        value = value.clamp_min(1e-3)
        # Unseen documents get the highest priority seen so far, so they are tried early.
        top = value[seen].max() if seen.any() else torch.tensor(1.0, dtype=torch.float64)
        return torch.where(seen, value, top)

    def probabilities(self) -> torch.Tensor:
        if self._probs is None:
            p = self.priorities() ** self.cfg.alpha
            p = p / p.sum()
            self._probs = (1 - self.cfg.epsilon) * p + self.cfg.epsilon / self.n_docs
        return self._probs

    def next_index(self) -> int:
        return int(torch.multinomial(self.probabilities(), 1, generator=self.generator))

    def update(self, doc_index: np.ndarray, losses: np.ndarray) -> None:
        idx = torch.from_numpy(np.asarray(doc_index, dtype=np.int64))
        new = torch.from_numpy(np.asarray(losses, dtype=np.float64))
        old = self.loss[idx]
        self.loss[idx] = torch.where(old.isnan(), new, (1 - self.cfg.ema) * old + self.cfg.ema * new)
        self._probs = None

    def weights(self, doc_index: torch.Tensor) -> torch.Tensor:
        """(1 / (N p))^beta per position, normalised to mean 1 over the positions given."""
        p = self.probabilities()[doc_index.clamp_min(0).cpu()]
        w = (1.0 / (self.n_docs * p)) ** self.cfg.beta
        w = torch.where(doc_index.cpu() >= 0, w, torch.zeros_like(w))
        return (w / w[doc_index.cpu() >= 0].mean()).float().to(doc_index.device)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "loss": self.loss.clone()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.loss = state["loss"].clone()
        self._probs = None


def build_sampler(cfg, pool: DocumentPool, total_steps: int, seed: int, rank: int = 0, world: int = 1) -> Sampler:
    if isinstance(cfg, UniformSamplerConfig):
        return UniformSampler(len(pool), seed, rank, world)
    if isinstance(cfg, CurriculumSamplerConfig):
        return CurriculumSampler(pool, cfg, total_steps, seed, rank, world)
    if isinstance(cfg, ActiveSamplerConfig):
        return ActiveSampler(pool, cfg, seed, rank, world)
    raise ValueError(f"unknown sampler {cfg!r}")


@dataclass
class Batch:
    input_ids: torch.Tensor  # (batch, seq) int64
    targets: torch.Tensor  # (batch, seq) int64, -100 where the next token is another document's
    segment_ids: torch.Tensor  # (batch, seq) int64: equal within one document piece, for attention
    doc_index: torch.Tensor  # (batch, seq) int64: the pool index of each position's document

    @property
    def tokens(self) -> int:
        return int((self.targets != -100).sum())


class Packer:
    """Fills rows of ``seq_len + 1`` tokens from the sampler's documents."""

    def __init__(self, pool: DocumentPool, sampler: Sampler):
        self.pool, self.sampler = pool, sampler
        self.carry_doc, self.carry_offset = -1, 0  # the rest of a document cut at the last row's end

    def next_batch(self, batch_size: int, seq_len: int) -> Batch:
        rows = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        docs = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        segs = np.empty((batch_size, seq_len + 1), dtype=np.int64)
        for r in range(batch_size):
            filled, segment = 0, 0
            while filled < seq_len + 1:
                if self.carry_doc < 0:
                    self.carry_doc, self.carry_offset = self.sampler.next_index(), 0
                tokens = self.pool.document(self.carry_doc)[self.carry_offset :]
                take = min(len(tokens), seq_len + 1 - filled)
                rows[r, filled : filled + take] = tokens[:take]
                docs[r, filled : filled + take] = self.carry_doc
                segs[r, filled : filled + take] = segment
                filled, segment = filled + take, segment + 1
                if take == len(tokens):
                    self.carry_doc = -1
                else:
                    # Cut at the row's end: the row's last token is only a target there, so the next
                    # row starts with it as an input.
                    self.carry_offset += take - 1
        rows_t, docs_t, segs_t = (torch.from_numpy(a) for a in (rows, docs, segs))
        targets = rows_t[:, 1:].clone()
        targets[segs_t[:, 1:] != segs_t[:, :-1]] = -100
        return Batch(rows_t[:, :-1].contiguous(), targets, segs_t[:, :-1].contiguous(), docs_t[:, :-1].contiguous())

    def state_dict(self) -> dict:
        return {"carry_doc": self.carry_doc, "carry_offset": self.carry_offset}

    def load_state_dict(self, state: dict) -> None:
        self.carry_doc, self.carry_offset = int(state["carry_doc"]), int(state["carry_offset"])
