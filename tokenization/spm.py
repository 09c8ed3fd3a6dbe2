"""SentencePiece training and batch encoding, with no Beam in sight.

Training is deterministic: the same sample texts and parameters give the same model bytes. It runs
single-threaded (``num_threads=1``), because SentencePiece's multi-threaded trainer splits work by
thread and can produce different merges. Documents are fed line by line: SentencePiece treats each
input as one sentence and silently skips those longer than ``max_sentence_length`` bytes, so a
longer line is cut into pieces of at most that many bytes, at the last space or tab before the
limit (a run without one, at a character boundary): a corpus of single-line web pages, where every
document is one long line, trains on all of its text instead of on nothing.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
import sentencepiece
from pydantic import Field

from thresher.filters.base import Strict


class TokenizerTrainingError(ValueError):
    """SentencePiece refused to train (too little text for the vocabulary size, bad symbols, ...)."""


class TrainerConfig(Strict):
    """The SentencePiece training parameters the tokenize stage exposes."""

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


def _cut(line: bytes, limit: int) -> Iterator[bytes]:
    """``line`` in pieces of at most ``limit`` bytes, cut after the last space or tab within the
    limit, else at the last UTF-8 character boundary."""
    start = 0
    while len(line) - start > limit:
        end = start + limit
        space = max(line.rfind(b" ", start, end + 1), line.rfind(b"\t", start, end + 1))
        if space > start:
            end = space
        else:
            while end > start and (line[end] & 0xC0) == 0x80:  # inside a multi-byte character
                end -= 1
        yield line[start:end]
        start = end
    yield line[start:]


def _sentences(texts: Iterable[str], max_bytes: int, counts: dict[str, int]) -> Iterator[str]:
    """The non-blank lines of ``texts``, long ones cut to ``max_bytes``; ``counts`` gets the
    number of documents, of documents with text, of pieces and of characters."""
    for text in texts:
        counts["documents"] += 1
        used = False
        for line in text.split("\n"):
            if not line.strip():
                continue
            # lone surrogates ("\ud800" from JSON) cannot go to SentencePiece as UTF-8
            data = line.encode("utf-8", "replace")
            for piece in ([data] if len(data) <= max_bytes else _cut(data, max_bytes)):
                if piece.strip():
                    sentence = piece.decode("utf-8")
                    counts["sentences"] += 1
                    counts["characters"] += len(sentence)
                    used = True
                    yield sentence
        counts["documents_with_text"] += used


_SPM_MESSAGE = re.compile(r"^(?:INTERNAL|Internal): \S+\(\d+\) \[.*?\] ", re.DOTALL)


def train_model(texts: Iterable[str], config: TrainerConfig) -> bytes:
    """Train a SentencePiece model on ``texts`` (in the given order) and return the model bytes.
    Raises ``TokenizerTrainingError`` with the sample's numbers when there is nothing to train on
    or SentencePiece refuses (a vocabulary larger than the text supports, say)."""
    counts = dict.fromkeys(("documents", "documents_with_text", "sentences", "characters"), 0)
    sentences = list(_sentences(texts, config.max_sentence_length, counts))
    sample = (f"{counts['documents']:,} documents, {counts['documents_with_text']:,} with text, "
              f"{counts['sentences']:,} lines of at most {config.max_sentence_length:,} bytes, "
              f"{counts['characters']:,} characters")
    if not counts["documents"]:
        raise TokenizerTrainingError("no text to train the tokenizer on: no document reached it (the input is "
                                     "empty, or the stages before tokenize rejected every document: see "
                                     "rejected/ and quarantine/)")
    if not sentences:
        raise TokenizerTrainingError(f"no text to train the tokenizer on: {sample} (every document is "
                                     "empty or whitespace)")
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
        reason = _SPM_MESSAGE.sub("", str(exc).strip())
        raise TokenizerTrainingError(f"SentencePiece could not train a {config.vocab_size:,}-piece "
                                     f"{config.model_type} tokenizer on {sample}: {reason}") from None
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
