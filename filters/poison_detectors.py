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
    max_p_value: float = Field(default=1e-6, gt=0.0, le=1.0)
    max_doc_fraction: float = Field(default=0.1, gt=0.0, le=1.0)

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
    expected: float                    # expected document frequency
    spans: list[tuple[int, int]]       # character spans of the n-gram in this document
    continuations: list[tuple[int, str, int]] = field(default_factory=list)  # (hash, text, end char)


def expected_docs(probability: np.ndarray, docs: int, tokens: int) -> np.ndarray:
    """Expected number of documents containing an n-gram of per-position probability p, if the
    corpus's positions were drawn independently: N * (1 - exp(-T/N * p))."""
    if docs <= 0:
        return np.zeros_like(probability)
    return docs * -np.expm1(-(tokens / docs) * probability)


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
    every n-gram occurrence a candidate and the exact counting pass explodes."""

    def __init__(self, corpus: CorpusSketch, lm: NgramLM | None, sizes: list[int], min_docs: int,
                 min_lift: float, continuation_words: int, payload_sizes: list[int],
                 reference_sigmas: float = 3.0, max_doc_fraction: float = 1.0):
        self.corpus = corpus
        self.lm = lm
        self.sizes = sorted(set(sizes))
        self.payload_sizes = set(payload_sizes)
        self.min_docs = min_docs
        self.max_docs = max(min_docs, int(max_doc_fraction * corpus.docs))
        self.min_lift = min_lift
        self.continuation_words = continuation_words
        # an expectation scaled up from a reference's counts carries their sampling noise: its
        # standard deviation is sqrt(expected * corpus tokens / reference tokens)
        self.reference_sigmas = reference_sigmas
        self.scale = corpus.tokens / lm.info["tokens"] if lm is not None else 1.0

    def scan_batch(self, docs: list[tuple[str, int, DocumentTokens]]) -> list[list[tuple[int, Occurrence]]]:
        """Per document (id, spread hash, tokens): its (n-gram hash, occurrences) candidates."""
        batch = PaddedBatch([t for _, _, t in docs])
        out: list[dict[int, Occurrence]] = [{} for _ in docs]
        total = len(batch.hashes)
        if total == 0:
            return [[] for _ in docs]
        rates = self.lm.expected_rates(batch.hashes) if self.lm is not None else None
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
            if rates is not None and self.reference_sigmas:
                expected = expected + self.reference_sigmas * np.sqrt(expected * self.scale)
            lift = df / (expected + 0.5)
            keep = lift >= self.min_lift
            doc_index = np.searchsorted(batch.ends, starts[keep], side="right")
            for d, g, exp in zip(doc_index.tolist(), starts[keep].tolist(), expected[keep].tolist()):
                doc_id, spread, tokens = docs[d]
                start = g - int(batch.starts[d])
                key = int(hashes[g])
                occ = out[d].get(key)
                if occ is None:
                    occ = out[d][key] = Occurrence(doc_id, spread, " ".join(tokens.words[start:start + n]), exp, [])
                occ.spans.append((tokens.spans[start][0], tokens.spans[start + n - 1][1]))
                if n in self.payload_sizes:
                    occ.continuations.append(self._continuation(tokens, start + n))
        return [sorted(found.items()) for found in out]

    def _continuation(self, tokens: DocumentTokens, first: int) -> tuple[int, str, int]:
        words = tokens.words[first:first + self.continuation_words]
        if not words:
            return (0, "", tokens.spans[first - 1][1])
        text = " ".join(words)
        return (stable_hash(text), text, tokens.spans[first + len(words) - 1][1])


# --------------------------------------------------------------------------------------------
# exact per-n-gram statistics (a Beam CombineFn accumulator; plain Python here)

SPREAD_CAP = 4096
CONTINUATION_CAP = 256


class NgramStats:
    """Document count, distinct spread keys (capped at ``SPREAD_CAP``), the n-gram's text, its
    expected document frequency and, per continuation, documents and spread (``CONTINUATION_CAP``
    continuations kept: the most frequent, ties by hash)."""

    __slots__ = ("docs", "spreads", "text", "expected", "continuations")

    def __init__(self):
        self.docs = 0
        self.spreads: set[int] = set()
        self.text: str | None = None
        self.expected = math.inf
        self.continuations: dict[int, list] = {}  # hash -> [docs, spreads set, text]

    def add(self, occ: Occurrence) -> "NgramStats":
        self.docs += 1
        if len(self.spreads) < SPREAD_CAP:
            self.spreads.add(occ.spread)
        self.text = occ.text if self.text is None else min(self.text, occ.text)
        self.expected = min(self.expected, occ.expected)
        for h in sorted({c[0] for c in occ.continuations}):
            text = next(c[1] for c in occ.continuations if c[0] == h)
            entry = self.continuations.setdefault(h, [0, set(), text])
            entry[0] += 1
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
        for h, (n, spreads, text) in other.continuations.items():
            entry = self.continuations.setdefault(h, [0, set(), text])
            entry[0] += n
            entry[1] |= spreads
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
                order: int) -> NgramVerdict:
    """The exact tests on one n-gram's corpus statistics."""
    expected = 0.0 if math.isinf(stats.expected) else stats.expected
    lift = stats.docs / (expected + 0.5)
    spread = len(stats.spreads)
    neglog_p = poisson_neglog10_sf(stats.docs, expected)
    report = {"ngram": stats.text, "docs": stats.docs, "spread": spread, "expected": round(expected, 4),
              "lift": round(lift, 2), "neglog10_p": round(neglog_p, 2)}
    flagged = None
    if (trigger.enabled and order in trigger.ngram_sizes and stats.docs >= trigger.min_docs
            and spread >= trigger.min_spread and lift >= trigger.min_lift
            and neglog_p >= -math.log10(trigger.max_p_value)
            and stats.docs <= trigger.max_doc_fraction * max(n_docs, 1)):
        flagged = report
    payloads: dict[int, dict] = {}
    if payload.enabled and order in payload.ngram_sizes and lift >= payload.min_lift:
        for h, (count, spreads, text) in sorted(stats.continuations.items()):
            if not text:
                continue
            share = count / stats.docs
            if count >= payload.min_docs and share >= payload.min_share and len(spreads) >= payload.min_spread:
                payloads[h] = {"trigger": stats.text, "continuation": text, "docs": count,
                               "share": round(share, 3), "spread": len(spreads), "lift": round(lift, 2)}
    return NgramVerdict(flagged, payloads)


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
            item = items[0]
            report.update({k: item[k] for k in ("max_suspicion", "suspicious_words")})
            if entry["flagged"]:
                spans += [[s, e, f"perplexity:{w}"] for s, e, w in item["spans"]]
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
