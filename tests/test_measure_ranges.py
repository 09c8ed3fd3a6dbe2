"""Every measure a per-document filter writes stays in its range on any text: a property test over
random and hostile strings (NUL and control characters, lone surrogates, one repeated token,
periodic text, 10 MB without a space).

A fraction (``*_frac``, the Gopher line ratios, probabilities) is in [0, 1]; a count, a mean word
length and Gopher's symbol-to-word ratios (``#`` or ellipses per word: the paper's "ratio" is per
word, not a share of anything, so "# # # word" has 3) are finite and non-negative. A measure with
no declared range fails the test, so a new one has to say what its range is."""

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thresher.filters.base import Decision
from thresher.filters.c4 import C4Quality
from thresher.filters.fasttext_classifier import QualityClassifierStage, ToxicityStage
from thresher.filters.gopher import GopherQuality, GopherRepetition
from thresher.filters.language import Language
from thresher.filters.normalize import Normalize
from thresher.filters.pii import PiiStage

INF = math.inf
RANGES: list[tuple[str, float, float]] = [
    (r"gopher_.*_frac", 0.0, 1.0),
    (r"gopher_(bullet_lines|ellipsis_lines|alpha_words)_ratio", 0.0, 1.0),
    (r"gopher_(hash|ellipsis)_ratio", 0.0, INF),
    (r"gopher_mean_word_length", 1.0, INF),
    (r"gopher_(word_count|stop_words)", 0.0, INF),
    (r"c4_lines_kept_frac", 0.0, 1.0),
    (r"c4_sentences", 0.0, INF),
    (r"language_score|quality|toxicity", 0.0, 1.0),
]
# a rejection's value is one of the measures in its scores, except for these (counts, flags)
UNSCORED_REASONS = {"pii", "long_word", "empty", "lorem_ipsum", "curly_bracket"}


def declared_range(name: str) -> tuple[float, float]:
    for pattern, low, high in RANGES:
        if re.fullmatch(pattern, name):
            return low, high
    raise AssertionError(f"measure {name!r} has no declared range: add it to RANGES")


def check(decision: Decision, text: str) -> None:
    for name, value in decision.scores.items():
        low, high = declared_range(name)
        assert isinstance(value, (int, float)) and math.isfinite(value), (name, value, text[:80])
        assert low <= value <= high, (name, value, text[:80])
    if not decision.keep and decision.value is not None:
        assert math.isfinite(decision.value), (decision.reason, text[:80])
        if decision.reason not in UNSCORED_REASONS:
            assert decision.value in decision.scores.values(), (decision, text[:80])


def _all_measured():
    """Every rule measured: thresholds that never reject early."""
    return [
        GopherQuality(min_words=None, max_words=None, min_mean_word_length=None, max_mean_word_length=None,
                      max_symbol_word_ratio=None, max_bullet_lines_ratio=None, max_ellipsis_lines_ratio=None,
                      min_alpha_words_ratio=None),
        GopherRepetition(max_dup_para_frac=None, max_dup_para_char_frac=None, max_dup_line_frac=None,
                         max_dup_line_char_frac=None, max_top_ngram_char_frac={n: 1.0 for n in (1, 2, 3, 4)},
                         max_dup_ngram_char_frac={n: 1.0 for n in range(2, 11)}),
        C4Quality(min_sentences=50),
        Language(keep=[]),
        Normalize(remove_control=False),
        Normalize(remove_control=False, collapse_whitespace=False, nfc=False),
    ]


@pytest.fixture(scope="module")
def stages():
    out = [Normalize(), Language(), GopherQuality(), GopherRepetition(), C4Quality(), PiiStage(),
           QualityClassifierStage(), ToxicityStage(), *_all_measured()]
    for stage in out:
        stage.setup()
    return out


def measure_all(stages, text: str) -> None:
    for stage in stages:
        [decision] = stage.process_batch([{"id": "x", "text": text, "source": "", "meta": {}}])
        check(decision, text)


HOSTILE = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\udfff", "\r", "\t",
           "\v", "\f", " ", "\n", "\n\n", "#", "...", "…", "•", "-", "*", "{", "[1]", "the", "and", "ab", "a",
           "é", "日本", "😀", "_", "lorem ipsum", "javascript", "user@example.com", "192.168.0.1", "."]
any_character = st.characters(exclude_categories=())  # surrogates (Cs) included
random_text = st.text(any_character, max_size=300)
hostile_text = st.lists(st.sampled_from(HOSTILE), max_size=300).map("".join)
repeated = st.builds(lambda token, sep, n: (token + sep) * n,
                     st.text(any_character, min_size=1, max_size=6) | st.sampled_from(HOSTILE),
                     st.sampled_from(["", " ", "\n", "\x00", "\t", "\n\n", " \x00 "]), st.integers(1, 400))
periodic = st.builds(lambda words, n: " ".join(words * n),
                     st.lists(st.sampled_from(["ab", "a", "b", "hello\x00world", "x"]), min_size=1, max_size=5),
                     st.integers(1, 200))
mixed = st.lists(random_text | hostile_text | repeated | periodic, min_size=1, max_size=3).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=random_text | hostile_text | repeated | periodic | mixed)
def test_every_measure_stays_in_range(stages, text):
    measure_all(stages, text)


@pytest.mark.parametrize("text", [
    "hello\x00world " * 100, "ab " * 500, "zz " * 12, "\x00" * 1000, "\ud800 " * 50, "# " * 200 + "word",
    "...\n" * 100, "•\n" * 50, " \n" * 100, "",
])
def test_known_hostile_texts(stages, text):
    measure_all(stages, text)


@pytest.mark.parametrize("char", ["x", "\x00", "\ud800"])
def test_ten_megabytes_without_a_space(stages, char):
    measure_all(stages, char * 10_000_000)


def test_lone_surrogates_do_not_crash_the_model_stages():
    """cld3 and fastText refuse a str with a lone surrogate (TypeError from their bindings)."""
    for stage in (Language(keep=[]), ToxicityStage(action="annotate"), QualityClassifierStage(action="annotate")):
        stage.setup()
        [decision] = stage.process_batch([{"id": "s", "text": "an \ud800 odd text", "source": "", "meta": {}}])
        assert decision.keep
