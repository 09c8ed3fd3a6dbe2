"""A GPT-style decoder: token embedding -> N pre-norm blocks (attention + MLP) -> norm -> logits
through the tied embedding matrix. Rotary position embeddings (RoPE) on queries and keys; the
attention itself is a variant from ``attention.py`` chosen by name, so a packed sequence's document
boundaries (``doc_ids``) are honoured however attention is computed."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.utils.checkpoint import checkpoint

from thresher.filters.base import Strict

from .attention import build_attention

# (layers, heads, width). The parameter counts in the comments are for a 32000-token vocabulary
# except gpt2-small, which uses GPT-2's 50304-token (padded) vocabulary to land on ~124M.
PRESETS: dict[str, tuple[int, int, int]] = {
    "tiny": (2, 2, 64),  # ~2.1M with a 32k vocab, ~0.6M with 8k
    "mini": (4, 4, 256),  # ~11M
    "small": (6, 6, 384),  # ~23M
    "medium": (8, 8, 512),  # ~42M
    "gpt2-small": (12, 12, 768),  # ~124M with vocab 50304
}


class ModelConfig(Strict):
    """A size preset, or explicit dimensions (explicit values override the preset's)."""

    preset: Literal["tiny", "mini", "small", "medium", "gpt2-small"] | None = "tiny"
    vocab_size: int = Field(32000, ge=2)
    n_layer: int | None = Field(None, ge=1)
    n_head: int | None = Field(None, ge=1)
    d_model: int | None = Field(None, ge=8)
    mlp_ratio: float = Field(4.0, gt=0)
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    rope_base: float = Field(10000.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    init_std: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> "ModelConfig":
        if self.preset is None and None in (self.n_layer, self.n_head, self.d_model):
            raise ValueError("model: without a preset, n_layer, n_head and d_model are all required")
        if self.width % self.heads:
            raise ValueError(f"model: d_model {self.width} is not divisible by n_head {self.heads}")
        if (self.width // self.heads) % 2:
            raise ValueError("model: head dimension (d_model / n_head) must be even for RoPE")
        return self

    def _preset(self) -> tuple[int, int, int]:
        return PRESETS[self.preset] if self.preset else (0, 0, 0)

    @property
    def layers(self) -> int:
        return self.n_layer or self._preset()[0]

    @property
    def heads(self) -> int:
        return self.n_head or self._preset()[1]

    @property
    def width(self) -> int:
        return self.d_model or self._preset()[2]

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def make_norm(kind: str, dim: int) -> nn.Module:
    return RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim)


class Rotary(nn.Module):
    """RoPE: rotate pairs of (first half, second half) channels by position-dependent angles."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.shape[-2]
        angles = torch.outer(torch.arange(seq, device=x.device, dtype=torch.float32), self.inv_freq)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str, attention_params: dict[str, Any]):
        super().__init__()
        self.n_head, self.head_dim = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=False)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=False)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_base)
        self.attn = build_attention(attention, cfg.head_dim, **attention_params)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, doc_ids: torch.Tensor | None, prepared=None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(q), self.rotary(k)
        y = self.attn(q, k, v, doc_ids, prepared)
        return self.dropout(self.proj(y.transpose(1, 2).reshape(b, t, c)))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.width)
        self.up = nn.Linear(cfg.width, hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.width, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(F.gelu(self.up(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str, attention_params: dict[str, Any]):
        super().__init__()
        self.norm1 = make_norm(cfg.norm, cfg.width)
        self.attn = SelfAttention(cfg, attention, attention_params)
        self.norm2 = make_norm(cfg.norm, cfg.width)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, doc_ids: torch.Tensor | None, prepared=None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), doc_ids, prepared)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        attention: str = "sdpa",
        attention_params: dict[str, Any] | None = None,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = gradient_checkpointing
        self.embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, attention, attention_params or {}) for _ in range(cfg.layers))
        self.norm = make_norm(cfg.norm, cfg.width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2 or name.endswith(("proj_k", "proj_v")):
                continue  # norms keep ones; linformer projections keep their own init
            # GPT-2: residual output projections scaled down by sqrt(2 * layers).
            scale = 1 / math.sqrt(2 * self.cfg.layers) if name.endswith(("proj.weight", "down.weight")) else 1
            nn.init.normal_(p, mean=0.0, std=std * scale)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        doc_ids: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (batch, seq, vocab), and the cross-entropy on ``targets`` when given (positions
        with target -100 are ignored; ``reduction="none"`` gives per-position losses)."""
        x = self.drop(self.embed(input_ids))
        # built once for every layer (all layers run the same variant), before the loop: under
        # torch.compile a graph break inside the loop would leave this whole forward uncompiled
        prepared = self.blocks[0].attn.attn.prepare(doc_ids, *input_ids.shape, input_ids.device)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, doc_ids, prepared, use_reentrant=False)
            else:
                x = block(x, doc_ids, prepared)
        logits = F.linear(self.norm(x), self.embed.weight)  # tied embeddings
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction=reduction
        )
        if reduction == "none":
            loss = loss.view(targets.shape)
        return logits, loss

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6N + 12 L T d (PaLM appendix B)."""
        n = self.num_params()
        return 6 * n + 12 * self.cfg.layers * seq_len * self.cfg.width


def shift_targets(input_ids: torch.Tensor, doc_ids: torch.Tensor | None) -> torch.Tensor:
    """Next-token targets; the last position, and positions whose next token starts another document,
    get -100 (no predicting across a document boundary)."""
    targets = torch.full_like(input_ids, -100, dtype=torch.long)
    targets[:, :-1] = input_ids[:, 1:]
    if doc_ids is not None:
        crosses = doc_ids[:, 1:] != doc_ids[:, :-1]
        targets[:, :-1][crosses] = -100
    return targets
