"""MinHash signatures equal datasketch's bit for bit; shingling and hashing agree between the
compiled path and the Python reference."""

import numpy as np
import pytest
import xxhash

datasketch = pytest.importorskip("datasketch")

from conftest import shared_file  # noqa: E402
from thresher.filters import minhash as mh  # noqa: E402

TRICKY = [
    "Hello, World! «quoted» — dash… ÀÉÎ ΟΔΟΣ İstanbul\u00a0nbsp x",
    "",
    "   ...  ",
    "one",
    "a b",
    "日本語のテキスト、句読点。　全角スペース",
    "emoji 🙂 between words\u200bzero-width\ufeffbom",
    "Tabs\tand\nnewlines\r\nmixed   up  " * 20,
]


def _wiki_articles(n: int) -> list[str]:
    text = shared_file("wiki/wikitext-2-valid.txt").read_text(encoding="utf-8")
    return [a for a in text.split("\n = ") if len(a) > 200][:n]


def _datasketch_supports_scheme() -> bool:
    import inspect

    return "scheme" in inspect.signature(datasketch.MinHash.__init__).parameters


def _reference(text: str, num_perm: int, seed: int, scheme: str, ngram: int, kind: str) -> np.ndarray:
    kwargs = {"scheme": scheme} if _datasketch_supports_scheme() else {}
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, hashfunc=mh.shingle_hash, **kwargs)
    m.update_batch(mh.shingles(text, ngram, kind))
    return m.hashvalues


def test_xxh32_matches_xxhash_on_all_lengths():
    # one word of each length exercises every stripe/tail path of the hash
    for n in (1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 70):
        word = "x" * n
        assert mh.shingle_hash_batch([word], 1)[0].tolist() == [xxhash.xxh32_intdigest(word.encode())]


@pytest.mark.parametrize("kind,ngram", [("word", 5), ("word", 1), ("word", 3), ("char", 5), ("char", 1)])
def test_compiled_shingles_equal_reference(kind, ngram):
    texts = TRICKY + _wiki_articles(30)
    for text, hashes in zip(texts, mh.shingle_hash_batch(texts, ngram, kind)):
        assert hashes.tolist() == [mh.shingle_hash(s) for s in mh.shingles(text, ngram, kind)], text[:60]
    for text, hashes in zip(texts[:12], mh.shingle_hash_batch(texts[:12], ngram, kind, wide=True)):
        assert hashes.tolist() == [mh.ngram_hash64(s) for s in mh.shingles(text, ngram, kind)]


def test_words_split_on_unicode_punctuation_and_spaces():
    assert mh.words("Don’t—stop\u00a0NOW… «ok» 3.14") == ["don", "t", "stop", "now", "ok", "3", "14"]
    assert mh.shingles("a b", 5) == ["a b"]
    assert mh.shingles("", 5) == []


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("kind,ngram,num_perm,seed", [("word", 5, 128, 1), ("char", 5, 64, 42), ("word", 3, 256, 7)])
def test_signatures_equal_datasketch(scheme, kind, ngram, num_perm, seed):
    if scheme == "affine32" and not _datasketch_supports_scheme():
        pytest.skip("this datasketch predates the affine32 scheme")
    texts = TRICKY + _wiki_articles(25)
    hasher = mh.MinHasher(num_perm, ngram, kind, seed=seed, scheme=scheme)
    sigs, counts = hasher.signatures_with_counts(texts)
    assert sigs.dtype == (np.uint32 if scheme == "affine32" else np.uint64)
    for text, sig, count in zip(texts, sigs, counts):
        assert count == len(mh.shingles(text, ngram, kind))
        np.testing.assert_array_equal(sig, _reference(text, num_perm, seed, scheme, ngram, kind))


def test_optimal_bands_match_minhash_lsh():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=128)
        assert mh.optimal_bands(threshold, 128) == (lsh.b, lsh.r)
    assert mh.optimal_bands(0.8, 128) == (9, 13)


def test_band_keys_agree_exactly_when_band_rows_agree():
    hasher = mh.MinHasher(16, 5, bands=4, rows=4)
    sig = np.arange(16, dtype=np.uint32)
    other = sig.copy()
    other[5] = 99  # band 1 differs
    k1, k2 = hasher.band_hashes(np.stack([sig, other]))
    assert k1.dtype == np.uint64 and len(set(k1.tolist())) == 4
    assert (k1 == k2).tolist() == [True, False, True, True]
    same_rows = np.tile(np.arange(4, dtype=np.uint32), 4)  # every band holds the same rows
    assert len(set(hasher.band_hashes(same_rows[None])[0].tolist())) == 4  # the band index is in the key
    rng = np.random.default_rng(0)
    many = hasher.band_hashes(rng.integers(0, 1 << 32, (20_000, 16), dtype=np.uint64).astype(np.uint32))
    assert len(np.unique(many)) == many.size  # 80,000 random bands, no collision


def test_jaccard_helpers():
    a = np.array([1, 2, 3, 4], dtype=np.uint32)
    b = np.array([3, 4, 5, 6], dtype=np.uint32)
    assert mh.exact_jaccard(a, b) == pytest.approx(2 / 6)
    assert mh.estimated_jaccard(a, a) == 1.0


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="bands\\*rows"):
        mh.MinHasher(16, bands=5, rows=4)
    with pytest.raises(ValueError, match="both bands and rows"):
        mh.MinHasher(16, bands=5)
    with pytest.raises(ValueError, match="scheme"):
        mh.MinHasher(16, scheme="nope")
    with pytest.raises(ValueError, match="shingle kind"):
        mh.MinHasher(16, kind="token")
