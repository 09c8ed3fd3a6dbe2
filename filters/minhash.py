"""MinHash signatures and LSH band keys, Beam-free and compiled.

Shingles
    Text is lowercased with ``str.lower()`` and split into *words*: maximal runs of characters that
    are not separators. Separators are ASCII whitespace, ASCII punctuation and control characters,
    U+0080-U+00BF (C1 controls, NBSP, Latin-1 punctuation such as « » ¿), U+2000-U+206F (Unicode
    spaces, dashes, curly quotes, ellipsis), U+3000-U+303F (CJK spaces and punctuation) and U+FEFF.
    Every other character (letters and digits in any script) is part of a word.
    The *normalised text* is the words joined by single spaces.

    - ``shingle="word"``: a shingle is ``ngram`` consecutive words joined by one space.
    - ``shingle="char"``: a shingle is ``ngram`` consecutive characters (code points) of the
      normalised text.

    A document with at least one word but fewer than ``ngram`` words (characters) has exactly one
    shingle: its whole normalised text. A document without words has no shingles; it gets the
    all-max signature and no LSH band keys (empty documents are exact_dedup's business).

Hash
    Each shingle is hashed as ``xxh32(utf8_bytes(shingle), seed=0)`` (``shingle_hash`` is the same
    function in Python, for datasketch). xxh32 is implemented here in numba so that splitting,
    lowercased-byte scanning and hashing run in one compiled pass over the UTF-8 bytes of a whole
    batch: per-shingle Python calls cap a Python implementation near 20 MB/s, while this runs at the
    speed of the permutation arithmetic. numba was chosen over a C extension because it is already a
    dependency and needs no compiler at install time; functions are compiled with ``cache=True``
    so each worker pays the compile time (a few seconds) once per machine, not once per process.

Permutations (equal bit for bit to ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash,
scheme=...)``):
    - ``"affine32"`` (datasketch >= 2.0 default): ``h' = fmix32(h)``, ``a*h' + b mod 2^32``.
    - ``"legacy"`` (datasketch < 2.0): ``(a*h + b mod 2^64) mod (2^61-1) & (2^32-1)``; the mod 2^64
      is the uint64 wraparound numpy applies in datasketch's own code.
    Parameters ``a, b`` come from ``np.random.RandomState(seed)`` exactly as datasketch draws them.
"""

from __future__ import annotations

import re
import struct
from typing import Literal

import numba
import numpy as np
import xxhash

MERSENNE_PRIME = (1 << 61) - 1
MAX_HASH32 = (1 << 32) - 1
#: second xxh32 seed used when a 64-bit n-gram hash is needed (decontamination)
SEED_HI = 0x9E3779B1

_P1 = np.uint64(2654435761)
_P2 = np.uint64(2246822519)
_P3 = np.uint64(3266489917)
_P4 = np.uint64(668265263)
_P5 = np.uint64(374761393)
_M32 = np.uint64(0xFFFFFFFF)

SEPARATOR_CLASS = "\\x00-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\xbf\\u2000-\\u206f\\u3000-\\u303f\\ufeff"


# --------------------------------------------------------------------------------------------
# Python reference (used by tests, datasketch comparisons and the masking path)

def shingle_hash(shingle: str | bytes) -> int:
    """The 32-bit shingle hash the compiled path uses: xxh32 of the UTF-8 bytes, seed 0."""
    data = shingle.encode("utf-8") if isinstance(shingle, str) else shingle
    return xxhash.xxh32_intdigest(data)


def ngram_hash64(ngram: str | bytes) -> int:
    """64-bit n-gram hash (two xxh32 seeds) the compiled decontamination path uses."""
    data = ngram.encode("utf-8") if isinstance(ngram, str) else ngram
    return (xxhash.xxh32_intdigest(data, seed=0) << 32) | xxhash.xxh32_intdigest(data, seed=SEED_HI)


_WORD_RE = re.compile(f"[^{SEPARATOR_CLASS}]+")


def words(text: str) -> list[str]:
    """Lowercased words of ``text`` (see the module docstring)."""
    return _WORD_RE.findall(text.lower())


def shingles(text: str, ngram: int = 5, kind: Literal["word", "char"] = "word") -> list[str]:
    """The shingles of ``text`` as strings, in order, duplicates kept (reference implementation)."""
    ws = words(text)
    if not ws:
        return []
    if kind == "word":
        if len(ws) < ngram:
            return [" ".join(ws)]
        return [" ".join(gram) for gram in zip(*(ws[i:] for i in range(ngram)))]
    norm = " ".join(ws)
    if len(norm) < ngram:
        return [norm]
    return [norm[i:i + ngram] for i in range(len(norm) - ngram + 1)]


# --------------------------------------------------------------------------------------------
# compiled core

@numba.njit(cache=True, inline="always")
def _rotl32(x, r):
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _M32


@numba.njit(cache=True)
def _xxh32(buf, start, end, seed):
    """xxh32 of buf[start:end] (uint8 array), computed in uint64 lanes masked to 32 bits."""
    n = end - start
    p = start
    s = np.uint64(seed)
    if n >= 16:
        v1 = (s + _P1 + _P2) & _M32
        v2 = (s + _P2) & _M32
        v3 = s
        v4 = (s - _P1) & _M32
        limit = end - 16
        while p <= limit:
            w = (np.uint64(buf[p]) | (np.uint64(buf[p + 1]) << np.uint64(8))
                 | (np.uint64(buf[p + 2]) << np.uint64(16)) | (np.uint64(buf[p + 3]) << np.uint64(24)))
            v1 = (_rotl32((v1 + w * _P2) & _M32, 13) * _P1) & _M32
            w = (np.uint64(buf[p + 4]) | (np.uint64(buf[p + 5]) << np.uint64(8))
                 | (np.uint64(buf[p + 6]) << np.uint64(16)) | (np.uint64(buf[p + 7]) << np.uint64(24)))
            v2 = (_rotl32((v2 + w * _P2) & _M32, 13) * _P1) & _M32
            w = (np.uint64(buf[p + 8]) | (np.uint64(buf[p + 9]) << np.uint64(8))
                 | (np.uint64(buf[p + 10]) << np.uint64(16)) | (np.uint64(buf[p + 11]) << np.uint64(24)))
            v3 = (_rotl32((v3 + w * _P2) & _M32, 13) * _P1) & _M32
            w = (np.uint64(buf[p + 12]) | (np.uint64(buf[p + 13]) << np.uint64(8))
                 | (np.uint64(buf[p + 14]) << np.uint64(16)) | (np.uint64(buf[p + 15]) << np.uint64(24)))
            v4 = (_rotl32((v4 + w * _P2) & _M32, 13) * _P1) & _M32
            p += 16
        h = (_rotl32(v1, 1) + _rotl32(v2, 7) + _rotl32(v3, 12) + _rotl32(v4, 18)) & _M32
    else:
        h = (s + _P5) & _M32
    h = (h + np.uint64(n)) & _M32
    while p + 4 <= end:
        w = (np.uint64(buf[p]) | (np.uint64(buf[p + 1]) << np.uint64(8))
             | (np.uint64(buf[p + 2]) << np.uint64(16)) | (np.uint64(buf[p + 3]) << np.uint64(24)))
        h = (_rotl32((h + w * _P3) & _M32, 17) * _P4) & _M32
        p += 4
    while p < end:
        h = (_rotl32((h + np.uint64(buf[p]) * _P5) & _M32, 11) * _P1) & _M32
        p += 1
    h ^= h >> np.uint64(15)
    h = (h * _P2) & _M32
    h ^= h >> np.uint64(13)
    h = (h * _P3) & _M32
    h ^= h >> np.uint64(16)
    return h


@numba.njit(cache=True)
def _normalise(buf, start, end, out, word_start, word_end):
    """Write the words of buf[start:end] into ``out`` joined by single spaces; record each word's
    [start, end) in ``out``. Returns (bytes written, number of words)."""
    o = 0
    nw = 0
    in_word = False
    p = start
    while p < end:
        c = buf[p]
        if c < 0x80:
            clen = 1
            sep = not ((0x30 <= c <= 0x39) or (0x61 <= c <= 0x7A) or (0x41 <= c <= 0x5A))
        elif c < 0xE0:
            clen = 2
            sep = c == 0xC2  # U+0080-U+00BF
        elif c < 0xF0:
            clen = 3
            c1 = buf[p + 1] if p + 1 < end else 0
            c2 = buf[p + 2] if p + 2 < end else 0
            if c == 0xE2:
                sep = c1 == 0x80 or (c1 == 0x81 and c2 < 0xB0)  # U+2000-U+206F
            elif c == 0xE3:
                sep = c1 == 0x80  # U+3000-U+303F
            elif c == 0xEF:
                sep = c1 == 0xBB and c2 == 0xBF  # U+FEFF
            else:
                sep = False
        else:
            clen = 4
            sep = False
        if p + clen > end:
            clen = end - p
        if sep:
            if in_word:
                word_end[nw] = o
                nw += 1
                in_word = False
        else:
            if not in_word:
                if nw > 0:
                    out[o] = 0x20
                    o += 1
                word_start[nw] = o
                in_word = True
            for q in range(clen):
                out[o] = buf[p + q]
                o += 1
        p += clen
    if in_word:
        word_end[nw] = o
        nw += 1
    return o, nw


@numba.njit(cache=True)
def _shingle_bounds(out, nbytes, word_start, word_end, nw, ngram, char_mode, sh_start, sh_end):
    """Fill [start, end) of each shingle inside the normalised buffer; returns the count."""
    if nw == 0:
        return 0
    if not char_mode:
        if nw < ngram:
            sh_start[0] = word_start[0]
            sh_end[0] = word_end[nw - 1]
            return 1
        for i in range(nw - ngram + 1):
            sh_start[i] = word_start[i]
            sh_end[i] = word_end[i + ngram - 1]
        return nw - ngram + 1
    # character n-grams: positions of code-point starts in the normalised text
    nchar = 0
    for p in range(nbytes):
        if (out[p] & 0xC0) != 0x80:
            word_start[nchar] = p  # reuse as code-point start table (nchar <= nbytes)
            nchar += 1
    if nchar < ngram:
        sh_start[0] = 0
        sh_end[0] = nbytes
        return 1
    for i in range(nchar - ngram + 1):
        sh_start[i] = word_start[i]
        sh_end[i] = word_start[i + ngram] if i + ngram < nchar else nbytes
    return nchar - ngram + 1


@numba.njit(cache=True)
def _fmix32(h):
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h


@numba.njit(cache=True)
def _signatures_affine32(buf, offsets, ngram, char_mode, a, b, sigs, counts):
    num_perm = a.shape[0]
    maxlen = 0
    for d in range(offsets.shape[0] - 1):
        maxlen = max(maxlen, offsets[d + 1] - offsets[d])
    out = np.empty(maxlen + 1, np.uint8)
    ws = np.empty(maxlen + 1, np.int64)
    we = np.empty(maxlen + 1, np.int64)
    ss = np.empty(maxlen + 1, np.int64)
    se = np.empty(maxlen + 1, np.int64)
    hv = np.empty(maxlen + 1, np.uint32)
    for d in range(offsets.shape[0] - 1):
        nbytes, nw = _normalise(buf, offsets[d], offsets[d + 1], out, ws, we)
        ns = _shingle_bounds(out, nbytes, ws, we, nw, ngram, char_mode, ss, se)
        counts[d] = ns
        for i in range(ns):
            hv[i] = np.uint32(_fmix32(_xxh32(out, ss[i], se[i], 0)))
        row = sigs[d]
        # permutation-outer, shingle-inner: a min-reduction LLVM vectorises (~4x the other order)
        for k in range(num_perm):
            ak = a[k]
            bk = b[k]
            m = np.uint32(0xFFFFFFFF)
            for i in range(ns):
                m = min(m, np.uint32(ak * hv[i] + bk))
            row[k] = m


@numba.njit(cache=True)
def _signatures_legacy(buf, offsets, ngram, char_mode, a, b, sigs, counts):
    num_perm = a.shape[0]
    maxlen = 0
    for d in range(offsets.shape[0] - 1):
        maxlen = max(maxlen, offsets[d + 1] - offsets[d])
    out = np.empty(maxlen + 1, np.uint8)
    ws = np.empty(maxlen + 1, np.int64)
    we = np.empty(maxlen + 1, np.int64)
    ss = np.empty(maxlen + 1, np.int64)
    se = np.empty(maxlen + 1, np.int64)
    hv = np.empty(maxlen + 1, np.uint64)
    prime = np.uint64(MERSENNE_PRIME)
    for d in range(offsets.shape[0] - 1):
        nbytes, nw = _normalise(buf, offsets[d], offsets[d + 1], out, ws, we)
        ns = _shingle_bounds(out, nbytes, ws, we, nw, ngram, char_mode, ss, se)
        counts[d] = ns
        row = sigs[d]
        for i in range(ns):
            hv[i] = _xxh32(out, ss[i], se[i], 0)
        for k in range(num_perm):
            ak = a[k]
            bk = b[k]
            m = _M32
            for i in range(ns):
                x = ak * hv[i] + bk  # wraps mod 2^64, as numpy does in datasketch
                r = (x & prime) + (x >> np.uint64(61))
                r = r - prime if r >= prime else r
                m = min(m, r & _M32)
            row[k] = m


@numba.njit(cache=True)
def _shingle_hashes(buf, offsets, ngram, char_mode, wide, hashes, doc_offsets):
    """All shingle hashes of all documents, concatenated (32-bit, or 64-bit if ``wide``)."""
    maxlen = 0
    for d in range(offsets.shape[0] - 1):
        maxlen = max(maxlen, offsets[d + 1] - offsets[d])
    out = np.empty(maxlen + 1, np.uint8)
    ws = np.empty(maxlen + 1, np.int64)
    we = np.empty(maxlen + 1, np.int64)
    ss = np.empty(maxlen + 1, np.int64)
    se = np.empty(maxlen + 1, np.int64)
    pos = 0
    doc_offsets[0] = 0
    for d in range(offsets.shape[0] - 1):
        nbytes, nw = _normalise(buf, offsets[d], offsets[d + 1], out, ws, we)
        ns = _shingle_bounds(out, nbytes, ws, we, nw, ngram, char_mode, ss, se)
        for i in range(ns):
            h = _xxh32(out, ss[i], se[i], 0)
            if wide:
                h = (h << np.uint64(32)) | _xxh32(out, ss[i], se[i], SEED_HI)
            hashes[pos] = h
            pos += 1
        doc_offsets[d + 1] = pos
    return pos


def _pack(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.lower().encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8) if offsets[-1] else np.zeros(1, np.uint8)
    return buf, offsets


def shingle_hash_batch(texts: list[str], ngram: int = 5, kind: str = "word",
                       wide: bool = False) -> list[np.ndarray]:
    """Per document, the hashes of its shingles in order (uint64 arrays; 32-bit values unless
    ``wide``, then ``ngram_hash64``)."""
    buf, offsets = _pack(texts)
    hashes = np.empty(max(int(offsets[-1]), 1), dtype=np.uint64)
    doc_offsets = np.empty(len(texts) + 1, dtype=np.int64)
    _shingle_hashes(buf, offsets, ngram, kind == "char", wide, hashes, doc_offsets)
    return [hashes[doc_offsets[i]:doc_offsets[i + 1]] for i in range(len(texts))]


def permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) permutation parameters datasketch draws for this seed and scheme."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        ab = np.array([(gen.randint(1, MERSENNE_PRIME, dtype=np.uint64),
                        gen.randint(0, MERSENNE_PRIME, dtype=np.uint64)) for _ in range(num_perm)],
                      dtype=np.uint64).T
        return ab[0].copy(), ab[1].copy()
    if scheme == "affine32":
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return a, b
    raise ValueError(f"unknown MinHash scheme {scheme!r}: use 'affine32' or 'legacy'")


def optimal_bands(threshold: float, num_perm: int, false_positive_weight: float = 0.5,
                  false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false positive + false negative probability: the
    routine ``datasketch.MinHashLSH`` itself uses, so both pick the same banding."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, false_positive_weight, false_negative_weight)


class MinHasher:
    """Batch MinHash signatures and LSH band keys for one parameter set.

    ``signatures(texts)`` returns an (n, num_perm) array (uint32 for affine32, uint64 for legacy),
    row i equal to datasketch's ``MinHash(num_perm, seed, hashfunc=shingle_hash, scheme=scheme)``
    updated with ``shingles(texts[i], ngram, kind)``.
    """

    def __init__(self, num_perm: int = 128, ngram: int = 5, kind: Literal["word", "char"] = "word",
                 seed: int = 1, scheme: Literal["affine32", "legacy"] = "affine32",
                 bands: int | None = None, rows: int | None = None):
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        if kind not in ("word", "char"):
            raise ValueError(f"shingle kind must be 'word' or 'char', got {kind!r}")
        self.num_perm, self.ngram, self.kind, self.seed, self.scheme = num_perm, ngram, kind, seed, scheme
        self.a, self.b = permutations(num_perm, seed, scheme)
        self.dtype = np.uint32 if scheme == "affine32" else np.uint64
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is not None and bands * rows > num_perm:
            raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {num_perm}")
        self.bands, self.rows = bands, rows

    def signatures_with_counts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        buf, offsets = _pack(texts)
        sigs = np.empty((len(texts), self.num_perm), dtype=self.dtype)
        counts = np.zeros(len(texts), dtype=np.int64)
        kernel = _signatures_affine32 if self.scheme == "affine32" else _signatures_legacy
        kernel(buf, offsets, self.ngram, self.kind == "char", self.a, self.b, sigs, counts)
        return sigs, counts

    def signatures(self, texts: list[str]) -> np.ndarray:
        return self.signatures_with_counts(texts)[0]

    def band_hashes(self, sigs: np.ndarray) -> np.ndarray:
        """(n, bands) uint64 band keys of (n, num_perm) signatures: a 64-bit hash of the band's
        index and rows, equal exactly when the rows are equal (distinct rows collide with
        probability ~2^-64 per pair, and verification drops such a pair). Vectorised: the rows
        are folded in one at a time through splitmix64's finaliser, a full-avalanche mix."""
        if self.bands is None:
            raise ValueError("bands/rows are not set")
        sigs = np.asarray(sigs)
        n, b, r = sigs.shape[0], self.bands, self.rows
        rows = sigs[:, :b * r].reshape(n, b, r).astype(np.uint64)
        h = np.broadcast_to(_splitmix64(np.arange(1, b + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)),
                            (n, b)).copy()
        for j in range(r):
            h = _splitmix64(h ^ rows[:, :, j])
        return h


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def estimated_jaccard(sig1: np.ndarray, sig2: np.ndarray) -> float:
    return float(np.count_nonzero(sig1 == sig2)) / float(len(sig1))


def exact_jaccard(hashes1: np.ndarray, hashes2: np.ndarray) -> float:
    """Jaccard of two shingle-hash sets (unique sorted arrays or any arrays)."""
    s1, s2 = np.unique(hashes1), np.unique(hashes2)
    if len(s1) == 0 and len(s2) == 0:
        return 1.0
    inter = np.intersect1d(s1, s2, assume_unique=True).size
    return inter / float(len(s1) + len(s2) - inter)
