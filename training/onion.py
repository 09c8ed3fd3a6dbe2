"""ONION with the project's own transformer: the second pass of ``perplexity_outliers``.

For each word of a document (the ``\\w+`` words of ``ngram_lm``), the word's subword tokens (the
SentencePiece pieces its characters fall in, with the whitespace before it) are removed and a window
around it is scored again:

    suspicion_i = [NLL(word + right window | left window) - NLL(right window | left window)]
                  - mean over the document's words of NLL(word | the text before it)

in nats: what the text costs with the word minus what it costs without it, less what an average
word of the document costs. It is the n-gram scorer's formula (``ngram_lm``: ONION's perplexity
drop in a length-independent form) with a transformer and ``window_tokens`` tokens of context on
each side instead of two words. A word that fits scores about 0 or below (removing it makes what
follows harder to predict); a planted rare token, a look-alike spelling or a phrase out of context
scores many nats above.

Cost: one forward pass over the document (to rank words by their own surprisal), then, for the
``candidates`` most surprising words (every word with ``candidates: 0``), two windows of at most
2 * ``window_tokens`` + the word's tokens. Windows from every document of a batch are sorted by
length and run together in batches of ``rows``. It is meant for the flagged subset, not the corpus.

Nothing here imports Beam; torch and sentencepiece are imported by this module, so import it only
when a checkpoint is configured.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thresher.filters import storage
from thresher.filters.ngram_lm import words_with_spans


class CheckpointError(ValueError):
    """The checkpoint or its tokenizer is missing, unreadable or does not match."""


@dataclass(frozen=True)
class ResolvedCheckpoint:
    directory: Path          # the checkpoint directory (model.safetensors, trainer.pt), local
    tokenizer: bytes         # the SentencePiece model
    config: dict             # the training config saved in trainer.pt


def resolve_checkpoint(checkpoint: str, tokenizer: str | None = None) -> ResolvedCheckpoint:
    """Find the checkpoint directory (a ``step-N`` directory, or a training OUT: its newest
    complete checkpoint) and the tokenizer (given, else ``tokenizer.model`` beside the shards the
    checkpoint was trained on); check that they belong together. Each may be a path or a gs:// /
    s3:// URL: a remote checkpoint is copied once per machine (only the newest step of a training
    OUT). Raises ``CheckpointError``."""
    from thresher.training.checkpoint import local_checkpoint, saved_config
    from thresher.training.config import TrainConfigError, parse_train_config

    try:
        if not storage.exists(checkpoint):
            raise CheckpointError(f"checkpoint {checkpoint} does not exist (write one with `thresher train`)")
        directory = local_checkpoint(checkpoint)
    except OSError as err:
        raise CheckpointError(f"checkpoint {checkpoint}: cannot read ({err})") from err
    if directory is None:
        raise CheckpointError(f"{checkpoint}: no checkpoint here (a step-N directory with model.safetensors, or a "
                              "training OUT with a complete checkpoints/step-N)")
    if not (directory / "trainer.pt").is_file():
        raise CheckpointError(f"{directory}: no trainer.pt (the training config is read from it)")
    try:
        config = saved_config(directory)  # torch.load(..., weights_only=True)
        train_config = parse_train_config(config)
    except (TrainConfigError, KeyError, TypeError, ValueError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{directory}/trainer.pt: not a thresher training checkpoint ({err})") from err
    shards = train_config.shards
    shards_is_dir = storage.isdir(shards)
    manifest_path = (storage.join(shards, "manifest.json") if shards_is_dir
                     else shards if shards.endswith(".json") else None)
    manifest = None
    if manifest_path is not None and storage.isfile(manifest_path):
        try:
            manifest = json.loads(storage.read_bytes(manifest_path))
        except (OSError, ValueError):
            manifest = None
    if tokenizer is None:
        name = ((manifest or {}).get("tokenizer") or {}).get("path") or "tokenizer.model"
        base = shards if shards_is_dir else (posixpath.dirname(shards) if storage.is_remote(shards)
                                            else str(Path(shards).parent))
        tok = storage.join(base, name)
        if not storage.isfile(tok):
            raise CheckpointError(f"{directory} was trained on {shards}, which has no {name}: give "
                                  "perplexity_outliers.tokenizer (the SentencePiece model the checkpoint was trained with)")
    else:
        tok = tokenizer
        if not storage.isfile(tok):
            raise CheckpointError(f"tokenizer {tokenizer} does not exist")
    data = storage.read_bytes(tok)
    import sentencepiece

    try:
        processor = sentencepiece.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, TypeError) as err:
        raise CheckpointError(f"{tok} is not a SentencePiece model ({err})") from err
    pieces = processor.get_piece_size()
    if pieces > train_config.model.vocab_size:
        raise CheckpointError(f"tokenizer {tok} has {pieces} pieces but the checkpoint's model.vocab_size is "
                              f"{train_config.model.vocab_size}: not the tokenizer it was trained with")
    recorded = ((manifest or {}).get("tokenizer") or {}).get("sha256")
    if recorded and recorded != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"tokenizer {tok} is not the one the checkpoint was trained with (sha256 differs from "
                              f"{manifest_path}'s tokenizer.sha256)")
    return ResolvedCheckpoint(directory, data, config)


class TransformerOnion:
    """Loads a checkpoint and its tokenizer once; ``score_batch`` gives each document's
    per-word removal scores (see the module docstring)."""

    def __init__(self, checkpoint: str, tokenizer: str | None = None, device: str = "auto",
                 window_tokens: int = 32, candidates: int = 32, rows: int = 64):
        import sentencepiece

        from thresher.training.checkpoint import load_model_weights
        from thresher.training.config import parse_train_config
        from thresher.training.loop import pick_device
        from thresher.training.model import GPT

        resolved = resolve_checkpoint(checkpoint, tokenizer)
        cfg = parse_train_config(resolved.config)
        self.device = pick_device(device)
        self.model = GPT(cfg.model, cfg.attention.name, cfg.attention.params()).to(self.device)
        load_model_weights(resolved.directory, self.model)
        self.model.eval()
        self.seq_len = cfg.seq_len
        self.sp = sentencepiece.SentencePieceProcessor(model_proto=resolved.tokenizer)
        self.eos = self.sp.eos_id()
        self.window = window_tokens
        self.candidates = candidates
        self.rows = rows
        self.checkpoint = str(resolved.directory)

    # -- tokens ------------------------------------------------------------------------------

    def _tokens(self, text: str) -> tuple[np.ndarray, list[tuple[int, int]], list[str], list[tuple[int, int]]]:
        """Token ids (EOS appended, as in training), and per word its token range [a, b), the
        words and their character spans; words no token covers are left out."""
        words, spans = words_with_spans(text)
        proto = self.sp.encode(text, return_type="proto")
        ids = [p.id for p in proto.pieces]
        begin = np.array([p.begin for p in proto.pieces], dtype=np.int64)
        end = np.array([p.end for p in proto.pieces], dtype=np.int64)
        if self.eos >= 0:
            ids.append(self.eos)
        # byte offset of every character (SentencePiece reports byte offsets)
        sizes = np.fromiter((len(ch.encode("utf-8", "surrogatepass")) for ch in text), dtype=np.int64, count=len(text))
        byte_at = np.concatenate([[0], np.cumsum(sizes)])
        ranges, kept_words, kept_spans = [], [], []
        for word, (cs, ce) in zip(words, spans):
            ws = cs
            while ws > 0 and text[ws - 1].isspace():  # the separator goes with the word
                ws -= 1
            bs, be = int(byte_at[ws]), int(byte_at[ce])
            inside = ((begin < be) & (end > bs)) | ((begin == end) & (begin >= bs) & (begin < be))
            hit = np.flatnonzero(inside)
            if len(hit) == 0:
                continue
            ranges.append((int(hit[0]), int(hit[-1]) + 1))
            kept_words.append(word)
            kept_spans.append((cs, ce))
        return np.array(ids, dtype=np.int64), ranges, kept_words, kept_spans

    # -- model -------------------------------------------------------------------------------

    @torch.inference_mode()
    def _nll(self, seqs: list[np.ndarray], firsts: list[int] | None = None) -> list[np.ndarray]:
        """Per-position negative log-likelihood of each sequence, from position ``firsts[i]`` (at
        least 1: position 0 has no context) on; earlier positions get 0. Only the needed
        positions go through the output projection, the largest matrix of a small model."""
        out: list[np.ndarray | None] = [None] * len(seqs)
        firsts = firsts or [1] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        model = self.model
        for b in range(0, len(order), self.rows):
            group = order[b:b + self.rows]
            width = max(len(seqs[i]) for i in group)
            ids = torch.zeros(len(group), width, dtype=torch.long)
            rows, cols, targets = [], [], []
            for r, i in enumerate(group):
                seq = seqs[i]
                ids[r, :len(seq)] = torch.from_numpy(seq)
                for p in range(max(1, firsts[i]), len(seq)):
                    rows.append(r)
                    cols.append(p - 1)  # the hidden state at p - 1 predicts position p
                    targets.append(int(seq[p]))
            nll_flat = np.zeros(0)
            if targets:
                x = model.drop(model.embed(ids.to(self.device)))
                for block in model.blocks:
                    x = block(x, None)
                hidden = model.norm(x)[torch.tensor(rows), torch.tensor(cols)]
                logits = torch.nn.functional.linear(hidden, model.embed.weight).float()
                nll_flat = torch.nn.functional.cross_entropy(
                    logits, torch.tensor(targets, device=logits.device), reduction="none").cpu().numpy()
            k = 0
            for r, i in enumerate(group):
                nll = np.zeros(len(seqs[i]))
                n = max(0, len(seqs[i]) - max(1, firsts[i]))
                nll[len(seqs[i]) - n:] = nll_flat[k:k + n]
                k += n
                out[i] = nll
        return out  # type: ignore[return-value]

    def _chunks(self, ids: np.ndarray) -> list[tuple[int, int, int]]:
        """(start, end, first position this chunk reports) covering ``ids`` in model-length pieces
        that overlap by ``window`` tokens of context."""
        size = max(self.seq_len, 2 * self.window + 2)
        step = max(1, size - self.window)
        chunks, start = [], 0
        while True:
            end = min(len(ids), start + size)
            chunks.append((start, end, 0 if start == 0 else start + self.window))
            if end >= len(ids):
                return chunks
            start += step

    # -- scoring -----------------------------------------------------------------------------

    def score_batch(self, texts: list[str]) -> list[dict | None]:
        """Per document: {"scores": [(start, end, word, suspicion)] for the scored words in text
        order, "scored_words", "words"}; None for a document without words."""
        docs = [self._tokens(t) for t in texts]
        # pass 1: every token's NLL in the document, in overlapping model-length chunks
        chunk_seqs, chunk_firsts, chunk_index = [], [], []
        for d, (ids, ranges, _, _) in enumerate(docs):
            if not ranges:
                continue
            for start, end, report in self._chunks(ids):
                chunk_seqs.append(ids[start:end])
                chunk_firsts.append(report - start)
                chunk_index.append((d, start, report))
        token_nll = [np.zeros(len(ids)) for ids, _, _, _ in docs]
        for (d, start, report), nll in zip(chunk_index, self._nll(chunk_seqs, chunk_firsts)):
            token_nll[d][report:start + len(nll)] = nll[report - start:]
        # pass 2: the candidates' windows with and without the word
        plan, seqs, firsts = [], [], []
        means = []
        for d, (ids, ranges, _, _) in enumerate(docs):
            if not ranges:
                means.append(0.0)
                continue
            own = np.array([token_nll[d][a:b].sum() for a, b in ranges])
            means.append(float(own.mean()))
            chosen = range(len(ranges))
            if self.candidates and len(ranges) > self.candidates:
                chosen = sorted(np.argsort(-own, kind="stable")[: self.candidates].tolist())
            for w in chosen:
                a, b = ranges[w]
                s0 = max(0, a - self.window)
                right = min(len(ids), b + self.window)
                with_seq = ids[s0:right]
                without_seq = np.concatenate([ids[s0:a], ids[b:right]])
                plan.append((d, w, a - s0, b - s0, right - s0, a - s0))
                seqs += [with_seq, without_seq]
                firsts += [a - s0, a - s0]  # the left window is context only
        results = self._nll(seqs, firsts) if seqs else []
        scores: list[list] = [[] for _ in docs]
        for k, (d, w, a, b, right, cut) in enumerate(plan):
            with_nll, without_nll = results[2 * k], results[2 * k + 1]
            # positions scored in both sequences: the right window, except a first token that has
            # no context in the shorter sequence (the word was the start of the document)
            first_right = b if cut > 0 else b + 1
            with_cost = with_nll[max(a, 1):b].sum() + with_nll[first_right:right].sum()
            without_cost = without_nll[cut + (first_right - b):cut + (right - b)].sum()
            start, end = docs[d][3][w]
            scores[d].append((start, end, docs[d][2][w], float(with_cost - without_cost - means[d])))
        out: list[dict | None] = []
        for d, (ids, ranges, words, _) in enumerate(docs):
            if not ranges:
                out.append(None)
                continue
            ordered = sorted(scores[d], key=lambda x: (x[0], x[1]))
            out.append({"scores": ordered, "scored_words": len(ordered), "words": len(ranges)})
        return out


def transformer_evidence(result: dict | None, threshold: float, max_spans: int, top: int = 10) -> dict | None:
    """A document's ``perplexity_outliers`` evidence from the transformer pass (``model``:
    ``transformer``): flagged when a word reaches ``threshold`` nats."""
    if result is None or not result["scores"]:
        return None
    scores = result["scores"]
    best = sorted(scores, key=lambda x: (-x[3], x[0]))
    above = [x for x in best if x[3] >= threshold]
    top_score = best[0][3]
    return {"model": "transformer", "flagged": bool(above), "max_suspicion": round(top_score, 3),
            "suspicious_words": len(above), "strength": top_score / threshold,
            "scored_words": result["scored_words"], "words": result["words"],
            "top_words": [[s, e, w, round(v, 3)] for s, e, w, v in best[:top]],
            "spans": [[s, e, w] for s, e, w, _ in sorted(above[:max_spans])]}
