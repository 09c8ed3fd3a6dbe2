"""C4 line/page rules and text normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thresher.filters.c4 import C4Quality
from thresher.filters.normalize import Normalize

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

GOOD = [
    "The river rises in the hills above the town.",
    "It flows north for twenty miles before it meets the sea.",
    "Boats carried timber down it for two hundred years.",
    "A stone bridge was built across it in 1820.",
    "Today the valley is a nature reserve with many visitors.",
]


def c4(**params) -> C4Quality:
    stage = C4Quality(**params)
    stage.setup()
    return stage


def run(stage, text: str):
    return stage.process({"id": "t", "text": text})


def test_good_page_is_kept_unchanged():
    decision = run(c4(), "\n".join(GOOD))
    assert decision.keep and decision.text is None
    assert decision.scores == {"c4_lines_kept_frac": 1.0}  # 5 lines: sentences need no counting


@pytest.mark.parametrize("line, kept", [
    ("This line ends with a full stop.", True),
    ("Does this line end with a question mark?", True),
    ("This line ends with an exclamation mark!", True),
    ('He said "this line ends with a quote"', True),
    ("This line ends with an ellipsis...", False),
    ("This line has no terminal punctuation", False),
    ("This line ends with a colon:", False),
    ("Two words.", False),          # fewer than 3 words
    ("Exactly three words.", True),
    ("Please enable JavaScript to view this page.", False),
    ("Read our Terms of Use before you post.", False),
    ("See the privacy policy for details.", False),
    ("This site uses cookies to work well.", False),
    ("We use cookies on this site.", False),
    ("Learn about our use of cookies here.", False),
    ("Read the cookie policy first.", False),
])
def test_line_rules(line, kept):
    decision = run(c4(), "\n".join(GOOD + [line]))
    assert decision.keep
    assert (line in decision.text if decision.text is not None else True) is kept
    assert decision.text is None if kept else decision.text == "\n".join(GOOD)


@pytest.mark.parametrize("switch, line", [
    ("filter_no_terminal_punct", "This line has no terminal punctuation"),
    ("filter_javascript", "Please enable JavaScript to view this page."),
    ("filter_policy", "Read the privacy policy first."),
])
def test_line_rules_switch_off(switch, line):
    decision = run(c4(**{switch: False}), "\n".join(GOOD + [line]))
    assert decision.keep and decision.text is None


@pytest.mark.parametrize("min_words, kept", [(3, True), (4, True), (5, False)])
def test_min_words_per_line_boundary(min_words, kept):
    line = "Four words line here."
    decision = run(c4(min_words_per_line=min_words), "\n".join(GOOD + [line]))
    assert (decision.text is None) is kept


@pytest.mark.parametrize("text, reason", [
    ("\n".join(GOOD + ["Lorem ipsum dolor sit amet, consectetur."]), "lorem_ipsum"),
    ("\n".join(GOOD + ["The function is f(x) { return x; }."]), "curly_bracket"),
])
def test_page_rules(text, reason):
    decision = run(c4(), text)
    assert (decision.keep, decision.reason) == (False, reason)
    switch = "filter_lorem_ipsum" if reason == "lorem_ipsum" else "filter_curly_bracket"
    assert run(c4(**{switch: False}), text).keep


def test_page_rules_only_look_at_lines_that_survive_the_line_rules():
    # as in C4's clean_page: a curly bracket in a line without terminal punctuation is dropped first
    assert run(c4(), "\n".join(GOOD + ["body { color: red }"])).keep


@pytest.mark.parametrize("n_lines, keep", [(4, False), (5, True), (6, True)])
def test_min_sentences_boundary(n_lines, keep):
    lines = (GOOD + ["One more line that is a sentence."])[:n_lines]
    decision = run(c4(), "\n".join(lines))
    assert decision.keep is keep
    if not keep:
        assert (decision.reason, decision.value) == ("too_few_sentences", 4)


def test_sentences_are_counted_within_lines():
    decision = run(c4(), "It rained. Then it snowed! Was it cold? Yes. Very cold indeed.")
    assert decision.keep and decision.scores["c4_sentences"] == 5
    assert run(c4(min_sentences=6), "It rained. Then it snowed! Was it cold? Yes. Very cold indeed.").reason == "too_few_sentences"


@pytest.mark.parametrize("length, kept", [(999, True), (1000, True), (1001, False)])
def test_max_word_length_drops_the_line(length, kept):
    line = f"A long word {'x' * length} is here."
    decision = run(c4(), "\n".join(GOOD + [line]))
    assert decision.keep and (decision.text is None) is kept


def test_long_word_can_reject_the_page():
    decision = run(c4(long_word="reject"), "\n".join(GOOD + [f"A long word {'x' * 1001} is here."]))
    assert (decision.keep, decision.reason, decision.value) == (False, "long_word", 1001)


def test_citations_are_removed():
    decision = run(c4(), "\n".join(GOOD + ["The bridge is old[1] and famous[citation needed]."]))
    assert decision.keep and "The bridge is old and famous." in decision.text.split("\n")


def test_no_lines_left():
    decision = run(c4(), "menu\nhome | about | contact\n")
    assert (decision.keep, decision.reason) == (False, "no_lines")


def test_invalid_parameters():
    with pytest.raises(ValueError):
        C4Quality(long_word="explode")
    with pytest.raises(ValueError):
        C4Quality(min_sentences=-1)


def test_fixtures():
    fixtures = SHARED / "fixtures"
    if not fixtures.exists():
        pytest.skip("../shared/data is absent")
    wiki = (fixtures / "high_quality_wiki_reference.txt").read_text(encoding="utf-8")
    assert run(c4(), wiki).keep
    # The low-quality Common Crawl page passes C4's published page rules (datatrove's
    # C4QualityFilter keeps it too), but C4's line rules strip most of its navigation boilerplate.
    low = (fixtures / "low_quality_cc.txt").read_text(encoding="utf-8")
    decision = run(c4(), low)
    assert decision.keep and decision.scores["c4_lines_kept_frac"] < 0.5
    for boilerplate in ("FAQFAQ", "Powered by phpBB", "Contact Dave's ESL Cafe", "TEFL Courses"):
        assert boilerplate not in decision.text
    assert "This page is maintained by the one and only Dave Sperling." in decision.text


# ---------------------------------------------------------------- normalize

def norm(**params) -> Normalize:
    stage = Normalize(**params)
    stage.setup()
    return stage


@pytest.mark.parametrize("raw, clean", [
    ("Cafe\u0301 au lait", "Caf\u00e9 au lait"),                 # NFC
    ("one\r\ntwo\rthree\u2028four", "one\ntwo\nthree\nfour"),     # line breaks
    ("bell\x07 and nul\x00 and del\x7f and bom\ufeff.", "bell and nul and del and bom."),
    ("lone \ud800surrogate", "lone surrogate"),
    ("a  b\t\tc\u00a0d\u3000e", "a b c d e"),                     # horizontal whitespace
    ("trailing   \n   leading", "trailing\nleading"),
    ("p1\n\n\n\n\np2", "p1\n\np2"),                               # at most one blank line
    ("p1\n \n\t\n\np2", "p1\n\np2"),                              # whitespace-only lines are blank
    ("  \n\n text \n\n ", "text"),
    ("tab\there", "tab here"),
])
def test_normalize(raw, clean):
    decision = run(norm(), raw)
    assert decision.keep and decision.text == clean


def test_unchanged_text_is_not_copied():
    decision = run(norm(), "Already clean.\n\nTwo paragraphs.")
    assert decision.keep and decision.text is None


def test_max_blank_lines():
    assert norm(max_blank_lines=0).normalize("a\n\n\nb") == "a\nb"
    assert norm(max_blank_lines=2).normalize("a\n\n\n\n\n\nb") == "a\n\n\nb"
    assert norm(max_blank_lines=2).normalize("a\n\n\nb") == "a\n\n\nb"


def test_switches():
    assert norm(collapse_whitespace=False).normalize("a  b") == "a  b"
    assert norm(remove_control=False).normalize("a\x07b") == "a\x07b"
    assert norm(nfc=False).normalize("e\u0301") == "e\u0301"


def test_empty_after_normalisation_is_rejected():
    decision = run(norm(), " \x00\t\r\n\u200a ")
    assert (decision.keep, decision.reason) == (False, "empty")


def test_mojibake_is_fixed_only_when_asked():
    broken = "The cafÃ© serves crÃ¨me brÃ»lÃ©e."
    assert run(norm(), broken).text is None
    assert run(norm(fix_mojibake=True), broken).text == "The café serves crème brûlée."


def test_normalize_is_idempotent_on_real_text():
    web = SHARED / "web" / "cc_en_head-0091.jsonl"
    wiki = SHARED / "wiki" / "wikitext-2-test.txt"
    if not web.exists() or not wiki.exists():
        pytest.skip("../shared/data is absent")
    texts = [json.loads(line)["text"] for line in web.open(encoding="utf-8")]
    texts.append(wiki.read_text(encoding="utf-8")[:200_000])
    stage = norm()
    for text in texts:
        once = stage.normalize(text)
        assert stage.normalize(once) == once
        assert "  " not in once and " \n" not in once and "\n\n\n" not in once
    assert stage.normalize(texts[-1]).count("\n") < texts[-1].count("\n")


def reference_normalize(text: str, max_blank_lines: int = 1) -> str:
    """The normalisation spelled out with regexes and str methods, one rule at a time."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", "\n", text)
    text = re.sub(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]", "", text)
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    text = re.sub("\n{%d,}" % (max_blank_lines + 2), "\n" * (max_blank_lines + 1), text)
    return text.strip()


@pytest.mark.parametrize("max_blank_lines", [0, 1, 3])
def test_normalize_agrees_with_reference_on_random_text(max_blank_lines):
    import random

    alphabet = ["a", "b", "é", "e\u0301", " ", "  ", "\t", "\n", "\r", "\r\n", "\x00", "\x1f", "\x7f", "\x85",
                "\u2028", "\xa0", "\u3000", "\ufeff", "\ud800", "\x0c", ".", "word"]
    rng = random.Random(max_blank_lines)
    stage = norm(max_blank_lines=max_blank_lines)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        assert stage.normalize(text) == reference_normalize(text, max_blank_lines), repr(text)


def test_normalize_agrees_with_reference_on_real_text():
    web = SHARED / "web" / "cc_en_head-0174.jsonl"
    fixtures = SHARED / "fixtures"
    if not web.exists() or not fixtures.exists():
        pytest.skip("../shared/data is absent")
    texts = [json.loads(line)["text"] for line in web.open(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in sorted(fixtures.rglob("*.txt"))]
    stage = norm()
    for text in texts:
        assert stage.normalize(text) == reference_normalize(text)
