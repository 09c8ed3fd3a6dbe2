"""What happens to rejected documents (issue 15): a stage that raises is isolated per document only
within the stage-error budget, a broken stage fails the run, MemoryError is never a rejection; and
output_options.rejected_text says how much of a rejected document's text rejected/ keeps."""

import json
import random
import string

import pytest

import stages_for_tests
from conftest import read_output, write_jsonl
from thresher.pipeline.commands import run_command
from thresher.pipeline.config import validate_config
from thresher.pipeline.graph import FAST_FAIL_DOCUMENTS, RunDocumentStages, StageErrorBudgetExceeded
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


@pytest.fixture(autouse=True)
def _test_stages(monkeypatch):
    stages_for_tests.register(monkeypatch)


def docs(n, prefix="d"):
    return [{"id": f"{prefix}{i}", "text": f"document number {i}"} for i in range(n)]


def run(tmp_path, records, stages, **output_options):
    write_jsonl(tmp_path / "d.jsonl", records)
    config = validate_config({"input": {"paths": [str(tmp_path / "d.jsonl")]}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY, "stages": stages, "output_options": output_options})
    return run_pipeline(config)


def test_a_stage_that_fails_on_every_document_fails_the_run(tmp_path):
    with pytest.raises(StageErrorBudgetExceeded) as err:
        run(tmp_path, docs(30), [{"name": "test_upper"}, {"name": "test_broken"}])
    message = str(err.value)
    assert "01_test_broken" in message and "30 of 30 documents" in message
    assert "KeyError: 'no field for d" in message  # its first errors, from rejected/
    assert not (tmp_path / "out" / "stats.json").exists()


def test_a_broken_stage_stops_the_run_on_its_first_documents(tmp_path):
    with pytest.raises(StageErrorBudgetExceeded) as err:
        run(tmp_path, docs(3 * FAST_FAIL_DOCUMENTS), [{"name": "test_broken"}])
    message = str(err.value)
    assert "raised on all of the first" in message and "00_test_broken" in message
    assert "KeyError" in message and "[while running" not in message
    assert read_output(tmp_path / "out", "kept") == []  # nothing was written: the run stopped in the stage


def test_errors_within_the_budget_are_rejections_and_over_it_fail_the_run(tmp_path):
    records = docs(20) + [{"id": "boom", "text": "this one goes BOOM"}]  # 1 of 21: 4.8%
    result = run(tmp_path, records, [{"name": "test_explode"}], max_stage_error_frac=0.05)
    assert result.stats["stages"][0]["reasons"] == {"stage_error": 1}
    with pytest.raises(StageErrorBudgetExceeded) as err:
        run(tmp_path, records, [{"name": "test_explode"}])  # the default budget is 1%
    assert "1 of 21 documents (4.8%" in str(err.value) and "ValueError: cannot handle BOOM" in str(err.value)


def test_a_budget_of_one_keeps_the_old_behaviour(tmp_path):
    result = run(tmp_path, docs(3 * FAST_FAIL_DOCUMENTS), [{"name": "test_broken"}], max_stage_error_frac=1)
    assert result.stats["totals"]["rejected"] == 3 * FAST_FAIL_DOCUMENTS and result.accounted


def test_the_run_command_says_which_stage_failed(tmp_path, capsys):
    write_jsonl(tmp_path / "d.jsonl", docs(10))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"input": {"paths": [str(tmp_path / "d.jsonl")]}, "output": str(tmp_path / "out"),
                                  "runner": IN_MEMORY, "stages": [{"name": "test_broken"}]}))
    assert run_command([str(config), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert "RUN FAILED" in err and "00_test_broken" in err and "max_stage_error_frac" in err


def test_memory_error_is_never_a_rejection():
    stage = stages_for_tests.OutOfMemory()
    batch = [{"id": "a", "text": "fine"}, {"id": "b", "text": "HUGE"}]
    with pytest.raises(MemoryError):
        RunDocumentStages._decide(stage, batch)
    fn = RunDocumentStages([("00_test_out_of_memory", stage)], max_error_frac=1.0)
    fn.setup()
    with pytest.raises(MemoryError):
        list(fn.process(batch))


def test_memory_error_fails_the_run(tmp_path):
    with pytest.raises(MemoryError, match="cannot allocate"):
        run(tmp_path, docs(5) + [{"id": "big", "text": "HUGE"}], [{"name": "test_out_of_memory"}],
            max_stage_error_frac=1)
    assert not (tmp_path / "out" / "stats.json").exists()


@pytest.mark.parametrize("mode", ["full", "snippet", "none"])
def test_rejected_text_full_snippet_or_none(tmp_path, mode):
    long_text = "short short " + "".join(random.Random(0).choices(string.ascii_letters, k=50_000))  # 3 words
    records = [{"id": "long", "text": long_text}, {"id": "kept", "text": "one two three four five six"}]
    options = {} if mode == "full" else {"rejected_text": mode}
    result = run(tmp_path, records, [{"name": "test_min_words"}], **options)
    (record,) = read_output(tmp_path / "out", "rejected")
    if mode == "full":  # written as before: the whole text, no marker fields
        assert "text_stored" not in record and "text_chars" not in record
    else:
        assert record["text_stored"] == mode and record["text_chars"] == len(long_text)
    assert record["reason"] == "too_few_words" and record["value"] == 3
    expected = {"full": long_text, "snippet": long_text[:1000], "none": None}[mode]
    assert record.get("text") == expected
    assert result.accounted
    size = sum(p.stat().st_size for p in (tmp_path / "out" / "rejected").glob("*.gz"))
    assert size > 30_000 if mode == "full" else size < 2_000
    from thresher.pipeline.report import ReportBuilder

    assert ReportBuilder().write(tmp_path / "out").is_file()  # the report reads any of them
