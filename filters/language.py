"""Language identification with cld3 (model inside the wheel) or fastText lid.176."""

from __future__ import annotations

import os
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from thresher.filters import storage
from thresher.filters.base import Decision, Document, DocumentStage, utf8_safe
from thresher.filters.model_store import default_model_path, fetch_command

# cld3 still uses some deprecated ISO 639-1 codes; lid.176 uses the current ones.
_CLD3_ALIASES = {"iw": "he", "ji": "yi", "in": "id", "jw": "jv"}
UNDETERMINED = "und"


class Language(DocumentStage):
    """Identify the language of each document; keep those whose top language is in ``keep``
    with a score of at least ``min_score``.

    Writes ``language`` (ISO code; ``und`` for text without content) into meta and
    ``language_score`` (the top language's probability) into the scores. Rejections have reason
    ``language`` and the top language's score as value. An empty ``keep`` list keeps every
    language (annotation only; ``min_score`` still applies).

    Only the first ``max_chars`` characters are identified (cld3 itself reads at most 1000
    bytes); fastText sees them with newlines replaced by spaces, as it predicts one line.
    """

    name: ClassVar[str] = "language"

    keep: list[str] = Field(default_factory=lambda: ["en"])
    min_score: float = Field(0.5, ge=0.0, le=1.0)
    backend: Literal["cld3", "fasttext"] = "cld3"
    model_path: str | None = Field(None, description="lid.176.ftz for the fasttext backend, a path or a gs:// or "
                                   "s3:// URL (default: $THRESHER_MODELS or ~/.cache/thresher/models)")
    max_chars: int = Field(2000, ge=1)

    @field_validator("model_path", mode="before")
    @classmethod
    def _path_as_text(cls, value):
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("keep")
    @classmethod
    def _lowercase_codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not code or not code.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"not a language code: {code!r}")
        return [_CLD3_ALIASES.get(c.lower(), c.lower()) if "-" not in c else c for c in codes]

    def resolved_model_path(self) -> str:
        return self.model_path if self.model_path is not None else str(default_model_path("lid176"))

    def worker_paths(self) -> list[tuple[str, str]]:
        return [("model_path", self.resolved_model_path())] if self.backend == "fasttext" else []

    def check(self) -> list[tuple[str, str]]:
        if self.backend != "fasttext":
            return []
        path = self.resolved_model_path()
        if not storage.isfile(path):
            return [("model_path", f"fastText language model {path} not found; "
                                   f"run `{fetch_command('lid176')}` to download it")]
        return []

    def setup(self) -> None:
        self._keep = frozenset(self.keep)
        if self.backend == "cld3":
            import gcld3

            self._cld3 = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        else:
            problems = self.check()
            if problems:
                raise FileNotFoundError(problems[0][1])
            import fasttext

            self._fasttext = fasttext.load_model(str(storage.local_copy(self.resolved_model_path())))

    def identify(self, text: str) -> tuple[str, float]:
        """(language code, score) of the first ``max_chars`` characters."""
        snippet = utf8_safe(text[: self.max_chars])
        if not snippet.strip():
            # cld3 answers "ja" with probability 0.78 for an empty string
            return UNDETERMINED, 0.0
        if self.backend == "cld3":
            result = self._cld3.FindLanguage(snippet)
            code = result.language
            return _CLD3_ALIASES.get(code, code), float(result.probability)
        labels, probs = self._fasttext.predict(snippet.replace("\n", " "), k=1)
        return labels[0][len("__label__"):], min(1.0, float(probs[0]))

    def process(self, doc: Document) -> Decision:
        code, score = self.identify(doc["text"])
        scores, meta = {"language_score": score}, {"language": code}
        if (self._keep and code not in self._keep) or score < self.min_score:
            return Decision.reject("language", score, scores, meta)
        return Decision.accept(scores, meta=meta)
