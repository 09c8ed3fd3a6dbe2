import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import stages_for_tests
from conftest import output_bytes, read_output, write_jsonl
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}
TWO_PROCESSES = {"name": "direct", "options": {"direct_num_workers": 2, "direct_running_mode": "multi_processing"}}


@pytest.fixture(autouse=True)
def _test_stages(monkeypatch):
    stages_for_tests.register(monkeypatch)


def run(tmp_path, input_cfg, stages=(), runner=IN_MEMORY, out="out", **extra):
    config = validate_config({"input": input_cfg, "output": str(tmp_path / out), "runner": runner,
                              "stages": list(stages), **extra})
    return run_pipeline(config)


def docs(n, prefix="d"):
    return [{"id": f"{prefix}{i}", "text": f"document number {i} " + "word " * (i % 9)} for i in range(n)]


def test_jsonl_plain_gzip_zstd_are_read_alike(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "a.jsonl", docs(10, "a"))
    write_jsonl(data / "b.jsonl.gz", docs(10, "b"), compress=True)
    raw = "".join(json.dumps(d) + "\n" for d in docs(10, "c")).encode()
    (data / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    result = run(tmp_path, {"paths": [str(data / "*")]})
    kept = read_output(tmp_path / "out", "kept")
    assert sorted(d["id"] for d in kept) == sorted(d["id"] for d in docs(10, "a") + docs(10, "b") + docs(10, "c"))
    assert {d["source"] for d in kept} == {"a.jsonl", "b.jsonl.gz", "c.jsonl.zst"}
    assert result.stats["totals"] == {"read": 30, "generated": 0, "kept": 30, "rejected": 0, "quarantined": 0,
                                      "accounted": True}


def test_meta_fields_are_copied_into_meta(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "text": "t", "url": "https://x.org/a", "meta": {"q": 1}}])
    run(tmp_path, {"paths": [str(tmp_path / "d.jsonl")], "meta_fields": ["url", "absent"]})
    assert read_output(tmp_path / "out", "kept")[0]["meta"] == {"q": 1, "url": "https://x.org/a"}


def test_parquet_arrow_text_and_hf_dataset_inputs(tmp_path):
    table = pa.table({"body": [f"text {i}" for i in range(5)], "key": [f"k{i}" for i in range(5)]})
    (tmp_path / "pq").mkdir()
    pq.write_table(table, tmp_path / "pq" / "part.parquet")
    run(tmp_path, {"paths": [str(tmp_path / "pq" / "*.parquet")], "format": "parquet",
                   "text_field": "body", "id_field": "key"}, out="o1")
    assert sorted(d["id"] for d in read_output(tmp_path / "o1", "kept")) == [f"k{i}" for i in range(5)]

    (tmp_path / "arrow").mkdir()
    with pa.ipc.new_file(str(tmp_path / "arrow" / "f.arrow"), table.schema) as w:
        w.write_table(table)
    with pa.ipc.new_stream(str(tmp_path / "arrow" / "s.arrow"), table.schema) as w:
        w.write_table(table)
    run(tmp_path, {"paths": [str(tmp_path / "arrow" / "*.arrow")], "format": "arrow", "text_field": "body",
                   "id_field": None}, out="o2")
    ids = sorted(d["id"] for d in read_output(tmp_path / "o2", "kept"))
    assert ids == sorted([f"f.arrow:{i}" for i in range(1, 6)] + [f"s.arrow:{i}" for i in range(1, 6)])

    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "one.txt").write_text("first document\nstill first")
    (tmp_path / "txt" / "two.txt").write_text("second document")
    run(tmp_path, {"paths": [str(tmp_path / "txt" / "*.txt")], "format": "text"}, out="o3")
    kept = {d["id"]: d["text"] for d in read_output(tmp_path / "o3", "kept")}
    assert kept == {"one.txt": "first document\nstill first", "two.txt": "second document"}

    run(tmp_path, {"paths": [str(tmp_path / "txt" / "one.txt")], "format": "text_lines"}, out="o4")
    assert sorted(d["id"] for d in read_output(tmp_path / "o4", "kept")) == ["one.txt:1", "one.txt:2"]

    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["hf one", "hf two"], "id": ["h1", "h2"]}).save_to_disk(str(tmp_path / "hf"))
    run(tmp_path, {"paths": [str(tmp_path / "hf")], "format": "hf_dataset"}, out="o5")
    assert sorted(d["text"] for d in read_output(tmp_path / "o5", "kept")) == ["hf one", "hf two"]


def test_bad_input_is_quarantined_with_reasons_and_the_run_succeeds(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = [json.dumps(d) for d in docs(6)]
    lines = [good[0], '{"id": "broken", "text": "unterminated', good[1], None, good[2],
             '{"id": "nofield"}', '{"id": "num", "text": 42}', '{"id": "empty", "text": ""}', good[3]]
    payload = b"".join((b'{"id": "utf", "text": "bad \xff bytes"}' if line is None else line.encode()) + b"\n"
                       for line in lines)
    (data / "mixed.jsonl").write_bytes(payload)
    whole = gzip.compress(("\n".join(good[4:] + [json.dumps(d) for d in docs(40, "t")]) + "\n").encode(), mtime=0)
    (data / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"input": {"paths": [str(data / "*")]}, "output": str(tmp_path / "out"),
                                  "runner": IN_MEMORY, "stages": []}))
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "run", str(config)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "could not be parsed" in proc.stdout and "all accounted for" in proc.stdout
    quarantine = read_output(tmp_path / "out", "quarantine")
    errors = {(q["file"], q["line"]): q["error"] for q in quarantine}
    assert errors[("mixed.jsonl", 2)].startswith("invalid JSON")
    assert errors[("mixed.jsonl", 4)].startswith("invalid UTF-8")
    assert errors[("mixed.jsonl", 6)] == "missing text field 'text'"
    assert errors[("mixed.jsonl", 7)] == "text field 'text' is int, not a string"
    assert errors[("mixed.jsonl", 8)].startswith("empty document")
    truncated = [q for q in quarantine if q["file"] == "cut.jsonl.gz"]
    assert len(truncated) == 1 and "truncated gzip" in truncated[0]["error"]
    assert all(q["raw_base64"] is not None for q in quarantine)
    kept = read_output(tmp_path / "out", "kept")
    assert {"d0", "d1", "d2", "d3", "d4", "d5"} <= {d["id"] for d in kept}
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    t = stats["totals"]
    assert t["quarantined"] == 6 and t["read"] == t["kept"] + t["rejected"] + t["quarantined"] and t["accounted"]


def test_stage_errors_are_isolated_per_document(tmp_path):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, docs(20) + [{"id": "boom", "text": "this one goes BOOM"}])
    # 1 of 21 documents fails: over the default budget of 1% (tests/test_stage_errors.py), within 10%
    result = run(tmp_path, {"paths": [str(data)]}, [{"name": "test_explode"}],
                 output_options={"max_stage_error_frac": 0.1})
    rejected = read_output(tmp_path / "out", "rejected")
    assert [(r["id"], r["reason"]) for r in rejected] == [("boom", "stage_error")]
    assert "cannot handle BOOM" in rejected[0]["meta"]["error"]
    assert result.stats["stages"][0] | {"seconds": None} == {
        "index": 0, "name": "test_explode", "in": 21, "kept": 20, "rejected": 1, "seconds": None,
        "reasons": {"stage_error": 1}}


def test_rejections_carry_stage_reason_value_and_text_and_scores_reach_meta(tmp_path):
    data = tmp_path / "d.jsonl"
    write_jsonl(data, docs(30))
    result = run(tmp_path, {"paths": [str(data)]}, [{"name": "test_upper"}, {"name": "test_min_words", "min_words": 8}])
    rejected = read_output(tmp_path / "out", "rejected")
    kept = read_output(tmp_path / "out", "kept")
    assert rejected and kept
    for r in rejected:
        assert r["stage"] == "test_min_words" and r["reason"] == "too_few_words"
        assert r["value"] == len(r["text"].split()) < 8 and r["text"].isupper()
    assert all(d["meta"]["words"] >= 8 and d["text"].isupper() for d in kept)
    by_stage = {s["name"]: s for s in result.stats["stages"]}
    assert by_stage["test_upper"]["in"] == by_stage["test_upper"]["kept"] == 30
    assert by_stage["test_min_words"]["rejected"] == len(rejected)


def test_one_and_two_workers_write_identical_files_and_rerun_replaces_output(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for part in range(3):
        write_jsonl(data / f"p{part}.jsonl", docs(150, f"p{part}-") + [{"id": f"bad{part}"}])
    stages = [{"name": "test_min_words", "min_words": 6}, {"name": "test_upper"}]
    run(tmp_path, {"paths": [str(data / "*.jsonl")]}, stages, runner=IN_MEMORY, out="one")
    run(tmp_path, {"paths": [str(data / "*.jsonl")]}, stages, runner=TWO_PROCESSES, out="two")
    one, two = output_bytes(tmp_path / "one"), output_bytes(tmp_path / "two")
    assert one == two and any(k.startswith("kept/") for k in one) and any(k.startswith("quarantine/") for k in one)
    # a second run into the same directory with fewer shards leaves no stale files behind
    run(tmp_path, {"paths": [str(data / "*.jsonl")]}, stages, out="one", output_options={"shards": 1})
    assert sorted(p.name for p in (tmp_path / "one" / "kept").iterdir()) == ["part-00000-of-00001.jsonl.gz"]


def test_missing_input_is_a_config_error(tmp_path):
    from thresher.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="no files match"):
        run(tmp_path, {"paths": [str(tmp_path / "nothing" / "*.jsonl")]})
