"""decontaminate: a planted eval passage is found (drop and mask), the rest is left alone; eval sets
from JSON lines, plain text and a datasets directory."""

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from conftest import shared_file
from thresher.filters.minhash import words
from thresher.pipeline.decontaminate import Decontaminate, EvalSet
from thresher.pipeline.stage_api import StageContext


@pytest.fixture
def corpus():
    words = shared_file("wiki/wikitext-2-test.txt").read_text(encoding="utf-8").split()
    passage = " ".join(words[5000:5080])
    clean = [{"id": f"clean{i}", "text": " ".join(words[i * 400:(i + 1) * 400]), "source": "wiki", "meta": {}}
             for i in range(10)]
    # the planted copy: different case and punctuation around, inside a longer web page
    planted = {"id": "planted", "text": "Menu | Home\n" + passage.upper().replace(" , ", ", ") + "\nFooter text here.",
               "source": "web", "meta": {}}
    return passage, clean, planted


def eval_files(tmp_path, passage):
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text(json.dumps({"question": passage, "answer": "B"}) + "\n"
                     + json.dumps({"question": "too short to index", "answer": "A"}) + "\n")
    text = tmp_path / "lines.txt"
    text.write_text("an unrelated line of evaluation text that nobody wrote anywhere else in the corpus\n")
    return jsonl, text


def test_planted_passage_is_dropped_and_rest_kept(tmp_path, corpus):
    passage, clean, planted = corpus
    jsonl, text = eval_files(tmp_path, passage)
    stage = Decontaminate(eval_sets=[EvalSet(name="qa", path=str(jsonl), field="question"),
                                     EvalSet(name="lines", path=str(text))])
    index = stage.build_index()
    assert index.short_items == 1
    results = stage.decide(index, clean + [planted])
    assert [v for v, _, _ in results] == ["keep"] * 10 + ["reject"]
    record = results[-1][1]
    assert record["reason"] == "eval_contamination" and record["stage"] == "decontaminate"
    report = record["meta"]["decontamination"]
    assert report["eval_sets"] == ["qa"]
    assert report["matched_ngrams"] == len(words(passage)) - 13 + 1
    assert report["ngrams"][0] == " ".join(words(passage)[:13])


def test_mask_replaces_only_the_overlap(tmp_path, corpus):
    passage, clean, planted = corpus
    jsonl, _ = eval_files(tmp_path, passage)
    stage = Decontaminate(eval_sets=[EvalSet(name="qa", path=str(jsonl), field=["question"])], action="mask")
    verdict, masked, report = stage.decide(stage.build_index(), [planted])[0]
    assert verdict == "keep" and report["eval_sets"] == ["qa"]
    assert masked["text"].startswith("Menu | Home\n|||EVAL_OVERLAP|||")
    assert masked["text"].endswith("\nFooter text here.")
    assert masked["text"].count("|||EVAL_OVERLAP|||") == 1


def test_datasets_directory_and_beam_stage(tmp_path, corpus):
    datasets = pytest.importorskip("datasets")
    passage, clean, planted = corpus
    directory = tmp_path / "hf_eval"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"prompt": [passage], "id": [1]})}).save_to_disk(str(directory))
    stage = Decontaminate(eval_sets=[EvalSet(name="hf", path=str(directory), field="prompt")])
    assert stage.check() == []
    ctx = StageContext(index=0, label="decon", output_dir=str(tmp_path), seed=0, config_hash="x")
    with BeamTestPipeline() as p:
        res = stage.expand(p | beam.Create(clean + [planted]), ctx)
        assert_that(res.kept | "KeptIds" >> beam.Map(lambda d: d["id"]), equal_to([d["id"] for d in clean]), label="kept")
        assert_that(res.rejected | "RejIds" >> beam.Map(lambda r: (r["id"], r["meta"]["decontamination"]["eval_sets"])),
                    equal_to([("planted", ["hf"])]), label="rejected")
        assert_that(res.stats, equal_to([{"contaminated_docs": 1, "matched_ngrams": len(words(passage)) - 12, "by_eval_set": {"hf": 1}}]),
                    label="stats")


def test_bad_configuration_is_reported(tmp_path):
    stage = Decontaminate(eval_sets=[EvalSet(name="x", path=str(tmp_path / "missing.jsonl"))])
    assert stage.check() == [("eval_sets.0.path", f"{tmp_path / 'missing.jsonl'} does not exist")]
    with pytest.raises(ValidationError, match="unique"):
        Decontaminate(eval_sets=[EvalSet(name="x", path="a"), EvalSet(name="x", path="b")])
    with pytest.raises(ValidationError):
        Decontaminate(eval_sets=[])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match="line 2 lacks"):
        EvalSet(name="b", path=str(bad)).items()
