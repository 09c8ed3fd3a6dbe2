"""SentencePiece training and batch encoding, with no Beam in sight.

Training is deterministic: the same sample texts and parameters give the same model bytes. It runs
single-threaded (``num_threads=1``), because SentencePiece's multi-threaded trainer splits work by
thread and can produce different merges. Documents are fed line by line: SentencePiece treats each
input as one sentence and silently skips those longer than ``max_sentence_length`` bytes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
import sentencepiece
from pydantic import BaseModel, ConfigDict, Field


class TokenizerTrainingError(ValueError):
    """SentencePiece refused to train (too little text for the vocabulary size, bad symbols, ...)."""


class TrainerConfig(BaseModel):
    """The SentencePiece training parameters the tokenize stage exposes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_type: Literal["bpe", "unigram"] = "bpe"
    vocab_size: int = Field(32000, ge=16, le=1 << 22)
    byte_fallback: bool = True
    character_coverage: float = Field(0.9995, gt=0.0, le=1.0)
    user_defined_symbols: tuple[str, ...] = ()
    #: "identity" keeps text as written (newlines become byte pieces with byte_fallback);
    #: "nmt_nfkc" is SentencePiece's own default.
    normalization_rule_name: Literal["identity", "nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf"] = "identity"
    remove_extra_whitespaces: bool = False
    hard_vocab_limit: bool = True
    max_sentence_length: int = Field(16384, ge=256)


def _sentences(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def train_model(texts: Iterable[str], config: TrainerConfig) -> bytes:
    """Train a SentencePiece model on ``texts`` (in the given order) and return the model bytes."""
    sentences = list(_sentences(texts))
    if not sentences:
        raise TokenizerTrainingError("no non-empty text to train the tokenizer on")
    out = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=out,
            model_type=config.model_type,
            vocab_size=config.vocab_size,
            byte_fallback=config.byte_fallback,
            character_coverage=config.character_coverage,
            user_defined_symbols=list(config.user_defined_symbols),
            normalization_rule_name=config.normalization_rule_name,
            remove_extra_whitespaces=config.remove_extra_whitespaces,
            hard_vocab_limit=config.hard_vocab_limit,
            max_sentence_length=config.max_sentence_length,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise TokenizerTrainingError(f"SentencePiece training failed on {len(sentences)} lines: {exc}") from exc
    return out.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= (1 << 16) else np.dtype(np.uint32)


class Encoder:
    """Batch encoding with a loaded SentencePiece model, EOS appended on request."""

    def __init__(self, model_bytes: bytes, add_eos: bool = True, num_threads: int = 1):
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_bytes)
        self.add_eos = add_eos
        self.num_threads = num_threads
        self.vocab_size = self.processor.get_piece_size()
        self.eos_id = self.processor.eos_id()
        if add_eos and self.eos_id < 0:
            raise ValueError("add_eos is set but the tokenizer model has no EOS piece (eos_id = -1)")
        self.dtype = token_dtype(self.vocab_size)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One token array (``self.dtype``) per text."""
        if not texts:
            return []
        ids = self.processor.encode(list(texts), add_eos=self.add_eos, num_threads=self.num_threads)
        return [np.array(x, dtype=self.dtype) for x in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self.processor.decode([int(i) for i in ids])
