"""The built-in toxicity and quality models on clean text of several registers they were not
trained on (issue 16), their calibration, and the helpers that fit it."""

import json
import math
import random
import sys
from pathlib import Path

import pytest

from thresher.filters.fasttext_classifier import (MODELS_DIR, Calibration, QualityClassifierStage, ToxicityStage,
                                                  load_fasttext_model, raw_probabilities)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import train_models  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def needs(relative: str) -> Path:
    if not (DATA / relative).exists():
        pytest.skip(f"{DATA / relative} is absent")
    return DATA


def share(scores, threshold):
    return sum(s >= threshold for s in scores) / len(scores)


@pytest.fixture(scope="module")
def toxicity():
    stage = ToxicityStage()
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def quality():
    stage = QualityClassifierStage()
    stage.setup()
    return stage


def clean_registers() -> dict[str, list[str]]:
    """Clean text no built-in model was trained on: WikiText paragraphs of held-out articles as
    WikiText has them (tokenised, with <unk>), Common Crawl lines, the Python Language Reference,
    generated demo articles."""
    sets = {"Python Language Reference": train_models.paragraphs_of(train_models.python_reference_topics()),
            "generated demo articles": train_models.synthetic_demo_documents(600)["article"]}
    if (DATA / "wiki").exists():
        test_articles = train_models.wikitext_article_splits(DATA)[2]
        sets["WikiText"] = [p for a in test_articles for p in train_models.wikitext_paragraphs(a)]
    if (DATA / "web").exists():
        sets["Common Crawl lines"] = [line for doc in train_models.web_documents(DATA)
                                      for line in doc.splitlines() if len(line.split()) >= 10]
    assert all(len(texts) >= 200 for texts in sets.values()), {k: len(v) for k, v in sets.items()}
    return sets


def test_toxicity_flags_little_clean_prose_of_any_register(toxicity):
    # Before issue 16 the default model flagged 42% of these WikiText paragraphs, 20% of the
    # Language Reference and 15% of the Common Crawl lines (none of the generated articles).
    for name, texts in clean_registers().items():
        rate = share(toxicity.positive_probabilities(texts), toxicity.threshold)
        assert rate <= 0.02, f"{name}: {rate:.3f} of {len(texts)} clean texts flagged toxic"


def test_toxicity_still_catches_held_out_toxic_tweets(toxicity):
    _, held = train_models.toxicity_split(needs("toxicity/davidson-labeled_data.csv"))
    scores = toxicity.positive_probabilities([ex.text for ex in held])
    labels = [ex.label for ex in held]
    toxic = [s for s, y in zip(scores, labels) if y == "toxic"]
    assert len(toxic) == 2062
    assert share(toxic, toxicity.threshold) >= 0.94
    assert train_models.f1_toxic(scores, labels, toxicity.threshold) >= 0.95


def test_quality_keeps_clean_prose_of_several_registers(quality):
    # Before issue 16: 77% of the WikiText paragraphs, 34% of the Language Reference.
    sets = clean_registers()
    sets.pop("Common Crawl lines", None)  # web text: not what the reference set is
    for name, texts in sets.items():
        kept = share(quality.positive_probabilities(texts), quality.threshold)
        assert kept >= 0.9, f"{name}: only {kept:.3f} of {len(texts)} kept"


def test_quality_still_rejects_tweets_and_the_low_quality_page(quality):
    data = needs("toxicity/davidson-labeled_data.csv")
    tweets = train_models.quality_tweet_split(data)[1]
    assert share(quality.positive_probabilities(tweets), quality.threshold) <= 0.1
    low = needs("fixtures") / "fixtures" / "low_quality_cc.txt"
    assert quality.positive_probabilities([low.read_text()])[0] < quality.threshold


def test_builtin_toxicity_is_calibrated_and_its_threshold_is_the_stage_default(toxicity):
    calibration = Calibration.load(Calibration.path_for(MODELS_DIR / "toxicity.ftz"))
    assert ToxicityStage().threshold == calibration.threshold
    texts = ["you stupid bitch, shut up hoe", "The committee met on Tuesday to discuss the budget."]
    raw = raw_probabilities(load_fasttext_model(MODELS_DIR / "toxicity.ftz"), texts, "toxic")
    assert toxicity.positive_probabilities(texts) == [calibration.apply(p) for p in raw]
    assert raw != [calibration.apply(p) for p in raw]
    clean = ToxicityStage(positive_label="clean")
    assert clean.positive_probabilities(texts) == [1 - calibration.apply(p) for p in raw]


def test_calibration_file_errors_are_clear(tmp_path):
    model = tmp_path / "tox.ftz"
    model.write_bytes((MODELS_DIR / "toxicity.ftz").read_bytes())
    Path(Calibration.path_for(model)).write_text(json.dumps({"label": "toxic", "a": 1.0}))
    problems = ToxicityStage(model=str(model)).check()
    assert problems and problems[0][0] == "model" and "tox.calibration.json is invalid" in problems[0][1]
    Calibration(label="spam", a=1.0, b=0.0, threshold=0.5).save(Calibration.path_for(model))
    with pytest.raises(ValueError, match="'spam', which model"):
        ToxicityStage(model=str(model)).setup()
    Calibration(label="toxic", a=1.0, b=0.0, threshold=0.5).save(Calibration.path_for(model))
    stage = ToxicityStage(model=str(model))
    raw = raw_probabilities(load_fasttext_model(model), ["hello there"], "toxic")[0]
    assert stage.positive_probabilities(["hello there"])[0] == pytest.approx(raw, abs=1e-9)


def test_calibration_apply_is_a_monotone_platt_map():
    calibration = Calibration(label="toxic", a=0.5, b=-1.0, threshold=0.5)
    values = [calibration.apply(p) for p in (0.0, 0.01, 0.3, 0.5, 0.9, 1.0)]
    assert values == sorted(values) and 0 < values[0] and values[-1] < 1
    assert calibration.apply(0.5) == pytest.approx(1 / (1 + math.exp(1.0)))


def test_fit_platt_recovers_known_parameters():
    rng = random.Random(3)
    scores, labels = [], []
    for _ in range(20_000):
        x = rng.uniform(-6, 6)
        scores.append(1 / (1 + math.exp(-x)))
        labels.append(rng.random() < 1 / (1 + math.exp(-(0.4 * x - 0.7))))
    a, b = train_models.fit_platt(scores, labels, [1.0] * len(scores))
    assert a == pytest.approx(0.4, abs=0.05) and b == pytest.approx(-0.7, abs=0.08)
    # Separable data stays finite (ridge).
    a, b = train_models.fit_platt([0.1, 0.2, 0.8, 0.9], [False, False, True, True], [1.0] * 4)
    assert math.isfinite(a) and math.isfinite(b) and a > 0


def test_pick_threshold_respects_every_clean_domain():
    labels = {"davidson": ["toxic"] * 8 + ["clean"] * 2, "wiki": ["clean"] * 100}
    scores = {"davidson": [0.9, 0.8, 0.7, 0.62, 0.55, 0.5, 0.45, 0.3, 0.2, 0.52],
              "wiki": [0.0] * 98 + [0.58, 0.65]}
    # Best Davidson F1 alone is at 0.21-0.30; at most 1% of wiki may reach the threshold, so
    # 0.59-0.62 (same F1; the higher wins).
    assert train_models.pick_threshold(scores, labels) == 0.62
    assert train_models.pick_threshold(scores, labels, max_fpr=0.02) == 0.3


def test_splits_are_by_stable_key_and_disjoint():
    assert train_models.split_of("docstring:os:path:1", 10, 10) == train_models.split_of("docstring:os:path:1", 10, 10)
    parts = [train_models.split_of(f"k{i}", 15, 15) for i in range(2000)]
    assert 0.1 < parts.count("test") / 2000 < 0.2 and 0.1 < parts.count("valid") / 2000 < 0.2
    data = needs("wiki")
    train, valid, test = train_models.wikitext_article_splits(data)
    articles = [{tuple(a) for a in part} for part in (train, valid, test)]
    assert len(test) == 24 and not (articles[0] & articles[2]) and not (articles[1] & articles[2])
    assert len(train) + len(valid) + len(test) == len(train_models.wikitext_raw_articles(data))
