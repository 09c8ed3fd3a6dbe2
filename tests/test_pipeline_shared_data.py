"""The heuristic pipeline over every real document in ../shared/data/web and ../shared/data/wiki:
the accounting invariant holds, every rejection names its rule and value, and 1 and 2 workers
write identical files."""

import json

import pytest

from conftest import output_bytes, read_output
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

STAGES = [
    {"name": "normalize"},
    {"name": "language", "backend": "cld3", "keep": ["en"], "min_score": 0.5},
    {"name": "gopher_quality"},
    {"name": "gopher_repetition"},
    {"name": "c4_quality"},
]
RUNNERS = {
    "one": {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}},
    "two": {"name": "direct", "options": {"direct_num_workers": 2, "direct_running_mode": "multi_processing"}},
}


def run(inputs, out, runner):
    config = validate_config({"input": inputs, "output": str(out), "runner": runner, "stages": STAGES})
    return run_pipeline(config).stats


@pytest.mark.parametrize("inputs", [
    pytest.param(lambda d: {"paths": [str(d / "web" / "*.jsonl"), str(d / "web" / "*.jsonl.gz")]}, id="web"),
    pytest.param(lambda d: {"paths": [str(d / "wiki" / "*.txt")], "format": "text_lines"}, id="wiki"),
])
def test_real_data_is_accounted_for_and_worker_count_does_not_matter(shared_data, tmp_path, inputs):
    stats = {name: run(inputs(shared_data), tmp_path / name, runner) for name, runner in RUNNERS.items()}
    for name, s in stats.items():
        t = s["totals"]
        assert t["accounted"] and t["read"] == t["kept"] + t["rejected"] + t["quarantined"] > 0, name
        chain = s["stages"]
        for before, after in zip(chain, chain[1:]):
            assert after["in"] == before["kept"]
        assert chain[-1]["kept"] == t["kept"]
    assert output_bytes(tmp_path / "one") == output_bytes(tmp_path / "two")
    rejected = read_output(tmp_path / "one", "rejected")
    assert rejected, "real web text always has something to reject"
    names = {s["name"] for s in STAGES}
    for record in rejected:
        assert record["stage"] in names and record["reason"] and record["text"]
    assert json.loads((tmp_path / "one" / "stats.json").read_text())["config_hash"]
