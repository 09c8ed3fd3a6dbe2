"""Single-pass text counting kernels (numba) shared by the heuristic filters.

A text is turned into its code points (one ``str.encode("utf-32-le")``, a C-speed copy) and
scanned once by a compiled loop that classifies each code point through a table built from
Python's own ``str.isspace`` / ``isalnum`` / ``isalpha`` (numpy's vectorised string ufuncs, about
0.1 s once per process). So "token" means exactly what ``str.split()`` means, "word character"
what ``\\w`` means minus the underscore, and "letter" what ``str.isalpha`` means, without
creating a Python object per word.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

SPACE, ALNUM, ALPHA = np.uint8(1), np.uint8(2), np.uint8(4)
NEWLINE = 10
HORIZONTAL_ELLIPSIS = 0x2026
FULL_STOP = 0x2E


@lru_cache(maxsize=1)
def char_table() -> np.ndarray:
    """Flags for every code point: SPACE (str.isspace), ALNUM (str.isalnum), ALPHA (str.isalpha)."""
    chars = np.arange(0x110000, dtype=np.uint32).view("<U1")
    table = np.strings.isspace(chars).astype(np.uint8) * SPACE
    table |= np.strings.isalnum(chars).astype(np.uint8) * ALNUM
    table |= np.strings.isalpha(chars).astype(np.uint8) * ALPHA
    return table


def codepoints(text: str) -> np.ndarray:
    try:
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:
        # lone surrogates: the "surrogatepass" handler runs once per character (5 s for 10 MB);
        # numpy stores a str as UCS-4 whatever it holds
        return np.array([text], dtype=f"<U{len(text)}").view(np.uint32)


# Indices into the array returned by quality_counts.
(TOKENS, SYMBOL_TOKENS, NONSPACE_CHARS, SYMBOL_CHARS, ALPHA_TOKENS, LINES, BULLET_LINES,
 ELLIPSIS_LINES) = range(8)


@njit(cache=True, nogil=True)
def _quality_counts(cps, table, bullets):
    out = np.zeros(8, dtype=np.int64)
    n = cps.shape[0]
    in_token = False
    token_has_word = False
    token_has_alpha = False
    line_start = 0
    last_nonspace = -1
    for i in range(n + 1):
        c = cps[i] if i < n else NEWLINE
        flags = table[c]
        if c == NEWLINE or flags & SPACE:
            if in_token:
                if not token_has_word:
                    out[SYMBOL_TOKENS] += 1
                if token_has_alpha:
                    out[ALPHA_TOKENS] += 1
                in_token = False
            if c == NEWLINE:
                if last_nonspace >= line_start:
                    last = cps[last_nonspace]
                    if last == HORIZONTAL_ELLIPSIS or (
                            last == FULL_STOP and last_nonspace - 2 >= line_start
                            and cps[last_nonspace - 1] == FULL_STOP and cps[last_nonspace - 2] == FULL_STOP):
                        out[ELLIPSIS_LINES] += 1
                line_start = i + 1
            continue
        out[NONSPACE_CHARS] += 1
        if flags & ALNUM:
            token_has_word = True
            if flags & ALPHA:
                token_has_alpha = True
        else:
            out[SYMBOL_CHARS] += 1
        if not in_token:
            in_token = True
            token_has_word = (flags & ALNUM) != 0
            token_has_alpha = (flags & ALPHA) != 0
            out[TOKENS] += 1
        if last_nonspace < line_start:
            out[LINES] += 1
            for b in bullets:
                if c == b:
                    out[BULLET_LINES] += 1
                    break
        last_nonspace = i
    return out


def quality_counts(text: str, bullets: np.ndarray) -> np.ndarray:
    """Counts in one pass, indexed by the module constants: whitespace tokens, tokens made only
    of symbols (no alphanumeric character), non-space characters, symbol characters (neither
    space nor alphanumeric, so ``_`` too), tokens with a letter, non-blank lines, non-blank lines
    whose first non-space character is in ``bullets``, and lines whose last non-space characters
    are ``...`` or ``…``. Lines end at ``\\n`` only."""
    return _quality_counts(codepoints(text), char_table(), bullets)


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LINE_JOIN = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _finish(h):
    # splitmix64's finaliser: spreads FNV's weak low bits over the whole word
    h ^= h >> np.uint64(30)
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    h ^= h >> np.uint64(31)
    return h


@njit(cache=True, nogil=True)
def _token_hashes(cps, table):
    n = cps.shape[0]
    hashes = np.empty(n // 2 + 1, dtype=np.uint64)
    lengths = np.empty(n // 2 + 1, dtype=np.int64)
    count = 0
    in_token = False
    h = _FNV_OFFSET
    start = 0
    for i in range(n + 1):
        space = True if i == n else (table[cps[i]] & SPACE) != 0
        if space:
            if in_token:
                hashes[count] = _finish(h)
                lengths[count] = i - start
                count += 1
                in_token = False
        else:
            if not in_token:
                in_token = True
                h = _FNV_OFFSET
                start = i
            h = (h ^ np.uint64(cps[i])) * _FNV_PRIME
    return hashes[:count], lengths[:count]


@njit(cache=True, nogil=True)
def _line_hashes(cps, table):
    n = cps.shape[0]
    line_hash = np.empty(n // 2 + 1, dtype=np.uint64)
    line_len = np.empty(n // 2 + 1, dtype=np.int64)
    para_hash = np.empty(n // 2 + 1, dtype=np.uint64)
    para_len = np.empty(n // 2 + 1, dtype=np.int64)
    n_lines = 0
    n_paras = 0
    first = -1          # first non-space character of the current line
    last = -1           # last non-space character of the current line
    h = _FNV_OFFSET
    ph = _FNV_OFFSET
    plen = 0
    blank_before = True  # a blank line (or the start) precedes the next non-blank line
    for i in range(n + 1):
        c = NEWLINE if i == n else cps[i]
        if c == NEWLINE:
            if first >= 0:
                length = last - first + 1
                hh = _finish(h)
                line_hash[n_lines] = hh
                line_len[n_lines] = length
                n_lines += 1
                if blank_before and plen > 0:
                    para_hash[n_paras] = _finish(ph)
                    para_len[n_paras] = plen
                    n_paras += 1
                    ph = _FNV_OFFSET
                    plen = 0
                if plen > 0:
                    plen += 1  # the newline joining lines of one paragraph
                ph = (ph ^ hh) * _LINE_JOIN
                plen += length
                blank_before = False
            else:
                blank_before = True
            first = -1
            h = _FNV_OFFSET
            continue
        if table[c] & SPACE:
            continue
        if first < 0:
            first = i
        else:
            # whitespace is hashed only once a later non-space character shows it is interior,
            # so trailing whitespace never is
            for j in range(last + 1, i):
                h = (h ^ np.uint64(cps[j])) * _FNV_PRIME
        h = (h ^ np.uint64(c)) * _FNV_PRIME
        last = i
    if plen > 0:
        para_hash[n_paras] = _finish(ph)
        para_len[n_paras] = plen
        n_paras += 1
    return line_hash[:n_lines], line_len[:n_lines], para_hash[:n_paras], para_len[:n_paras]


_NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def _ngram_char_counts(word_hash, lengths, want_top, want_dup):
    n_words = word_hash.shape[0]
    max_n = want_top.shape[0] - 1
    offsets = np.zeros(n_words + 1, dtype=np.int64)
    for i in range(n_words):
        offsets[i + 1] = offsets[i] + lengths[i]
    top_chars = np.zeros(max_n + 1, dtype=np.int64)
    dup_chars = np.zeros(max_n + 1, dtype=np.int64)
    bits = 4
    while (1 << bits) < 2 * n_words:
        bits += 1
    capacity = 1 << bits
    mask = capacity - 1
    shift = np.uint64(64 - bits)
    keys = np.zeros(capacity, dtype=np.uint64)
    counts = np.zeros(capacity, dtype=np.int32)
    slots = np.empty(max(n_words, 1), dtype=np.int64)
    grams = word_hash.copy()
    for n in range(1, max_n + 1):
        m = n_words - n + 1
        if m <= 0:
            break
        if n > 1:
            # polynomial hash of words i..i+n-1, built from the (n-1)-gram hashes in place
            for i in range(m):
                grams[i] = grams[i] * _NGRAM_MULTIPLIER + word_hash[i + n - 1]
        if not (want_top[n] or want_dup[n]):
            continue
        counts[:] = 0
        for i in range(m):
            h = grams[i]
            j = np.int64((h * _NGRAM_MULTIPLIER) >> shift)
            while counts[j] != 0 and keys[j] != h:
                j = (j + 1) & mask
            keys[j] = h
            counts[j] += 1
            slots[i] = j
        if want_top[n]:
            best_count = 0
            best_chars = 0
            best_slot = -1
            for i in range(m):
                c = counts[slots[i]]
                chars = offsets[i + n] - offsets[i]
                if c > best_count or (c == best_count and chars > best_chars):
                    best_count = c
                    best_chars = chars
                    best_slot = slots[i]
            # an n-gram that occurs once is no repetition (RedPajama-V2 also scores it 0)
            if best_count > 1:
                # the words its occurrences cover, each counted once: occurrences of a
                # self-overlapping n-gram ("ab ab" in "ab ab ab") share words
                covered_to = 0
                total = 0
                for i in range(m):
                    if slots[i] == best_slot:
                        start = i if i > covered_to else covered_to
                        total += offsets[i + n] - offsets[start]
                        covered_to = i + n
                top_chars[n] = total
        if want_dup[n]:
            covered_to = 0
            total = 0
            for i in range(m):
                if counts[slots[i]] > 1:
                    start = i if i > covered_to else covered_to
                    total += offsets[i + n] - offsets[start]
                    covered_to = i + n
            dup_chars[n] = total
    return top_chars, dup_chars, offsets[n_words]


@njit(cache=True, nogil=True)
def _duplicate_count(hashes, lengths):
    m = hashes.shape[0]
    dups = 0
    chars = 0
    if m < 2:
        return dups, chars
    bits = 4
    while (1 << bits) < 2 * m:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    keys = np.zeros(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    for i in range(m):
        h = hashes[i]
        j = np.int64((h * _NGRAM_MULTIPLIER) >> shift)
        while used[j] and keys[j] != h:
            j = (j + 1) & mask
        if used[j]:
            dups += 1
            chars += lengths[i]
        else:
            used[j] = True
            keys[j] = h
    return dups, chars


# Indices into the first array returned by repetition_counts.
N_PARAGRAPHS, DUP_PARAGRAPHS, DUP_PARAGRAPH_CHARS, N_LINES, DUP_LINES, DUP_LINE_CHARS = range(6)


@njit(cache=True, nogil=True)
def _repetition_counts(cps, table, want_top, want_dup):
    line_hash, line_len, para_hash, para_len = _line_hashes(cps, table)
    parts = np.zeros(6, dtype=np.int64)
    parts[N_PARAGRAPHS] = para_hash.shape[0]
    parts[DUP_PARAGRAPHS], parts[DUP_PARAGRAPH_CHARS] = _duplicate_count(para_hash, para_len)
    parts[N_LINES] = line_hash.shape[0]
    parts[DUP_LINES], parts[DUP_LINE_CHARS] = _duplicate_count(line_hash, line_len)
    word_hash, word_len = _token_hashes(cps, table)
    top, dup, total = _ngram_char_counts(word_hash, word_len, want_top, want_dup)
    return parts, top, dup, total


def repetition_counts(text: str, want_top: np.ndarray, want_dup: np.ndarray):
    """Everything the Gopher repetition rules need, in one pass: (parts, top, dup, word_chars).

    ``parts``, indexed by the module constants: paragraphs, duplicate paragraphs and their
    characters, lines, duplicate lines and their characters. Lines are the non-blank lines,
    stripped of surrounding whitespace; paragraphs are runs of non-blank lines separated by blank
    or whitespace-only lines, and a paragraph's length counts its stripped lines plus the
    newlines between them; a duplicate equals an earlier line (paragraph).

    Over the ``str.split()`` words: ``top[n]`` (for n where ``want_top[n]``) is the characters
    of the words covered by the occurrences of the most frequent n-gram, each word counted once
    (ties: the longest n-gram; 0 when no n-gram repeats); ``dup[n]`` (where ``want_dup[n]``) is the characters of the words covered by any
    occurrence of an n-gram that occurs more than once, each word counted once; ``word_chars``
    is the characters of all words. ``want_top`` and ``want_dup`` have the same length.

    Everything is compared by 64-bit hashes (FNV-1a over code points with a splitmix64
    finaliser; n-grams as a polynomial of word hashes)."""
    return _repetition_counts(codepoints(text), char_table(), want_top, want_dup)


@njit(cache=True, nogil=True, inline="always")
def _is_line_break(c):
    return c == 10 or c == 13 or c == 11 or c == 12 or (0x1C <= c <= 0x1E) or c == 0x85 \
        or c == 0x2028 or c == 0x2029


@njit(cache=True, nogil=True, inline="always")
def _is_control(c):
    # C0 (but \t; line breaks are handled first), DEL, C1, BOM, noncharacters, lone surrogates
    return (c < 32 and c != 9) or (0x7F <= c <= 0x9F) or c == 0xFEFF or c == 0xFFFE or c == 0xFFFF \
        or (0xD800 <= c <= 0xDFFF)


@njit(cache=True, nogil=True)
def _normalize_whitespace(cps, table, remove_control, collapse, max_newlines):
    n = cps.shape[0]
    out = np.empty(n, dtype=np.uint32)
    size = 0
    pending_newlines = 0
    pending_space = False
    i = 0
    while i < n:
        c = cps[i]
        i += 1
        if _is_line_break(c):
            if c == 13 and i < n and cps[i] == 10:
                i += 1  # \r\n is one break
            pending_newlines += 1
            pending_space = False  # trailing whitespace of the line
            continue
        if remove_control and _is_control(c):
            continue
        if collapse and (table[c] & SPACE):
            pending_space = True
            continue
        if size > 0:
            if pending_newlines > 0:
                for _ in range(min(pending_newlines, max_newlines)):
                    out[size] = 10
                    size += 1
            elif pending_space:
                out[size] = 32
                size += 1
        pending_newlines = 0
        pending_space = False
        out[size] = c
        size += 1
    return out[:size]


def normalize_whitespace(text: str, remove_control: bool, collapse: bool, max_blank_lines: int) -> str:
    """``text`` with every line break as ``\\n``, control characters removed (``\\t`` and line
    breaks aside), runs of horizontal whitespace as one space, no whitespace at line starts and
    ends, at most ``max_blank_lines`` consecutive blank lines, and no leading or trailing
    whitespace. With ``collapse`` off, horizontal whitespace is kept as it is."""
    cps = codepoints(text)
    out = _normalize_whitespace(cps, char_table(), remove_control, collapse, max_blank_lines + 1)
    if out.shape[0] == cps.shape[0] and np.array_equal(out, cps):
        return text
    result = out.tobytes().decode("utf-32-le", "surrogatepass")  # remove_control off keeps them
    return result if collapse else result.strip()


def warm_up() -> None:
    """Build the character table and load (or compile) every kernel, so that a stage's
    ``setup()`` pays for it and its first batch does not (about 1 s from numba's cache)."""
    sample = "Warm up... the kernels.\n\n - twice\n - twice"
    quality_counts(sample, np.array([ord("-")], dtype=np.uint32))
    wanted = np.ones(6, dtype=np.bool_)
    repetition_counts(sample, wanted, wanted)
    normalize_whitespace(sample, True, True, 1)
