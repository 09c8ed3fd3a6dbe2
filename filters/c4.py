"""C4's clean-up rules (Raffel et al. 2020, section 2.2, and the reference implementation
``clean_page`` in tensorflow_datasets/text/c4_utils.py)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field

from thresher.filters.base import Decision, Document, DocumentStage

END_MARKS = (".", "?", "!", '"')
ELLIPSIS = "..."
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies",
                     "use of cookies", "use cookies")
CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# A sentence ends at terminal punctuation (optionally followed by closing quotes or brackets)
# that is followed by whitespace or the end of the line.
SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")


class C4Quality(DocumentStage):
    """C4's line and page rules, each switchable; the defaults are C4's.

    Lines (stripped, Wikipedia-style citation marks removed first, as in C4) are dropped when
    they contain a word longer than ``max_word_length``, do not end in terminal punctuation
    (``. ? ! "``, and not ``...``), have fewer than ``min_words_per_line`` words, mention
    "javascript", or contain a policy phrase ("terms of use", "privacy policy", "cookie policy",
    "uses cookies", "use of cookies", "use cookies"). The page is rejected when a kept line
    contains "lorem ipsum" (reason ``lorem_ipsum``) or a curly bracket (``curly_bracket``), when
    the kept lines hold fewer than ``min_sentences`` sentences (``too_few_sentences``, value: the
    count), or when no line is left (``no_lines``). Kept pages get the kept lines joined by
    newlines as their new text, and the score ``c4_lines_kept_frac`` (plus ``c4_sentences`` when
    sentences had to be counted: only when fewer lines than ``min_sentences`` were kept, since
    every kept line holds at least one sentence).

    Differences from the reference: C4 counts sentences with NLTK's punkt tokenizer; here a
    sentence is a run of terminal punctuation followed by whitespace or the line end (every kept
    line ends in one, so each counts at least once), which overcounts at abbreviations such as
    "Mr." (punkt knows those) but needs no model. As in the reference (and datatrove), a word
    longer than ``max_word_length`` drops its line; ``long_word: reject`` rejects the page instead
    (reason ``long_word``, value: the length). Like the reference, the lorem-ipsum and
    curly-bracket checks only look at lines that survived the earlier line rules.
    """

    name: ClassVar[str] = "c4_quality"

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int | None = Field(3, ge=0)
    max_word_length: int | None = Field(1000, ge=1)
    long_word: Literal["drop_line", "reject"] = "drop_line"
    filter_javascript: bool = True
    filter_policy: bool = True
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True
    min_sentences: int | None = Field(5, ge=0)

    def _is_policy_line(self, lower: str) -> bool:
        if "terms of use" in lower or "privacy policy" in lower:
            return True
        return "cookie" in lower and any(p in lower for p in POLICY_SUBSTRINGS[2:])

    def process(self, doc: Document) -> Decision:
        text = doc["text"]
        lines = text.splitlines()
        kept: list[str] = []
        max_word = self.max_word_length
        min_words = self.min_words_per_line or 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            if max_word is not None and len(line) > max_word:
                longest = max(map(len, line.split()))
                if longest > max_word:
                    if self.long_word == "reject":
                        return Decision.reject("long_word", longest)
                    continue
            if self.remove_citations and "[" in line:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_MARKS) or line.endswith(ELLIPSIS)):
                continue
            if min_words and len(line.split(None, min_words - 1)) < min_words:
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Decision.reject("lorem_ipsum", 1.0)
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return Decision.reject("curly_bracket", 1.0)
            if self.filter_policy and self._is_policy_line(lower):
                continue
            kept.append(line)
        scores: dict[str, float] = {"c4_lines_kept_frac": len(kept) / len(lines) if lines else 0.0}
        if not kept:
            return Decision.reject("no_lines", 0.0, scores)
        if self.min_sentences is not None and len(kept) < self.min_sentences:
            # every kept line holds at least one sentence, so sentences are only counted when
            # there are fewer lines than the minimum
            n_sentences = sum(max(1, len(SENTENCE_END.findall(line))) for line in kept)
            scores["c4_sentences"] = n_sentences
            if n_sentences < self.min_sentences:
                return Decision.reject("too_few_sentences", n_sentences, scores)
        new_text = "\n".join(kept)
        return Decision.accept(scores, text=None if new_text == text else new_text)
