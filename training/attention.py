"""Attention variants, chosen by name from the training YAML.

Every variant is an ``nn.Module`` called as ``attn(q, k, v, doc_ids)`` with ``q, k, v`` of shape
(batch, heads, seq, head_dim) (RoPE already applied) and ``doc_ids`` of shape (batch, seq) or None.
It returns (batch, heads, seq, head_dim). All variants are causal and never let a position attend to
a position of another document: packed sequences hold several documents side by side, and documents
are contiguous runs of equal ``doc_ids``.

- ``sdpa``: exact causal softmax attention. Without ``doc_ids`` it is one fused kernel
  (``is_causal``); with them, FlexAttention with a document mask on CUDA and an SDPA boolean mask
  elsewhere (FlexAttention in torch 2.13 has no backward on CPU).
- ``sliding_window``: Longformer-style: each query sees the previous ``window`` positions of its own
  document, plus the first ``global_tokens`` positions of its document; those global positions see
  their whole (causal) document prefix. FlexAttention block masks on CUDA, the same mask as a dense
  SDPA boolean mask elsewhere.
- ``performer``: FAVOR+ (positive orthogonal random features), causal through chunked prefix sums:
  memory is O(chunk^2 + features * head_dim) per chunk, never O(seq * features * head_dim).
- ``linformer``: Linformer projects the keys and values of the whole sequence to ``rank`` rows,
  which lets every query see the future, so it cannot be causal as published. We use a causal-safe
  blockwise variant instead: the sequence is cut into chunks; a query attends exactly (softmax) to
  earlier positions of its own chunk, and to ``rank`` learned low-rank summaries of each *earlier*
  chunk (Linformer's projection applied per chunk), all in one softmax. A summary only mixes keys of
  one chunk, and only those of the document still running at the chunk's end, so neither the future
  nor another document leaks in.
- ``reformer``: LSH attention. Positions are hashed by their (normalised) key with random rotations,
  sorted by (document, bucket, position) and cut into chunks; a query attends causally to its own
  and the previous sorted chunk. Several hash rounds are combined by their log-sum-exp weights, as in
  Reformer. Queries are placed by their token's key hash (Reformer shares Q and K; here they are
  separate projections, so this is an approximation the tests quantify).
"""

from __future__ import annotations

import math
import weakref
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

try:  # FlexAttention is optional: torch >= 2.5
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # pragma: no cover - old torch
    create_block_mask = flex_attention = None


def _compiled_flex() -> Callable:
    # Compiled once per process; FlexAttention is only fast (and only memory-lean) compiled.
    global _FLEX_COMPILED
    if _FLEX_COMPILED is None:
        _FLEX_COMPILED = torch.compile(flex_attention, dynamic=False)
    return _FLEX_COMPILED


_FLEX_COMPILED = None


def positions_in_document(doc_ids: torch.Tensor) -> torch.Tensor:
    """Index of each position inside its document run (0 at every document start)."""
    seq = doc_ids.shape[-1]
    idx = torch.arange(seq, device=doc_ids.device).expand_as(doc_ids)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[..., 1:] = doc_ids[..., 1:] != doc_ids[..., :-1]
    start_idx = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=-1).values
    return idx - start_idx


def dense_mask(
    doc_ids: torch.Tensor | None,
    seq: int,
    device: torch.device,
    window: int | None = None,
    global_tokens: int = 0,
) -> torch.Tensor:
    """Boolean (batch or 1, 1, seq, seq) mask, True where a query may attend to a key."""
    q = torch.arange(seq, device=device)[:, None]
    k = torch.arange(seq, device=device)[None, :]
    mask = (k <= q)[None]
    if doc_ids is not None:
        mask = mask & (doc_ids[:, :, None] == doc_ids[:, None, :])
    if window is not None:
        local = (q - k) < window
        if global_tokens > 0:
            if doc_ids is not None:
                pos = positions_in_document(doc_ids)
                is_global_k = (pos < global_tokens)[:, None, :]
                is_global_q = (pos < global_tokens)[:, :, None]
            else:
                is_global_k = (k < global_tokens)[None]
                is_global_q = (q < global_tokens)[None]
            local = local | is_global_k | is_global_q
        mask = mask & local
    return mask[:, None]


class AttentionVariant(nn.Module):
    """Base: subclasses implement ``forward(q, k, v, doc_ids, prepared=None)``."""

    causal_safe = True

    def prepare(self, doc_ids: torch.Tensor | None, batch: int, seq: int, device: torch.device):
        """What all layers of one forward pass can share (the FlexAttention block mask), built once by
        the model before its layers and passed to ``forward`` as ``prepared``; None: nothing to share."""
        return None


class SDPAAttention(AttentionVariant):
    def __init__(self, use_flex: bool | None = None):
        super().__init__()
        # None: FlexAttention on CUDA for document masks, SDPA boolean mask elsewhere.
        self.use_flex = use_flex

    def _flex(self, device: torch.device) -> bool:
        if flex_attention is None:
            return False
        return device.type == "cuda" if self.use_flex is None else self.use_flex

    def prepare(self, doc_ids, batch, seq, device):
        if doc_ids is None or not self._flex(device):
            return None
        return _cached_block_mask(doc_ids, batch, seq, device, None, 0)

    def forward(self, q, k, v, doc_ids=None, prepared=None):
        if doc_ids is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if self._flex(q.device):
            return _flex_document_attention(q, k, v, doc_ids, None, 0, prepared)
        mask = dense_mask(doc_ids, q.shape[-2], q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# Attention called repeatedly on the same doc_ids tensor (layers without a prepared mask, benchmark
# repeats) builds its block mask once. The entry holds a weak reference, so a new batch (even at a
# reused address) never gets a stale mask.
_BLOCK_MASKS: dict[tuple, tuple[weakref.ref, object]] = {}


def _flex_document_attention(q, k, v, doc_ids, window, global_tokens, block_mask=None):
    if block_mask is None:
        block_mask = _cached_block_mask(doc_ids, q.shape[0], q.shape[2], q.device, window, global_tokens)
    # Contiguous inputs: with the whole model in one compiled graph (torch 2.13, CPU), FlexAttention
    # on RoPE'd q, k and the strided v view of the fused qkv projection returned values 0.2 off;
    # strided inputs have also given wrong gradients on CUDA (pytorch/pytorch#146377).
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    compiling = torch.compiler.is_compiling()
    fn = _compiled_flex() if q.device.type == "cuda" and not compiling else flex_attention
    return fn(q, k, v, block_mask=block_mask)


@torch.compiler.disable
def _cached_block_mask(doc_ids, batch, seq, device, window, global_tokens):
    """The block mask, built outside any compiled graph. Traced into a compiled model (torch 2.13,
    CPU) the document mask gave attention outputs 0.5 off, the sliding-window mask with global
    tokens failed to lower, and the cache's global dict made the model recompile on its second
    batch. The model calls this once per forward, before its layer loop (``prepare``): a graph break
    inside the loop makes dynamo run the model's whole forward eagerly, one compiled frame per block."""
    key = (window, global_tokens, batch, seq, device)
    cached = _BLOCK_MASKS.get(key)
    if doc_ids is not None and cached is not None and cached[0]() is doc_ids:
        return cached[1]
    block_mask = _document_block_mask(doc_ids, batch, seq, device, window, global_tokens)
    if doc_ids is not None:
        _BLOCK_MASKS.clear()
        _BLOCK_MASKS[key] = (weakref.ref(doc_ids), block_mask)
    return block_mask


def _document_block_mask(doc_ids, batch, seq, device, window, global_tokens):
    docs = doc_ids if doc_ids is not None else torch.zeros(batch, seq, dtype=torch.long, device=device)
    pos = positions_in_document(docs)

    def mask_mod(b, h, qi, ki):
        allowed = (ki <= qi) & (docs[b, qi] == docs[b, ki])
        if window is not None:
            local = (qi - ki) < window
            if global_tokens > 0:
                local = local | (pos[b, ki] < global_tokens) | (pos[b, qi] < global_tokens)
            allowed = allowed & local
        return allowed

    # Compiled on CUDA so the mask is built block by block, never as a (seq x seq) tensor.
    build = _compiled_create_block_mask() if device.type == "cuda" else create_block_mask
    return build(mask_mod, batch, None, seq, seq, device=device)


def _compiled_create_block_mask() -> Callable:
    global _CREATE_BLOCK_MASK_COMPILED
    if _CREATE_BLOCK_MASK_COMPILED is None:
        _CREATE_BLOCK_MASK_COMPILED = torch.compile(create_block_mask)
    return _CREATE_BLOCK_MASK_COMPILED


_CREATE_BLOCK_MASK_COMPILED = None


class SlidingWindowAttention(AttentionVariant):
    def __init__(self, window: int = 256, global_tokens: int = 0, use_flex: bool | None = None):
        super().__init__()
        if window < 1:
            raise ValueError(f"sliding_window: window must be >= 1, got {window}")
        if global_tokens < 0:
            raise ValueError(f"sliding_window: global_tokens must be >= 0, got {global_tokens}")
        self.window, self.global_tokens, self.use_flex = window, global_tokens, use_flex

    def _flex(self, device: torch.device) -> bool:
        use_flex = (device.type == "cuda") if self.use_flex is None else self.use_flex
        return use_flex and flex_attention is not None

    def prepare(self, doc_ids, batch, seq, device):
        if not self._flex(device):
            return None
        return _cached_block_mask(doc_ids, batch, seq, device, self.window, self.global_tokens)

    def forward(self, q, k, v, doc_ids=None, prepared=None):
        if self._flex(q.device):
            return _flex_document_attention(q, k, v, doc_ids, self.window, self.global_tokens, prepared)
        mask = dense_mask(doc_ids, q.shape[-2], q.device, self.window, self.global_tokens)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _orthogonal_gaussian(features: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """FAVOR+ projection: blocks of orthogonal rows, each row rescaled to a chi(dim) norm."""
    blocks, remaining = [], features
    while remaining > 0:
        g = torch.randn(dim, dim, generator=generator)
        qmat, r = torch.linalg.qr(g)
        qmat = qmat * torch.sign(torch.diagonal(r))  # sign fix: makes Q Haar-distributed (unbiased)
        blocks.append(qmat.T[: min(remaining, dim)])
        remaining -= dim
    w = torch.cat(blocks)
    norms = torch.randn(features, dim, generator=generator).norm(dim=1, keepdim=True)
    return w * norms


class PerformerAttention(AttentionVariant):
    def __init__(self, head_dim: int, features: int = 256, chunk: int = 128, seed: int = 0):
        super().__init__()
        if features < 1 or chunk < 1:
            raise ValueError("performer: features and chunk must be >= 1")
        self.features, self.chunk = features, chunk
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", _orthogonal_gaussian(features, head_dim, gen), persistent=True)

    def feature_map(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        """Positive random features phi with E[phi(q).phi(k)] = exp(q.k / sqrt(d))."""
        d = x.shape[-1]
        x = x * d**-0.25
        proj = x @ self.projection.to(x.dtype).T
        sq = (x * x).sum(-1, keepdim=True) / 2
        # Any shift that is constant per query (or over all keys) cancels in the normalisation.
        if is_query:
            shift = proj.amax(dim=-1, keepdim=True)
        else:
            shift = proj.amax(dim=(-1, -2), keepdim=True)
        return torch.exp(proj - sq - shift.detach()) / math.sqrt(self.features)

    def forward(self, q, k, v, doc_ids=None, prepared=None):
        # exp() random features and long prefix sums need fp32: bf16 autocast is switched off here.
        with torch.autocast(q.device.type, enabled=False):
            return self._forward(q.float(), k.float(), v.float(), doc_ids).to(q.dtype)

    def _forward(self, q, k, v, doc_ids):
        qf, kf = self.feature_map(q, True), self.feature_map(k, False)
        batch, heads, seq, dim = v.shape
        docs = doc_ids if doc_ids is not None else torch.zeros(batch, seq, dtype=torch.long, device=q.device)
        state_kv = q.new_zeros(batch, heads, self.features, dim)
        state_k = q.new_zeros(batch, heads, self.features)
        prev_last_doc = None
        outputs = []
        for start in range(0, seq, self.chunk):
            end = min(start + self.chunk, seq)
            qc, kc, vc, dc = qf[:, :, start:end], kf[:, :, start:end], v[:, :, start:end], docs[:, start:end]
            n = end - start
            causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
            local_mask = (causal[None] & (dc[:, :, None] == dc[:, None, :]))[:, None].to(qc.dtype)
            scores = (qc @ kc.transpose(-1, -2)) * local_mask
            num = scores @ vc
            den = scores.sum(-1)
            if prev_last_doc is not None:
                # The running state holds only keys of the document still open at the previous
                # chunk's end; queries of that same document use it, others start fresh.
                carry = (dc == prev_last_doc[:, None]).to(qc.dtype)[:, None]
                num = num + (qc @ state_kv) * carry[..., None]
                den = den + (qc @ state_k[..., None]).squeeze(-1) * carry
            outputs.append(num / den.clamp_min(1e-30)[..., None])
            last_doc = dc[:, -1]
            in_last = (dc == last_doc[:, None]).to(qc.dtype)[:, None, :, None]
            kc_last = kc * in_last
            continues = torch.ones_like(last_doc, dtype=torch.bool) if prev_last_doc is None else (
                last_doc == prev_last_doc
            )
            keep = continues.to(qc.dtype)[:, None, None, None]
            state_kv = state_kv * keep + kc_last.transpose(-1, -2) @ vc
            state_k = state_k * keep[..., 0] + kc_last.sum(-2)
            prev_last_doc = last_doc
        return torch.cat(outputs, dim=2)


def _chunk_summary_mask(docs: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chunk: which of its positions belong to the document open at the chunk's end, and that
    document's id. docs: (batch, n_chunks * chunk)."""
    b = docs.shape[0]
    dc = docs.view(b, -1, chunk)
    last = dc[:, :, -1]
    return dc == last[..., None], last


class LinformerAttention(AttentionVariant):
    def __init__(self, head_dim: int, chunk: int = 128, rank: int = 16, seed: int = 0):
        super().__init__()
        if chunk < 1 or rank < 1:
            raise ValueError("linformer: chunk and rank must be >= 1")
        self.chunk, self.rank = chunk, rank
        gen = torch.Generator().manual_seed(seed)
        # Linformer's E and F projections (shared across heads and layers in the paper's cheapest
        # variant; here one pair per layer), initialised like nn.Linear.
        bound = 1 / math.sqrt(chunk)
        self.proj_k = nn.Parameter((torch.rand(rank, chunk, generator=gen) * 2 - 1) * bound)
        self.proj_v = nn.Parameter((torch.rand(rank, chunk, generator=gen) * 2 - 1) * bound)

    def forward(self, q, k, v, doc_ids=None, prepared=None):
        batch, heads, seq, dim = q.shape
        c, r = self.chunk, self.rank
        docs = doc_ids if doc_ids is not None else torch.zeros(batch, seq, dtype=torch.long, device=q.device)
        pad = (-seq) % c
        if pad:
            # Padding gets document ids no real position has, so nothing attends to it.
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            docs = torch.cat([docs, docs.new_full((batch, pad), -1)], dim=1)
            docs[:, seq:] = docs.min() - 1 - torch.arange(pad, device=docs.device)
        n = (seq + pad) // c
        qc = q.view(batch, heads, n, c, dim)
        kc = k.view(batch, heads, n, c, dim)
        vc = v.view(batch, heads, n, c, dim)
        dc = docs.view(batch, n, c)
        in_last, last_doc = _chunk_summary_mask(docs, c)
        m = in_last[:, None, :, :, None].to(q.dtype)
        # Summaries of each chunk: (batch, heads, n, rank, dim).
        sk = torch.einsum("rc,bhncd->bhnrd", self.proj_k.to(q.dtype), kc * m)
        sv = torch.einsum("rc,bhncd->bhnrd", self.proj_v.to(q.dtype), vc * m)
        scale = dim**-0.5
        local = torch.einsum("bhnqd,bhnkd->bhnqk", qc, kc) * scale
        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        local_ok = causal & (dc[:, :, :, None] == dc[:, :, None, :])  # (b, n, c, c)
        local = local.masked_fill(~local_ok[:, None], float("-inf"))
        # Query chunk i sees the summary of chunk j < i when chunk j ends inside the query's document
        # (documents are contiguous, so that document then runs from chunk j up to the query).
        far = torch.einsum("bhnqd,bhmrd->bhnqmr", qc, sk) * scale
        earlier = torch.ones(n, n, dtype=torch.bool, device=q.device).tril(-1)  # [i, j]: j < i
        same = dc[:, :, :, None] == last_doc[:, None, None, :]  # (b, n, c, m)
        far_ok = earlier[None, :, None, :] & same
        far = far.masked_fill(~far_ok[:, None, :, :, :, None], float("-inf"))
        far = far.reshape(batch, heads, n, c, n * r)
        weights = torch.softmax(torch.cat([local, far], dim=-1), dim=-1)
        out = weights[..., :c] @ vc + weights[..., c:] @ sv.reshape(batch, heads, 1, n * r, dim)
        return out.reshape(batch, heads, n * c, dim)[:, :, :seq]


class ReformerAttention(AttentionVariant):
    def __init__(self, head_dim: int, buckets: int = 8, chunk: int = 64, hashes: int = 2, seed: int = 0):
        super().__init__()
        if buckets < 1 or chunk < 1 or hashes < 1:
            raise ValueError("reformer: buckets, chunk and hashes must be >= 1")
        if buckets > 1 and buckets % 2:
            raise ValueError(f"reformer: buckets must be even (angular LSH uses [xR, -xR]), got {buckets}")
        self.buckets, self.chunk, self.hashes = buckets, chunk, hashes
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer(
            "rotations", torch.randn(hashes, head_dim, max(buckets // 2, 1), generator=gen), persistent=True
        )

    def bucket_ids(self, k: torch.Tensor) -> torch.Tensor:
        """(hashes, batch, heads, seq) bucket of each position's key."""
        if self.buckets == 1:
            return torch.zeros(self.hashes, *k.shape[:-1], dtype=torch.long, device=k.device)
        kn = F.normalize(k.detach().float(), dim=-1)
        rot = torch.einsum("bhtd,ndr->nbhtr", kn, self.rotations.float())
        return torch.cat([rot, -rot], dim=-1).argmax(dim=-1)

    def forward(self, q, k, v, doc_ids=None, prepared=None):
        batch, heads, seq, dim = q.shape
        c = self.chunk
        docs = doc_ids if doc_ids is not None else torch.zeros(batch, seq, dtype=torch.long, device=q.device)
        buckets = self.bucket_ids(k)
        pad = (-seq) % c
        pos = torch.arange(seq + pad, device=q.device)
        if pad:
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            pad_docs = docs.min() - 1 - torch.arange(pad, device=docs.device)
            docs = torch.cat([docs, pad_docs.expand(batch, pad)], dim=1)
            buckets = F.pad(buckets, (0, pad))
        total = seq + pad
        n = total // c
        # Document ids are remapped to their rank so the composite sort key cannot overflow.
        doc_rank = torch.searchsorted(docs.unique(), docs)
        outs, lses = [], []
        for h in range(self.hashes):
            key = (doc_rank[:, None] * self.buckets + buckets[h]) * total + pos
            order = key.argsort(dim=-1)  # (b, h, t)
            undo = order.argsort(dim=-1)
            gather = order[..., None].expand(-1, -1, -1, dim)
            sq, sk, sv = (t.gather(2, gather) for t in (q, k, v))
            spos = pos.expand(batch, heads, total).gather(2, order)
            sdoc = docs[:, None].expand(-1, heads, -1).gather(2, order)
            sq, sk, sv = (t.view(batch, heads, n, c, dim) for t in (sq, sk, sv))
            spos, sdoc = spos.view(batch, heads, n, c), sdoc.view(batch, heads, n, c)

            def with_previous(t):
                return torch.cat([t.roll(1, dims=2), t], dim=3)

            kk, vv, kpos, kdoc = with_previous(sk), with_previous(sv), with_previous(spos), with_previous(sdoc)
            first_chunk = torch.zeros(n, 2 * c, dtype=torch.bool, device=q.device)
            first_chunk[0, :c] = True  # chunk 0 has no previous chunk (roll wrapped the last one)
            scores = torch.einsum("bhnqd,bhnkd->bhnqk", sq, kk) * dim**-0.5
            ok = (kpos[..., None, :] <= spos[..., :, None]) & (kdoc[..., None, :] == sdoc[..., :, None])
            ok = ok & ~first_chunk[None, None, :, None, :]
            scores = scores.masked_fill(~ok, float("-inf"))
            lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            out = torch.softmax(scores, dim=-1) @ vv
            out = out.view(batch, heads, total, dim).gather(2, undo[..., None].expand(-1, -1, -1, dim))
            lse = lse.view(batch, heads, total, 1).gather(2, undo[..., None])
            outs.append(out)
            lses.append(lse)
        if self.hashes == 1:
            result = outs[0]
        else:
            weights = torch.softmax(torch.stack(lses), dim=0)
            result = (torch.stack(outs) * weights).sum(0)
        return result[:, :, :seq]


VARIANTS: dict[str, type[AttentionVariant]] = {
    "sdpa": SDPAAttention,
    "sliding_window": SlidingWindowAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
    "reformer": ReformerAttention,
}
_NEEDS_HEAD_DIM = {"performer", "linformer", "reformer"}


def build_attention(name: str, head_dim: int, **params) -> AttentionVariant:
    """Instantiate the variant called ``name`` with its YAML parameters."""
    if name not in VARIANTS:
        raise ValueError(f"unknown attention {name!r}; choose one of {sorted(VARIANTS)}")
    cls = VARIANTS[name]
    try:
        return cls(head_dim=head_dim, **params) if name in _NEEDS_HEAD_DIM else cls(**params)
    except TypeError as exc:
        raise ValueError(f"attention {name!r}: bad parameters {params}: {exc}") from None
