import csv
import json
import random
from pathlib import Path

import pytest

from thresher.filters.classifier_training import (Example, TrainingConfig, TrainingDataError, main,
                                                  read_labelled_file, split_holdout, train_classifier)
from thresher.filters.fasttext_classifier import (MODELS_DIR, QualityClassifierStage, ToxicityStage,
                                                  FastTextClassifierStage, preprocess)
from thresher.pipeline.registry import stage_class

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAST = ["--epoch", "5", "--dim", "8", "--bucket", "1000"]


def synthetic(n=120, seed=1):
    rng = random.Random(seed)
    sport = "goal match team player score league coach stadium".split()
    food = "recipe bake flour sugar oven taste dinner spice".split()
    out = []
    for i in range(n):
        words, label = (sport, "sport") if i % 2 else (food, "food")
        out.append(Example(" ".join(rng.choice(words) for _ in range(12)), label))
    return out


def doc(text):
    return {"id": "d", "text": text, "source": "t", "meta": {}}


def test_preprocess_lowercases_flattens_and_truncates():
    assert preprocess("Hello\nWorld\t  AGAIN\r\n", 100) == "hello world again"
    assert preprocess("abcdef", 3) == "abc"
    assert preprocess("RT @bob: You IDIOT!! &amp; see https://x.co/a?b=1") == "rt @user : you idiot !! & see url"


def test_stage_names_are_registered():
    assert stage_class("toxicity") is ToxicityStage
    assert stage_class("quality_classifier") is QualityClassifierStage
    assert stage_class("pii").name == "pii"


def test_builtin_models_are_small_and_documented():
    for name in ("toxicity", "quality"):
        assert (MODELS_DIR / f"{name}.ftz").stat().st_size < 5_000_000
        assert "held-out" in (MODELS_DIR / f"{name}.md").read_text().lower()


def test_missing_model_is_a_check_error(tmp_path):
    stage = ToxicityStage(model=str(tmp_path / "nope.ftz"))
    problems = stage.check()
    assert problems and problems[0][0] == "model" and "not found" in problems[0][1]
    with pytest.raises(FileNotFoundError):
        stage.setup()


def test_unknown_positive_label_is_a_clear_error():
    stage = ToxicityStage(positive_label="spam")
    with pytest.raises(ValueError, match="not a label"):
        stage.setup()


def test_toxicity_scores_and_actions():
    texts = ["you stupid bitch, shut up hoe", "Lovely weather for a picnic in the park today."]
    drop = ToxicityStage()
    drop.setup()
    decisions = drop.process_batch([doc(t) for t in texts])
    toxic, clean = (d.scores["toxicity"] for d in decisions)
    assert toxic > 0.5 > clean
    assert not decisions[0].keep and decisions[0].reason == "toxicity_above_threshold"
    assert decisions[0].value == toxic and decisions[1].keep
    keep = ToxicityStage(action="keep")
    assert [d.keep for d in keep.process_batch([doc(t) for t in texts])] == [True, False]
    annotate = ToxicityStage(action="annotate")
    out = annotate.process_batch([doc(t) for t in texts])
    assert all(d.keep for d in out) and [d.scores["toxicity"] for d in out] == [toxic, clean]


def test_quality_model_prefers_the_wiki_reference_fixture():
    fixtures = DATA / "fixtures"
    if not fixtures.exists():
        pytest.skip("shared data not present")
    stage = QualityClassifierStage(threshold=0.5)
    stage.setup()
    hq, lq = stage.process_batch([doc((fixtures / "high_quality_wiki_reference.txt").read_text()),
                                  doc((fixtures / "low_quality_cc.txt").read_text())])
    # The reference page is philosophy, not Wikipedia: the small built-in model is unsure about
    # it (see quality.md), but ranks it far above the forum boilerplate, which it rejects.
    assert hq.scores["quality"] > 3 * lq.scores["quality"]
    assert not lq.keep and lq.reason == "quality_below_threshold" and lq.value == lq.scores["quality"]


def test_any_fasttext_model_path_with_own_labels(tmp_path):
    path = tmp_path / "topic.bin"
    train_classifier(synthetic(), path, TrainingConfig(epoch=5, dim=8, bucket=1000), holdout=0.1)
    stage = FastTextClassifierStage(model=str(path), positive_label="__label__sport", score_name="sport",
                                    action="keep", threshold=0.5)
    assert stage.check() == []
    decisions = stage.process_batch([doc("the team scored a goal"), doc("bake the flour and sugar")])
    assert [d.keep for d in decisions] == [True, False]


def test_split_is_seeded_and_stratified():
    examples = synthetic(100)
    a = split_holdout(examples, 0.2, seed=3)
    b = split_holdout(examples, 0.2, seed=3)
    assert a == b
    assert sorted(e.label for e in a[1]) == ["food"] * 10 + ["sport"] * 10
    assert split_holdout(examples, 0.2, seed=4)[1] != a[1]


def test_training_is_deterministic_and_quantizes(tmp_path):
    config = TrainingConfig(epoch=5, dim=8, bucket=1000, quantize=True, quantize_cutoff=300)
    ev1 = train_classifier(synthetic(), tmp_path / "a.ftz", config)
    ev2 = train_classifier(synthetic(), tmp_path / "b.ftz", config)
    assert (tmp_path / "a.ftz").read_bytes() == (tmp_path / "b.ftz").read_bytes()
    assert ev1.per_label["sport"].f1 == ev2.per_label["sport"].f1 > 0.9


def test_cli_jsonl_with_custom_columns(tmp_path, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"body": e.text, "y": e.label}) + "\n" for e in synthetic()))
    out = tmp_path / "m.ftz"
    rc = main([str(path), "--text-field", "body", "--label-field", "y", "--output", str(out), "--quantize", *FAST])
    assert rc == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "| sport |" in printed and "| food |" in printed and "accuracy" in printed


def test_cli_csv_and_label_files(tmp_path, capsys):
    csv_path = tmp_path / "data.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((e.text, e.label) for e in synthetic())
    assert main([str(csv_path), "-o", str(tmp_path / "a.bin"), *FAST]) == 0
    sport = tmp_path / "sport.txt"
    food = tmp_path / "food.txt"
    sport.write_text("".join(e.text + "\n" for e in synthetic() if e.label == "sport"))
    food.write_text("".join(e.text + "\n" for e in synthetic() if e.label == "food"))
    assert main(["--label-file", f"sport={sport}", "--label-file", f"food={food}",
                 "-o", str(tmp_path / "b.bin"), *FAST]) == 0
    assert "| sport |" in capsys.readouterr().out


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    missing_col = tmp_path / "a.csv"
    missing_col.write_text("body,label\nhello,x\n")
    with pytest.raises(TrainingDataError, match="no 'text' column"):
        read_labelled_file(missing_col)
    one_label = tmp_path / "b.jsonl"
    one_label.write_text("".join(json.dumps({"text": f"t {i}", "label": "x"}) + "\n" for i in range(10)))
    assert main([str(one_label), "-o", str(tmp_path / "m.bin")]) == 2
    assert "at least two labels" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["--label-file", f"a={empty}", "--label-file", f"b={one_label}", "-o", str(tmp_path / "m.bin")]) == 2
    assert "empty file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--label-file", "no-equals-sign", "-o", "x.bin"])


def test_stage_pickles_after_setup_and_reloads_its_model():
    import pickle

    stage = ToxicityStage(action="annotate")
    stage.setup()
    before = stage.process(doc("what a lovely day")).scores["toxicity"]
    copy = pickle.loads(pickle.dumps(stage))
    assert copy.model_dump() == stage.model_dump()
    assert copy.process(doc("what a lovely day")).scores["toxicity"] == before
