"""Small stages used by the core pipeline tests (importable by Beam worker processes)."""

from pydantic import Field

from thresher.filters.base import Decision, DocumentStage
from thresher.pipeline import registry


class MinWords(DocumentStage):
    name = "test_min_words"
    min_words: int = Field(default=5, ge=0, le=1000)
    fraction: float = Field(default=0.5, ge=0, le=1)

    def process(self, doc):
        words = len(doc["text"].split())
        if words < self.min_words:
            return Decision.reject("too_few_words", words)
        return Decision.accept({"words": words})


class Upper(DocumentStage):
    name = "test_upper"

    def process_batch(self, docs):
        return [Decision.accept(text=d["text"].upper()) for d in docs]


class Explode(DocumentStage):
    """Raises on documents containing 'BOOM': the wrapper must isolate them."""

    name = "test_explode"

    def process(self, doc):
        if "BOOM" in doc["text"]:
            raise ValueError("cannot handle BOOM")
        return Decision.accept()


class Broken(DocumentStage):
    """Raises on every document: a bug, not a filter."""

    name = "test_broken"

    def process(self, doc):
        raise KeyError(f"no field for {doc['id']}")


class OutOfMemory(DocumentStage):
    """Runs out of memory on documents containing 'HUGE'."""

    name = "test_out_of_memory"

    def process(self, doc):
        if "HUGE" in doc["text"]:
            raise MemoryError("cannot allocate")
        return Decision.accept()


TEST_STAGES = {cls.name: f"stages_for_tests:{cls.__name__}" for cls in (MinWords, Upper, Explode, Broken, OutOfMemory)}


def register(monkeypatch) -> None:
    monkeypatch.setattr(registry, "STAGES", {**registry.STAGES, **TEST_STAGES})
