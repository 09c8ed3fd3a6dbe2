"""The tokenize stage: deterministic training, worker-count-independent shards, interop, verify."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from pydantic import ValidationError

from thresher.pipeline.registry import stage_class
from thresher.pipeline.stage_api import StageContext
from thresher.pipeline.tokenize_stage import TokenizeStage
from thresher.tokenization.sample import BottomK, sample_key
from thresher.tokenization.spm import Encoder, TokenizerTrainingError, TrainerConfig, train_model
from thresher.tokenization.verify import shards_command, verify_shards

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WORDS = ("river stone market garden winter lantern copper violin harbor meadow quiet bright ancient "
         "engine signal forest thunder orbit marble canvas velvet ember glacier prairie").split()


def make_docs(n: int = 240, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for _ in range(rng.randint(1, 6))]
        meta = {"quality": rng.random(), "lang": "en"} if i % 4 else {"toxicity": {"score": rng.random()}, "flag": True}
        docs.append({"id": f"doc-{i:05d}", "text": "\n".join(lines), "source": "gen", "meta": meta})
    return docs


def run_stage(stage: TokenizeStage, docs: list[dict], out: Path, options: PipelineOptions | None = None) -> Path:
    ctx = StageContext(index=0, label="00_tokenize", output_dir=str(out), seed=7, config_hash="cafe")
    pipeline = test_pipeline.TestPipeline(options=options) if options is None else beam.Pipeline(options=options)
    with pipeline as p:
        result = stage.expand(p | beam.Create(docs), ctx)
        assert result.stats is not None
    return out / "shards"


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory) -> Path:
    stage = TokenizeStage(vocab_size=300, shard_tokens=2500, sample_docs=120)
    return run_stage(stage, make_docs(), tmp_path_factory.mktemp("one"))


def test_registered():
    assert stage_class("tokenize") is TokenizeStage


def test_training_is_deterministic_and_single_threaded():
    texts = [d["text"] for d in make_docs(80)]
    for model_type in ("bpe", "unigram"):
        config = TrainerConfig(model_type=model_type, vocab_size=300)
        assert train_model(texts, config) == train_model(texts, config)


def test_bottom_k_sample_ignores_partitioning():
    items = [(sample_key(f"d{i}", 5), f"d{i}", "t") for i in range(500)]
    sampler = BottomK(50)
    whole = sampler.result(sampler.merge([items]))
    parts = [[], [], []]
    for i, item in enumerate(items):
        parts[i % 3] = sampler.add(parts[i % 3], item)
    assert sampler.result(sampler.merge(parts)) == whole == sorted(items)[:50]


def test_one_and_two_workers_write_identical_shards(shards_dir, tmp_path):
    stage = TokenizeStage(vocab_size=300, shard_tokens=2500, sample_docs=120)
    options = PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing")
    two = run_stage(stage, make_docs(), tmp_path / "two", options)
    assert digests(two) == digests(shards_dir)


def test_shards_and_manifest(shards_dir):
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["config_hash"] == "cafe"
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == 300
    assert manifest["totals"]["documents"] == 240
    assert manifest["totals"]["shards"] == len(manifest["shards"]) > 3
    assert manifest["score_columns"] == ["flag", "quality", "toxicity.score"]
    for entry in manifest["shards"]:
        assert 1500 < entry["tokens"] < 4000, entry  # near shard_tokens
        data = (shards_dir / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert hashlib.sha256((shards_dir / "tokenizer.model").read_bytes()).hexdigest() == manifest["tokenizer"]["sha256"]
    assert not [p for p in shards_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_shard_contents_decode_back(shards_dir):
    docs = {d["id"]: d for d in make_docs()}
    encoder = Encoder((shards_dir / "tokenizer.model").read_bytes(), add_eos=False)
    table = pa.concat_tables(pa.ipc.open_stream(pa.memory_map(str(p))).read_all()
                             for p in sorted(shards_dir.glob("*.arrow")))
    assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
    assert sorted(table.column("id").to_pylist()) == sorted(docs)
    for row in table.slice(0, 40).to_pylist():
        ids = row["input_ids"]
        assert ids[-1] == encoder.eos_id and row["length"] == len(ids)
        assert encoder.decode(ids[:-1]) == docs[row["id"]]["text"]
        meta = docs[row["id"]]["meta"]
        assert row["quality"] == meta.get("quality")
        assert row["toxicity.score"] == meta.get("toxicity", {}).get("score")


def test_datasets_and_pyarrow_read_shards(shards_dir):
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in shards_dir.glob("*.arrow"))
    one = datasets.Dataset.from_file(files[0])
    assert one.num_rows == pa.ipc.open_stream(pa.memory_map(files[0])).read_all().num_rows
    assert isinstance(one[0]["input_ids"], list)
    loaded = datasets.load_dataset("arrow", data_files=files, split="train")
    assert loaded.num_rows == 240 and "quality" in loaded.column_names


def test_existing_model_path(shards_dir, tmp_path):
    stage = TokenizeStage(model_path=str(shards_dir / "tokenizer.model"), shard_tokens=2500)
    assert stage.check() == []
    out = run_stage(stage, make_docs(), tmp_path)
    assert digests(out) == digests(shards_dir) | {"manifest.json": digests(out)["manifest.json"]}


def test_bad_parameters_are_clear(tmp_path):
    with pytest.raises(ValidationError, match="vocab_size"):
        TokenizeStage(model_path="x.model", vocab_size=100)
    problems = TokenizeStage(model_path=str(tmp_path / "missing.model")).check()
    assert problems and problems[0][0] == "model_path" and "does not exist" in problems[0][1]


def test_verify_ok_and_reports_damage_by_file(shards_dir, tmp_path, capsys):
    assert verify_shards(str(shards_dir)).ok
    assert shards_command(["verify", str(shards_dir)]) == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in shards_dir.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    names = sorted(p.name for p in broken.glob("shard-*.arrow"))
    truncated, flipped = broken / names[0], broken / names[1]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    capsys.readouterr()
    assert shards_command(["verify", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"{names[0]}: sha256 differs" in err and "truncated" in err and names[0] in err
    assert f"{names[1]}: sha256 differs" in err


@pytest.mark.skipif(not (DATA / "wiki" / "wikitext-2-valid.txt").exists(), reason="shared data absent")
def test_real_text_round_trip(tmp_path):
    text = (DATA / "wiki" / "wikitext-2-valid.txt").read_text(encoding="utf-8")
    docs = [{"id": f"w{i}", "text": t, "source": "wiki", "meta": {}} for i, t in enumerate(text.split("\n = ")[:120])]
    out = run_stage(TokenizeStage(vocab_size=2000, shard_tokens=20000, sample_docs=60), docs, tmp_path)
    assert verify_shards(str(out)).ok
    encoder = Encoder((out / "tokenizer.model").read_bytes(), add_eos=False)
    table = pa.ipc.open_stream(pa.memory_map(str(sorted(out.glob("*.arrow"))[0]))).read_all()
    row = table.slice(0, 1).to_pylist()[0]
    original = next(d["text"] for d in docs if d["id"] == row["id"])
    assert encoder.decode(row["input_ids"][:-1]) == original
    assert np.all(table.column("length").to_numpy() > 1)


def one_line_pages(n: int, words: int, seed: int = 5) -> list[str]:
    """Single-line web pages longer than SentencePiece's max_sentence_length (16,384 bytes); page
    i carries its own CJK character, so the model shows which pages it was trained on."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f" {chr(0x4E00 + i)}{chr(0x4E00 + i)}"
            for i in range(n)]


def test_single_line_documents_longer_than_max_sentence_length_all_contribute():
    pages = one_line_pages(12, 4000)
    assert all(len(p.encode()) > TrainerConfig().max_sentence_length for p in pages)
    config = TrainerConfig(vocab_size=300, byte_fallback=False, character_coverage=1.0)
    model = train_model(pages, config)  # SentencePiece skipped every line: "[!sentences_.empty()]"
    pieces = {Encoder(model, add_eos=False).processor.id_to_piece(i) for i in range(300)}
    assert all(chr(0x4E00 + i) in pieces for i in range(12))
    assert train_model(pages, config) == model


def test_long_lines_are_cut_at_whitespace_else_at_a_character_boundary():
    from thresher.tokenization.spm import _cut

    line = ("word " * 10_000).encode()
    pieces = list(_cut(line, 1000))
    assert b"".join(pieces) == line and all(len(p) <= 1000 for p in pieces)
    assert all(set(p.split()) <= {b"word"} for p in pieces)  # no word split
    wide = "é字😀" * 300_000  # 10 MB in 1-, 2-, 3- and 4-byte characters without a space
    pieces = list(_cut(wide.encode(), 16384))
    assert all(len(p) <= 16384 for p in pieces)
    assert "".join(p.decode("utf-8") for p in pieces) == wide


def test_no_usable_text_is_a_clear_error_with_the_numbers():
    with pytest.raises(TokenizerTrainingError) as info:
        train_model(["", "   \n\n  ", "\t"], TrainerConfig(vocab_size=300))
    assert "3 documents, 0 with text" in str(info.value) and "SentencePiece" not in str(info.value)
    with pytest.raises(TokenizerTrainingError, match=r"5,000-piece .* on 5 documents, 5 with text.*too high") as info:
        train_model(["hello world"] * 5, TrainerConfig(vocab_size=5000))
    assert "trainer_interface.cc" not in str(info.value) and info.value.__cause__ is None


def test_run_with_nothing_to_tokenize_ends_with_a_one_line_error(tmp_path, capsys):
    from thresher.pipeline.cli import main

    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": str(i), "text": "   "}) + "\n" for i in range(3)))
    (tmp_path / "c.yaml").write_text(f"input: {{paths: ['{tmp_path / 'in.jsonl'}']}}\noutput: '{tmp_path / 'out'}'\n"
                                     "stages: [{name: tokenize, vocab_size: 300}]\n")
    assert main(["run", str(tmp_path / "c.yaml"), "--quiet"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "tokenize: no text to train the tokenizer on: no document reached it" in last
