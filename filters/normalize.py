"""Text normalisation: Unicode NFC, line endings, control characters, whitespace, mojibake."""

from __future__ import annotations

import unicodedata
from typing import ClassVar

from pydantic import Field

from thresher.filters import textstats
from thresher.filters.base import Decision, Document, DocumentStage

class Normalize(DocumentStage):
    r"""Unicode NFC, ``\n`` line endings, no control characters, single spaces, no trailing spaces,
    at most ``max_blank_lines`` consecutive blank lines, optional mojibake repair with ftfy.

    Line breaks are every break ``str.splitlines()`` knows (``\r\n``, ``\r``, ``\v``, ``\f``,
    ``\x1c``-``\x1e``, ``\x85``, ``\u2028``, ``\u2029``). Control characters are C0 and C1 controls
    other than ``\t`` and line breaks, DEL, byte-order marks, the noncharacters U+FFFE/U+FFFF and
    lone surrogates (which cannot be written as UTF-8). Horizontal whitespace is every other
    ``str.isspace()`` character (tabs, no-break and ideographic spaces...): a run of it becomes one
    space, and none is left at the start or end of a line. One compiled pass over the code points
    does all of this (``textstats.normalize_whitespace``).

    Documents that are empty after normalisation are rejected with reason ``empty``.
    """

    name: ClassVar[str] = "normalize"

    nfc: bool = True
    fix_mojibake: bool = Field(False, description="repair mojibake with ftfy.fix_encoding (slow: ~1-5 MB/s)")
    remove_control: bool = True
    collapse_whitespace: bool = Field(True, description="runs of spaces/tabs -> one space; strip line ends")
    max_blank_lines: int = Field(1, ge=0, description="cap on consecutive blank lines")

    def setup(self) -> None:
        textstats.warm_up()
        if self.fix_mojibake:
            import ftfy

            self._ftfy_fix = ftfy.fix_encoding

    def normalize(self, text: str) -> str:
        if self.fix_mojibake:
            text = self._ftfy_fix(text)
        if self.nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        return textstats.normalize_whitespace(text, self.remove_control, self.collapse_whitespace,
                                              self.max_blank_lines)

    def process(self, doc: Document) -> Decision:
        original = doc["text"]
        text = self.normalize(original)
        if not text:
            return Decision.reject("empty", 0.0)
        return Decision.accept(text=None if text == original else text)
