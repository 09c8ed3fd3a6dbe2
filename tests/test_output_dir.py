"""A run never destroys its own input, and deletes only files it wrote (issue 15)."""

import fnmatch
import json
import subprocess
import sys

import pytest
from apache_beam.io.filesystem import FileMetadata, FileSystem

from conftest import read_output, write_jsonl
from thresher.pipeline.config import ConfigError, validate_config
from thresher.pipeline.outdir import (OWNED_DIRS, OWNED_FILES, TEMPORARY, ForeignFiles, owned_part_reached,
                                     prepare_output)
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


def config(paths, out, stages=(), **extra):
    return validate_config({"input": {"paths": paths}, "output": str(out), "runner": IN_MEMORY,
                            "stages": list(stages), **extra})


def docs(n, prefix="d"):
    return [{"id": f"{prefix}{i}", "text": f"text of document {i}"} for i in range(n)]


@pytest.fixture
def first_run(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", docs(5))
    run_pipeline(config([str(tmp_path / "in.jsonl")], tmp_path / "out"))
    kept = sorted((tmp_path / "out" / "kept").glob("*.jsonl.gz"))
    assert kept
    return tmp_path / "out", kept


def test_chaining_into_the_same_output_is_refused_and_the_input_survives(first_run):
    out, kept = first_run
    with pytest.raises(ConfigError) as err:
        config([str(out / "kept" / "*.jsonl.gz")], out)
    assert err.value.problems[0][0] == "input.paths[0]" and "kept/" in err.value.problems[0][1]
    assert "another output directory" in err.value.problems[0][1]
    assert all(path.exists() for path in kept)
    chained = run_pipeline(config([str(out / "kept" / "*.jsonl.gz")], out.parent / "out2"))
    assert chained.stats["totals"]["kept"] == 5 and chained.stats["totals"]["quarantined"] == 0


def test_the_validate_command_names_the_key(first_run, tmp_path):
    out, _ = first_run
    path = tmp_path / "chain.json"
    path.write_text(json.dumps({"input": {"paths": [str(out / "kept" / "*.jsonl.gz")]}, "output": str(out)}))
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "input.paths[0]:" in proc.stderr and "kept/" in proc.stderr


@pytest.mark.parametrize("pattern,part", [
    ("{tmp}/**/*.jsonl.gz", "kept/"),          # recursive glob from above OUT
    ("{tmp}/*/rejected/*.gz", "rejected/"),   # wildcard folder that can be OUT
    ("{tmp}/out/*", "stats.json"),             # everything at the top of OUT
    ("{tmp}/./out/../out/shards/*.arrow", "shards/"),
    ("{tmp}/out/_spill/x/*.pkl", "_spill/"),
])
def test_globs_that_can_reach_into_owned_parts_are_refused(tmp_path, pattern, part):
    assert owned_part_reached(pattern.format(tmp=tmp_path), str(tmp_path / "out")) == part


@pytest.mark.parametrize("pattern", [
    "{tmp}/out/input/*.jsonl.gz",  # the demo's layout: a folder of the user's inside OUT
    "{tmp}/data/*.jsonl",
    "{tmp}/out/*.jsonl",           # files directly in OUT are the user's
    "{tmp}/outer/kept/*.jsonl.gz",
    "gs://bucket/out/kept/*.gz",   # another file system
])
def test_globs_that_cannot_reach_owned_parts_are_accepted(tmp_path, pattern):
    assert owned_part_reached(pattern.format(tmp=tmp_path), str(tmp_path / "out")) is None


def test_remote_output_is_checked_too():
    assert owned_part_reached("gs://b/runs//out/kept/*.gz", "gs://b/runs/out/") == "kept/"
    assert owned_part_reached("gs://b/runs/*/quarantine/*", "gs://b/runs/out") == "quarantine/"
    assert owned_part_reached("gs://other/runs/out/kept/*", "gs://b/runs/out") is None


def test_a_symlink_into_kept_is_refused_at_run_time(first_run, tmp_path):
    out, kept = first_run
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "linked.jsonl.gz").symlink_to(kept[0])
    with pytest.raises(ConfigError) as err:
        run_pipeline(config([str(tmp_path / "data" / "*.jsonl.gz")], out))
    assert "kept/" in str(err.value)
    assert all(path.exists() for path in kept)


def test_a_stage_path_inside_an_owned_part_is_refused(tmp_path):
    (tmp_path / "out" / "shards").mkdir(parents=True)
    (tmp_path / "in.jsonl").write_text("")
    with pytest.raises(ConfigError) as err:
        validate_config({"input": {"paths": [str(tmp_path / "in.jsonl")]}, "output": str(tmp_path / "out"),
                         "stages": [{"name": "tokenize", "model_path": str(tmp_path / "out/shards/tokenizer.model")}]},
                        check_files=False)
    assert [p for p, _ in err.value.problems] == ["stages[0].model_path"]


def test_an_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        config([str(tmp_path / "in.jsonl")], tmp_path / "out")
    assert err.value.problems[0][0] == "output"


def test_a_run_deletes_only_its_own_files(first_run, tmp_path):
    out, _ = first_run
    (out / "input").mkdir()
    mine = [out / "input" / "data.jsonl", out / "notes.txt", out / "kept.md"]
    for path in mine:
        path.write_text("mine")
    stale = [out / "kept" / "part-00007-of-00009.jsonl.gz",        # an earlier run with 9 shards
             out / "kept" / ".tmp-part-00000-of-00004.jsonl.gz-99",  # an atomic write cut short
             out / "_spill" / "kept" / "00001-abc.pkl", out / "shards" / "shard-00000-00000.arrow",
             out / "poisoning_review" / "review-00000-of-00002.jsonl", out / ".tmp-stats.json-12"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"old")
    write_jsonl(tmp_path / "in.jsonl", docs(3, "new"))
    run_pipeline(config([str(tmp_path / "in.jsonl")], out))
    assert all(path.read_text() == "mine" for path in mine)
    assert not any(path.exists() for path in stale)
    assert sorted(d["id"] for d in read_output(out, "kept")) == ["new0", "new1", "new2"]
    assert not (out / "_spill").exists() and not (out / "poisoning_review").exists()


def test_a_foreign_file_in_an_owned_part_stops_the_run_before_anything_is_deleted(first_run, tmp_path):
    out, kept = first_run
    (out / "kept" / "my-notes.txt").write_text("mine")
    (out / "shards").mkdir()
    (out / "shards" / "vocab.txt").write_text("mine too")
    with pytest.raises(ConfigError) as err:
        run_pipeline(config([str(tmp_path / "in.jsonl")], out))
    assert err.value.problems[0][0] == "output" and "my-notes.txt" in str(err.value) and "vocab.txt" in str(err.value)
    assert (out / "kept" / "my-notes.txt").read_text() == "mine" and (out / "stats.json").exists()
    assert all(path.exists() for path in kept)


def test_owned_names_agree_with_the_writers():
    from thresher.pipeline.graph import STATS_DIR
    from thresher.pipeline.io import SPILL_DIR
    from thresher.pipeline.poisoning import REVIEW_DIR
    from thresher.pipeline.report import REPORT_NAME
    from thresher.tokenization.manifest import MANIFEST_NAME, TOKENIZER_NAME
    from thresher.tokenization.shards import shard_name

    assert {STATS_DIR, SPILL_DIR, REVIEW_DIR} <= set(OWNED_DIRS) and {"stats.json", REPORT_NAME} <= set(OWNED_FILES)
    for name in (MANIFEST_NAME, TOKENIZER_NAME, shard_name(3, 12)):
        assert any(fnmatch.fnmatchcase(name, p) for p in OWNED_DIRS["shards"])


def test_what_an_interrupted_atomic_write_leaves_is_cleared_by_the_next_run(tmp_path):
    """The temporary names of the one atomic writer (filters/storage.py) match outdir's TEMPORARY."""
    from thresher.filters.storage import atomic_writer

    out = tmp_path / "out"
    leftovers = []
    for target in (out / "kept" / "part-00000-of-00001.jsonl.gz", out / "shards" / "manifest.json",
                   out / "_progress" / "read-1.json", out / "stats.json", out / "report.html"):
        target.parent.mkdir(parents=True, exist_ok=True)
        before = set(target.parent.iterdir())
        with atomic_writer(target) as fh:
            fh.write(b"x")
            leftovers += sorted(set(target.parent.iterdir()) - before)
    assert len(leftovers) == 5
    for path in leftovers:  # as a killed run leaves them
        path.write_bytes(b"partial")
    prepare_output(str(out))
    assert not any(path.exists() for path in leftovers)


def test_every_file_a_run_leaves_in_owned_parts_has_an_owned_name(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", docs(40) + docs(5, "copy"))  # repeated text: exact_dedup parks, removes
    run_pipeline(config([str(tmp_path / "in.jsonl")], tmp_path / "out", [{"name": "exact_dedup"}],
                        output_options={"shards": 3}))
    out = tmp_path / "out"
    for part, patterns in OWNED_DIRS.items():
        for path in (out / part).rglob("*"):
            if path.is_file():
                assert any(fnmatch.fnmatchcase(path.name, p) for p in patterns + TEMPORARY), path
    assert len(list((out / "kept").glob("*.jsonl.gz"))) == 3


class ObjectStore(FileSystem):
    """A flat in-memory object store, like gs:// or s3://: no folders, only names with a prefix.
    Defining the class registers its scheme with Beam's FileSystems."""

    objects: dict[str, bytes] = {}

    @classmethod
    def scheme(cls):
        return "thresher-objects"

    def join(self, base, *paths):
        return "/".join([base.rstrip("/"), *paths])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for path, data in sorted(self.objects.items()):
            if path.startswith(prefix):
                yield FileMetadata(path, len(data))

    def exists(self, path):
        return path in self.objects

    def delete(self, paths):
        for path in paths:
            del self.objects[path]

    def mkdirs(self, path):
        raise NotImplementedError

    create = open = copy = rename = size = last_updated = checksum = metadata = mkdirs


@pytest.fixture
def store():
    ObjectStore.objects.clear()
    yield ObjectStore.objects
    ObjectStore.objects.clear()


def test_a_remote_output_is_cleared_of_thresher_files_only(store):
    out = "thresher-objects://bucket/run"
    for name in ("kept/part-00000-of-00004.jsonl.gz", "rejected/part-00003-of-00004.jsonl.gz", "stats.json",
                 "_spill/kept/00001-abc.pkl", "shards/manifest.json", "input/data.jsonl", "notes.txt"):
        store[f"{out}/{name}"] = b"x"
    prepare_output(out)
    assert sorted(store) == [f"{out}/input/data.jsonl", f"{out}/notes.txt"]


def test_a_foreign_object_in_a_remote_owned_part_stops_the_run(store):
    out = "thresher-objects://bucket/run"
    store[f"{out}/kept/part-00000-of-00004.jsonl.gz"] = b"x"
    store[f"{out}/kept/README"] = b"mine"
    with pytest.raises(ForeignFiles, match="README"):
        prepare_output(out)
    assert len(store) == 2
