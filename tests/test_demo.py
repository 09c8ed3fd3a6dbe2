"""`thresher demo` (the README's first command) end to end, at a small size: the corpus, every
stage of configs/demo.yaml, a few training steps and the report."""

import json
import subprocess
import sys


def test_demo_runs_every_stage_trains_and_reports(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "demo", "--out", str(out), "--docs", "1000",
                           "--train-steps", "3", "--workers", "1"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["accounted"] and stats["totals"]["generated"] > 0
    names = [s["name"] for s in stats["stages"]]
    for stage in ("synthetic", "language", "pii", "minhash_dedup", "poisoning", "augment", "tokenize"):
        assert stage in names
    assert (out / "shards" / "manifest.json").exists()
    assert (out / "train" / "metrics.csv").read_text().count("\n") >= 3
    assert "Funnel through the stages" in (out / "report.html").read_text()
