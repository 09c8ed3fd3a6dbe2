"""Stages defined outside thresher: by class reference in the YAML ("package.module:Class") and by an
installed plugin's entry point (group thresher.stages), per-document and corpus-level, validated and
listed like the built-ins."""

import json
import sys
import textwrap

import pytest

from conftest import read_output, write_jsonl
from thresher.pipeline.config import ConfigError, validate_config
from thresher.pipeline.reference import stages_command
from thresher.pipeline.run import run_pipeline

MODULE = '''
import apache_beam as beam
from typing import ClassVar
from pydantic import Field

from thresher.filters.base import Decision, DocumentStage, rejection_record
from thresher.pipeline.stage_api import CorpusResult, CorpusStage


class Shout(DocumentStage):
    """Upper-cases every document; drops those that contain ``banned``."""

    name: ClassVar[str] = "shout"
    banned: str = Field(default="spam", min_length=1)

    def process(self, doc):
        if self.banned in doc["text"]:
            return Decision.reject("banned_word", 1.0)
        return Decision.accept(text=doc["text"].upper(), scores={"shouted": 1.0})


def _longest(element, stage_name):
    _, docs = element
    docs = sorted(docs, key=lambda d: (-len(d["text"]), d["id"]))
    yield docs[0]
    for doc in docs[1:]:
        yield beam.pvalue.TaggedOutput("rejected", rejection_record(doc, Decision.reject("not_longest"), stage_name))


class LongestPerSource(CorpusStage):
    """Keeps the longest document of each source."""

    name: ClassVar[str] = "longest_per_source"

    def expand(self, docs, ctx):
        out = (docs | f"{ctx.label}/BySource" >> beam.Map(lambda d: (d["source"], d))
               | f"{ctx.label}/Group" >> beam.GroupByKey()
               | f"{ctx.label}/Pick" >> beam.FlatMap(_longest, self.name).with_outputs("rejected", main="kept"))
        return CorpusResult(kept=out.kept, rejected=out.rejected)


class Summary(CorpusStage):
    """Adds one document per source listing that source's ids: a stage that generates documents."""

    name: ClassVar[str] = "summary"

    def expand(self, docs, ctx):
        generated = (docs | f"{ctx.label}/BySource" >> beam.Map(lambda d: (d["source"], d["id"]))
                     | f"{ctx.label}/Group" >> beam.GroupByKey()
                     | f"{ctx.label}/Make" >> beam.MapTuple(lambda source, ids: {
                         "id": f"summary/{source}", "text": " ".join(sorted(ids)), "source": "summary", "meta": {}}))
        return CorpusResult(kept=docs, generated=generated)


class NotAStage:
    name = "nope"
'''


@pytest.fixture
def my_package(tmp_path, monkeypatch):
    package = tmp_path / "site" / "my_curation"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stages.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'site'}:{__import__('os').environ.get('PYTHONPATH', '')}")
    yield tmp_path / "site"
    for name in [m for m in sys.modules if m.startswith("my_curation")]:
        del sys.modules[name]


def _docs(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a1", "text": "short one", "source": "a"}, {"id": "a2", "text": "a longer one here", "source": "a"},
        {"id": "b1", "text": "only b text", "source": "b"}, {"id": "b2", "text": "spam spam", "source": "b"}])
    return {"input": {"paths": [str(tmp_path / "in.jsonl")], "source_field": "source"}, "output": str(tmp_path / "out")}


def test_stages_named_by_class_reference_run_like_built_ins(tmp_path, my_package):
    config = validate_config({**_docs(tmp_path), "stages": [
        {"name": "my_curation.stages:Shout", "banned": "spam"},
        {"name": "my_curation.stages:LongestPerSource"},
        {"name": "exact_dedup"}]})
    result = run_pipeline(config)
    assert result.accounted
    kept = {d["id"]: d for d in read_output(tmp_path / "out", "kept")}
    assert sorted(kept) == ["a2", "b1"] and kept["a2"]["text"] == "A LONGER ONE HERE"
    assert kept["b1"]["meta"]["shouted"] == 1.0
    rejected = {r["id"]: (r["stage"], r["reason"]) for r in read_output(tmp_path / "out", "rejected")}
    assert rejected == {"b2": ("shout", "banned_word"), "a1": ("longest_per_source", "not_longest")}
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert [s["name"] for s in stats["stages"]] == ["shout", "longest_per_source", "exact_dedup"]
    assert stats["stages"][0]["rejected"] == 1 and stats["stages"][1]["rejected"] == 1
    assert stats["config"]["stages"][0]["name"] == "my_curation.stages:Shout"  # the config as written
    assert validate_config(stats["config"]).config_hash() == config.config_hash()


def test_a_stage_of_your_own_adds_documents_and_the_run_counts_them(tmp_path, my_package):
    config = validate_config({**_docs(tmp_path), "stages": [{"name": "my_curation.stages:Summary"}]})
    result = run_pipeline(config)
    kept = {d["id"]: d["text"] for d in read_output(tmp_path / "out", "kept")}
    assert kept["summary/a"] == "a1 a2" and kept["summary/b"] == "b1 b2" and len(kept) == 6
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"]["generated"] == 2 and stats["totals"]["accounted"] and result.accounted
    assert stats["stages"][0]["generated"] == 2 and stats["stages"][0]["in"] == 4 and stats["stages"][0]["kept"] == 6


def test_a_bad_reference_is_a_validation_error_with_the_reason(tmp_path, my_package):
    cases = {"my_curation.missing:Shout": "cannot import 'my_curation.missing'",
             "my_curation.stages:NotAStage": "is not a thresher stage",
             "my_curation.stages:Nothing": "is not a thresher stage",
             "nosuchstage": "unknown stage 'nosuchstage'"}
    for name, message in cases.items():
        with pytest.raises(ConfigError) as info:
            validate_config({**_docs(tmp_path), "stages": [{"name": name}]})
        assert info.value.problems[0][0] == "stages[0].name" and message in info.value.problems[0][1]
    with pytest.raises(ConfigError) as info:  # its own keys are validated with their bounds
        validate_config({**_docs(tmp_path), "stages": [{"name": "my_curation.stages:Shout", "banned": ""}]})
    assert info.value.problems[0][0] == "stages[0].banned"


def test_an_installed_plugin_is_a_stage_name_and_is_listed(tmp_path, my_package, capsys):
    dist = my_package / "my_curation-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-curation\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[thresher.stages]\nshout = my_curation.stages:Shout\n"
                                           "longest_per_source = my_curation.stages:LongestPerSource\n")
    config = validate_config({**_docs(tmp_path), "stages": [{"name": "shout"}, {"name": "longest_per_source"}]})
    result = run_pipeline(config)
    assert result.accounted and sorted(d["id"] for d in read_output(tmp_path / "out", "kept")) == ["a2", "b1"]
    assert stages_command([]) == 0
    listing = capsys.readouterr().out
    assert "shout" in listing and "plugin (my_curation.stages:Shout)" in listing and "pii" in listing
    assert stages_command(["shout"]) == 0 and "`banned`" in capsys.readouterr().out
