"""The classifier and PII stages inside the real pipeline, on the shared web documents."""

import re

from conftest import read_output
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

STAGES = [
    {"name": "pii", "action": "redact"},
    {"name": "toxicity", "threshold": 0.5, "action": "drop"},
    {"name": "quality_classifier", "action": "annotate"},
]
RUNNER = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+[A-Za-z]")


def test_classifier_and_pii_stages_on_shared_web_documents(shared_data, tmp_path):
    inputs = {"paths": [str(shared_data / "web" / "*.jsonl"), str(shared_data / "web" / "*.jsonl.gz")]}
    config = validate_config({"input": inputs, "output": str(tmp_path), "runner": RUNNER, "stages": STAGES})
    stats = run_pipeline(config).stats
    totals = stats["totals"]
    assert totals["accounted"] and totals["read"] == 30
    kept = read_output(tmp_path, "kept")
    rejected = read_output(tmp_path, "rejected")
    assert len(kept) + len(rejected) == 30
    for doc in kept:
        meta = doc["meta"]
        assert 0.0 <= meta["quality"] <= 1.0 and 0.0 <= meta["toxicity"] < 0.5
        assert isinstance(meta["pii_counts"], dict)
        assert not EMAIL.search(doc["text"])
    for record in rejected:
        assert record["stage"] == "toxicity" and record["reason"] == "toxicity_above_threshold"
        assert record["value"] >= 0.5 and record["scores"]["toxicity"] == record["value"]
    pii_stage = next(s for s in stats["stages"] if s["name"] == "pii")
    found = sum(sum(doc["meta"]["pii_counts"].values()) for doc in kept)
    found += sum(sum(r["meta"]["pii_counts"].values()) for r in rejected)
    assert sum(pii_stage.get("counts", {}).values()) == found > 0
    redacted = sum(doc["text"].count("|||") // 2 for doc in kept) + sum(r["text"].count("|||") // 2 for r in rejected)
    assert redacted >= sum(sum(doc["meta"]["pii_counts"].values()) for doc in kept)
