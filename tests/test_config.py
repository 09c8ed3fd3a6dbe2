import subprocess
import sys

import pytest
import yaml

import stages_for_tests
from thresher.pipeline.config import ConfigError, apply_overrides, validate_config, yaml_path


@pytest.fixture(autouse=True)
def _test_stages(monkeypatch):
    stages_for_tests.register(monkeypatch)


def base(**extra):
    data = {"input": {"paths": ["x/*.jsonl"]}, "output": "out", "stages": [{"name": "test_min_words"}]}
    data.update(extra)
    return data


def problems(data) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return dict(info.value.problems)


def test_valid_config_has_typed_stages_and_defaults():
    config = validate_config(base(stages=[{"name": "test_min_words", "min_words": 7}, {"name": "test_upper"}]))
    assert [s.name for s in config.stages] == ["test_min_words", "test_upper"]
    assert config.stages[0].min_words == 7 and config.stages[0].fraction == 0.5
    assert config.input.text_field == "text" and config.output_options.shards == 4


def test_out_of_range_parameter_names_its_yaml_path_and_bounds():
    found = problems(base(stages=[{"name": "test_upper"}, {"name": "test_upper"},
                                  {"name": "test_min_words", "fraction": 1.5}]))
    assert found == {"stages[2].fraction": "must be between 0 and 1 (got 1.5)"}


def test_unknown_keys_and_stage_names_list_the_valid_ones():
    found = problems(base(stages=[{"name": "nope"}, {"name": "test_min_words", "min_wrds": 3}], extra_key=1))
    assert "unknown stage 'nope'" in found["stages[0].name"] and "test_min_words" in found["stages[0].name"]
    assert found["stages[1].min_wrds"].startswith("unknown key 'min_wrds'; valid keys: fraction, min_words")
    assert "unknown key 'extra_key'" in found["extra_key"] and "stages" in found["extra_key"]


def test_every_problem_is_reported_at_once():
    data = base(stages=[{"name": "test_min_words", "min_words": -1}, {"min_words": 3}, "oops"])
    data["input"] = {"paths": [], "format": "csv"}
    del data["output"]
    found = problems(data)
    assert set(found) == {"stages[0].min_words", "stages[1].name", "stages[2]", "input.paths", "input.format", "output"}
    assert "jsonl" in found["input.format"]


def test_wrong_types_are_reported():
    found = problems(base(stages="not a list"))
    assert "must be a list" in found["stages"]
    found = problems(base(stages=[{"name": "test_min_words", "min_words": "many"}]))
    assert "stages[0].min_words" in found


def test_overrides_reach_into_lists_and_parse_values():
    data = apply_overrides(base(stages=[{"name": "test_upper"}, {"name": "test_min_words"}]),
                           ["stages.1.min_words=9", "output=/tmp/o", "output_options.shards=2"])
    config = validate_config(data)
    assert config.stages[1].min_words == 9 and config.output == "/tmp/o" and config.output_options.shards == 2
    with pytest.raises(ConfigError, match="no list index"):
        apply_overrides(base(), ["stages.5.min_words=1"])


def test_yaml_path_formatting():
    assert yaml_path(("stages", 2, "threshold")) == "stages[2].threshold"
    assert yaml_path(("input", "paths", 0)) == "input.paths[0]"


def test_config_hash_is_stable_and_sensitive():
    a, b = validate_config(base()), validate_config(base())
    c = validate_config(base(seed=1))
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_cli_validate_reports_paths_and_exits_nonzero(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"input": {"paths": ["x"]}, "output": "o",
                                    "stages": [{"name": "language", "min_score": 2}, {"name": "bogus"}]}))
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "stages[1].name: unknown stage 'bogus'" in proc.stderr


def test_cli_run_with_broken_config_fails_before_any_work(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "bad.yaml"
    path.write_text(f"input: {{paths: ['{tmp_path}/*.jsonl']}}\noutput: {out}\nstages: [{{name: nope}}]\n")
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "stages[0].name" in proc.stderr
    assert not out.exists()
    path.write_text("input: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "thresher.pipeline", "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "not valid YAML" in proc.stderr
