"""The Gopher heuristic filters of MassiveText (Rae et al. 2021, "Scaling Language Models:
Methods, Analysis & Insights from Training Gopher", appendix A.1.1 and table A1).

Both stages follow the paper's wording; where the paper leaves a detail open, the choice made here
is stated in the class docstring, next to how datatrove's ``GopherQualityFilter`` /
``GopherRepetitionFilter`` (0.10.1) decide it. Everything is counted with whitespace-separated
tokens in one compiled pass over the code points (``textstats``) and numpy over word hashes, so no
per-word Python object is created.
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from thresher.filters import textstats as ts
from thresher.filters.base import Decision, Document, DocumentStage

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = "•‣◦⁃▪▫●○■□►▶-*–·"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


class GopherQuality(DocumentStage):
    """Gopher's document quality rules, with the paper's thresholds as defaults. ``None`` turns a
    rule off. Rejections name the rule (``word_count``, ``mean_word_length``, ``hash_ratio``,
    ``ellipsis_ratio``, ``bullet_lines``, ``ellipsis_lines``, ``alpha_words``, ``stop_words``) and
    carry the measured value; every value measured goes into the scores as ``gopher_<rule>``.

    Definitions (paper wording in quotes):

    - words: whitespace-separated tokens that contain at least one character that is not
      punctuation or a symbol. datatrove tokenises with spaCy (punctuation split off) and also
      drops symbol-only tokens, so counts agree up to contractions ("don't" is 2 spaCy tokens).
    - "mean word length": characters of the words, punctuation and symbols not counted, over the
      number of words (datatrove: mean length of its spaCy tokens, punctuation split off; close).
    - "symbol-to-word ratio ... for either the hash symbol or the ellipsis": ``#`` count, and
      ``...`` plus ``…`` count, each over the number of words (datatrove divides by all tokens
      including punctuation, which lowers its ratios slightly).
    - "lines starting with a bullet point" / "ending with an ellipsis": fractions of the non-blank
      lines (datatrove counts blank lines in the denominator and only ``•`` and ``-`` as bullets;
      here the bullet characters are a field).
    - "80% of words ... contain at least one alphabetic character": words with a letter over
      all words, so numbers count against a document and stray punctuation does not (datatrove:
      over all spaCy tokens, where every comma and full stop is a token without a letter, so it
      rejects text whose punctuation stands apart, like WikiText's " , " and " . ").
    - "at least two of the following English words": distinct stop words, matched as whole words
      ignoring case (datatrove: case-sensitive on spaCy tokens, so "The" does not count). The
      search stops once ``min_stop_words`` distinct ones are found, so for kept documents the
      score ``gopher_stop_words`` is capped at ``min_stop_words``.
    """

    name: ClassVar[str] = "gopher_quality"

    min_words: int | None = Field(50, ge=0)
    max_words: int | None = Field(100_000, ge=0)
    min_mean_word_length: float | None = Field(3.0, ge=0)
    max_mean_word_length: float | None = Field(10.0, ge=0)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0)
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1)
    min_stop_words: int | None = Field(2, ge=0)
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS), min_length=1)
    bullet_chars: str = Field(BULLETS, min_length=1)

    def setup(self) -> None:
        words = "|".join(re.escape(w) for w in sorted(set(self.stop_words), key=len, reverse=True))
        self._stop_re = re.compile(rf"\b(?:{words})\b", re.IGNORECASE)
        self._bullets = np.array([ord(c) for c in self.bullet_chars], dtype=np.uint32)
        ts.warm_up()

    def _distinct_stop_words(self, text: str, enough: int) -> int:
        found: set[str] = set()
        for match in self._stop_re.finditer(text):
            found.add(match.group().lower())
            if len(found) >= enough:
                break
        return len(found)

    def process(self, doc: Document) -> Decision:
        text = doc["text"]
        counts = ts.quality_counts(text, self._bullets).tolist()
        n_words = counts[ts.TOKENS] - counts[ts.SYMBOL_TOKENS]
        scores: dict[str, float] = {"gopher_word_count": n_words}
        if (self.min_words is not None and n_words < self.min_words) or \
                (self.max_words is not None and n_words > self.max_words) or n_words == 0:
            return Decision.reject("word_count", n_words, scores)

        mean_length = (counts[ts.NONSPACE_CHARS] - counts[ts.SYMBOL_CHARS]) / n_words
        scores["gopher_mean_word_length"] = mean_length
        if (self.min_mean_word_length is not None and mean_length < self.min_mean_word_length) or \
                (self.max_mean_word_length is not None and mean_length > self.max_mean_word_length):
            return Decision.reject("mean_word_length", mean_length, scores)

        hash_ratio = text.count("#") / n_words
        ellipsis_ratio = (text.count("...") + text.count("…")) / n_words
        scores["gopher_hash_ratio"] = hash_ratio
        scores["gopher_ellipsis_ratio"] = ellipsis_ratio
        if self.max_symbol_word_ratio is not None:
            if hash_ratio > self.max_symbol_word_ratio:
                return Decision.reject("hash_ratio", hash_ratio, scores)
            if ellipsis_ratio > self.max_symbol_word_ratio:
                return Decision.reject("ellipsis_ratio", ellipsis_ratio, scores)

        n_lines = counts[ts.LINES]
        bullet_ratio = _ratio(counts[ts.BULLET_LINES], n_lines)
        scores["gopher_bullet_lines_ratio"] = bullet_ratio
        if self.max_bullet_lines_ratio is not None and bullet_ratio > self.max_bullet_lines_ratio:
            return Decision.reject("bullet_lines", bullet_ratio, scores)
        ellipsis_lines = _ratio(counts[ts.ELLIPSIS_LINES], n_lines)
        scores["gopher_ellipsis_lines_ratio"] = ellipsis_lines
        if self.max_ellipsis_lines_ratio is not None and ellipsis_lines > self.max_ellipsis_lines_ratio:
            return Decision.reject("ellipsis_lines", ellipsis_lines, scores)

        alpha_ratio = counts[ts.ALPHA_TOKENS] / n_words
        scores["gopher_alpha_words_ratio"] = alpha_ratio
        if self.min_alpha_words_ratio is not None and alpha_ratio < self.min_alpha_words_ratio:
            return Decision.reject("alpha_words", alpha_ratio, scores)

        if self.min_stop_words:
            n_stop = self._distinct_stop_words(text, self.min_stop_words)
            scores["gopher_stop_words"] = n_stop
            if n_stop < self.min_stop_words:
                return Decision.reject("stop_words", n_stop, scores)
        return Decision.accept(scores)


def _ngram_thresholds(value: dict[int, float]) -> dict[int, float]:
    for n, threshold in value.items():
        if not 1 <= n <= 64:
            raise ValueError(f"n-gram size {n} must be between 1 and 64")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold for {n}-grams must be between 0 and 1, got {threshold}")
    return dict(sorted(value.items()))


class GopherRepetition(DocumentStage):
    """Gopher's repetition rules (table A1) with the paper's thresholds as defaults; ``None`` (or
    leaving an n out of the n-gram maps) turns a rule off. Rejections name the rule
    (``dup_para_frac``, ``dup_para_char_frac``, ``dup_line_frac``, ``dup_line_char_frac``,
    ``top_{n}gram_char_frac``, ``dup_{n}gram_char_frac``) and carry the measured value; every
    value measured goes into the scores as ``gopher_<rule>``.

    Definitions:

    - lines are the non-blank lines, compared without surrounding whitespace; paragraphs are runs
      of non-blank lines separated by blank or whitespace-only lines; a duplicate is a paragraph
      (line) equal to an earlier one; fractions are over the number of paragraphs (lines) and,
      for characters, over the characters of the whole text. datatrove splits on ``\n{2,}`` and
      ``\n+`` without stripping, so there a whitespace-only line (as in raw WikiText, where
      every blank line is " ") counts as a duplicate line; here blank lines are not content.
    - n-grams are over whitespace-separated words (datatrove: spaCy tokens, punctuation
      included); their characters are the characters of their words (no separators), and
      n-gram character fractions are over the characters of all words (datatrove: over
      ``len(text)``, separators included in the n-gram).
    - "top n-gram character fraction" ("the fraction of characters contained within the most
      frequently occurring n-gram"): the most frequent n-gram is the one with the most
      occurrences, overlapping ones included, as in datatrove; ties go to the longest n-gram
      (datatrove: the first seen). Its characters are those of the words its occurrences cover,
      each word counted once, so the fraction is at most 1. datatrove (and RedPajama-V2's
      ``rps_doc_frac_chars_top_{n}gram``) multiply the occurrence count by the n-gram's length,
      which counts a word once per overlapping occurrence: on periodic text ("ab ab ab ...") a
      self-overlapping n-gram then covers up to n times the text (1.66 on ``"ab " * 500`` in
      datatrove, 1.996 here before this was fixed). Where occurrences do not overlap the two
      agree. When no n-gram occurs twice the fraction is 0, as in RedPajama-V2 (datatrove scores
      a once-seen n-gram, so a short page whose words never repeat can fail the 2-gram rule there).
    - "duplicate n-gram character fraction": the paper counts the characters "within all
      duplicate n-grams, taking care not to count characters within overlapping n-grams more than
      once": every word covered by any occurrence (the first included) of an n-gram that occurs
      more than once is marked, and the marked words' characters are counted, exactly as
      RedPajama-V2's ``rps_doc_frac_chars_dupe_{n}grams`` does (which first lowercases and
      strips punctuation; here words are compared as they are). datatrove instead skips greedily
      over repeats and counts only occurrences after the first, which gives about half the
      fraction for a text repeated twice; Dolma's gopher tagger sums every occurrence of every
      repeated n-gram without removing overlaps.
    - lines, paragraphs and n-grams are compared by 64-bit hashes (FNV-1a over code points with
      a splitmix64 finaliser; n-grams as a polynomial of their word hashes), so two different
      ones are confused with probability about 2^-64 per pair. Deterministic across processes.
    """

    name: ClassVar[str] = "gopher_repetition"

    max_dup_para_frac: float | None = Field(0.30, ge=0, le=1)
    max_dup_para_char_frac: float | None = Field(0.20, ge=0, le=1)
    max_dup_line_frac: float | None = Field(0.30, ge=0, le=1)
    max_dup_line_char_frac: float | None = Field(0.20, ge=0, le=1)
    max_top_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})

    @field_validator("max_top_ngram_char_frac", "max_dup_ngram_char_frac")
    @classmethod
    def check_ngram_thresholds(cls, value: dict[int, float]) -> dict[int, float]:
        return _ngram_thresholds(value)

    def setup(self) -> None:
        top, dup = self.max_top_ngram_char_frac, self.max_dup_ngram_char_frac
        size = max([*top, *dup, 1]) + 1
        self._want_top = np.zeros(size, dtype=np.bool_)
        self._want_dup = np.zeros(size, dtype=np.bool_)
        self._want_top[list(top)] = True
        self._want_dup[list(dup)] = True
        # (array, n, score name, reason, threshold) in rule order, so process() formats nothing
        self._ngram_rules = []
        for n in sorted(set(top) | set(dup)):
            if n in top:
                self._ngram_rules.append((0, n, f"gopher_top_{n}gram_char_frac", f"top_{n}gram_char_frac", top[n]))
            if n in dup:
                self._ngram_rules.append((1, n, f"gopher_dup_{n}gram_char_frac", f"dup_{n}gram_char_frac", dup[n]))
        self._part_rules = [
            (ts.N_PARAGRAPHS, ts.DUP_PARAGRAPHS, ts.DUP_PARAGRAPH_CHARS, "dup_para_frac", "dup_para_char_frac",
             self.max_dup_para_frac, self.max_dup_para_char_frac),
            (ts.N_LINES, ts.DUP_LINES, ts.DUP_LINE_CHARS, "dup_line_frac", "dup_line_char_frac",
             self.max_dup_line_frac, self.max_dup_line_char_frac),
        ]
        ts.warm_up()

    def process(self, doc: Document) -> Decision:
        text = doc["text"]
        parts, top_chars, dup_chars, word_chars = ts.repetition_counts(text, self._want_top, self._want_dup)
        parts = parts.tolist()
        if not parts[ts.N_LINES]:
            return Decision.reject("empty", 0.0)
        n_chars = len(text)
        scores: dict[str, float] = {}
        for count, dups, chars, frac_rule, char_rule, max_frac, max_char_frac in self._part_rules:
            frac, char_frac = parts[dups] / parts[count], parts[chars] / n_chars
            scores["gopher_" + frac_rule] = frac
            scores["gopher_" + char_rule] = char_frac
            if max_frac is not None and frac > max_frac:
                return Decision.reject(frac_rule, frac, scores)
            if max_char_frac is not None and char_frac > max_char_frac:
                return Decision.reject(char_rule, char_frac, scores)
        chars_by_kind = (top_chars.tolist(), dup_chars.tolist())
        word_chars = int(word_chars)
        for kind, n, score, reason, threshold in self._ngram_rules:
            frac = chars_by_kind[kind][n] / word_chars if word_chars else 0.0
            scores[score] = frac
            if frac > threshold:
                return Decision.reject(reason, frac, scores)
        return Decision.accept(scores)
