"""Beam-free logic of the data-poisoning detectors (the ``poisoning`` stage wraps it in Beam).

- ``DocumentTokens``: a document's words, character spans and word hashes (``ngram_lm``).
- ``CountMinSketch``: bounded-memory document frequencies of every word n-gram (pass one).
- ``CandidateScanner``: pass two, per document: the n-grams whose sketched document frequency is
  high enough and whose expected frequency (from the reference model, else from the corpus's own
  word frequencies under independence) is low enough to be worth counting exactly.
- ``NgramStats``: the exact per-n-gram accumulator (document count, distinct spread keys, the
  continuations that follow it), bounded by caps; ``judge_ngram`` applies the significance tests.
- integrity helpers: the content hash and the manifest format.
- ``combine_evidence``: one document's evidence from all detectors -> score, spans, reason.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal
from urllib.parse import urlsplit

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field, model_validator

from thresher.filters.ngram_lm import BOS_HASH, NgramLM, WordHasher, mix64, ngram_hashes, words_with_spans

DETECTORS = ("integrity", "payload_association", "trigger_ngrams", "perplexity_outliers")
SpreadBy = Literal["auto", "cluster", "host", "source", "id"]


# --------------------------------------------------------------------------------------------
# parameters (the YAML keys under each detector)

class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerParams(_Params):
    enabled: bool = True
    ngram_sizes: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], min_length=1)
    min_docs: int = Field(default=10, ge=2)
    min_spread: int = Field(default=5, ge=1)
    min_lift: float = Field(default=10.0, ge=1.0)
    #: family-wise significance: an n-gram is flagged when its p-value times the number of
    #: n-grams tested (every n-gram in at least ``min_docs`` documents; Bonferroni) is at most this
    max_p_value: float = Field(default=0.01, gt=0.0, le=1.0)
    max_doc_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    #: an n-gram shorter than the longest size that is significant only inside one longer phrase
    #: (most of its documents have the same words before it, or after it) flags only those
    #: documents, not every document that happens to contain it elsewhere
    maximal: bool = True

    @model_validator(mode="after")
    def _sizes(self):
        if any(n < 1 or n > 8 for n in self.ngram_sizes):
            raise ValueError(f"ngram_sizes must be between 1 and 8, got {self.ngram_sizes}")
        return self


class PayloadParams(_Params):
    enabled: bool = True
    ngram_sizes: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    continuation_words: int = Field(default=4, ge=1, le=16)
    min_docs: int = Field(default=5, ge=2)
    min_share: float = Field(default=0.5, gt=0.0, le=1.0)
    min_spread: int = Field(default=3, ge=1)
    min_lift: float = Field(default=10.0, ge=1.0)
    #: family-wise significance of the whole (n-gram + continuation) string, Bonferroni-corrected
    #: like ``trigger_ngrams.max_p_value``
    max_p_value: float = Field(default=0.01, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _sizes(self):
        if any(n < 1 or n > 8 for n in self.ngram_sizes):
            raise ValueError(f"ngram_sizes must be between 1 and 8, got {self.ngram_sizes}")
        return self


class PerplexityParams(_Params):
    enabled: bool = False
    threshold: float = Field(default=12.0, gt=0.0)
    min_words: int = Field(default=1, ge=1)
    max_spans: int = Field(default=10, ge=1)
    #: second pass: a `thresher train` checkpoint (a checkpoints/step-N directory, or a training
    #: OUT for its newest) that scores, word by word, the documents any detector flagged
    checkpoint: str | None = None
    #: the SentencePiece model the checkpoint was trained with; default: the tokenizer.model of
    #: the shards named in the checkpoint's training config
    tokenizer: str | None = None
    #: nats; the transformer pass flags a document when a word's removal score reaches it
    checkpoint_threshold: float = Field(default=8.0, gt=0.0)
    #: tokens of context on each side of the removed word
    window_tokens: int = Field(default=32, ge=1, le=4096)
    #: score only this many of a document's most surprising words (0: every word)
    candidates: int = Field(default=32, ge=0)
    #: windows per forward pass
    rows: int = Field(default=64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _checkpoint_needs_enabled(self):
        if self.checkpoint and not self.enabled:
            raise ValueError("perplexity_outliers.checkpoint is set but perplexity_outliers is not enabled")
        if self.tokenizer and not self.checkpoint:
            raise ValueError("perplexity_outliers.tokenizer is set without a checkpoint")
        return self


class IntegrityParams(_Params):
    enabled: bool = False
    manifest: str | None = None
    key: Literal["id", "url"] = "id"
    require_manifest: bool = False

    @model_validator(mode="after")
    def _manifest_given(self):
        if self.enabled and not self.manifest:
            raise ValueError("integrity is enabled but no manifest is given (write one with `thresher manifest`)")
        return self


# --------------------------------------------------------------------------------------------
# documents

@dataclass
class DocumentTokens:
    words: list[str]
    spans: list[tuple[int, int]]
    hashes: np.ndarray

    @classmethod
    def of(cls, text: str, hasher: WordHasher) -> "DocumentTokens":
        words, spans = words_with_spans(text)
        return cls(words, spans, hasher(words))


class PaddedBatch:
    """Several documents' word hashes in one array, each document preceded by two BOS, so one
    set of vectorised look-ups serves the whole batch; ``starts[d]``/``ends[d]`` delimit
    document d's words."""

    def __init__(self, docs: list[DocumentTokens]):
        from thresher.filters.ngram_lm import BOS_HASH

        parts, starts, ends, pos = [], [], [], 0
        bos = np.array([BOS_HASH, BOS_HASH], np.uint64)
        for tokens in docs:
            parts += [bos, tokens.hashes]
            starts.append(pos + 2)
            pos += 2 + len(tokens.hashes)
            ends.append(pos)
        self.docs = docs
        self.hashes = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        self.starts = np.array(starts, dtype=np.int64)
        self.ends = np.array(ends, dtype=np.int64)
        # end (exclusive) of the document each position belongs to
        self.end_of = np.repeat(self.ends, self.ends - self.starts + 2) if docs else np.zeros(0, np.int64)


def url_host(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host[4:] if host.startswith("www.") else host


def document_url(doc: dict) -> str:
    meta = doc.get("meta") or {}
    url = meta.get("url") or doc.get("url") or ""
    return url if isinstance(url, str) else ""


def spread_key(doc: dict, spread_by: str, cluster_field: str) -> str:
    """What counts as one independent place an n-gram was seen: a dedup cluster, a web host, a
    source, or the document itself; ``auto`` takes the first of cluster, host, source it finds."""
    meta = doc.get("meta") or {}
    if spread_by in ("auto", "cluster") and meta.get(cluster_field) is not None:
        return f"cluster:{meta[cluster_field]}"
    if spread_by == "cluster":
        return f"id:{doc['id']}"  # no cluster recorded: the document is its own cluster
    if spread_by in ("auto", "host"):
        host = url_host(document_url(doc))
        if host:
            return f"host:{host}"
        if spread_by == "host":
            return f"id:{doc['id']}"
    if spread_by in ("auto", "source") and doc.get("source"):
        return f"source:{doc['source']}"
    return f"id:{doc['id']}"


def stable_hash(value: str) -> int:
    return xxhash.xxh3_64_intdigest(value.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------
# pass one: bounded document frequencies

class CountMinSketch:
    """Count-min sketch over 64-bit keys: ``depth`` rows of ``width`` uint32 counters (width a
    power of two). Estimates never undercount; they overcount by at most e*total/width with
    probability 1 - exp(-depth). Used for document frequencies, so pass two only counts exactly
    the few n-grams that can matter."""

    def __init__(self, width: int = 1 << 20, depth: int = 4, table: np.ndarray | None = None):
        if width < 16 or width & (width - 1):
            raise ValueError(f"sketch width must be a power of two >= 16, got {width}")
        if depth < 1:
            raise ValueError(f"sketch depth must be >= 1, got {depth}")
        self.width, self.depth = width, depth
        self.table = table if table is not None else np.zeros((depth, width), dtype=np.uint32)
        self._salts = [np.uint64(0x9E3779B97F4A7C15 * (r + 1) & 0xFFFFFFFFFFFFFFFF) for r in range(depth)]

    def _rows(self, keys: np.ndarray) -> list[np.ndarray]:
        mask = np.uint64(self.width - 1)
        return [(mix64(keys ^ salt) & mask).astype(np.int64) for salt in self._salts]

    def add(self, keys: np.ndarray) -> None:
        """Add one to each key (keys of one document should be distinct: document frequency)."""
        if len(keys) == 0:
            return
        dense = len(keys) * 8 > self.width
        for r, idx in enumerate(self._rows(keys)):
            if dense:
                self.table[r] += np.bincount(idx, minlength=self.width).astype(np.uint32)
            else:
                np.add.at(self.table[r], idx, np.uint32(1))

    def query(self, keys: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.min(np.stack([self.table[r][idx] for r, idx in enumerate(self._rows(keys))]), axis=0).astype(np.int64)

    def merge(self, other: "CountMinSketch") -> None:
        if (other.width, other.depth) != (self.width, self.depth):
            raise ValueError("cannot merge sketches of different shapes")
        self.table += other.table


@dataclass
class CorpusSketch:
    """Pass one's result: the sketch plus corpus totals."""

    sketch: CountMinSketch
    docs: int = 0
    tokens: int = 0

    def add_document(self, tokens: DocumentTokens, sizes: list[int]) -> None:
        self.sketch.add(distinct_ngrams(tokens.hashes, sizes))
        self.docs += 1
        self.tokens += len(tokens.hashes)


def distinct_ngrams(word_hashes: np.ndarray, sizes: list[int]) -> np.ndarray:
    parts = [ngram_hashes(word_hashes, n) for n in sorted(set(sizes) | {1})]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


# --------------------------------------------------------------------------------------------
# pass two: candidates per document

@dataclass
class Occurrence:
    """One document's occurrences of one candidate n-gram."""

    doc_id: str
    spread: int                        # stable hash of the document's spread key
    text: str                          # the n-gram's words joined by spaces
    expected: float                    # expected document frequency (point estimate)
    spans: list[tuple[int, int]]       # character spans of the n-gram in this document
    # (hash, text, end char, reference count of the n-gram + continuation string)
    continuations: list[tuple[int, str, int, float]] = field(default_factory=list)
    reference: float = -1.0            # how often the reference saw the n-gram (at most); -1: no reference
    # per span: hashes of the words before it and of the words after it, as many as make it
    # the longest n-gram size (``CandidateScanner.context_words``), padded at the document's ends
    contexts: list[tuple[int, int]] = field(default_factory=list)


def expected_docs(probability: np.ndarray, docs: int, tokens: int) -> np.ndarray:
    """Expected number of documents containing an n-gram of per-position probability p, if the
    corpus's positions were drawn independently: N * (1 - exp(-T/N * p))."""
    if docs <= 0:
        return np.zeros_like(probability)
    return docs * -np.expm1(-(tokens / docs) * probability)


def _neglog10_tail(first: float, step) -> float:
    """-log10 of a sum of terms given in log space: ``first`` then ``step(j, term)`` -> next
    term until it returns None; stops once terms fall 40 nats below the first."""
    terms = [first]
    term = first
    j = 0
    while True:
        term = step(j, term)
        j += 1
        if term is None or term < first - 40 or j > 100_000:
            break
        terms.append(term)
    top = max(terms)
    log_p = top + math.log(sum(math.exp(t - top) for t in terms))
    return max(0.0, -log_p / math.log(10))


def binomial_neglog10_sf(k: int, n: int, p: float) -> float:
    """-log10 P(X >= k) for X ~ Binomial(n, p), exact, in log space."""
    if k <= 0:
        return 0.0
    if k > n:
        return math.inf
    if p <= 0.0:
        return math.inf
    if p >= 1.0:
        return 0.0
    if k <= n * p:  # at or below the mean: the tail holds about half the mass or more
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    first = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq

    def step(i, term):
        j = k + i  # term j -> term j+1
        if j >= n:
            return None
        return term + math.log(n - j) - math.log(j + 1) + lp - lq

    return _neglog10_tail(first, step)


def excess_neglog10_p(docs: int, reference: float, corpus_share: float | None, expected: float) -> float:
    """-log10 of the p-value that an n-gram is this frequent in the corpus by chance.

    With a reference model (``corpus_share`` = corpus tokens / (corpus + reference tokens)): the
    exact conditional test for two Poisson rates. If the n-gram had the same rate in the corpus
    and in the reference, then of its ``docs + reference`` sightings each would be in the corpus
    with probability ``corpus_share``; the p-value is that binomial's upper tail. It charges for
    the reference's own sampling noise: a phrase the reference never saw (count 0) needs about
    log(1/p) / log(1 + reference/corpus tokens) documents to be significant, whatever the smoothed
    model predicts for it, because a finite reference misses plenty of ordinary phrases by chance.
    Without a reference: Poisson(``expected``), ``expected`` from the corpus's own word rates."""
    if corpus_share is None:
        return poisson_neglog10_sf(docs, expected)
    return binomial_neglog10_sf(docs, docs + int(math.ceil(max(reference, 0.0))), corpus_share)


def poisson_neglog10_sf(k: int, lam: float) -> float:
    """-log10 P(X >= k) for X ~ Poisson(lam), summed in log space (exact, no overflow)."""
    if k <= 0:
        return 0.0
    lam = max(lam, 1e-300)
    if k <= lam:
        return 0.0
    log_lam = math.log(lam)
    terms = []
    j = k
    first = -lam + j * log_lam - math.lgamma(j + 1)
    term = first
    while True:
        terms.append(term)
        j += 1
        term = -lam + j * log_lam - math.lgamma(j + 1)
        if term < first - 40 or j > k + 10_000:
            break
    top = max(terms)
    log_p = top + math.log(sum(math.exp(t - top) for t in terms))
    return max(0.0, -log_p / math.log(10))


class CandidateScanner:
    """Finds one document's candidate n-grams for exact counting (pass two).

    A candidate has sketched document frequency >= ``min_docs`` and lift (sketched df over
    expected df + 0.5) >= ``min_lift``: the least strict of the trigger and payload settings, so
    every n-gram either detector could flag is counted exactly. The sketch overcounts, never
    undercounts, so nothing that passes the exact tests is missed here. N-grams in more than
    ``max_doc_fraction`` of the documents are not candidates: an attack that common is no longer
    rare, and without this cap templated text (site chrome, boilerplate phrases) makes nearly
    every n-gram occurrence a candidate and the exact counting pass explodes.

    With a reference model every occurrence also carries the reference's count of the n-gram
    (and of the n-gram + continuation string, for payloads): the significance test compares
    counts, not the smoothed model's prediction (see ``excess_neglog10_p``).

    ``scan_batch`` also returns how many hypotheses the batch contributes to the family the
    tests are corrected for: every n-gram with sketched document frequency in [``min_docs``,
    ``max_docs``] adds 1/df per document it is in, so over the corpus each such distinct n-gram
    adds about 1, whether or not it becomes a candidate."""

    def __init__(self, corpus: CorpusSketch, lm: NgramLM | None, sizes: list[int], min_docs: int,
                 min_lift: float, continuation_words: int, payload_sizes: list[int],
                 max_doc_fraction: float = 1.0, context_words: int = 0):
        self.corpus = corpus
        self.context_words = context_words  # n-grams of order n record n - this many words each side
        self.lm = lm
        self.sizes = sorted(set(sizes))
        self.payload_sizes = set(payload_sizes)
        self.min_docs = min_docs
        self.max_docs = max(min_docs, int(max_doc_fraction * corpus.docs))
        self.min_lift = min_lift
        self.continuation_words = continuation_words

    def scan_batch(self, docs: list[tuple[str, int, DocumentTokens]]) -> tuple[list[list[tuple[int, Occurrence]]], float]:
        """Per document (id, spread hash, tokens): its (n-gram hash, occurrences) candidates; and
        the batch's share of the number of hypotheses tested."""
        batch = PaddedBatch([t for _, _, t in docs])
        out: list[dict[int, Occurrence]] = [{} for _ in docs]
        total = len(batch.hashes)
        tested = 0.0
        if total == 0:
            return [[] for _ in docs], tested
        rates = self.lm.expected_rates(batch.hashes) if self.lm is not None else None
        counts = self.lm.reference_counts(batch.hashes) if self.lm is not None else None
        if rates is not None:
            tri_rate = rates[0].copy()
            tri_rate[:-1] += rates[1][1:]
            tri_rate[:-2] += rates[2][2:]
        for n in self.sizes:
            hashes = ngram_hashes(batch.hashes, n)
            if len(hashes) == 0:
                continue
            starts = np.arange(len(hashes))
            valid = starts + n <= batch.end_of[: len(hashes)]
            valid &= batch.hashes[: len(hashes)] != BOS_HASH
            if n > 1:  # no n-gram may run into the next document's BOS
                valid &= batch.end_of[: len(hashes)] == batch.end_of[np.minimum(starts + n - 1, total - 1)]
            starts = starts[valid]
            df = self.corpus.sketch.query(hashes[starts])
            keep = (df >= self.min_docs) & (df <= self.max_docs)
            starts, df = starts[keep], df[keep]
            if len(starts) == 0:
                continue
            tested += self._family_share(batch, hashes, starts, df)
            if rates is not None:
                logp = rates[0][starts].copy()
                if n >= 2:
                    logp += rates[1][starts + 1]
                if n >= 3:
                    logp += rates[2][starts + 2]
                for k in range(1, n - 2):
                    # beyond the model's order a chain of trigram conditionals under-predicts
                    # fixed phrases; every sub-trigram's rate bounds the n-gram's rate from above
                    logp = np.minimum(logp, tri_rate[starts + k])
            else:
                logp = np.zeros(len(starts))
                for k in range(n):
                    wdf = self.corpus.sketch.query(batch.hashes[starts + k]).astype(np.float64)
                    logp += np.log(np.maximum(wdf, 0.5) / max(self.corpus.tokens, 1))
            expected = expected_docs(np.exp(logp), self.corpus.docs, self.corpus.tokens)
            lift = df / (expected + 0.5)
            keep = lift >= self.min_lift
            starts, expected = starts[keep], expected[keep]
            reference = self._span_counts(counts, starts, n) if counts is not None else np.full(len(starts), -1.0)
            doc_index = np.searchsorted(batch.ends, starts, side="right")
            for d, g, exp, ref in zip(doc_index.tolist(), starts.tolist(), expected.tolist(), reference.tolist()):
                doc_id, spread, tokens = docs[d]
                start = g - int(batch.starts[d])
                key = int(hashes[g])
                occ = out[d].get(key)
                if occ is None:
                    occ = out[d][key] = Occurrence(doc_id, spread, " ".join(tokens.words[start:start + n]), exp, [],
                                                   reference=ref)
                occ.spans.append((tokens.spans[start][0], tokens.spans[start + n - 1][1]))
                occ.contexts.append(self._contexts(tokens.hashes, start, n))
                if n in self.payload_sizes:
                    occ.continuations.append(self._continuation(tokens, start + n, counts, g, n))
        return [sorted(found.items()) for found in out], tested

    def _contexts(self, hashes: np.ndarray, start: int, n: int) -> tuple[int, int]:
        """Hashes of the ``context_words - n`` words before and after the n-gram at ``start``
        (with how many are missing at the document's ends); (0, 0) for the longest size."""
        k = self.context_words - n
        if k <= 0:
            return (0, 0)
        left = hashes[max(0, start - k):start].tobytes()
        right = hashes[start + n:start + n + k].tobytes()
        pad_left = (k - len(left) // 8).to_bytes(1, "little")
        pad_right = (k - len(right) // 8).to_bytes(1, "little")
        return (xxhash.xxh3_64_intdigest(pad_left + left), xxhash.xxh3_64_intdigest(right + pad_right))

    @staticmethod
    def _family_share(batch: PaddedBatch, hashes: np.ndarray, starts: np.ndarray, df: np.ndarray) -> float:
        """Sum of 1/df over the distinct (document, n-gram) pairs among ``starts``."""
        doc = np.searchsorted(batch.ends, starts, side="right")
        order = np.lexsort((hashes[starts], doc))
        h, d = hashes[starts][order], doc[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (h[1:] != h[:-1]) | (d[1:] != d[:-1])
        return float((1.0 / df[order][first]).sum())

    @staticmethod
    def _span_counts(counts: tuple[np.ndarray, np.ndarray, np.ndarray], starts: np.ndarray, n: int) -> np.ndarray:
        """The reference's count of the n-grams of order n at ``starts`` (padded positions): exact
        up to trigrams, the smallest sub-trigram count (an upper bound) beyond."""
        c1, c2, c3 = counts
        if n == 1:
            return c1[starts]
        if n == 2:
            return c2[starts]
        out = c3[starts].copy()
        for k in range(1, n - 2):
            out = np.minimum(out, c3[starts + k])
        return out

    def _continuation(self, tokens: DocumentTokens, first: int, counts, padded_start: int,
                      n: int) -> tuple[int, str, int, float]:
        """(hash, text, end char, reference count of n-gram + continuation) of the words after an
        n-gram ending before word ``first`` of the document."""
        words = tokens.words[first:first + self.continuation_words]
        ref = -1.0
        if counts is not None:
            length = n + len(words)
            if length >= 3:
                ref = float(counts[2][padded_start:padded_start + length - 2].min())
            else:
                ref = float(counts[length - 1][padded_start])
        if not words:
            return (0, "", tokens.spans[first - 1][1], ref)
        text = " ".join(words)
        return (stable_hash(text), text, tokens.spans[first + len(words) - 1][1], ref)


# --------------------------------------------------------------------------------------------
# exact per-n-gram statistics (a Beam CombineFn accumulator; plain Python here)

SPREAD_CAP = 4096
CONTINUATION_CAP = 256


class NgramStats:
    """Document count, distinct spread keys (capped at ``SPREAD_CAP``), the n-gram's text, its
    expected document frequency, its reference count and, per continuation, documents, spread and
    the reference count of the n-gram + continuation string (``CONTINUATION_CAP`` continuations
    kept: the most frequent, ties by hash)."""

    __slots__ = ("docs", "spreads", "text", "expected", "reference", "continuations")

    def __init__(self):
        self.docs = 0
        self.spreads: set[int] = set()
        self.text: str | None = None
        self.expected = math.inf
        self.reference = math.inf
        self.continuations: dict[int, list] = {}  # hash -> [docs, spreads set, text, reference count]

    def add(self, occ: Occurrence) -> "NgramStats":
        self.docs += 1
        if len(self.spreads) < SPREAD_CAP:
            self.spreads.add(occ.spread)
        self.text = occ.text if self.text is None else min(self.text, occ.text)
        self.expected = min(self.expected, occ.expected)
        self.reference = min(self.reference, occ.reference)
        for h in sorted({c[0] for c in occ.continuations}):
            _, text, _, ref = min(c for c in occ.continuations if c[0] == h)
            entry = self.continuations.setdefault(h, [0, set(), text, ref])
            entry[0] += 1
            entry[3] = min(entry[3], ref)
            if len(entry[1]) < SPREAD_CAP:
                entry[1].add(occ.spread)
        self._prune()
        return self

    def merge(self, other: "NgramStats") -> "NgramStats":
        self.docs += other.docs
        self.spreads |= other.spreads
        if len(self.spreads) > SPREAD_CAP:
            self.spreads = set(sorted(self.spreads)[:SPREAD_CAP])
        if other.text is not None:
            self.text = other.text if self.text is None else min(self.text, other.text)
        self.expected = min(self.expected, other.expected)
        self.reference = min(self.reference, other.reference)
        for h, (n, spreads, text, ref) in other.continuations.items():
            entry = self.continuations.setdefault(h, [0, set(), text, ref])
            entry[0] += n
            entry[1] |= spreads
            entry[3] = min(entry[3], ref)
        self._prune()
        return self

    def _prune(self) -> None:
        if len(self.continuations) > 2 * CONTINUATION_CAP:
            best = sorted(self.continuations.items(), key=lambda kv: (-kv[1][0], kv[0]))[:CONTINUATION_CAP]
            self.continuations = dict(best)


@dataclass
class NgramVerdict:
    trigger: dict | None          # the report of a flagged trigger n-gram, else None
    payloads: dict[int, dict]     # continuation hash -> report, for flagged (n-gram, continuation)


def judge_ngram(stats: NgramStats, n_docs: int, trigger: TriggerParams, payload: PayloadParams,
                order: int, tests: float = 1.0, corpus_share: float | None = None) -> NgramVerdict:
    """The exact tests on one n-gram's corpus statistics.

    ``tests``: how many n-grams were tested (the Bonferroni factor; ``max_p_value`` is per
    corpus, not per n-gram). ``corpus_share``: corpus tokens / (corpus + reference tokens) when a
    reference model gives counts to compare with (``excess_neglog10_p``); None for the
    independence expectation."""
    expected = 0.0 if math.isinf(stats.expected) else stats.expected
    reference = -1.0 if math.isinf(stats.reference) else stats.reference
    ref_share = corpus_share if reference >= 0 else None
    lift = stats.docs / (expected + 0.5)
    spread = len(stats.spreads)
    correction = math.log10(max(tests, 1.0))
    neglog_p = excess_neglog10_p(stats.docs, reference, ref_share, expected)
    report = {"ngram": stats.text, "docs": stats.docs, "spread": spread, "expected": round(expected, 4),
              "lift": round(lift, 2), "neglog10_p": round(min(neglog_p, 1e6), 2)}
    if ref_share is not None:
        report["reference_count"] = reference
    flagged = None
    if (trigger.enabled and order in trigger.ngram_sizes and stats.docs >= trigger.min_docs
            and spread >= trigger.min_spread and lift >= trigger.min_lift
            and neglog_p >= -math.log10(trigger.max_p_value) + correction
            and stats.docs <= trigger.max_doc_fraction * max(n_docs, 1)):
        flagged = report
    payloads: dict[int, dict] = {}
    if payload.enabled and order in payload.ngram_sizes and lift >= payload.min_lift:
        for h, (count, spreads, text, ref) in sorted(stats.continuations.items()):
            if not text:
                continue
            share = count / stats.docs
            if count >= payload.min_docs and share >= payload.min_share and len(spreads) >= payload.min_spread:
                pair_p = excess_neglog10_p(count, ref, ref_share, expected)
                if pair_p < -math.log10(payload.max_p_value) + correction:
                    continue
                payloads[h] = {"trigger": stats.text, "continuation": text, "docs": count,
                               "share": round(share, 3), "spread": len(spreads), "lift": round(lift, 2),
                               "neglog10_p": round(min(pair_p, 1e6), 2)}
    return NgramVerdict(flagged, payloads)


DOMINANT_SHARE = 0.5


def trigger_occurrences(stats: NgramStats, occurrences: list[Occurrence], verdict: NgramVerdict, n_docs: int,
                        trigger: TriggerParams, order: int, tests: float = 1.0,
                        corpus_share: float | None = None) -> list[tuple[Occurrence, list[int]]]:
    """The occurrences a flagged trigger n-gram marks: (occurrence, indices of its spans).

    Without ``trigger.maximal``, or for the longest n-gram size N, every occurrence. Otherwise,
    when one context (the same N - n words before it, or the same N - n words after it)
    accompanies the n-gram in at least half of its documents, the n-gram is significant as part of
    a longer phrase (an attack's payload lifts every word in it): it marks the occurrences in that
    context, and the documents where it stands elsewhere only if those alone pass the same tests.
    A common word of a payload ("computer" in "... before your computer fails") then does not flag
    every clean document that mentions a computer, or "your computer"."""
    every = [(occ, list(range(len(occ.spans)))) for occ in occurrences]
    if verdict.trigger is None or not trigger.maximal or order >= max(trigger.ngram_sizes):
        return every
    docs_with: dict[tuple[int, int], int] = {}
    for occ in occurrences:
        for key in {(0, left) for left, _ in occ.contexts} | {(1, right) for _, right in occ.contexts}:
            docs_with[key] = docs_with.get(key, 0) + 1
    if not docs_with:
        return every
    (side, context), count = min(docs_with.items(), key=lambda kv: (-kv[1], kv[0]))
    if count < DOMINANT_SHARE * stats.docs:
        return every
    inside, outside = [], []
    for occ in occurrences:
        hits = [i for i, ctx in enumerate(occ.contexts) if ctx[side] == context]
        (inside if hits else outside).append((occ, hits))
    rest = NgramStats()
    for occ, _ in outside:
        rest.add(Occurrence(occ.doc_id, occ.spread, occ.text, occ.expected, [], reference=occ.reference))
    if rest.docs and judge_ngram(rest, n_docs, trigger, PayloadParams(enabled=False), order, tests,
                                 corpus_share).trigger is not None:
        return every
    return inside


# --------------------------------------------------------------------------------------------
# perplexity outliers (ONION)

def perplexity_evidence_batch(docs: list[DocumentTokens], lm: NgramLM, params: PerplexityParams) -> list[dict | None]:
    """Each document's ONION evidence: max suspicion, and the words above the threshold (None for
    a document without words)."""
    batch = PaddedBatch(docs)
    if len(batch.hashes) == 0:
        return [None for _ in docs]
    lp = lm.token_logprobs_padded(batch.hashes)
    word_pos = np.concatenate([np.arange(s, e) for s, e in zip(batch.starts, batch.ends)])
    means = np.array([lp[s:e].mean() if e > s else 0.0 for s, e in zip(batch.starts, batch.ends)])
    counts = batch.ends - batch.starts
    scores_all = lm.suspicion_padded(batch.hashes, word_pos, np.repeat(batch.ends, counts), np.repeat(means, counts))
    out: list[dict | None] = []
    offset = 0
    for tokens, count in zip(docs, counts.tolist()):
        scores = scores_all[offset:offset + count]
        offset += count
        if count == 0:
            out.append(None)
            continue
        top = float(scores.max())
        above = np.flatnonzero(scores >= params.threshold)
        order = above[np.argsort(-scores[above], kind="stable")][: params.max_spans]
        spans = [[tokens.spans[i][0], tokens.spans[i][1], tokens.words[i]] for i in sorted(order.tolist())]
        out.append({"flagged": len(above) >= params.min_words, "max_suspicion": round(top, 3),
                    "suspicious_words": int(len(above)), "strength": top / params.threshold, "spans": spans})
    return out


# --------------------------------------------------------------------------------------------
# integrity

def text_sha256(text: str) -> str:
    """The content hash a manifest records: sha256 of the exact text as UTF-8."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def manifest_key(doc: dict, key: str) -> str | None:
    if key == "id":
        return str(doc["id"])
    return document_url(doc) or None


def parse_manifest_line(line: str, where: str) -> tuple[str, str] | None:
    """One manifest line ``{"key": ..., "sha256": ...}`` -> (key, sha256); blank lines -> None."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"manifest {where}: not JSON: {err}") from err
    if not isinstance(record, dict) or not isinstance(record.get("key"), str) or not isinstance(record.get("sha256"), str):
        raise ValueError(f"manifest {where}: expected {{\"key\": str, \"sha256\": str}}, got {line.strip()[:200]}")
    digest = record["sha256"].lower()
    if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
        raise ValueError(f"manifest {where}: sha256 {record['sha256']!r} is not 64 hex digits")
    return record["key"], digest


def read_manifest(path: str) -> Iterator[tuple[str, str]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            entry = parse_manifest_line(line, f"{path} line {number}")
            if entry is not None:
                yield entry


def integrity_evidence(digest: str, vetted: list[str], require_manifest: bool, key: str | None) -> dict | None:
    if not vetted:
        if require_manifest:
            return {"flagged": True, "status": "missing", "key": key, "sha256": digest, "strength": 1.0}
        return None
    if digest in vetted:
        return None
    return {"flagged": True, "status": "changed", "key": key, "sha256": digest,
            "vetted_sha256": sorted(set(vetted))[:4], "strength": 1.0}


# --------------------------------------------------------------------------------------------
# one document's verdict

def _score(strength: float) -> float:
    """Map a detector's strength (evidence over its threshold; >= 1 when it flags) into [0, 1)."""
    return 1.0 - math.exp(-max(strength, 0.0))


def combine_evidence(evidence: list[tuple[str, dict]], act_on: list[str], max_spans: int) -> dict:
    """Merge every detector's evidence for one document.

    Returns {"score", "detectors": {name: {...}}, "spans": [[start, end, label], ...],
    "flagged": [names that flagged], "acting": [flagged names in ``act_on``]}."""
    by_detector: dict[str, dict] = {}
    for name, item in evidence:
        entry = by_detector.setdefault(name, {"flagged": False, "strength": 0.0, "items": []})
        entry["flagged"] = entry["flagged"] or bool(item.get("flagged"))
        entry["strength"] = max(entry["strength"], float(item.get("strength", 0.0)))
        entry["items"].append(item)
    detectors: dict[str, dict] = {}
    spans: list[list] = []
    for name in DETECTORS:
        if name not in by_detector:
            continue
        entry = by_detector[name]
        report: dict[str, Any] = {"flagged": entry["flagged"], "score": round(_score(entry["strength"]), 6)}
        items = sorted(entry["items"], key=lambda it: json.dumps(it, sort_keys=True, default=str))
        if name == "trigger_ngrams":
            report["ngrams"] = sorted({json.dumps(it["ngram"], sort_keys=True) for it in items})
            report["ngrams"] = [json.loads(x) for x in report["ngrams"]][:10]
            spans += [[s, e, f"trigger:{it['ngram']['ngram']}"] for it in items for s, e in it["spans"]]
        elif name == "payload_association":
            pairs = sorted({json.dumps(it["pair"], sort_keys=True) for it in items})
            report["pairs"] = [json.loads(x) for x in pairs][:10]
            spans += [[s, e, f"payload:{it['pair']['trigger']} -> {it['pair']['continuation']}"]
                      for it in items for s, e in it["spans"]]
        elif name == "perplexity_outliers":
            for item in items:
                if item.get("model") == "transformer":
                    report["transformer"] = {k: v for k, v in item.items() if k not in ("model", "strength", "spans")}
                    label = "perplexity-transformer"
                else:
                    report.update({k: item[k] for k in ("max_suspicion", "suspicious_words")})
                    label = "perplexity"
                if item.get("flagged"):
                    spans += [[s, e, f"{label}:{w}"] for s, e, w in item["spans"]]
        else:
            item = items[0]
            report.update({k: v for k, v in item.items() if k not in ("flagged", "strength")})
        detectors[name] = report
    flagged = [name for name in DETECTORS if name in detectors and detectors[name]["flagged"]]
    score = 1.0
    for report in detectors.values():
        score *= 1.0 - report["score"]
    spans = sorted({(s, e, label) for s, e, label in spans})[:max_spans]
    return {"score": round(1.0 - score, 6), "detectors": detectors, "spans": [list(x) for x in spans],
            "flagged": flagged, "acting": [name for name in flagged if name in act_on]}
