"""fastText document classifiers as pipeline stages: ``quality_classifier`` and ``toxicity``.

Both are one generic stage, ``FastTextClassifierStage``: it loads a fastText model once per worker,
predicts a batch of documents, writes the positive class's probability into ``meta`` (``quality``
or ``toxicity``) whatever the action, and then

    action: keep      keep only documents whose positive probability >= threshold
                      (quality: keep documents the model calls high quality);
    action: drop      reject documents whose positive probability >= threshold
                      (toxicity: drop documents the model calls toxic);
    action: annotate  reject nothing, only score.

``model`` is a built-in name (``toxicity``, ``quality``: small models the project trains itself,
see scripts/train_models.py and filters/models/*.md) or a path to any fastText ``.bin``/``.ftz``.
Text goes through ``preprocess`` both here and in training (classifier_training.py), so the model
sees at inference exactly the form it was trained on.

A model may come with a calibration file beside it (``toxicity.ftz`` ->
``toxicity.calibration.json``, see ``Calibration``): the stage then reports the calibrated
probability, fitted on a validation split, instead of fastText's raw softmax.
"""

from __future__ import annotations

import html
import json
import math
import posixpath
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from thresher.filters import storage
from thresher.filters.base import Decision, Document, DocumentStage, Strict, utf8_safe

MODELS_DIR = Path(__file__).resolve().parent / "models"
BUILTIN_MODELS: dict[str, str] = {"toxicity": "toxicity.ftz", "quality": "quality.ftz"}
LABEL_PREFIX = "__label__"

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
# fastText splits on whitespace only: without this "idiot!!" and "idiot" are unrelated tokens.
_PUNCTUATION_RUN = re.compile(r"[^\w\s@#']+")


def _spaced(match: re.Match) -> str:
    return f" {match.group()} "


def preprocess(text: str, max_chars: int = 10_000) -> str:
    """The one text form fastText sees, in training and at inference: the first ``max_chars``
    characters, HTML entities decoded, lowercased, URLs as ``url``, @mentions as ``@user``,
    runs of punctuation split from words, every run of whitespace (newlines included: fastText
    reads one example per line) collapsed to one space; lone surrogates become ``?``."""
    text = utf8_safe(text[:max_chars])
    if "&" in text:
        text = html.unescape(text)
    text = text.lower()
    if "http" in text or "www." in text:
        text = _URL.sub(" url ", text)
    if "@" in text:
        text = _MENTION.sub(" @user ", text)
    return " ".join(_PUNCTUATION_RUN.sub(_spaced, text).split())


def resolve_model_path(model: str) -> str:
    """A built-in model's file inside the package, else ``model`` itself (a path or a URL)."""
    if model in BUILTIN_MODELS:
        return str(MODELS_DIR / BUILTIN_MODELS[model])
    return model


def load_fasttext_model(path: str | Path) -> Any:
    """A fastText model from a path or a gs:// / s3:// URL (copied once per machine: storage.local_copy)."""
    import fasttext

    # fasttext-community prints a deprecation warning on every load_model; it says nothing useful.
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(str(storage.local_copy(path)))


def label_name(label: str) -> str:
    return label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else label


def raw_probabilities(model: Any, texts: list[str], label: str, max_chars: int = 10_000) -> list[float]:
    """fastText's probability of ``label`` (with or without ``__label__``) for each text."""
    wanted = LABEL_PREFIX + label_name(label)
    labels_per_text, probs_per_text = model.predict([preprocess(text, max_chars) for text in texts],
                                                    k=-1, threshold=0.0)
    scores = []
    for labels, probs in zip(labels_per_text, probs_per_text):
        # fastText's softmax can round a certain label to 1.00001.
        scores.append(next((min(1.0, float(p)) for l, p in zip(labels, probs) if l == wanted), 0.0))
    return scores


class Calibration(Strict):
    """Platt scaling of one label's probability: ``sigmoid(a * logit(p) + b)``, with the
    threshold chosen on the same validation split. Stored as JSON beside the model
    (``path_for``); scripts/train_models.py fits it."""

    label: str
    a: float
    b: float
    threshold: float = Field(ge=0.0, le=1.0)

    EPSILON: ClassVar[float] = 1e-6

    @staticmethod
    def path_for(model_path: str | Path) -> str:
        """``toxicity.ftz`` -> ``toxicity.calibration.json``, for a path or a gs:// / s3:// URL."""
        return posixpath.splitext(str(model_path))[0] + ".calibration.json"

    @classmethod
    def logit(cls, p: float) -> float:
        p = min(max(p, cls.EPSILON), 1 - cls.EPSILON)
        return math.log(p / (1 - p))

    def apply(self, p: float) -> float:
        z = self.a * self.logit(p) + self.b
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            return cls.model_validate(json.loads(storage.read_bytes(path).decode("utf-8")))
        except ValueError as exc:
            raise ValueError(f"calibration file {path} is invalid: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(), indent=2) + "\n", encoding="utf-8")


class FastTextClassifierStage(DocumentStage):
    """Score documents with a fastText classifier and keep, drop or only annotate them.

    model:          built-in name, or path or URL (gs://, s3://) of a fastText .bin/.ftz.
    positive_label: the label whose probability is the score (with or without ``__label__``).
    threshold:      the probability that separates the two sides.
    action:         keep (keep p >= threshold), drop (reject p >= threshold), annotate.
    score_name:     the meta key for the probability.
    max_chars:      characters of each document the model reads.
    """

    name: ClassVar[str] = "fasttext_classifier"

    model: str
    positive_label: str
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    action: Literal["keep", "drop", "annotate"] = "annotate"
    score_name: str
    max_chars: int = Field(default=10_000, gt=0)

    _model: Any = PrivateAttr(default=None)
    _positive: str = PrivateAttr(default="")
    _calibration: Calibration | None = PrivateAttr(default=None)

    def __getstate__(self) -> dict[str, Any]:
        # A loaded fastText model cannot be pickled; a copy sent to another worker reloads it.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_model"] = None
        state["__pydantic_private__"] = private
        return state

    def worker_paths(self) -> list[tuple[str, str]]:
        return [] if self.model in BUILTIN_MODELS else [("model", self.model)]  # built-ins ship in the package

    def check(self) -> list[tuple[str, str]]:
        return self._located()[0]

    def _located(self) -> tuple[list[tuple[str, str]], str, Calibration | None]:
        """(problems, the model's path, its calibration if it has one), each file read once."""
        path = resolve_model_path(self.model)
        if self.model in BUILTIN_MODELS and not storage.exists(path):
            return [("model", f"built-in model {self.model!r} is missing ({path}); "
                              "rebuild it with `python scripts/train_models.py`")], path, None
        if not storage.exists(path):
            return [("model", f"model file not found: {path} (give a built-in name "
                              f"{sorted(BUILTIN_MODELS)} or a path or gs:// URL of a fastText .bin/.ftz)")], path, None
        if not storage.isfile(path):
            return [("model", f"model path is not a file: {path}")], path, None
        calibration = None
        if storage.exists(Calibration.path_for(path)):
            try:
                calibration = Calibration.load(Calibration.path_for(path))
            except ValueError as exc:
                return [("model", str(exc))], path, None
        return [], path, calibration

    def setup(self) -> None:
        problems, path, calibration = self._located()
        if problems:
            raise FileNotFoundError(problems[0][1])
        model = load_fasttext_model(path)
        labels = [label_name(label) for label in model.get_labels()]
        positive = label_name(self.positive_label)
        if positive not in labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not a label of model "
                             f"{self.model!r}; its labels are {labels}")
        if calibration is not None and calibration.label not in labels:
            raise ValueError(f"calibration {Calibration.path_for(path)} is for label {calibration.label!r}, "
                             f"which model {self.model!r} does not have (labels {labels})")
        if calibration is not None and calibration.label != positive and len(labels) != 2:
            raise ValueError(f"calibration {Calibration.path_for(path)} is for label {calibration.label!r}; "
                             f"positive_label {positive!r} of a model with {len(labels)} labels cannot use it")
        self._positive = positive
        self._calibration = calibration
        self._model = model

    def positive_probabilities(self, texts: list[str]) -> list[float]:
        if self._model is None:
            self.setup()
        if self._calibration is None:
            return raw_probabilities(self._model, texts, self._positive, self.max_chars)
        calibrated = [self._calibration.apply(p) for p in
                      raw_probabilities(self._model, texts, self._calibration.label, self.max_chars)]
        # a calibrated two-label model: P(other label) = 1 - P(calibrated label)
        return [1.0 - p for p in calibrated] if self._calibration.label != self._positive else calibrated

    def decide(self, probability: float) -> Decision:
        scores = {self.score_name: probability}
        positive = probability >= self.threshold
        if self.action == "keep" and not positive:
            return Decision.reject(f"{self.score_name}_below_threshold", value=probability, scores=scores)
        if self.action == "drop" and positive:
            return Decision.reject(f"{self.score_name}_above_threshold", value=probability, scores=scores)
        return Decision.accept(scores=scores)

    def process_batch(self, docs: list[Document]) -> list[Decision]:
        if not docs:
            return []
        return [self.decide(p) for p in self.positive_probabilities([doc["text"] for doc in docs])]

    def process(self, doc: Document) -> Decision:
        return self.process_batch([doc])[0]


class QualityClassifierStage(FastTextClassifierStage):
    """``quality_classifier``: by default keeps documents whose probability of being like the
    reference (high-quality) set is at least ``threshold``; the score is ``meta.quality``."""

    name: ClassVar[str] = "quality_classifier"

    model: str = "quality"
    positive_label: str = "hq"
    action: Literal["keep", "drop", "annotate"] = "keep"
    score_name: str = "quality"


class ToxicityStage(FastTextClassifierStage):
    """``toxicity``: by default drops documents whose probability of being toxic (hate speech or
    offensive) is at least ``threshold``; the score is ``meta.toxicity``, calibrated for the
    built-in model (toxicity.calibration.json). The default threshold is the one
    scripts/train_models.py chose on its validation split (the best toxic F1 on Davidson tweets
    among thresholds that flag at most 1% of clean text of any other register); a test keeps
    the two equal."""

    name: ClassVar[str] = "toxicity"

    model: str = "toxicity"
    positive_label: str = "toxic"
    threshold: float = Field(default=0.51, ge=0.0, le=1.0)
    action: Literal["keep", "drop", "annotate"] = "drop"
    score_name: str = "toxicity"
