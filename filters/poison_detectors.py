"""Beam-free logic of the data-poisoning detectors (the ``poisoning`` stage wraps it in Beam).

- ``DocumentTokens``: a document's words, character spans and word hashes (``ngram_lm``).
- ``CountMinSketch``: bounded-memory document frequencies of every word n-gram (pass one).
- ``CandidateScanner``: pass two, per document: the n-grams whose sketched document frequency is
  high enough and whose expected frequency under the reference model is low enough to be worth
  counting exactly.
- ``NgramStats``: the exact per-n-gram accumulator (document count, distinct spread keys, the
  continuations that follow it), bounded by caps; ``judge_ngram`` applies the significance tests.
- ``SpanScanner`` / ``SpanStats`` / ``judge_span``: the reference-free test for inserted spans
  (repeated word runs whose documents are otherwise unrelated) and its null model.
- integrity helpers: the content hash and the manifest format.
- ``combine_evidence``: one document's evidence from all detectors -> score, spans, reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import xxhash
from pydantic import Field, model_validator

from thresher.filters.base import Strict
from thresher.filters.ngram_lm import BOS_HASH, NgramLM, WordHasher, mix64, ngram_hashes, words_with_spans

DETECTORS = ("integrity", "inserted_spans", "payload_association", "trigger_ngrams", "perplexity_outliers")
SpreadBy = Literal["auto", "cluster", "host", "source", "id"]


# --------------------------------------------------------------------------------------------
# parameters (the YAML keys under each detector)

class TriggerParams(Strict):
    #: null: on when the stage has a ``reference_model`` (the test compares corpus counts with the
    #: reference's; true without one is an error)
    enabled: bool | None = None
    #: n-gram orders tested (words; 1 to 8)
    ngram_sizes: list[int] = Field(default_factory=lambda: [1, 2, 3, 4], min_length=1)
    #: independent documents an n-gram needs
    min_docs: int = Field(default=10, ge=2)
    #: distinct spread keys (``spread_by``) an n-gram needs
    min_spread: int = Field(default=5, ge=1)
    #: documents over the reference's expectation (+ 0.5) an n-gram needs to be counted exactly
    min_lift: float = Field(default=10.0, ge=1.0)
    #: family-wise significance: an n-gram is flagged when its p-value times the number of
    #: n-grams tested (every n-gram in at least ``min_docs`` documents; Bonferroni) is at most this
    max_p_value: float = Field(default=0.01, gt=0.0, le=1.0)
    #: n-grams in more than this share of the documents are not tested (too common to be an attack)
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


class PayloadParams(Strict):
    #: null: on when the stage has a ``reference_model`` (true without one is an error)
    enabled: bool | None = None
    #: orders of the trigger n-grams whose continuations are compared
    ngram_sizes: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1)
    #: words after the trigger that make its continuation
    continuation_words: int = Field(default=4, ge=1, le=16)
    #: independent documents a (trigger, continuation) pair needs
    min_docs: int = Field(default=5, ge=2)
    #: share of the trigger's documents in which that continuation follows it
    min_share: float = Field(default=0.5, gt=0.0, le=1.0)
    #: distinct spread keys the pair needs
    min_spread: int = Field(default=3, ge=1)
    #: the trigger's documents over the reference's expectation (+ 0.5)
    min_lift: float = Field(default=10.0, ge=1.0)
    #: family-wise significance of the whole (n-gram + continuation) string, Bonferroni-corrected
    #: like ``trigger_ngrams.max_p_value``
    max_p_value: float = Field(default=0.01, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _sizes(self):
        if any(n < 1 or n > 8 for n in self.ngram_sizes):
            raise ValueError(f"ngram_sizes must be between 1 and 8, got {self.ngram_sizes}")
        return self


class SpanParams(Strict):
    """``inserted_spans``: the reference-free test (see ``judge_span`` and docs/poisoning.md)."""

    #: on by default: the test needs nothing but the corpus
    enabled: bool = True
    #: the longest phrase ordinary text repeats as a unit (idioms, names, titles); a repeated span
    #: is tested only when it is longer, so shorter triggers need a reference (``trigger_ngrams``)
    max_phrase_words: int = Field(default=4, ge=1, le=7)
    #: independent documents a span needs (``Places.independent``): the detection limit
    min_docs: int = Field(default=10, ge=2)
    #: family-wise significance over the spans tested (Bonferroni), like ``trigger_ngrams.max_p_value``
    max_p_value: float = Field(default=0.01, gt=0.0, le=1.0)
    #: an n-gram in more than this share of the documents ends a span (too common to be an attack)
    max_doc_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    #: a longer span is keyed by all its words but tested (and reported) on its first this many
    max_span_words: int = Field(default=64, ge=8, le=1024)

    def run_order(self) -> int:
        """The n-gram order whose repeated occurrences make up spans."""
        return self.max_phrase_words + 1


class PerplexityParams(Strict):
    #: ONION: needs ``reference_model`` (the n-gram pass) or ``checkpoint`` (the transformer pass)
    enabled: bool = False
    #: nats; a word whose removal gains this much over an average word is suspicious
    threshold: float = Field(default=12.0, gt=0.0)
    #: suspicious words that flag a document
    min_words: int = Field(default=1, ge=1)
    #: suspicious words kept as spans per document
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


class IntegrityParams(Strict):
    #: split-view check against a manifest of vetted content hashes
    enabled: bool = False
    #: a `thresher manifest` file (local path or URL)
    manifest: str | None = None
    #: what joins a document to its manifest line
    key: Literal["id", "url"] = "id"
    #: a document missing from the manifest is flagged too
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


def document_site(doc: dict) -> str:
    """The site a document belongs to (``SiteRule``): the host of its URL, else its source, else
    the document itself."""
    host = url_host(document_url(doc))
    if host:
        return f"host:{host}"
    return f"source:{doc['source']}" if doc.get("source") else f"id:{doc['id']}"


def document_page(doc: dict, cluster_field: str) -> str:
    """The page a document is a version of: its dedup cluster, else its URL without query and
    fragment (a print view is the same page), else the document itself."""
    meta = doc.get("meta") or {}
    if meta.get(cluster_field) is not None:
        return f"cluster:{meta[cluster_field]}"
    url = document_url(doc)
    if url:
        return "url:" + url.split("#", 1)[0].split("?", 1)[0]
    return f"id:{doc['id']}"


def site_key(site: str) -> int:
    """A site's key in the corpus sketch, where pass one counts each document's site once: the
    sketch then also says how many documents a site has."""
    return stable_hash("\x00site\x00" + site)


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

    def overcount(self, probes: int = 4096) -> float:
        """The typical overcount of a key: the median estimate of ``probes`` fixed random keys
        that were (almost surely) never added. It grows with what was added over the width."""
        keys = np.array([stable_hash(f"\x00probe\x00{i}") for i in range(probes)], dtype=np.uint64)
        return float(np.median(self.query(keys)))


@dataclass
class CorpusSketch:
    """Pass one's result: the sketch plus corpus totals."""

    sketch: CountMinSketch
    docs: int = 0
    tokens: int = 0


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
    # where the document has it first (``place``); None: counted as an independent document
    place: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class SiteRule:
    """When one site's documents count as one: the n-gram or span is on at least ``share`` of
    them (it is the site's template). ``sizes(sites)``: the sites' document counts (the corpus
    sketch counts each document's site key in pass one)."""

    sizes: Any
    share: float

    def templates(self, pages: dict[int, set[int]]) -> set[int]:
        """The sites of ``pages`` (site -> the pages carrying it) whose template it is."""
        sites = [site for site in pages if site]
        if not sites:
            return set()
        sizes = self.sizes(np.array(sites, dtype=np.uint64))
        return {site for site, size in zip(sites, sizes) if len(pages[site]) >= self.share * size}


EDGE_BEFORE, EDGE_AFTER = 1, 2  # the context of every occurrence in a document's top / bottom edge


def _context_hash(hashes: np.ndarray, missing: int, before: bool) -> int:
    pad = missing.to_bytes(1, "little")
    return xxhash.xxh3_64_intdigest(pad + hashes.tobytes() if before else hashes.tobytes() + pad)


def place(hashes: np.ndarray, start: int, end: int, bounds: tuple[int, int], context: int, site: int,
          page: int) -> tuple[int, int, int, int]:
    """Where words [start, end) of a document stand: (the ``context`` words before, the words after,
    site, page). In the document's top edge or at its very start the left context is
    ``EDGE_BEFORE``; in its bottom edge or at its very end the right one is ``EDGE_AFTER``
    (``bounds``: its ``content_bounds``)."""
    first, last = bounds
    before, after = hashes[max(0, start - context):start], hashes[end:end + context]
    left = EDGE_BEFORE if start < max(first, 1) else _context_hash(before, context - len(before), True)
    right = EDGE_AFTER if end > min(last + 1, len(hashes) - 1) else _context_hash(after, context - len(after), False)
    return left, right, site, page


PLACE_CAP = 4096
SITE_CAP = 1024
PAGE_CAP = 64


def _add_bounded(values: set, value, cap: int) -> None:
    """Keep (at least) the ``cap`` smallest values: a value dropped was not among the ``cap``
    smallest seen so far, so it is not among the ``cap`` smallest of all. Pruned in batches
    (amortised O(log n) an add); ``_smallest`` gives the exact set, whatever the order values
    came in."""
    values.add(value)
    if len(values) > 2 * cap:
        keep = set(sorted(values)[:cap])
        values.intersection_update(keep)


def _smallest(values: set, cap: int) -> set:
    return values if len(values) <= cap else set(sorted(values)[:cap])


class Places:
    """Where an n-gram or span occurs, one place per document (``place``), and per site the
    pages that carry it: bounded sets that keep their smallest elements (``cap`` places,
    ``SITE_CAP`` sites of ``PAGE_CAP`` pages), so they do not depend on the order documents
    come in and saturate far above any detection limit. Documents without a place (None) are
    counted as independent."""

    __slots__ = ("places", "sites", "unplaced", "cap")

    def __init__(self, cap: int = PLACE_CAP):
        self.places: set[tuple[int, int, int, int]] = set()
        self.sites: dict[int, set[int]] = {}
        self.unplaced = 0
        self.cap = cap

    def add(self, where: tuple[int, int, int, int] | None) -> None:
        if where is None:
            self.unplaced += 1
            return
        _add_bounded(self.places, where, self.cap)
        self._add_site(where[2], {where[3]})

    def _add_site(self, site: int, pages: set[int]) -> None:
        mine = self.sites.setdefault(site, set())
        for page in pages:
            _add_bounded(mine, page, PAGE_CAP)
        if len(self.sites) > 2 * SITE_CAP:  # keep the SITE_CAP smallest sites (see _add_bounded)
            for dropped in sorted(self.sites)[SITE_CAP:]:
                del self.sites[dropped]

    def _pruned(self) -> tuple[set, dict[int, set[int]]]:
        """The exact bounded sets: the ``cap`` smallest places, the ``SITE_CAP`` smallest sites
        with their ``PAGE_CAP`` smallest pages."""
        sites = {site: _smallest(self.sites[site], PAGE_CAP) for site in sorted(self.sites)[:SITE_CAP]}
        return _smallest(self.places, self.cap), sites

    def merge(self, other: "Places") -> None:
        self.unplaced += other.unplaced
        for where in other.places:
            _add_bounded(self.places, where, self.cap)
        for site, pages in other.sites.items():
            self._add_site(site, pages)

    def independent(self, rule: SiteRule | None) -> int:
        """How many documents are independent evidence: the connected components of the places,
        two being linked when they have the same words just before and just after, when both
        are in a document's top edge or both in a bottom edge, when they are on the same page, or
        on a site whose template this is (``rule``; no site rule: sites do not link).

        Copies of one document (near duplicates, syndication on other hosts) carry the text
        between the same words; boilerplate in documents' edges (``content_bounds``) or at their
        very start or end has the edge as its context; the paragraphs of one article share its
        page (URL, or dedup cluster); a site template is on most of a site's pages. Each of
        those counts once. A campaign at random positions of unrelated documents keeps about all
        its documents: two of them share both contexts only by chance (one shared side, a
        sentence starting "In the", is common and does not link them)."""
        places, sites = self._pruned()
        templates = rule.templates(sites) if rule is not None else set()
        parent = list(range(len(places)))

        def root(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        first: dict[tuple, int] = {}
        for i, (left, right, site, page) in enumerate(sorted(places)):
            keys = [(0, left, right), (2, page)] + ([(3, site)] if site in templates else [])
            keys += [(1, left)] if left == EDGE_BEFORE else []
            keys += [(1, right)] if right == EDGE_AFTER else []
            for key in keys:
                j = first.setdefault(key, i)
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        return self.unplaced + sum(1 for i in range(len(parent)) if root(i) == i)


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
    expected df + 0.5, the expectation from the reference model) >= ``min_lift``: the least strict of the trigger and payload settings, so
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

    def __init__(self, corpus: CorpusSketch, lm: NgramLM, sizes: list[int], min_docs: int,
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

    def scan_batch(self, docs: list[tuple[str, int, int, int, DocumentTokens]],
                   bounds: list[tuple[int, int]] | None = None, context: int = 2
                   ) -> tuple[list[list[tuple[int, Occurrence]]], float]:
        """Per document (id, spread hash, site key, page hash, tokens): its (n-gram hash,
        occurrences) candidates; and the batch's share of the number of hypotheses tested. With
        ``bounds`` (each document's ``content_bounds``), occurrences in a document's edges (menus,
        footers) are left out, a site template there is not a campaign, and each occurrence has
        its ``place`` (``context`` words each side) for counting independent documents."""
        batch = PaddedBatch([t for *_, t in docs])
        out: list[dict[int, Occurrence]] = [{} for _ in docs]
        total = len(batch.hashes)
        tested = 0.0
        if total == 0:
            return [[] for _ in docs], tested
        rates = self.lm.expected_rates(batch.hashes)
        counts = self.lm.reference_counts(batch.hashes)
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
            logp = rates[0][starts].copy()
            if n >= 2:
                logp += rates[1][starts + 1]
            if n >= 3:
                logp += rates[2][starts + 2]
            for k in range(1, n - 2):
                # beyond the model's order a chain of trigram conditionals under-predicts
                # fixed phrases; every sub-trigram's rate bounds the n-gram's rate from above
                logp = np.minimum(logp, tri_rate[starts + k])
            expected = expected_docs(np.exp(logp), self.corpus.docs, self.corpus.tokens)
            lift = df / (expected + 0.5)
            keep = lift >= self.min_lift
            starts, expected = starts[keep], expected[keep]
            reference = self._span_counts(counts, starts, n)
            doc_index = np.searchsorted(batch.ends, starts, side="right")
            for d, g, exp, ref in zip(doc_index.tolist(), starts.tolist(), expected.tolist(), reference.tolist()):
                doc_id, spread, site, page, tokens = docs[d]
                start = g - int(batch.starts[d])
                if bounds is not None and not bounds[d][0] <= start <= start + n - 1 <= bounds[d][1]:
                    continue
                key = int(hashes[g])
                occ = out[d].get(key)
                if occ is None:
                    where = place(tokens.hashes, start, start + n, bounds[d], context, site, page) if bounds else None
                    occ = out[d][key] = Occurrence(doc_id, spread, " ".join(tokens.words[start:start + n]), exp, [],
                                                   reference=ref, place=where)
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


CONTINUATION_PLACE_CAP = 256


class NgramStats:
    """Document count, distinct spread keys (capped at ``SPREAD_CAP``), where it occurs
    (``Places``), the n-gram's text, its expected document frequency, its reference count and,
    per continuation, documents, spread, places (``CONTINUATION_PLACE_CAP``) and the reference
    count of the n-gram + continuation string (``CONTINUATION_CAP`` continuations kept: the most
    frequent, ties by hash)."""

    __slots__ = ("docs", "spreads", "places", "text", "expected", "reference", "continuations")

    def __init__(self):
        self.docs = 0
        self.spreads: set[int] = set()
        self.places = Places()
        self.text: str | None = None
        self.expected = math.inf
        self.reference = math.inf
        # hash -> [docs, spreads set, text, reference count, Places]
        self.continuations: dict[int, list] = {}

    def add(self, occ: Occurrence) -> "NgramStats":
        self.docs += 1
        if len(self.spreads) < SPREAD_CAP:
            self.spreads.add(occ.spread)
        self.places.add(occ.place)
        self.text = occ.text if self.text is None else min(self.text, occ.text)
        self.expected = min(self.expected, occ.expected)
        self.reference = min(self.reference, occ.reference)
        for h in sorted({c[0] for c in occ.continuations}):
            _, text, _, ref = min(c for c in occ.continuations if c[0] == h)
            entry = self.continuations.setdefault(h, [0, set(), text, ref, Places(CONTINUATION_PLACE_CAP)])
            entry[0] += 1
            entry[3] = min(entry[3], ref)
            if len(entry[1]) < SPREAD_CAP:
                entry[1].add(occ.spread)
            entry[4].add(occ.place)
        self._prune()
        return self

    def merge(self, other: "NgramStats") -> "NgramStats":
        self.docs += other.docs
        self.spreads |= other.spreads
        if len(self.spreads) > SPREAD_CAP:
            self.spreads = set(sorted(self.spreads)[:SPREAD_CAP])
        self.places.merge(other.places)
        if other.text is not None:
            self.text = other.text if self.text is None else min(self.text, other.text)
        self.expected = min(self.expected, other.expected)
        self.reference = min(self.reference, other.reference)
        for h, (n, spreads, text, ref, places) in other.continuations.items():
            entry = self.continuations.setdefault(h, [0, set(), text, ref, Places(CONTINUATION_PLACE_CAP)])
            entry[0] += n
            entry[1] |= spreads
            entry[3] = min(entry[3], ref)
            entry[4].merge(places)
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
                order: int, tests: float = 1.0, corpus_share: float | None = None,
                sites: SiteRule | None = None) -> NgramVerdict:
    """The exact tests on one n-gram's corpus statistics.

    ``tests``: how many n-grams were tested (the Bonferroni factor; ``max_p_value`` is per
    corpus, not per n-gram). ``corpus_share``: corpus tokens / (corpus + reference tokens) when a
    reference model gives counts to compare with (``excess_neglog10_p``); None for the
    independence expectation. Every test counts independent documents (``Places.independent``):
    copies of a page, a site's template (``sites``; a newsletter blurb on all its pages) and
    the paragraphs of one article count once."""
    expected = 0.0 if math.isinf(stats.expected) else stats.expected
    reference = -1.0 if math.isinf(stats.reference) else stats.reference
    ref_share = corpus_share if reference >= 0 else None
    docs = stats.places.independent(sites)
    lift = docs / (expected + 0.5)
    spread = len(stats.spreads)
    correction = math.log10(max(tests, 1.0))
    neglog_p = excess_neglog10_p(docs, reference, ref_share, expected)
    report = {"ngram": stats.text, "docs": stats.docs, "spread": spread, "expected": round(expected, 4),
              "lift": round(lift, 2), "neglog10_p": round(min(neglog_p, 1e6), 2)}
    if docs != stats.docs:
        report["independent"] = docs
    if ref_share is not None:
        report["reference_count"] = reference
    flagged = None
    if (trigger.enabled and order in trigger.ngram_sizes and docs >= trigger.min_docs
            and spread >= trigger.min_spread and lift >= trigger.min_lift
            and neglog_p >= -math.log10(trigger.max_p_value) + correction
            and stats.docs <= trigger.max_doc_fraction * max(n_docs, 1)):
        flagged = report
    payloads: dict[int, dict] = {}
    if payload.enabled and order in payload.ngram_sizes and lift >= payload.min_lift:
        for h, (count, spreads, text, ref, places) in sorted(stats.continuations.items()):
            if not text:
                continue
            share = count / stats.docs
            if share < payload.min_share or len(spreads) < payload.min_spread:
                continue  # before the union-find of independent(), which these checks do not need
            count = places.independent(sites)
            if count >= payload.min_docs:
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
                        corpus_share: float | None = None,
                        sites: SiteRule | None = None) -> list[tuple[Occurrence, list[int]]]:
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
        rest.add(Occurrence(occ.doc_id, occ.spread, occ.text, occ.expected, [], reference=occ.reference, place=occ.place))
    if rest.docs and judge_ngram(rest, n_docs, trigger, PayloadParams(enabled=False), order, tests,
                                 corpus_share, sites).trigger is not None:
        return every
    return inside


# --------------------------------------------------------------------------------------------
# inserted spans: the reference-free test

@dataclass
class SpanOccurrence:
    """One document's occurrence of a span: a maximal run of repeated words (``span_runs``)."""

    doc_id: str
    place: tuple[int, int, int, int]  # ``place``: contexts, site, page
    start: int                        # character span in the document
    end: int
    words: np.ndarray                 # word hashes, at most ``max_span_words``
    text: str                         # those words joined by spaces
    length: int                       # the span's full length in words


RUN_SPLIT = 1.5


def span_runs(df: np.ndarray, n: int, min_docs: int, max_docs: int) -> list[tuple[int, int]]:
    """The word ranges [start, end) of a document's spans, from the document frequency of its
    n-grams (``df[i]``: the n-gram starting at word i): maximal runs of consecutive n-grams in
    [``min_docs``, ``max_docs``] documents whose frequencies stay within ``RUN_SPLIT`` times
    their neighbours'. An inserted span's n-grams all have about the same frequency (the number
    of documents carrying it), while an n-gram that straddles its edge is in fewer documents
    (only those where the same word follows, e.g. a sentence starting with "The"): the run ends
    at the span's edge in every carrier, so every carrier yields the same span. A frequency is
    the same wherever the n-gram occurs, so a split inside a span (sketch noise) splits it the
    same way in every carrier."""
    out = []
    ok = (df >= min_docs) & (df <= max_docs)
    if not ok.any():  # most documents: no repeated run at all
        return out
    i, count = 0, len(df)
    while i < count:
        if not ok[i]:
            i += 1
            continue
        j = i
        while j + 1 < count and ok[j + 1] and max(df[j], df[j + 1]) <= RUN_SPLIT * min(df[j], df[j + 1]):
            j += 1
        out.append((i, j + n))
        i = j + 1
    return out


def batch_frequencies(tokens: list[DocumentTokens], sketch: CountMinSketch, n: int) -> list[np.ndarray]:
    """Per document, the sketched document frequency of each of its n-grams (one query per batch)."""
    grams = [ngram_hashes(t.hashes, n) for t in tokens]
    if not sum(len(g) for g in grams):
        return [np.zeros(0, np.int64) for _ in tokens]
    df = sketch.query(np.concatenate(grams))
    out, offset = [], 0
    for g in grams:
        out.append(df[offset:offset + len(g)])
        offset += len(g)
    return out


def content_bounds(text: str, tokens: DocumentTokens, repeated: np.ndarray, min_words: int) -> tuple[int, int]:
    """Word range [first, last] of a document's content, from its first to its last content line:
    a line of at least ``min_words`` words where some word starts an n-gram that is not
    ``repeated`` (so a menu, a legal footer or a cookie notice, whatever its length, is not
    content: every n-gram of it recurs across the corpus). What lies before and after are the
    document's edges. A document of one line (a tweet, a title) is content if it has something not
    repeated, whatever its length; (0, -1) when there is no content (a page of menus and notices)."""
    if not tokens.words:
        return 0, -1
    fresh = np.zeros(len(tokens.words), dtype=bool)
    fresh[:len(repeated)] = ~repeated
    if "\n" not in text.strip():  # one line
        return (0, len(tokens.words) - 1) if fresh.any() else (0, -1)
    starts = np.fromiter((a for a, _ in tokens.spans), dtype=np.int64, count=len(tokens.spans))
    breaks = np.array([m.start() for m in re.finditer("\n", text)], dtype=np.int64)
    line = np.searchsorted(breaks, starts)
    if len(repeated):  # an n-gram that runs into the next line says nothing about this one
        n = len(tokens.words) - len(repeated) + 1
        fresh[:len(repeated)] &= line[n - 1:] == line[:len(repeated)]
    lines = int(line[-1]) + 1
    words = np.bincount(line, minlength=lines)
    novel = np.bincount(line, weights=fresh, minlength=lines) > 0
    content = np.flatnonzero((words >= min_words) & novel)
    if len(content) == 0 and np.count_nonzero(words) == 1:
        content = np.flatnonzero(novel)
    if len(content) == 0:
        return 0, -1
    inside = np.flatnonzero((line >= content[0]) & (line <= content[-1]))
    return int(inside[0]), int(inside[-1])


class SpanScanner:
    """Pass two for ``inserted_spans``: every document's spans (``span_runs`` over the sketched
    document frequency of its n-grams of order ``params.run_order()``), keyed by a hash of their
    words. Most documents have none; a document contributes each distinct span once."""

    def __init__(self, corpus: CorpusSketch, params: SpanParams):
        self.params = params
        self.n = params.run_order()
        self.min_docs = params.min_docs
        self.max_docs = max(params.min_docs, int(params.max_doc_fraction * corpus.docs))

    def scan_batch(self, docs: list[tuple[str, int, int, DocumentTokens]], frequencies: list[np.ndarray],
                   bounds: list[tuple[int, int]], context: int = 2) -> list[tuple[int, SpanOccurrence]]:
        """(document id, site key, page hash, tokens) per document, with the sketched frequency of
        its n-grams of order ``run_order`` (``batch_frequencies``) and its ``content_bounds`` ->
        (span key, occurrence)."""
        out = []
        cap = self.params.max_span_words
        for (doc_id, site, page, tokens), df, doc_bounds in zip(docs, frequencies, bounds):
            seen: set[int] = set()
            h = tokens.hashes
            for start, end in span_runs(df, self.n, self.min_docs, self.max_docs):
                key = xxhash.xxh3_64_intdigest(h[start:end].tobytes())
                if key in seen:
                    continue
                seen.add(key)
                stop = min(end, start + cap)
                out.append((key, SpanOccurrence(
                    doc_id, place(h, start, end, doc_bounds, context, site, page), tokens.spans[start][0],
                    tokens.spans[end - 1][1], h[start:stop].copy(), " ".join(tokens.words[start:stop]), end - start)))
        return out


class SpanStats:
    """A span's corpus statistics (a Beam CombineFn accumulator): its documents, where they carry
    it (``Places``), and its words."""

    __slots__ = ("docs", "places", "text", "words", "length")

    def __init__(self):
        self.docs = 0
        self.places = Places()
        self.text: str | None = None
        self.words = np.zeros(0, np.uint64)
        self.length = 0

    def add(self, occ: SpanOccurrence) -> "SpanStats":
        self.docs += 1
        self.places.add(occ.place)
        if self.text is None or occ.text < self.text:
            self.text, self.words, self.length = occ.text, occ.words, occ.length
        return self

    def merge(self, other: "SpanStats") -> "SpanStats":
        self.docs += other.docs
        self.places.merge(other.places)
        if other.text is not None and (self.text is None or other.text < self.text):
            self.text, self.words, self.length = other.text, other.words, other.length
        return self


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def multigram_log_rate(first: list[float], within: np.ndarray, junction: np.ndarray, m: int) -> float:
    """log of the rate (per word position) at which the null model writes a span of L words:
    ordinary text is a chain of phrases of at most ``m`` words. Summed over every way of cutting
    the span into such phrases: ``first[l - 1]`` is the log rate of the first l words as one
    phrase; a later phrase of l words starting at word j costs ``junction[j]`` (log P of word j
    after word j - 1) plus ``within[j, l - 1]`` (log P of its other words given its first)."""
    length = len(junction)
    total = [-math.inf] * (length + 1)
    for i in range(1, length + 1):
        acc = -math.inf
        for l in range(1, min(m, i) + 1):
            j = i - l
            term = first[l - 1] if j == 0 else total[j] + junction[j] + within[j, l - 1]
            acc = _log_add(acc, term)
        total[i] = acc
    return total[length]


def _safe_log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(x, 0.0))


#: how many occurrences outside a span a word needs before what follows it there is trusted as
#: much as the background rate of the next word (Jelinek-Mercer lambda = c / (c + JOINT_PRIOR))
JOINT_PRIOR = 10.0


def span_expected_docs(words: np.ndarray, corpus: CorpusSketch, docs: int, m: int, noise: float = 0.0) -> float:
    """Expected number of documents carrying the span if it were ordinary text of this corpus,
    with the span's own ``docs`` occurrences deleted from the counts (deleted estimation).

    The null model (``multigram_log_rate``): phrases of at most ``m`` words keep their corpus
    rates (an idiom or a name is as frequent as it is, whoever wrote it), and consecutive phrases
    join at the rate the rest of the corpus attests for the word pair at the joint: the pair's
    count outside the span over the first word's count outside it, interpolated with the second
    word's rate outside it when the first word barely occurs elsewhere (Jelinek-Mercer with
    lambda = c / (c + ``JOINT_PRIOR`` + noise): one occurrence elsewhere of "3d movie" does not make
    "3d" -> "movie" an ordinary joint). An inserted span longer than ``m`` words is not made of phrases
    the rest of the corpus joins that way, so its expectation is tiny; "at the end of the" is.
    Counts are sketched document frequencies: upper bounds, each about ``noise`` too high
    (``CountMinSketch.overcount``), which is taken off the counts outside the span: otherwise the
    sketch's noise alone would attest a joint between two words only the span has. Returns
    documents: N (1 - exp(-T/N rate))."""
    n_docs, tokens = max(corpus.docs, 1), max(corpus.tokens, 1)
    length = len(words)
    m = min(m, length)
    counts = [corpus.sketch.query(ngram_hashes(words, l)).astype(np.float64) for l in range(1, m + 1)]

    def rate(df):
        df = np.minimum(np.asarray(df, np.float64), n_docs - 0.5)
        return -(n_docs / tokens) * np.log1p(-df / n_docs)

    first = [float(_safe_log(rate(counts[l - 1][0]))) for l in range(1, m + 1)]
    within = np.full((length, m), -math.inf)
    within[:, 0] = 0.0
    for l in range(2, m + 1):
        within[:length - l + 1, l - 1] = _safe_log(np.minimum(counts[l - 1] / np.maximum(counts[0][:length - l + 1], 1), 1.0))
    junction = np.zeros(length)
    if length > 1:
        c1 = np.maximum(counts[0] - docs - noise, 0.0)
        c2 = np.maximum((counts[1] if m >= 2 else corpus.sketch.query(ngram_hashes(words, 2))) - docs - noise, 0.0)
        lam = c1[:-1] / (c1[:-1] + JOINT_PRIOR + noise)
        follow = np.minimum(c2 / np.maximum(c1[:-1], 1e-12), 1.0)
        junction[1:] = _safe_log(lam * follow + (1 - lam) * np.maximum(rate(c1[1:]), 0.5 / tokens))
    log_rate = multigram_log_rate(first, within, junction, m)
    return float(expected_docs(np.array([math.exp(log_rate)]), n_docs, tokens)[0])


def reference_span_expected_docs(words: np.ndarray, lm: NgramLM, corpus_docs: int, corpus_tokens: int,
                                 m: int) -> float:
    """Expected corpus documents carrying the span if the corpus were like the reference: the
    larger of the same null model with the reference's counts (exact to trigrams; the smallest
    sub-trigram count beyond, an upper bound) and no deletion, and the span's own rate in the
    reference (its smallest sub-trigram count: a boilerplate line the reference has as a whole
    is ordinary however long it is). Unseen phrases and words count half an occurrence."""
    ref_tokens = max(float(lm.info["tokens"]), 1.0)
    length = len(words)
    m = min(m, length)
    padded = np.concatenate([np.array([BOS_HASH, BOS_HASH], np.uint64), words])
    c1, c2, c3 = (c[2:] for c in lm.reference_counts(padded))
    c2, c3 = c2[:max(length - 1, 0)], c3[:max(length - 2, 0)]

    def piece(l):  # counts of the l-grams starting at each position
        if l == 1:
            return c1
        if l == 2:
            return c2
        out = c3[:length - l + 1].copy()
        for k in range(1, l - 2):
            out = np.minimum(out, c3[k:k + length - l + 1])
        return out

    first = [math.log(max(float(piece(l)[0]), 0.5) / ref_tokens) for l in range(1, m + 1)]
    within = np.full((length, m), -math.inf)
    within[:, 0] = 0.0
    for l in range(2, m + 1):
        within[:length - l + 1, l - 1] = np.log(np.minimum(np.maximum(piece(l), 0.5) / np.maximum(c1[:length - l + 1], 0.5), 1.0))
    junction = np.zeros(length)
    if length > 1:
        lam = c1[:-1] / (c1[:-1] + 1.0)
        follow = np.minimum(c2 / np.maximum(c1[:-1], 1e-12), 1.0)
        junction[1:] = np.log(lam * follow + (1 - lam) * np.maximum(c1[1:], 0.5) / ref_tokens)
    log_rate = multigram_log_rate(first, within, junction, m)
    whole = float(c3.min()) if length >= 3 else float(piece(length)[0])
    rate = max(math.exp(log_rate), whole / ref_tokens)
    return float(expected_docs(np.array([rate]), max(corpus_docs, 1), max(corpus_tokens, 1))[0])


def span_candidate(stats: SpanStats, params: SpanParams) -> bool:
    """Longer than ``max_phrase_words`` and in at least ``min_docs`` documents: the cheap part
    of ``span_testable``."""
    return stats.length > params.max_phrase_words and stats.docs >= params.min_docs


def span_testable(stats: SpanStats, independent: int, params: SpanParams) -> bool:
    """Whether the span is one of the hypotheses tested (the Bonferroni family): longer than
    ``max_phrase_words`` and in at least ``min_docs`` independent documents."""
    return span_candidate(stats, params) and independent >= params.min_docs


def judge_span(stats: SpanStats, independent: int, corpus: CorpusSketch, params: SpanParams, tests: float,
               reference_expected=None, noise: float = 0.0) -> tuple[dict, float] | None:
    """(report, strength >= 1) of a flagged span, or None.

    Test: Poisson(``span_expected_docs``, with the sketch's ``noise``) upper tail at the span's
    independent documents, times
    ``tests`` (the spans tested) at most ``max_p_value``. With a reference model
    (``reference_expected``: a callable giving the expectation under the reference, computed only
    for the spans the corpus test flags), the span must also be significant against that: the
    reference vetoes spans that ordinary text of its kind contains (templates the corpus alone
    cannot explain); each test keeps the family-wise level, so both together do too."""
    if not span_testable(stats, independent, params):
        return None
    need = -math.log10(params.max_p_value) + math.log10(max(tests, 1.0))
    expected = span_expected_docs(stats.words, corpus, stats.docs, params.max_phrase_words, noise)
    neglog_p = poisson_neglog10_sf(independent, expected)
    if neglog_p < need:
        return None
    report = {"span": stats.text, "docs": stats.docs, "independent": independent, "words": stats.length,
              "expected": float(f"{expected:.3g}"), "neglog10_p": round(min(neglog_p, 1e6), 2)}
    if reference_expected is not None:
        ref = reference_expected(stats.words)
        ref_p = poisson_neglog10_sf(independent, ref)
        report["expected_reference"] = float(f"{ref:.3g}")
        report["neglog10_p_reference"] = round(min(ref_p, 1e6), 2)
        if ref_p < need:
            return None
    return report, 1.0 + math.log10(min(neglog_p, report.get("neglog10_p_reference", neglog_p)) / need)


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
        elif name == "inserted_spans":
            found = sorted({json.dumps(it["span"], sort_keys=True) for it in items})
            report["repeated_spans"] = [json.loads(x) for x in found][:10]
            spans += [[s, e, f"span:{it['span']['span'][:60]}"] for it in items for s, e in it["spans"]]
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
