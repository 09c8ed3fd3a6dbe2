"""Text augmentation operations, Beam-free: each is a pure function of (text, rng, parameters).

Word-level operations (EDA, Wei & Zou 2019: synonym replacement, random insertion, swap, deletion,
and span masking) work line by line on whitespace-separated words, so line and paragraph structure
survives; a line's internal runs of spaces collapse to one. Character noise works on letters in
place. Sentence shuffling permutes sentences inside each paragraph (blank-line separated) and never
moves text across paragraphs.

``Augmenter`` combines the operations with per-operation probabilities; ``stable_seed`` derives a
per-document seed from strings with a fixed hash (never Python's salted ``hash()``), so the same
(seed, document id, copy index) gives the same text on any worker.
"""

from __future__ import annotations

import hashlib
import math
import random
import string
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

# --- seeds -------------------------------------------------------------------------------------


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from any parts, identical across processes and Python versions."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by the parts: a deterministic coin for selection by ratio."""
    return stable_seed(*parts) / 2.0**64


def _count(rng: random.Random, expected: float) -> int:
    """Stochastic rounding: an integer whose mean is ``expected``."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


# --- words -------------------------------------------------------------------------------------

_AFFIX = re.compile(r"^(\W*)(.*?)(\W*)$", re.S)
_PUNCTUATION = string.punctuation + "“”‘’«»…–—"


def _split_affix(token: str) -> tuple[str, str, str]:
    """("(", "Word", ").") for "(Word)." so punctuation stays put when the word changes."""
    match = _AFFIX.match(token)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2), match.group(3)


def _match_case(replacement: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def _map_lines(text: str, fn: Callable[[list[str]], list[str]]) -> str:
    out = []
    for line in text.split("\n"):
        words = line.split()
        out.append(" ".join(fn(words)) if words else line)
    return "\n".join(out)


def synonym_lookup(word: str, synonyms: Mapping[str, Sequence[str]]) -> Sequence[str]:
    return synonyms.get(word.lower(), ())


def synonym_replace(text: str, rng: random.Random, rate: float,
                    synonyms: Mapping[str, Sequence[str]]) -> str:
    """Each word that has synonyms is replaced by a random one with probability ``rate``
    (case and surrounding punctuation kept)."""

    def line(words: list[str]) -> list[str]:
        out = []
        for token in words:
            core = token.strip(_PUNCTUATION)
            choices = synonyms.get(core.lower()) if core else None
            if choices and rng.random() < rate:
                pre, core, post = _split_affix(token)
                token = pre + _match_case(rng.choice(list(choices)), core) + post
            out.append(token)
        return out

    return _map_lines(text, line)


def random_insert(text: str, rng: random.Random, rate: float,
                  synonyms: Mapping[str, Sequence[str]] | None = None) -> str:
    """Insert about ``rate * len(words)`` words per line at random positions: a synonym of a random
    word of the line (EDA), or, when that word has none, a copy of the word itself."""

    def line(words: list[str]) -> list[str]:
        words = list(words)
        for _ in range(_count(rng, rate * len(words))):
            _, core, _ = _split_affix(rng.choice(words))
            if not core:
                continue
            choices = synonym_lookup(core, synonyms or {})
            new = rng.choice(list(choices)) if choices else core.lower()
            words.insert(rng.randrange(len(words) + 1), new)
        return words

    return _map_lines(text, line)


def random_swap(text: str, rng: random.Random, rate: float) -> str:
    """Swap two random words of a line, about ``rate * len(words)`` times per line."""

    def line(words: list[str]) -> list[str]:
        words = list(words)
        if len(words) < 2:
            return words
        for _ in range(_count(rng, rate * len(words))):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        return words

    return _map_lines(text, line)


def random_delete(text: str, rng: random.Random, rate: float) -> str:
    """Delete each word with probability ``rate``; a line keeps at least one word."""

    def line(words: list[str]) -> list[str]:
        kept = [w for w in words if rng.random() >= rate]
        return kept or [rng.choice(words)]

    return _map_lines(text, line)


def span_mask(text: str, rng: random.Random, rate: float, mean_span: float = 3.0,
              mask_token: str = "<mask>") -> str:
    """Replace word spans (lengths geometric with mean ``mean_span``) by ``mask_token`` until about
    ``rate`` of each line's words are masked (T5-style span corruption without sentinels)."""

    def line(words: list[str]) -> list[str]:
        n = len(words)
        budget = _count(rng, rate * n)
        masked = [False] * n
        tries = 0
        while budget > 0 and tries < 4 * n:
            tries += 1
            length = 1
            while length < budget and rng.random() > 1.0 / mean_span:
                length += 1
            start = rng.randrange(n)
            end = min(n, start + length)
            fresh = sum(not m for m in masked[start:end])
            for i in range(start, end):
                masked[i] = True
            budget -= fresh
        out: list[str] = []
        for word, is_masked in zip(words, masked):
            if not is_masked:
                out.append(word)
            elif not out or out[-1] != mask_token:
                out.append(mask_token)
        return out

    return _map_lines(text, line)


# --- characters --------------------------------------------------------------------------------

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    pos = {c: (r, i) for r, row in enumerate(_KEYBOARD_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        near = []
        # rows are staggered: a key touches keys i, i+1 of the row above and i-1, i of the row below
        for dr, columns in ((-1, (i, i + 1)), (0, (i - 1, i + 1)), (1, (i - 1, i))):
            row = r + dr
            if 0 <= row < len(_KEYBOARD_ROWS):
                for j in columns:
                    if 0 <= j < len(_KEYBOARD_ROWS[row]) and (row, j) != (r, i):
                        near.append(_KEYBOARD_ROWS[row][j])
        out[c] = "".join(near)
    return out


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()

#: characters OCR engines confuse, both ways where it makes sense (multi-character keys first)
OCR_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "rn": ("m",), "m": ("rn",), "cl": ("d",), "d": ("cl",), "vv": ("w",), "w": ("vv",),
    "l": ("1", "I", "|"), "I": ("l", "1"), "1": ("l", "I"), "O": ("0",), "0": ("O",), "o": ("0",),
    "S": ("5",), "5": ("S",), "B": ("8",), "8": ("B",), "e": ("c",), "c": ("e",), "h": ("b",),
    "u": ("v",), "v": ("u",), "g": ("9", "q"), "q": ("g",), "Z": ("2",), "t": ("f",), "f": ("t",),
}
CHAR_NOISE_KINDS = ("typo", "keyboard", "ocr", "case")


_ALNUM = re.compile(r"[^\W_]")


def _geometric_positions(rng: random.Random, n: int, rate: float) -> list[int]:
    """Indices in range(n), each included with probability ``rate``, drawn by geometric gaps (one
    random number per chosen index instead of one per candidate)."""
    if rate <= 0 or n == 0:
        return []
    if rate >= 1:
        return list(range(n))
    log_keep = math.log1p(-rate)
    out, i = [], -1
    while True:
        i += 1 + int(math.log(1.0 - rng.random()) / log_keep)
        if i >= n:
            return out
        out.append(i)


def char_noise(text: str, rng: random.Random, rate: float,
               kinds: Sequence[str] = CHAR_NOISE_KINDS) -> str:
    """Make about ``rate * len(text)`` edits, each on a letter or digit, by a noise kind drawn from ``kinds``:
    ``typo`` (drop, double, or swap with the next character), ``keyboard`` (a QWERTY neighbour),
    ``ocr`` (an OCR confusion such as rn->m, l->1, O->0) or ``case`` (flip the case)."""
    unknown = set(kinds) - set(CHAR_NOISE_KINDS)
    if unknown or not kinds:
        raise ValueError(f"char_noise kinds must be a non-empty subset of {CHAR_NOISE_KINDS}, got {list(kinds)}")
    kinds = list(kinds)
    out: list[str] = []
    cursor, n = 0, len(text)
    # positions over all characters (cheap: one random number per edit); a position on a space or
    # punctuation moves to the next letter or digit
    for i in _geometric_positions(rng, n, rate):
        if i < cursor:  # consumed by the previous edit (a swap or a two-character OCR confusion)
            continue
        if not text[i].isalnum():
            found = _ALNUM.search(text, i)
            if found is None:
                break
            i = found.start()
            if i < cursor:
                continue
        out.append(text[cursor:i])
        c = text[i]
        cursor = i + 1
        kind = rng.choice(kinds)
        if kind == "typo":
            action = rng.randrange(3)
            if action == 0:
                pass  # dropped
            elif action == 1:
                out.append(c + c)
            elif i + 1 < n and not text[i + 1].isspace():
                out.append(text[i + 1] + c)
                cursor = i + 2
            else:
                out.append(c + c)
        elif kind == "keyboard":
            near = KEYBOARD_NEIGHBOURS.get(c.lower())
            if near:
                new = rng.choice(near)
                out.append(new.upper() if c.isupper() else new)
            else:
                out.append(c)
        elif kind == "ocr":
            pair = text[i:i + 2]
            if pair in OCR_CONFUSIONS:
                out.append(rng.choice(OCR_CONFUSIONS[pair]))
                cursor = i + 2
            elif c in OCR_CONFUSIONS:
                out.append(rng.choice(OCR_CONFUSIONS[c]))
            else:
                out.append(c)
        else:
            out.append(c.lower() if c.isupper() else c.upper())
    out.append(text[cursor:])
    return "".join(out)


# --- sentences ---------------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(paragraph: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(paragraph.strip()) if s]


def sentence_shuffle(text: str, rng: random.Random) -> str:
    """Shuffle the sentences inside each paragraph; paragraphs and their order stay."""
    parts = _PARAGRAPH_BREAK.split(text)
    out = []
    for index, part in enumerate(parts):
        if index % 2 == 1:  # a separator captured by the split
            out.append(part)
            continue
        sentences = split_sentences(part)
        if len(sentences) < 2:
            out.append(part)
            continue
        rng.shuffle(sentences)
        lead = part[: len(part) - len(part.lstrip())]
        trail = part[len(part.rstrip()):]
        out.append(lead + " ".join(sentences) + trail)
    return "".join(out)


# --- combining ---------------------------------------------------------------------------------

OPERATIONS = ("synonym_replace", "random_insert", "random_swap", "random_delete", "char_noise",
              "sentence_shuffle", "span_mask")
SYNONYM_OPERATIONS = ("synonym_replace",)


@dataclass(frozen=True)
class OperationSpec:
    """One operation with the probability that a copy gets it, and its parameters."""

    name: str
    p: float
    params: dict = field(default_factory=dict)


class Augmenter:
    """Applies operations to a text: each operation independently with its probability ``p``, in
    the fixed order of ``specs``. When none is drawn, one is drawn with weights ``p``, so every
    augmented copy has at least one operation applied."""

    def __init__(self, specs: Sequence[OperationSpec], synonyms: Mapping[str, Sequence[str]] | None = None):
        unknown = [s.name for s in specs if s.name not in OPERATIONS]
        if unknown:
            raise ValueError(f"unknown augmentation operations {unknown}; known: {list(OPERATIONS)}")
        self.specs = [s for s in specs if s.p > 0]
        if not self.specs:
            raise ValueError("no augmentation operation has a probability above 0")
        self.synonyms = synonyms or {}
        needs_synonyms = [s.name for s in self.specs if s.name in SYNONYM_OPERATIONS]
        if needs_synonyms and not self.synonyms:
            raise ValueError(f"{needs_synonyms} need synonyms (a synonym file or trained embeddings), none given")

    def _apply_one(self, spec: OperationSpec, text: str, rng: random.Random) -> str:
        params = spec.params
        if spec.name == "synonym_replace":
            return synonym_replace(text, rng, params.get("rate", 0.1), self.synonyms)
        if spec.name == "random_insert":
            return random_insert(text, rng, params.get("rate", 0.1), self.synonyms)
        if spec.name == "random_swap":
            return random_swap(text, rng, params.get("rate", 0.1))
        if spec.name == "random_delete":
            return random_delete(text, rng, params.get("rate", 0.1))
        if spec.name == "char_noise":
            return char_noise(text, rng, params.get("rate", 0.02), params.get("kinds", CHAR_NOISE_KINDS))
        if spec.name == "sentence_shuffle":
            return sentence_shuffle(text, rng)
        return span_mask(text, rng, params.get("rate", 0.15), params.get("mean_span", 3.0),
                         params.get("mask_token", "<mask>"))

    def apply(self, text: str, rng: random.Random) -> tuple[str, list[str]]:
        """The augmented text and the names of the operations applied, in order."""
        chosen = [s for s in self.specs if rng.random() < s.p]
        if not chosen:
            chosen = rng.choices(self.specs, weights=[s.p for s in self.specs], k=1)
        for spec in chosen:
            text = self._apply_one(spec, text, rng)
        return text, [s.name for s in chosen]
