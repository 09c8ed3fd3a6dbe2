"""Remote runners and remote files: validation names every local path a remote runner's workers
could not read, and every model, reference, eval set, template, checkpoint and cache location is
read through fsspec (here its in-memory file system, no network) or Beam's FileSystems."""

from __future__ import annotations

import copy
import json
import os
import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

from test_synthetic import tiny_checkpoint  # noqa: F401 - a fixture
from test_synthetic_openai import client, server  # noqa: F401 - a fixture and its client
from thresher.filters import storage
from thresher.filters.fasttext_classifier import MODELS_DIR, QualityClassifierStage
from thresher.filters.language import Language
from thresher.pipeline.cli import main
from thresher.pipeline.config import ConfigError, validate_config

DATAFLOW = {"name": "dataflow", "options": {"project": "p", "region": "us-central1"}}


@pytest.fixture
def mem(monkeypatch, tmp_path):
    """A fresh memory:// folder, and a fresh local cache for the copies of remote files."""
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    root = f"t{uuid.uuid4().hex[:12]}"
    yield f"memory://{root}"
    fsspec.filesystem("memory").rm(f"/{root}", recursive=True)


def put(url: str, data: bytes | str) -> str:
    with fsspec.open(url, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    return url


def put_tree(local: Path, url: str) -> str:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            put(f"{url}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return url


# ---------------------------------------------------------------- validation


def config(runner, output, paths, stages, options=None):
    return copy.deepcopy({"input": {"paths": paths}, "output": output, "runner": {**runner, **(options or {})},
                          "stages": stages})


def local_stages(tmp_path):
    return [
        {"name": "language", "backend": "fasttext"},                       # default: this machine's ~/.cache
        {"name": "quality_classifier", "model": str(tmp_path / "q.bin")},
        {"name": "toxicity"},                                               # built-in: inside the package
        {"name": "decontaminate", "eval_sets": [{"name": "e", "path": str(tmp_path / "e.jsonl")}]},
        {"name": "synthetic", "count": 2, "template": {"templates": str(tmp_path / "t.yaml")}},
        {"name": "augment", "synonyms": str(tmp_path / "syn.tsv")},
        {"name": "poisoning", "reference_model": str(tmp_path / "ref.npz")},
    ]


def problems_of(data, beam_args=()):
    with pytest.raises(ConfigError) as info:
        validate_config(data, check_files=False, beam_args=beam_args)
    return dict(info.value.problems)


def test_a_remote_runner_names_every_local_path(tmp_path):
    data = config(DATAFLOW, str(tmp_path / "out"), [str(tmp_path / "in/*.jsonl")], local_stages(tmp_path))
    data["runner"]["options"]["temp_location"] = "/tmp/beam"
    found = problems_of(data)
    assert sorted(found) == sorted([
        "input.paths[0]", "output", "runner.options.temp_location", "stages[0].model_path", "stages[1].model",
        "stages[3].eval_sets[0].path", "stages[4].template.templates", "stages[5].synonyms",
        "stages[6].reference_model"])
    assert "runner dataflow" in found["output"] and "gs://" in found["output"] and "_spill" in found["output"]
    assert str(Path.home() / ".cache") in found["stages[0].model_path"] or "THRESHER_MODELS" in os.environ


def test_remote_urls_validate_with_a_remote_runner():
    bucket = "gs://bucket"
    stages = [
        {"name": "language", "backend": "fasttext", "model_path": f"{bucket}/lid.176.ftz"},
        {"name": "quality_classifier", "model": f"{bucket}/q.bin"},
        {"name": "decontaminate", "eval_sets": [{"name": "e", "path": f"{bucket}/e.jsonl"}]},
        {"name": "synthetic", "count": 2, "template": {"templates": f"{bucket}/t.yaml"}},
        {"name": "augment", "synonyms": f"s3://other/syn.tsv"},
        {"name": "poisoning", "reference_model": f"{bucket}/ref.npz"},
    ]
    data = config(DATAFLOW, f"{bucket}/out", [f"{bucket}/in/*.jsonl"], stages,
                  {"options": {"temp_location": f"{bucket}/tmp"}})
    assert len(validate_config(data, check_files=False).stages) == 6


def test_the_runner_and_temp_location_flags_count(tmp_path):
    direct = config({"name": "direct"}, str(tmp_path / "out"), [str(tmp_path / "x.jsonl")], [])
    assert validate_config(direct, check_files=False)  # local runner, local paths: fine
    found = problems_of(direct, ["--runner", "FlinkRunner", "--temp_location=/tmp/t", "--flink_master=host:8081"])
    assert set(found) == {"input.paths[0]", "output", "--temp_location"} and "--runner" in found["output"]
    remote = config(DATAFLOW, str(tmp_path / "out"), [str(tmp_path / "x.jsonl")], [])
    assert validate_config(remote, check_files=False, beam_args=["--runner=DirectRunner"])
    assert set(problems_of(config({"name": "prism"}, "out", ["in.jsonl"], []))) == {"input.paths[0]", "output"}


def test_thresher_validate_takes_the_beam_flags(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config({"name": "direct"}, str(tmp_path / "out"), ["gs://b/in.jsonl"], [])))
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--", "--runner=DataflowRunner"]) == 1
    err = capsys.readouterr().err
    assert "  output: " in err and "runner DataflowRunner (--runner)" in err and "input.paths" not in err


# ---------------------------------------------------------------- storage


def test_local_copy_copies_once_per_machine_and_again_when_the_file_changes(mem, tmp_path):
    url = put(f"{mem}/models/m.bin", b"weights v1")
    first = storage.local_copy(url)
    assert first.read_bytes() == b"weights v1" and first.name == "m.bin"
    assert tmp_path / "cache" in first.parents
    first.write_bytes(b"the cached copy")  # a second call must not copy again
    assert storage.local_copy(url) == first and first.read_bytes() == b"the cached copy"
    put(url, b"weights v2, longer")
    second = storage.local_copy(url)
    assert second != first and second.read_bytes() == b"weights v2, longer"
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp-" in p.name]
    assert storage.local_copy("~/x.bin") == Path.home() / "x.bin"  # local: the path itself
    with pytest.raises(FileNotFoundError):
        storage.local_copy(f"{mem}/models/absent.bin")


def test_concurrent_copies_of_a_directory_are_whole(beam_bucket):
    # through Beam's FileSystems: fsspec's memory file system hands every reader one shared handle
    files = {f"d{i}/f{j}.txt": os.urandom(64 * 1024) for i in range(3) for j in range(4)}
    for name, data in files.items():
        (beam_bucket / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (beam_bucket / "tree" / name).write_bytes(data)
    results, errors = [], []

    def copy():
        try:
            results.append(storage.local_copy("thrbeam://tree"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=copy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert {p.relative_to(results[0]).as_posix(): p.read_bytes()
            for p in results[0].rglob("*") if p.is_file()} == files
    assert [p.name for p in results[0].parent.iterdir()] == ["tree"]  # no temporary copy left


def test_atomic_write_and_the_checks(mem, tmp_path):
    storage.atomic_write(f"{mem}/cache/ab/k.json", b"{}")
    assert storage.isfile(f"{mem}/cache/ab/k.json") and storage.isdir(f"{mem}/cache")
    assert storage.exists(f"{mem}/cache") and not storage.exists(f"{mem}/nothing")
    assert storage.read_bytes(f"{mem}/cache/ab/k.json") == b"{}"
    storage.atomic_write(tmp_path / "local" / "k.json", b"[1]")
    assert (tmp_path / "local" / "k.json").read_bytes() == b"[1]" and len(list((tmp_path / "local").iterdir())) == 1
    storage.atomic_write(f"file://{tmp_path}/local/k.json", b"[2]")
    assert (tmp_path / "local" / "k.json").read_bytes() == b"[2]" and len(list((tmp_path / "local").iterdir())) == 1
    with pytest.raises(storage.StorageError, match="no file system"):
        storage.exists("nosuchfs://bucket/x")


def test_a_remote_training_out_copies_only_its_newest_complete_checkpoint(mem):
    for step, complete in ((2, True), (999_999, True), (1_000_000, True), (2_000_000, False)):
        base = f"{mem}/run/checkpoints/step-{step:06d}"
        put(f"{base}/model.safetensors", f"weights {step}")
        if complete:
            put(f"{base}/COMPLETE", f"{step}\n")
    from thresher.training.checkpoint import local_checkpoint

    put(f"{mem}/run/metrics.csv", "step,loss\n")
    local = local_checkpoint(f"{mem}/run")
    assert local.name == "step-1000000" and (local / "model.safetensors").read_text() == "weights 1000000"
    assert local_checkpoint(f"{mem}/run/checkpoints/step-000002").name == "step-000002"
    assert local_checkpoint(f"{mem}/empty") is None


class _BeamTestFileSystem(LocalFileSystem):
    """A Beam file system for the scheme ``thrbeam://`` over a local folder: fsspec knows no such
    scheme, so ``storage`` has to go through Beam's FileSystems (as for gs:// without gcsfs)."""

    root = ""

    @classmethod
    def scheme(cls):
        return "thrbeam"

    def _local(self, url):  # Beam's own match() calls exists() with local paths too
        return os.path.join(self.root, url[len("thrbeam://"):]) if url.startswith("thrbeam://") else url

    def _url(self, path):
        return "thrbeam://" + os.path.relpath(path, self.root)

    def exists(self, path):
        return super().exists(self._local(path))

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        return [MatchResult(p, [FileMetadata(self._url(m.path), m.size_in_bytes, m.last_updated_in_seconds)
                                for m in r.metadata_list]) for p, r in zip(patterns, results)]


@pytest.fixture
def beam_bucket(tmp_path, monkeypatch):
    monkeypatch.setenv("THRESHER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_BeamTestFileSystem, "root", str(tmp_path / "bucket"))
    (tmp_path / "bucket").mkdir()
    return tmp_path / "bucket"


def test_schemes_fsspec_lacks_go_through_beam_filesystems(beam_bucket):
    (beam_bucket / "m" / "sub").mkdir(parents=True)
    (beam_bucket / "m" / "a.bin").write_bytes(b"A")
    (beam_bucket / "m" / "sub" / "b.bin").write_bytes(b"B")
    assert storage.isfile("thrbeam://m/a.bin") and storage.isdir("thrbeam://m") and not storage.isfile("thrbeam://m")
    assert storage.read_bytes("thrbeam://m/sub/b.bin") == b"B"
    tree = storage.local_copy("thrbeam://m")
    assert (tree / "a.bin").read_bytes() == b"A" and (tree / "sub" / "b.bin").read_bytes() == b"B"
    storage.atomic_write("thrbeam://m/new/c.json", b"{}")
    assert (beam_bucket / "m" / "new" / "c.json").read_bytes() == b"{}"


# ---------------------------------------------------------------- stages reading remote files


def test_classifier_and_language_models_from_a_url(mem):
    url = put(f"{mem}/models/quality.ftz", (MODELS_DIR / "quality.ftz").read_bytes())
    remote, builtin = QualityClassifierStage(model=url, action="annotate"), QualityClassifierStage(action="annotate")
    assert remote.check() == [] and remote.worker_paths() == [("model", url)] and builtin.worker_paths() == []
    docs = [{"id": str(i), "text": t} for i, t in enumerate(["A careful essay on rivers.", "buy now!!! cheap"])]
    assert [d.scores for d in remote.process_batch(docs)] == [d.scores for d in builtin.process_batch(docs)]
    missing = QualityClassifierStage(model=f"{mem}/models/none.ftz")
    assert missing.check()[0][0] == "model" and "not found" in missing.check()[0][1]
    # any fastText model stands in for lid.176 here: the point is where it is read from
    language = Language(backend="fasttext", keep=[], model_path=url)
    assert language.check() == []
    language.setup()
    assert language.process({"id": "1", "text": "some words"}).meta["language"] in ("hq", "lq")
    assert Language(backend="fasttext", model_path=f"{mem}/lid.ftz").check()[0][0] == "model_path"


def test_eval_sets_from_urls(mem, tmp_path):
    from datasets import Dataset

    from thresher.pipeline.decontaminate import Decontaminate

    items = [f"question {i} about the long river that flows through the old town to the sea" for i in range(5)]
    local_jsonl = tmp_path / "e.jsonl"
    local_jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in items))
    Dataset.from_dict({"text": items}).save_to_disk(str(tmp_path / "ds"))
    remote = Decontaminate(ngram=8, eval_sets=[
        {"name": "j", "path": put(f"{mem}/evals/e.jsonl", local_jsonl.read_bytes())},
        {"name": "d", "path": put_tree(tmp_path / "ds", f"{mem}/evals/ds")}])
    local = Decontaminate(ngram=8, eval_sets=[{"name": "j", "path": str(local_jsonl)},
                                              {"name": "d", "path": str(tmp_path / "ds")}])
    assert remote.check() == [] and remote.eval_sets[1].resolved_format() == "datasets"
    assert (remote.build_index().hashes == local.build_index().hashes).all() and len(local.build_index()) > 0
    missing = Decontaminate(eval_sets=[{"name": "x", "path": f"{mem}/evals/none.jsonl"}])
    assert missing.check() == [("eval_sets.0.path", f"{mem}/evals/none.jsonl does not exist")]


def test_templates_facts_and_prompts_from_urls(mem):
    from thresher.pipeline.synthetic.base import load_prompts
    from thresher.pipeline.synthetic.stage import Synthetic
    from thresher.pipeline.synthetic.templates import TemplateSet

    put(f"{mem}/tpl/facts/cities.csv", "city,country\nOslo,Norway\nLima,Peru\n")
    put(f"{mem}/tpl/t.yaml", "templates:\n  - name: capital\n    slots: {row: {facts: facts/cities.csv, rows: [1, 1]}}\n"
                             "    question: \"Which country is {{ row[0].city }} in?\"\n"
                             "    answer: \"{{ row[0].country }}\"\n")
    stage = Synthetic(count=4, template={"templates": f"{mem}/tpl/t.yaml"})
    assert stage.check() == [] and stage.worker_paths() == [("template.templates", f"{mem}/tpl/t.yaml")]
    docs = stage.documents(stage.build_generator(0), 0, 0, 4)
    assert len(docs) == 4 and all(("Norway" in d["text"]) != ("Peru" in d["text"]) for d in docs)
    assert TemplateSet.from_yaml(f"{mem}/tpl/t.yaml").templates[0].name == "capital"
    assert load_prompts(put(f"{mem}/p.yaml", "prompts: [a, b]\n")) == ["a", "b"]


def test_openai_cache_in_a_bucket(server, mem):  # noqa: F811 - the imported fixture
    first = client(server, cache_dir=f"{mem}/openai")
    assert first.complete("a", 1) == "echo: a #1" and len(server.requests) == 1
    again = client(server, cache_dir=f"{mem}/openai")
    assert again.complete("a", 1) == "echo: a #1"
    assert len(server.requests) == 1 and again.cache_hits == 1
    assert len(fsspec.filesystem("memory").find(f"/{mem[len('memory://'):]}/openai")) == 1


def test_lm_generator_and_onion_checkpoint_from_urls(mem, tiny_checkpoint):  # noqa: F811
    from thresher.training.onion import resolve_checkpoint
    from thresher.pipeline.synthetic.lm import LocalLMGenerator
    from thresher.training.sampling import detect_model_kind

    root, tokenizer = tiny_checkpoint
    url = put_tree(root, f"{mem}/train-out")
    tok_url = put(f"{mem}/tok.model", tokenizer.read_bytes())
    make = lambda where, tok: LocalLMGenerator(where, ["the cat"], 3, tokenizer=tok, max_tokens=5, device="cpu")
    assert detect_model_kind(url) == "thresher"
    remote = [e.text for e in make(url, tok_url).generate(range(3))]
    assert remote == [e.text for e in make(str(root), str(tokenizer)).generate(range(3))]
    resolved = resolve_checkpoint(url, tok_url)
    assert resolved.directory.name == "step-000001" and resolved.tokenizer == tokenizer.read_bytes()
    assert storage.is_remote(url) and Path(storage.cache_root()) in resolved.directory.parents


def test_augment_synonyms_and_poisoning_reference_from_urls(mem, tmp_path):
    from thresher.pipeline.augment import Augment
    from thresher.pipeline.poisoning import Poisoning

    url = put(f"{mem}/syn.json", json.dumps({"big": ["large", "huge"]}))
    stage = Augment(synonyms=url, ops={"synonym_replace": {"p": 1.0}})
    assert stage.check() == [] and stage.load_synonyms() == {"big": ["large", "huge"]}
    assert Augment(synonyms=f"{mem}/none.json", ops={"synonym_replace": {"p": 1.0}}).check()[0][0] == "synonyms"
    reference = put(f"{mem}/ref.npz", b"not checked here, only found")
    assert Poisoning(reference_model=reference).check() == []
    assert Poisoning(reference_model=f"{mem}/none.npz").check()[0][0] == "reference_model"


def test_shared_paths_are_accepted_with_a_remote_runner(tmp_path):
    runner = {**DATAFLOW, "shared_paths": ["/models", "/mnt/nfs/"]}
    stages = [{"name": "language", "backend": "fasttext", "model_path": "/models/lid.176.ftz"},
              {"name": "quality_classifier", "model": "/models/../etc/q.bin"}]
    found = problems_of(config(runner, "/mnt/nfs/out", ["/mnt/nfsx/in.jsonl"], stages))
    assert set(found) == {"input.paths[0]", "stages[1].model"}  # /mnt/nfsx is not under /mnt/nfs
    with pytest.raises(ConfigError, match="runner.shared_paths"):
        validate_config(config({**DATAFLOW, "shared_paths": ["models"]}, "gs://b/o", ["gs://b/i"], []),
                        check_files=False)
