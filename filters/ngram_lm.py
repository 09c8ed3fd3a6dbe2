"""A small word trigram language model with hashed counts (interpolated Kneser-Ney), trained by
thresher on a clean reference set, saved as one ``.npz`` file, and ONION-style word suspicion.

Words are ``\\w+`` runs of the original text, lowercased one by one (so character offsets stay those
of the original text). A word is a 64-bit xxh3 hash, an n-gram a 64-bit mix of its words' hashes
and its order: the model never stores strings, and its memory is 8-40 bytes per kept n-gram. The
count tables are sorted hash arrays looked up with ``np.searchsorted`` (vectorised per document).

Bounded memory while training: counts are kept per chunk of ``chunk_tokens`` tokens and merged; when
the distinct trigrams exceed ``max_trigrams`` the rarest are pruned (lowest count first, ties by
hash, so the result is deterministic). Kneser-Ney statistics are then computed from the kept
trigrams.

ONION (Qi et al., 2021) scores a word by how much the perplexity of its sentence drops when the word
is removed. With a trigram model only the log-probabilities of the word and its two successors
change, so the score of word i is computed locally and exactly:

    suspicion_i = [log P(without w_i) - log P(with w_i)] + mean log P(word)

the first part is how many nats the text gains by losing w_i, the second (negative) part is what
removing an average word gains; the result does not shrink with document length. A word the model
finds typical scores about 0; a planted rare token, a look-alike spelling or a phrase out of context
scores many nats above it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import xxhash

WORD = re.compile(r"\w+")
#: redaction placeholders (``|||EMAIL_ADDRESS|||``, the pii stage's convention): every redacted
#: document shares them, so as words they would look like a planted campaign
PLACEHOLDER = re.compile(r"\|\|\|[A-Z0-9_]+\|\|\|")
FORMAT_VERSION = 1
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
BOS_HASH = np.uint64(0x9E3779B97F4A7C15)  # stands for "start of document" before the first word


def words_with_spans(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Lowercased words and their (start, end) character spans in ``text``; redaction placeholders
    are not words."""
    words, spans = [], []
    if "|||" in text:
        text = PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), text)  # same length: spans stay valid
    for m in WORD.finditer(text):
        words.append(m.group(0).lower())
        spans.append(m.span())
    return words, spans


class WordHasher:
    """Stable 64-bit word hashes (xxh3), memoised: the same word always gets the same value, in
    every process (Python's ``hash`` is salted per process)."""

    def __init__(self, max_cache: int = 1 << 20):
        self._cache: dict[str, int] = {}
        self._max = max_cache

    def __call__(self, words: list[str]) -> np.ndarray:
        cache = self._cache
        out = np.empty(len(words), dtype=np.uint64)
        for i, w in enumerate(words):
            h = cache.get(w)
            if h is None:
                h = xxhash.xxh3_64_intdigest(w.encode("utf-8", "surrogatepass"))
                if len(cache) < self._max:
                    cache[w] = h
            out[i] = h
        return out


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash of every n-gram starting at positions 0..len-n (empty if the text is shorter)."""
    count = len(word_hashes) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(count, np.uint64(n) * np.uint64(0x632BE59BD9B4E019), dtype=np.uint64)
        for k in range(n):
            h = mix64(h * np.uint64(31) + word_hashes[k:k + count])
    return h


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[key == query] or 0 where the query is absent (keys sorted, unique)."""
    if len(keys) == 0 or len(query) == 0:
        return np.zeros(len(query), dtype=values.dtype if len(values) else np.float64)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[pos] == query
    return np.where(found, values[pos], 0)


class _TrigramCounts:
    """Distinct trigrams seen so far, with counts and the hashes Kneser-Ney needs (bounded)."""

    def __init__(self, max_trigrams: int):
        self.max_trigrams = max_trigrams
        self.cols = {k: np.zeros(0, np.uint64) for k in ("tri", "uv", "vw", "v", "w")}
        self.counts = np.zeros(0, np.int64)
        self.unigram = {"w": np.zeros(0, np.uint64), "c": np.zeros(0, np.int64)}
        self.pruned = 0

    def add(self, chunks: list[np.ndarray]) -> None:
        """Add documents given as word-hash arrays."""
        tri, uv, vw, v, w = [], [], [], [], []
        for wh in chunks:
            padded = np.concatenate([np.array([BOS_HASH, BOS_HASH], np.uint64), wh])
            tri.append(ngram_hashes(padded, 3))
            uv.append(ngram_hashes(padded[:-1], 2))
            vw.append(ngram_hashes(padded[1:], 2))
            v.append(padded[1:-1])
            w.append(padded[2:])
        if not tri:
            return
        new = {"tri": np.concatenate(tri), "uv": np.concatenate(uv), "vw": np.concatenate(vw),
               "v": np.concatenate(v), "w": np.concatenate(w)}
        self._merge(new, np.ones(len(new["tri"]), np.int64))
        words = new["w"]
        self._merge_unigrams(words, np.ones(len(words), np.int64))

    def _merge(self, new: dict[str, np.ndarray], counts: np.ndarray) -> None:
        allc = {k: np.concatenate([self.cols[k], new[k]]) for k in self.cols}
        allcounts = np.concatenate([self.counts, counts])
        keys, first, inverse = np.unique(allc["tri"], return_index=True, return_inverse=True)
        summed = np.bincount(inverse, weights=allcounts, minlength=len(keys)).astype(np.int64)
        self.cols = {k: allc[k][first] for k in allc}
        self.counts = summed
        if len(keys) > self.max_trigrams:
            # keep the most frequent; ties broken by hash so pruning is deterministic
            order = np.lexsort((self.cols["tri"], -self.counts))[: self.max_trigrams]
            order.sort()
            self.pruned += len(keys) - self.max_trigrams
            self.cols = {k: self.cols[k][order] for k in self.cols}
            self.counts = self.counts[order]

    def _merge_unigrams(self, words: np.ndarray, counts: np.ndarray) -> None:
        allw = np.concatenate([self.unigram["w"], words])
        allc = np.concatenate([self.unigram["c"], counts])
        keys, inverse = np.unique(allw, return_inverse=True)
        self.unigram = {"w": keys, "c": np.bincount(inverse, weights=allc, minlength=len(keys)).astype(np.int64)}


def _grouped(keys: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    uniq, inverse = np.unique(keys, return_inverse=True)
    if weights is None:
        return uniq, np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
    return uniq, np.bincount(inverse, weights=weights, minlength=len(uniq)).astype(np.float64)


class NgramLM:
    """Interpolated Kneser-Ney word trigram model over hashed n-grams.

    Tables (all sorted by key):
      c3[uvw], ctx3 count and types [uv]       highest order, raw counts
      n2[vw] = N1+(. v w), ctx2 sum and types [v]  middle order, continuation counts
      n1[w]  = N1+(. w), raw unigram counts c1[w]  lowest order
    """

    def __init__(self, tables: dict[str, np.ndarray], info: dict):
        self.t = tables
        self.info = info
        self.discount = float(info["discount"])
        self.hasher = WordHasher()
        self._total1 = float(info["n1_total"])
        self._types1 = float(info["n1_types"])
        self._tokens = float(info["tokens"])

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], discount: float = 0.75, max_trigrams: int = 5_000_000,
              chunk_tokens: int = 2_000_000) -> "NgramLM":
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {discount}")
        if max_trigrams < 1:
            raise ValueError(f"max_trigrams must be >= 1, got {max_trigrams}")
        hasher = WordHasher()
        counts = _TrigramCounts(max_trigrams)
        pending: list[np.ndarray] = []
        pending_tokens = docs = tokens = 0
        for text in texts:
            words, _ = words_with_spans(text)
            if not words:
                continue
            wh = hasher(words)
            pending.append(wh)
            pending_tokens += len(wh)
            docs += 1
            tokens += len(wh)
            if pending_tokens >= chunk_tokens:
                counts.add(pending)
                pending, pending_tokens = [], 0
        counts.add(pending)
        if tokens == 0:
            raise ValueError("the reference set has no words: cannot train a language model")
        return cls._from_counts(counts, discount, docs, tokens)

    @classmethod
    def _from_counts(cls, counts: _TrigramCounts, discount: float, docs: int, tokens: int) -> "NgramLM":
        cols, c = counts.cols, counts.counts.astype(np.float64)
        ctx3_keys, ctx3_count = _grouped(cols["uv"], c)
        _, ctx3_types = _grouped(cols["uv"])
        # continuation counts: each distinct trigram adds one distinct left context to its (v, w)
        n2_keys, n2_first = np.unique(cols["vw"], return_index=True)
        _, n2 = _grouped(cols["vw"])
        n2_v = cols["v"][n2_first]
        ctx2_keys, ctx2_sum = _grouped(n2_v, n2)
        _, ctx2_types = _grouped(n2_v)
        n1_keys, n1 = _grouped(cols["w"][n2_first])
        c2_keys, c2 = _grouped(cols["vw"], c)
        tables = {
            "c3_keys": cols["tri"], "c3": c,
            "ctx3_keys": ctx3_keys, "ctx3_count": ctx3_count, "ctx3_types": ctx3_types,
            "n2_keys": n2_keys, "n2": n2,
            "ctx2_keys": ctx2_keys, "ctx2_sum": ctx2_sum, "ctx2_types": ctx2_types,
            "n1_keys": n1_keys, "n1": n1,
            "c2_keys": c2_keys, "c2": c2,
            "c1_keys": counts.unigram["w"], "c1": counts.unigram["c"].astype(np.float64),
        }
        info = {"format": "thresher-ngram-lm", "version": FORMAT_VERSION, "order": 3, "discount": discount,
                "docs": docs, "tokens": tokens, "trigrams": int(len(c)), "pruned_trigrams": counts.pruned,
                "n1_total": float(n1.sum()), "n1_types": float(len(n1_keys)),
                "vocabulary": int(len(counts.unigram["w"]))}
        return cls(tables, info)

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        path = Path(path)
        arrays = dict(self.t)
        arrays["info"] = np.frombuffer(json.dumps(self.info, sort_keys=True).encode(), dtype=np.uint8)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "NgramLM":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"reference language model {path} does not exist "
                                    "(train one with `thresher poisoning train-reference`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise ValueError(f"{path} is not a thresher n-gram model: {err}") from err
        if "info" not in arrays:
            raise ValueError(f"{path} is not a thresher n-gram model (no info record)")
        info = json.loads(arrays.pop("info").tobytes().decode())
        if info.get("format") != "thresher-ngram-lm" or info.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported model format {info.get('format')!r} "
                             f"version {info.get('version')!r} (expected version {FORMAT_VERSION})")
        return cls(arrays, info)

    # -- probabilities ----------------------------------------------------------------------

    def unigram_logprob(self, w: np.ndarray) -> np.ndarray:
        """KN continuation unigram, interpolated with a uniform share for unseen words (the
        unseen share assumes as many unseen word types as seen ones)."""
        n1 = _lookup(self.t["n1_keys"], self.t["n1"], w)
        return np.log((n1 + 0.5) / (self._total1 + 0.5 * 2.0 * self._types1))

    def frequency_logprob(self, w: np.ndarray) -> np.ndarray:
        """Raw token frequency of each word (add-half smoothed), for expected counts."""
        c1 = _lookup(self.t["c1_keys"], self.t["c1"], w)
        return np.log((c1 + 0.5) / (self._tokens + 0.5 * 2.0 * self.info["vocabulary"]))

    def _bigram_logprob(self, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        d = self.discount
        lower = np.exp(self.unigram_logprob(w))
        vw = ngram_hashes_pairs(v, w)
        n2 = _lookup(self.t["n2_keys"], self.t["n2"], vw)
        csum = _lookup(self.t["ctx2_keys"], self.t["ctx2_sum"], v)
        ctypes = _lookup(self.t["ctx2_keys"], self.t["ctx2_types"], v)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(csum > 0, (np.maximum(n2 - d, 0) + d * ctypes * lower) / np.where(csum > 0, csum, 1), lower)
        return np.log(p)

    def _trigram_logprob(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        d = self.discount
        lower = np.exp(self._bigram_logprob(v, w))
        uvw = ngram_hashes_triples(u, v, w)
        uv = ngram_hashes_pairs(u, v)
        c3 = _lookup(self.t["c3_keys"], self.t["c3"], uvw)
        ccount = _lookup(self.t["ctx3_keys"], self.t["ctx3_count"], uv)
        ctypes = _lookup(self.t["ctx3_keys"], self.t["ctx3_types"], uv)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(ccount > 0, (np.maximum(c3 - d, 0) + d * ctypes * lower) / np.where(ccount > 0, ccount, 1), lower)
        return np.log(p)

    def token_logprobs(self, word_hashes: np.ndarray) -> np.ndarray:
        """log P(w_i | w_{i-2}, w_{i-1}) for every word, the text starting after two BOS."""
        padded = np.concatenate([np.array([BOS_HASH, BOS_HASH], np.uint64), word_hashes])
        return self._trigram_logprob(padded[:-2], padded[1:-1], padded[2:])

    def token_logprobs_padded(self, padded: np.ndarray) -> np.ndarray:
        """Trigram log-probability at every position of a BOS-padded array (0 at 0 and 1)."""
        lp = np.zeros(len(padded))
        if len(padded) >= 3:
            lp[2:] = self._trigram_logprob(padded[:-2], padded[1:-1], padded[2:])
        return lp

    def expected_rates(self, padded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per position i of a BOS-padded array (log values; positions 0 and 1 are meaningless):
        the token frequency of w_i, and the expected-rate conditionals of w_i given w_{i-1} and
        given (w_{i-2}, w_{i-1}): the larger of the maximum-likelihood estimate (how often the
        reference saw it follow) and the smoothed model's (which covers unseen continuations).
        Kneser-Ney's lower orders alone are continuation probabilities, not frequencies, and would
        under-predict frequent fixed phrases. The expected log rate of the n-gram starting at s is
        freq[s] + cond2[s+1] + sum(cond3[s+2 : s+n])."""
        n = len(padded)
        freq = self.frequency_logprob(padded)
        cond2 = np.zeros(n)
        cond3 = np.zeros(n)
        if n >= 2:
            v, w = padded[:-1], padded[1:]
            c1 = _lookup(self.t["c1_keys"], self.t["c1"], v)
            c2 = _lookup(self.t["c2_keys"], self.t["c2"], ngram_hashes_pairs(v, w))
            with np.errstate(divide="ignore", invalid="ignore"):
                mle = np.where(c1 > 0, c2 / np.where(c1 > 0, c1, 1), 0.0)
            cond2[1:] = np.log(np.maximum(mle, np.exp(self._bigram_logprob(v, w))))
        if n >= 3:
            u, v, w = padded[:-2], padded[1:-1], padded[2:]
            ctx = _lookup(self.t["ctx3_keys"], self.t["ctx3_count"], ngram_hashes_pairs(u, v))
            c3 = _lookup(self.t["c3_keys"], self.t["c3"], ngram_hashes_triples(u, v, w))
            with np.errstate(divide="ignore", invalid="ignore"):
                mle = np.where(ctx > 0, c3 / np.where(ctx > 0, ctx, 1), 0.0)
            cond3[2:] = np.log(np.maximum(mle, np.exp(self._trigram_logprob(u, v, w))))
        return freq, cond2, cond3

    def count_floor(self) -> float:
        """What an n-gram missing from the tables may still have occurred: 0 when nothing was
        pruned, else the smallest kept trigram count (pruning drops the rarest first)."""
        if not self.info.get("pruned_trigrams") or len(self.t["c3"]) == 0:
            return 0.0
        return float(self.t["c3"].min())

    def reference_counts(self, padded: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per start position s of a BOS-padded array: how often the reference saw the word at s,
        the bigram (s, s+1) and the trigram (s, s+1, s+2) (0 past the end; raised to
        ``count_floor`` where the model was pruned). The count of a longer n-gram is at most the
        smallest count of its sub-trigrams."""
        n = len(padded)
        floor = self.count_floor()
        c1 = _lookup(self.t["c1_keys"], self.t["c1"], padded).astype(np.float64)
        c2 = np.zeros(n)
        c3 = np.zeros(n)
        if n >= 2:
            c2[:-1] = _lookup(self.t["c2_keys"], self.t["c2"], ngram_hashes_pairs(padded[:-1], padded[1:]))
        if n >= 3:
            c3[:-2] = _lookup(self.t["c3_keys"], self.t["c3"], ngram_hashes_triples(padded[:-2], padded[1:-1], padded[2:]))
        if floor:
            c2 = np.maximum(c2, floor)
            c3 = np.maximum(c3, floor)
        return c1, c2, c3

    def suspicion_padded(self, padded: np.ndarray, word_pos: np.ndarray, doc_end: np.ndarray,
                         doc_mean: np.ndarray) -> np.ndarray:
        """ONION suspicion of the words at ``word_pos`` of a padded array holding several
        documents, each preceded by two BOS; ``doc_end[i]`` is the end (exclusive) of word i's
        document, ``doc_mean[i]`` its document's mean token log-probability."""
        lp_all = self.token_logprobs_padded(padded)
        g = word_pos
        lost = lp_all[g].copy()
        gained = np.zeros(len(g))
        has1 = g + 1 < doc_end
        if has1.any():
            i1 = g[has1]
            lost[has1] += lp_all[i1 + 1]
            gained[has1] += self._trigram_logprob(padded[i1 - 2], padded[i1 - 1], padded[i1 + 1])
        has2 = g + 2 < doc_end
        if has2.any():
            i2 = g[has2]
            lost[has2] += lp_all[i2 + 2]
            gained[has2] += self._trigram_logprob(padded[i2 - 1], padded[i2 + 1], padded[i2 + 2])
        return gained - lost + doc_mean

    def suspicion(self, word_hashes: np.ndarray) -> np.ndarray:
        """ONION-style suspicion (nats) of every word of one text; see the module docstring."""
        n = len(word_hashes)
        if n == 0:
            return np.zeros(0)
        padded = np.concatenate([np.array([BOS_HASH, BOS_HASH], np.uint64), word_hashes])
        mean = float(self.token_logprobs(word_hashes).mean())
        pos = np.arange(2, n + 2)
        return self.suspicion_padded(padded, pos, np.full(n, n + 2), np.full(n, mean))

    def perplexity(self, text: str) -> float:
        words, _ = words_with_spans(text)
        if not words:
            return math.nan
        return float(np.exp(-self.token_logprobs(self.hasher(words)).mean()))


def ngram_hashes_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise bigram hash of (a[i], b[i]); equals ``ngram_hashes`` of the pair."""
    with np.errstate(over="ignore"):
        h = np.full(len(a), np.uint64(2) * np.uint64(0x632BE59BD9B4E019), dtype=np.uint64)
        h = mix64(h * np.uint64(31) + a)
        return mix64(h * np.uint64(31) + b)


def ngram_hashes_triples(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = np.full(len(a), np.uint64(3) * np.uint64(0x632BE59BD9B4E019), dtype=np.uint64)
        h = mix64(h * np.uint64(31) + a)
        h = mix64(h * np.uint64(31) + b)
        return mix64(h * np.uint64(31) + c)
