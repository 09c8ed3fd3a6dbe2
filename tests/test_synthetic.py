import collections
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import read_output, write_jsonl
from thresher.pipeline.config import ConfigError, validate_config
from thresher.pipeline.run import run_pipeline
from thresher.pipeline.synthetic.checks import check_example, safe_eval
from thresher.pipeline.synthetic.lm import LocalLMGenerator
from thresher.pipeline.synthetic.stage import Synthetic
from thresher.pipeline.synthetic.templates import TemplateError, TemplateGenerator, TemplateSet, format_number
from thresher.training.sampling import detect_model_kind

REPO = Path(__file__).resolve().parents[1]
IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}


def builtin(seed=0):
    return TemplateGenerator(TemplateSet.builtin(), seed)


# --- templates and checkers ---------------------------------------------------------------------


def test_every_builtin_example_is_verified_by_its_checker():
    examples = builtin(seed=3).generate(range(4000))
    seen = collections.Counter(e.meta["template"] for e in examples)
    assert set(seen) == {t.name for t in TemplateSet.builtin().templates}
    tasks = {e.meta["task"] for e in examples}
    assert tasks == {"arithmetic", "word_problem", "unit_conversion", "date_arithmetic", "table_to_text"}
    for example in examples:
        ok, expected = check_example(example.meta)
        assert ok, (example.meta["template"], example.meta["answer"], expected)
        assert example.meta["answer"] in example.text
        assert example.meta["question"].split("\n")[-1] in example.text


def test_checkers_reject_wrong_answers():
    examples = builtin(seed=4).generate(range(600))
    wrong_by_template = collections.Counter()
    for example in examples:
        meta = copy.deepcopy(example.meta)
        answer = meta["answer"]
        try:
            meta["answer"] = format_number(float(answer.replace(",", "")) + 1, 4)
        except ValueError:
            meta["answer"] = answer[::-1] + " (wrong)"
        ok, _ = check_example(meta)
        assert not ok, (meta["template"], answer, meta["answer"])
        wrong_by_template[meta["template"]] += 1
    assert len(wrong_by_template) == len(TemplateSet.builtin().templates)


def test_generation_is_deterministic_and_independent_of_slicing():
    gen = builtin(seed=11)
    whole = [(e.text, e.meta) for e in gen.generate(range(200))]
    pieces = [(e.text, e.meta) for start in range(0, 200, 37) for e in gen.generate(range(start, min(200, start + 37)))]
    assert whole == pieces
    again = [(e.text, e.meta) for e in builtin(seed=11).generate(range(200))]
    assert whole == again
    other = [e.text for e in builtin(seed=12).generate(range(200))]
    assert sum(a[0] != b for a, b in zip(whole, other)) > 190
    json.dumps([m for _, m in whole])  # meta is JSON-serialisable


def test_safe_eval_only_arithmetic():
    assert safe_eval("(3 + 4) * 2 - 10 / 4") == 11.5
    assert safe_eval("-2 ** 3") == -8
    for bad in ("__import__('os')", "a + 1", "[1, 2]", "2 ** 1000", "1 +"):
        with pytest.raises(ValueError):
            safe_eval(bad)


def test_user_template_file_and_facts(tmp_path):
    templates = TemplateSet.from_yaml(REPO / "configs" / "synthetic-templates.yaml")
    examples = TemplateGenerator(templates, 0).generate(range(300))
    assert {e.meta["template"] for e in examples} == {"rectangle_area", "percent_of", "planet_moons"}
    assert all(check_example(e.meta)[0] for e in examples)

    (tmp_path / "cities.csv").write_text("city,population\nAlpha,120\nBeta,340\nGamma,95\nDelta,410\n")
    (tmp_path / "rivers.json").write_text(json.dumps([{"river": "A", "km": 10}, {"river": "B", "km": 30},
                                                      {"river": "C", "km": 20}]))
    (tmp_path / "t.yaml").write_text("""
templates:
  - name: biggest_city
    slots: {rows: {facts: cities.csv, rows: [2, 4]}}
    question: "{{ markdown_table(rows) }} Which city is largest?"
    answer: "{{ (rows | sort(attribute='population') | last).city }}"
    check: {kind: table_argmax, slot: rows, column: population, label: city}
  - name: shortest_river
    slots: {rows: {facts: rivers.json, rows: 3}}
    question: "Shortest river?"
    answer: "{{ (rows | sort(attribute='km') | first).river }}"
    check: {kind: table_argmin, slot: rows, column: km, label: river}
""")
    user = TemplateSet.from_yaml(tmp_path / "t.yaml")
    examples = TemplateGenerator(user, 1).generate(range(100))
    assert all(check_example(e.meta)[0] for e in examples)
    assert {e.meta["answer"] for e in examples if e.meta["template"] == "shortest_river"} == {"A"}
    assert any("| city | population |" in e.text for e in examples)


@pytest.mark.parametrize("body, message", [
    ("templates: [{name: a, question: q, answer: x, slots: {n: {integer: [1, 2]}}}]", "exactly one of"),
    ("templates: [{name: a, question: q, answer: x, slots: {n: {int: [5, 1]}}}]", "low, high"),
    ("templates: [{name: a, question: '{{ n', answer: x}]", "TemplateSyntaxError"),
    ("templates: [{name: a, question: q, answer: x, colour: red}]", "unknown keys"),
    ("templates: [{name: a, question: q, answer: x, slots: {r: {facts: nope.csv}}}]", "does not exist"),
    ("templates: [{name: a, question: q, answer: x, check: {kind: vibes}}]", "kind one of"),
    ("templates: [{name: a, question: q, answer: x}, {name: a, question: q, answer: y}]", "unique"),
    ("templates: [{name: a, question: q, answer: x, slots: {n: {from: planets}}}]", "unknown list"),
    ("[1, 2]", "templates"),
])
def test_template_errors_name_the_problem(tmp_path, body, message):
    (tmp_path / "t.yaml").write_text(body)
    with pytest.raises(TemplateError, match=message):
        TemplateSet.from_yaml(tmp_path / "t.yaml")


def test_rendering_error_names_the_template(tmp_path):
    (tmp_path / "t.yaml").write_text("templates: [{name: broken, question: '{{ missing }}', answer: x}]")
    gen = TemplateGenerator(TemplateSet.from_yaml(tmp_path / "t.yaml"), 0)
    with pytest.raises(TemplateError, match="'broken'.*missing"):
        gen.generate([0])


# --- the stage ----------------------------------------------------------------------------------


def test_stage_config_validation(tmp_path):
    with pytest.raises(ValidationError, match="lm"):
        Synthetic(generator="lm", count=3)
    with pytest.raises(ValidationError, match="openai"):
        Synthetic(generator="openai", count=3)
    with pytest.raises(ValidationError):
        Synthetic(count=0)
    (tmp_path / "bad.yaml").write_text("templates: [{name: a}]")
    with pytest.raises(ConfigError, match="stages\\[0\\].template.templates"):
        validate_config({"input": {"paths": ["x"]}, "output": "o", "stages": [
            {"name": "synthetic", "count": 5, "template": {"templates": str(tmp_path / "bad.yaml")}}]})
    with pytest.raises(ConfigError, match="lm.model"):
        validate_config({"input": {"paths": ["x"]}, "output": "o", "stages": [
            {"name": "synthetic", "generator": "lm", "count": 5, "lm": {"model": str(tmp_path / "none")}}]})


def test_slices_cover_the_count_once():
    stage = Synthetic(count=1003, shards=16)
    covered = [n for a, b in stage.slices() for n in range(a, b)]
    assert covered == list(range(1003))
    assert Synthetic(count=3, shards=16).slices() == [(0, 1), (1, 2), (2, 3)]


def run(tmp_path, stages, out="out", docs=None, seed=0):
    data = tmp_path / "in.jsonl"
    if not data.exists():
        write_jsonl(data, docs if docs is not None else [{"id": f"r{i}", "text": f"real document {i}"} for i in range(5)])
    config = validate_config({"input": {"paths": [str(data)]}, "output": str(tmp_path / out),
                              "runner": IN_MEMORY, "seed": seed, "stages": stages})
    return run_pipeline(config)


def test_pipeline_ids_provenance_and_accounting(tmp_path):
    result = run(tmp_path, [{"name": "synthetic", "count": 120, "seed": 9, "shards": 7,
                             "template": {"only": ["arithmetic", "date_arithmetic"]}}])
    kept = read_output(tmp_path / "out", "kept")
    generated = [d for d in kept if d["source"].startswith("synthetic/")]
    assert len(generated) == 120 and len(kept) == 125
    assert sorted(d["id"] for d in generated) == sorted(f"synthetic/template/9/{n}" for n in range(120))
    for doc in generated:
        assert doc["source"] == "synthetic/template"
        assert doc["meta"]["task"] in ("arithmetic", "date_arithmetic")
        assert check_example(doc["meta"])[0]
    stage = result.stats["stages"][0]
    assert stage["generated"] == 120 and stage["in"] == 5 and stage["kept"] == 125
    assert result.stats["totals"]["generated"] == 120 and result.accounted

    # the same seed with another slicing gives the same documents
    other = Synthetic(count=120, seed=9, shards=2, template={"only": ["arithmetic", "date_arithmetic"]})
    generator = other.build_generator(9)
    again = {d["id"]: d["text"] for a, b in other.slices() for d in other.documents(generator, 9, a, b)}
    assert again == {d["id"]: d["text"] for d in generated}


def test_examples_per_document_packs_checked_examples():
    stage = Synthetic(count=10, seed=2, examples_per_document=4)
    generator = stage.build_generator(2)
    docs = [d for a, b in stage.slices() for d in stage.documents(generator, 2, a, b)]
    assert [d["id"] for d in docs] == [f"synthetic/template/2/{n}" for n in range(10)]
    singles = builtin(2).generate(range(40))
    for n, doc in enumerate(docs):
        parts = doc["meta"]["examples"]
        assert [p["example_index"] for p in parts] == list(range(4 * n, 4 * n + 4))
        assert doc["text"] == "\n\n".join(e.text for e in singles[4 * n:4 * n + 4])
        assert all(check_example(p)[0] for p in parts)


def test_pipeline_seed_defaults_to_the_run_seed_and_filters_see_generated_docs(tmp_path):
    result = run(tmp_path, [{"name": "synthetic", "count": 40, "template": {"only": ["weekday"]}},
                            {"name": "gopher_quality"}], seed=5)
    kept = read_output(tmp_path / "out", "kept")
    rejected = read_output(tmp_path / "out", "rejected")
    ids = {d["id"] for d in kept} | {r["id"] for r in rejected}
    assert {f"synthetic/template/5/{n}" for n in range(40)} <= ids
    filt = result.stats["stages"][1]
    assert filt["in"] == 45 and filt["kept"] + filt["rejected"] == 45
    assert result.accounted


# --- local LM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file

    from thresher.training.model import GPT, ModelConfig

    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"the cat number {i} sat on the mat and looked at the dog" for i in range(300)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "tokenizer"), vocab_size=48, hard_vocab_limit=False,
                                   model_type="unigram", eos_id=2, bos_id=-1, unk_id=0, pad_id=-1,
                                   minloglevel=2)
    torch.manual_seed(0)
    cfg = {"shards": str(root / "shards"), "out": str(root), "steps": 1, "batch_size": 1, "seq_len": 32,
           "model": {"preset": "tiny", "vocab_size": 64}}
    from thresher.training.config import parse_train_config
    parsed = parse_train_config(cfg)
    model = GPT(parsed.model, parsed.attention.name, parsed.attention.params())
    ckpt = root / "checkpoints" / "step-000001"
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "model.safetensors"))
    torch.save({"step": 1, "config": json.dumps(cfg)}, ckpt / "trainer.pt")
    (ckpt / "COMPLETE").write_text("1\n")
    return root, root / "tokenizer.model"


def test_lm_generator_samples_deterministically(tiny_checkpoint):
    root, tokenizer = tiny_checkpoint
    make = lambda seed: LocalLMGenerator(str(root), ["the cat", "a dog"], seed, tokenizer=str(tokenizer),
                                             max_tokens=6, batch_size=3, device="cpu")
    gen = make(1)
    assert gen.sampler.kind == "thresher"
    first = gen.generate(range(6))
    assert [e.text for e in first] == [e.text for e in make(1).generate(range(6))]
    assert [e.meta["prompt"] for e in first] == ["the cat", "a dog"] * 3
    assert all(e.text.startswith(e.meta["prompt"]) for e in first)
    assert len({e.text for e in first}) > 2  # sampling, not one string
    assert [e.text for e in make(2).generate(range(6))] != [e.text for e in first]
    greedy = LocalLMGenerator(str(root), ["the cat"], 0, tokenizer=str(tokenizer), temperature=0,
                                  max_tokens=4, device="cpu").generate(range(3))
    assert len({e.text for e in greedy}) == 1


def test_lm_generator_in_the_pipeline(tmp_path, tiny_checkpoint):
    root, tokenizer = tiny_checkpoint
    result = run(tmp_path, [{"name": "synthetic", "generator": "lm", "count": 4, "seed": 3, "shards": 2,
                             "lm": {"model": str(root), "tokenizer": str(tokenizer), "prompts": ["the cat"],
                                    "max_tokens": 4, "batch_size": 4, "device": "cpu"}}])
    generated = [d for d in read_output(tmp_path / "out", "kept") if d["source"] == "synthetic/lm"]
    assert sorted(d["id"] for d in generated) == [f"synthetic/lm/3/{n}" for n in range(4)]
    assert result.accounted and result.stats["totals"]["generated"] == 4


def test_hf_model_without_transformers_is_a_clear_error(tmp_path):
    if importlib.util.find_spec("transformers") is not None:
        pytest.skip("transformers is installed")
    (tmp_path / "config.json").write_text("{}")
    gen = LocalLMGenerator(str(tmp_path), ["hi"], 0)
    assert gen.sampler.kind == "hf"
    with pytest.raises(ValueError, match="transformers.*not installed"):
        gen.generate([0])


def test_model_kind_detection_error(tmp_path):
    with pytest.raises(ValueError, match="neither a thresher checkpoint"):
        detect_model_kind(tmp_path)


def test_validating_an_lm_generator_does_not_import_torch(tmp_path):
    """The model kind is checked at validation (training/sampling.py) with torch loaded only to sample."""
    (tmp_path / "config.json").write_text("{}")
    code = ("import sys\nfrom thresher.pipeline.config import validate_config\n"
            f"validate_config({{'input': {{'paths': ['{tmp_path}/in.jsonl']}}, 'output': '{tmp_path}/out', 'stages': "
            f"[{{'name': 'synthetic', 'generator': 'lm', 'count': 2, 'lm': {{'model': '{tmp_path}'}}}}]}})\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
