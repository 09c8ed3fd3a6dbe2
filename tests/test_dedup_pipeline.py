"""exact_dedup, minhash_dedup and decontaminate through the real pipeline (YAML-shaped config ->
thresher.pipeline.run): outputs, rejection records and stats.json entries."""

import json
from pathlib import Path

from conftest import read_output, shared_file, write_jsonl
from thresher.pipeline.config import validate_config
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


def test_dedup_and_decontamination_stages_in_a_pipeline(tmp_path):
    fuzzy = Path(shared_file("fixtures/documents_with_fuzzy_duplicates"))
    docs = [{"id": f.stem, "text": f.read_text(encoding="utf-8")} for f in sorted(fuzzy.iterdir())]
    docs.append({"id": "zz_rails_copy", "text": "  " + docs[1]["text"].upper() + "\n"})  # exact after normalisation
    words = shared_file("wiki/wikitext-2-test.txt").read_text(encoding="utf-8").split()
    passage = " ".join(words[2000:2060])
    docs.append({"id": "leaked", "text": "Intro.\n" + passage + "\nOutro."})
    docs.append({"id": "clean", "text": " ".join(words[9000:9400])})
    write_jsonl(tmp_path / "in.jsonl", docs)
    write_jsonl(tmp_path / "eval.jsonl", [{"question": passage}])
    config = validate_config({
        "input": {"paths": [str(tmp_path / "in.jsonl")]},
        "output": str(tmp_path / "out"),
        "runner": IN_MEMORY,
        "stages": [
            {"name": "exact_dedup"},
            {"name": "minhash_dedup", "threshold": 0.7, "max_rounds": 3},
            {"name": "decontaminate", "eval_sets": [{"name": "qa", "path": str(tmp_path / "eval.jsonl"),
                                                     "field": "question"}]},
        ],
    })
    result = run_pipeline(config)
    kept = sorted(d["id"] for d in read_output(tmp_path / "out", "kept"))
    rejected = {r["id"]: r for r in read_output(tmp_path / "out", "rejected")}
    assert kept == ["clean", "pytorch_license", "rails_mit_license"]
    assert rejected["zz_rails_copy"]["stage"] == "exact_dedup"
    assert rejected["zz_rails_copy"]["duplicate_of"] == "rails_mit_license"
    assert rejected["react_mit_license"]["stage"] == "minhash_dedup"
    assert rejected["react_mit_license"]["duplicate_of"] == "rails_mit_license"
    assert rejected["react_mit_license"]["reason"] == "duplicate"
    assert rejected["leaked"]["reason"] == "eval_contamination"
    assert rejected["leaked"]["meta"]["decontamination"]["eval_sets"] == ["qa"]
    assert result.stats["totals"]["accounted"]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    by_name = {s["name"]: s for s in stats["stages"]} if isinstance(stats["stages"], list) else stats["stages"]
    assert by_name["exact_dedup"]["clusters"] == 1 and by_name["exact_dedup"]["duplicates_removed"] == 1
    assert by_name["minhash_dedup"]["cluster_size_histogram"] == {"2": 1}
    assert by_name["decontaminate"]["by_eval_set"] == {"qa": 1}


def test_repeated_ids_fail_before_output_naming_where_they_were_read_unless_made_unique(tmp_path):
    """Per-file row numbers as ids (parquet and HF dumps): the same ids in two files."""
    import pytest

    from conftest import write_jsonl

    texts = shared_file("wiki/wikitext-2-valid.txt").read_text(encoding="utf-8").split("\n = ")[1:7]
    (tmp_path / "in").mkdir()
    for name, part in (("a", texts[:3]), ("b", texts[3:])):
        write_jsonl(tmp_path / "in" / f"{name}.jsonl", [{"id": i, "text": t} for i, t in enumerate(part)])
    data = {"input": {"paths": [str(tmp_path / "in" / "*.jsonl")]}, "output": str(tmp_path / "out"),
            "stages": [{"name": "minhash_dedup", "max_rounds": 3}]}
    with pytest.raises(Exception, match=r"document id '(\d)' occurs 2 times \(read at a.jsonl:\d, b.jsonl:\d\)"):
        run_pipeline(validate_config(data))
    assert not list((tmp_path / "out" / "kept").glob("*.gz")) and not list((tmp_path / "out" / "rejected").glob("*.gz"))
    data["input"]["make_ids_unique"] = True
    result = run_pipeline(validate_config(data))
    assert result.accounted
    assert sorted(r["id"] for r in read_output(tmp_path / "out", "kept")) == sorted(
        f"{i}@{name}.jsonl:{i + 1}" for name in "ab" for i in range(3))
