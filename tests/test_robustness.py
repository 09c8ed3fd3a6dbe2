"""Bad days: damaged archives, bad bytes, huge and empty documents, wrong types in every field,
and runs killed half-way."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import zstandard

from conftest import output_bytes, read_output, write_jsonl
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


def run(tmp_path, paths, stages=(), out="out", **input_extra):
    config = validate_config({"input": {"paths": paths, **input_extra}, "output": str(tmp_path / out),
                              "runner": IN_MEMORY, "stages": list(stages)})
    return run_pipeline(config).stats


def lines(n, prefix="d"):
    return "".join(json.dumps({"id": f"{prefix}{i}", "text": f"text of document {i}"}) + "\n" for i in range(n))


def test_truncated_zstd_keeps_complete_records(tmp_path):
    data = zstandard.ZstdCompressor().compress(lines(50_000).encode())  # several 128 KB blocks
    (tmp_path / "cut.jsonl.zst").write_bytes(data[: len(data) // 2])
    stats = run(tmp_path, [str(tmp_path / "cut.jsonl.zst")])
    quarantine = read_output(tmp_path / "out", "quarantine")
    assert stats["totals"]["accounted"] and 0 < stats["totals"]["kept"] < 50_000
    assert len(quarantine) == 1 and "zstd" in quarantine[0]["error"]


def test_garbage_that_is_not_gzip_at_all(tmp_path):
    (tmp_path / "fake.jsonl.gz").write_bytes(b"this is not gzip data at all\n" * 10)
    stats = run(tmp_path, [str(tmp_path / "fake.jsonl.gz")])
    quarantine = read_output(tmp_path / "out", "quarantine")
    assert stats["totals"] == {**stats["totals"], "read": 1, "quarantined": 1, "kept": 0}
    assert "gzip" in quarantine[0]["error"]


def test_nul_bytes_and_control_characters_are_handled(tmp_path):
    records = [{"id": "nul", "text": "before\x00after and more words here"},
               {"id": "ctl", "text": "bell\x07 and\x1b escape"}]
    write_jsonl(tmp_path / "d.jsonl", records)
    with open(tmp_path / "d.jsonl", "ab") as fh:
        fh.write(b'{"id": "raw-nul", "text": "raw \x00 byte"}\n')  # a literal NUL is invalid JSON
    run(tmp_path, [str(tmp_path / "d.jsonl")], [{"name": "normalize"}])
    kept = {d["id"]: d["text"] for d in read_output(tmp_path / "out", "kept")}
    assert "\x00" not in kept["nul"] and kept["nul"].startswith("before") and "\x07" not in kept["ctl"]
    assert [q["line"] for q in read_output(tmp_path / "out", "quarantine")] == [3]


def test_a_50_mb_document_goes_through_and_an_oversized_one_is_quarantined(tmp_path):
    big = "word " * 10_000_000  # 50 MB
    write_jsonl(tmp_path / "big.jsonl", [{"id": "big", "text": big}, {"id": "small", "text": "small one here"}])
    stats = run(tmp_path, [str(tmp_path / "big.jsonl")], [{"name": "normalize"}])
    assert stats["totals"]["kept"] == 2
    stats = run(tmp_path, [str(tmp_path / "big.jsonl")], out="capped", max_document_bytes=1024 * 1024)
    quarantine = read_output(tmp_path / "capped", "quarantine")
    assert [q["line"] for q in quarantine] == [1] and "max_document_bytes" in quarantine[0]["error"]
    assert quarantine[0]["raw_truncated"] and quarantine[0]["raw_bytes"] > 50_000_000


def test_a_million_empty_documents(tmp_path):
    line = b'{"text": ""}\n'
    (tmp_path / "empty.jsonl").write_bytes(line * 1_000_000)
    stats = run(tmp_path, [str(tmp_path / "empty.jsonl")])
    assert stats["totals"] == {"read": 1_000_000, "generated": 0, "kept": 0, "rejected": 0,
                               "quarantined": 1_000_000, "accounted": True}


@pytest.mark.parametrize("field,value", [
    ("text", 5), ("text", None), ("text", ["a", "list"]), ("text", {"an": "object"}), ("text", True),
    ("id", {"nested": 1}), ("id", 1.5), ("id", True), ("id", ["x"]), ("source", 7),
])
def test_wrong_types_in_every_field_are_quarantined_with_the_field_named(tmp_path, field, value):
    record = {"id": "x", "text": "some text here", "source": "web", field: value}
    write_jsonl(tmp_path / "d.jsonl", [record, {"id": "good", "text": "fine text"}])
    stats = run(tmp_path, [str(tmp_path / "d.jsonl")], source_field="source")
    quarantine = read_output(tmp_path / "out", "quarantine")
    assert stats["totals"]["kept"] == 1 and len(quarantine) == 1
    assert repr(field) in quarantine[0]["error"]


def test_integer_ids_are_accepted_as_strings(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"id": 17, "text": "integer id"}])
    run(tmp_path, [str(tmp_path / "d.jsonl")])
    assert read_output(tmp_path / "out", "kept")[0]["id"] == "17"


def test_run_killed_midway_then_rerun_gives_the_same_output_and_no_partial_files(tmp_path):
    from thresher.pipeline.progress import read_heartbeats

    data = tmp_path / "data"
    data.mkdir()
    for part in range(4):
        (data / f"p{part}.jsonl").write_text(lines(10_000, f"p{part}-"))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"input": {"paths": [str(data / "*.jsonl")]}, "output": str(tmp_path / "out"),
                                  "runner": {"name": "direct", "options": {"direct_num_workers": 2}},
                                  "stages": [{"name": "normalize"}, {"name": "gopher_quality"}]}))
    command = [sys.executable, "-m", "thresher.pipeline", "run", str(config)]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while read_heartbeats(str(tmp_path / "out" / "_progress")).get("read", 0) == 0 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never started reading"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # documents are being read: the run is half-way
    proc.wait()
    assert not (tmp_path / "out" / "stats.json").exists()
    for path in (tmp_path / "out").rglob("*.jsonl.gz"):
        with gzip.open(path) as fh:  # every file a reader can see is complete
            fh.read()
    subprocess.run(command + ["--quiet"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config.write_text(config.read_text().replace(str(tmp_path / "out"), str(tmp_path / "clean")))
    subprocess.run(command + ["--quiet"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert output_bytes(tmp_path / "out") == output_bytes(tmp_path / "clean")
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["totals"]["read"] == 40_000 and stats["totals"]["accounted"]
