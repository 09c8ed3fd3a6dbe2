"""bench/gpu_suite.py: its --smoke run end to end (the CPU rehearsal of the GPU command), the figures'
arithmetic, and what it records when a phase fails or has no time."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_suite.py"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("bench_gpu_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu_suite"] = module
    spec.loader.exec_module(module)
    return module


def run(out: Path, *args: str, timeout: float = 600) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "gpu_suite.json").read_text()), proc.stdout


def test_smoke_run_measures_every_phase(tmp_path):
    # --peak-tflops gives the CPU a peak, so the MFU arithmetic runs too
    results, stdout = run(tmp_path / "smoke", "--smoke", "--peak-tflops", "1")
    suite, phases = results["suite"], results["phases"]
    assert suite["settings"] == "smoke" and suite["device"]["type"] == "cpu"
    assert set(phases) == {"train", "attention", "ablation"}
    assert suite["wall_s"] <= suite["budget_s"] + 15
    for phase in phases.values():
        assert phase["wall_s"] <= phase["budget_s"] + 5

    train = phases["train"]
    assert train["status"] == "ok", train
    real = (SHARED_DATA / "wiki" / "wikitext-2-valid.txt").exists()
    assert train["corpus"].startswith("real" if real else "generated")
    assert train["shards"]["tokens"] > 10_000 and train["shards"]["documents"] > 10
    m = train["model"]
    assert train["flops_per_token"] == 6 * m["params"] + 12 * m["layers"] * train["seq_len"] * m["width"]
    # 25 steps unless a very slow compile ran into the phase's time limit first
    assert 5 <= train["timed_steps"] == train["steps"] - train["warmup_steps"] and train["steps"] <= 25
    # the compile is in the first step, outside the timed window
    assert train["first_step_s"] > 5 * train["step_ms"]["median"] / 1e3
    assert train["tokens_per_s"] == pytest.approx(
        train["timed_steps"] * train["tokens_per_step"] / train["timed_window_s"], rel=1e-3)
    assert train["mfu"] == pytest.approx(train["tokens_per_s"] * train["flops_per_token"] / 1e12, rel=1e-3)
    assert 0 <= train["loader_share"] < 1
    assert train["loss"]["last_10_steps"] < train["loss"]["first_step"]
    checkpoint = f"step-{train['steps']:06d}"
    assert (tmp_path / "smoke" / "work" / "train" / "run" / "checkpoints" / checkpoint / "COMPLETE").is_file()

    attention = phases["attention"]
    assert attention["status"] == "ok", attention
    rows = ["sdpa", "sliding_window", "performer", "linformer", "reformer", "sdpa_one_document"]
    assert list(attention["cells"]) == rows
    for row in rows:  # tiny sizes: every cell measured, none failed or skipped
        for n in attention["lengths"]:
            cell = attention["cells"][row][str(n)]
            assert cell["ms"] > 0 and cell["peak_mb"] >= 0, (row, n, cell)
    assert set(attention["crossovers"]) == set(rows) - {"sdpa"}
    for name in ("sdpa", "sliding_window"):
        assert attention["flex_check"][name]["max_abs_error_output"] < 1e-4

    ablation = phases["ablation"]
    if real and (SHARED_DATA / "toxicity" / "davidson-labeled_data.csv").exists():
        # the smoke gives the ablation ~20 s: it is killed there, and says how far it got
        assert ablation["status"] in ("timeout", "ok"), ablation
        assert ablation["status"] == "ok" or ablation["reached"]
    else:
        assert ablation["status"] == "failed" and "shared data" in ablation["error"]

    assert "tokens/s" in stdout and "loader share" in stdout and results["summary"] in stdout


def test_train_figures_leave_the_warm_up_out(suite, tmp_path):
    path = tmp_path / "metrics.csv"
    rows = [(1, 30.0, 0.5), (2, 0.2, 0.0)] + [(s, 0.1, 0.002) for s in range(3, 13)]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lr", "tokens_per_s", "val_loss", "elapsed_s", "step_s", "data_s"])
        for step, seconds, data in rows:
            writer.writerow([step, 10 - step / 2, 1e-3, 1000 / seconds, "", "", seconds, data])
    rec = {"warmup_steps": 2, "tokens_per_step": 1024, "flops_per_token": 1e6, "peak_flops": 1e11}
    figures = suite.train_figures(path, rec)
    assert figures["timed_steps"] == 10 and figures["timed_window_s"] == pytest.approx(1.0)
    assert figures["first_step_s"] == 30.0 and figures["warmup_s"] == pytest.approx(30.2)
    assert figures["tokens_per_s"] == pytest.approx(10240)
    assert figures["target_tokens_per_s"] == pytest.approx(10000)
    assert figures["mfu"] == pytest.approx(10240 * 1e6 / 1e11)
    assert figures["loader_share"] == pytest.approx(0.02)
    assert figures["loss"]["first_step"] == 9.5
    # all steps inside the warm-up: a failure that says the compile took the time
    too_short = suite.train_figures(path, {**rec, "warmup_steps": 12})
    assert too_short["status"] == "failed" and "compile took 30.0 s" in too_short["error"]


def test_a_failing_phase_is_recorded_with_its_error(tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    results, stdout = run(tmp_path / "out", "--smoke", "--phases", "ablation", "--data", str(empty), timeout=300)
    ablation = results["phases"]["ablation"]
    assert ablation["status"] == "failed"
    assert "FileNotFoundError" in ablation["error"] and "shared data" in ablation["error"]
    assert "Traceback" in ablation["traceback"] and Path(ablation["log"]).is_file()
    assert "ablation: failed" in stdout


def test_phases_without_enough_budget_are_skipped_not_started(tmp_path):
    results, stdout = run(tmp_path / "out", "--smoke", "--budget-s", "5", timeout=120)
    assert [p["status"] for p in results["phases"].values()] == ["skipped"] * 3
    assert not (tmp_path / "out" / "work").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_a_compile_failure_falls_back_to_the_eager_model(suite, tmp_path, monkeypatch):
    from thresher.training import loop

    real_train = loop.train

    def failing_compile(cfg):
        if cfg.compile:
            raise RuntimeError("inductor lowering failed (simulated)")
        return real_train(cfg)

    monkeypatch.setattr(loop, "train", failing_compile)
    args = suite.argparse.Namespace(device="cpu", batch=None, data=SHARED_DATA, peak_tflops=None)
    suite.phase_train(args, suite.SMOKE, tmp_path, deadline=suite.time.time() + 120)
    rec = json.loads((tmp_path / "phases" / "train.json").read_text())
    assert rec["status"] == "ok" and rec["compiled"] is False
    assert "simulated" in rec["compile_error"] and "Traceback" in rec["compile_traceback"]
    assert rec["metrics_csv"].endswith("run-eager/metrics.csv") and rec["tokens_per_s"] > 0
