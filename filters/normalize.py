"""Text normalisation: Unicode NFC, line endings, control characters, whitespace, mojibake."""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

from pydantic import Field

from thresher.filters.base import Decision, Document, DocumentStage

# Every line break Python's str.splitlines() knows becomes "\n".
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# C0/C1 controls except \t and \n, DEL, byte-order marks, noncharacters and lone surrogates (which
# cannot be encoded as UTF-8 and would break every writer downstream).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]")
# Horizontal whitespace: a run of two or more, or one character that is not a plain space.
_HSPACE_CHARS = r" \t\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
_HSPACE_RUN = re.compile(rf"[{_HSPACE_CHARS}]{{2,}}|[{_HSPACE_CHARS[1:]}]")
# Any character one of the substitutions above would touch, except runs of plain spaces: clean
# text has none, and one search (much faster than three substitutions) tells.
_SUSPECT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff\u2028\u2029"
                      rf"{_HSPACE_CHARS[1:]}]")


class Normalize(DocumentStage):
    """Unicode NFC, ``\\n`` line endings, no control characters, single spaces, no trailing spaces,
    at most ``max_blank_lines`` consecutive blank lines, optional mojibake repair with ftfy.

    Documents that are empty after normalisation are rejected with reason ``empty``.
    """

    name: ClassVar[str] = "normalize"

    nfc: bool = True
    fix_mojibake: bool = Field(False, description="repair mojibake with ftfy.fix_encoding (slow: ~1-5 MB/s)")
    remove_control: bool = True
    collapse_whitespace: bool = Field(True, description="runs of spaces/tabs -> one space; strip line ends")
    max_blank_lines: int = Field(1, ge=0, description="cap on consecutive blank lines")

    def setup(self) -> None:
        self._blank_run = re.compile("\n{%d,}" % (self.max_blank_lines + 2))
        self._blank_cap = "\n" * (self.max_blank_lines + 1)
        if self.fix_mojibake:
            import ftfy

            self._ftfy_fix = ftfy.fix_encoding

    def normalize(self, text: str) -> str:
        if self.fix_mojibake:
            text = self._ftfy_fix(text)
        if self.nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        suspect = _SUSPECT.search(text) is not None
        if suspect:
            text = _LINE_BREAKS.sub("\n", text)
            if self.remove_control:
                text = _CONTROL.sub("", text)
        if self.collapse_whitespace:
            if suspect or "  " in text:
                text = _HSPACE_RUN.sub(" ", text)
            if " \n" in text or "\n " in text:
                # after collapsing, a line has at most one leading and one trailing space
                text = text.replace(" \n", "\n").replace("\n ", "\n")
        if "\n\n\n" in text or (self.max_blank_lines == 0 and "\n\n" in text):
            text = self._blank_run.sub(self._blank_cap, text)
        return text.strip()

    def process(self, doc: Document) -> Decision:
        original = doc["text"]
        text = self.normalize(original)
        if not text:
            return Decision.reject("empty", 0.0)
        return Decision.accept(text=None if text == original else text)
