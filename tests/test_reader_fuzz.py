"""Fuzzing every reader (issue 15): random byte flips, zeroed runs and truncations of jsonl (plain,
gz, zst, bz2, xz), text, text_lines, parquet, Arrow (file and stream) and WARC files (the real
../shared/data/web/*.warc.gz and generated ones). No input crashes a reader, every item it emits is
a well-formed document or quarantine record, and a run over the damaged files accounts for every
record: read = kept + rejected + quarantined.

A seeded loop rather than hypothesis: the same damaged files on every run, and a failure names the
seed, format and mutation that caused it."""

import bz2
import gzip
import json
import lzma
import random
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.pvalue import TaggedOutput

from conftest import SHARED_DATA
from thresher.pipeline.config import InputConfig, validate_config
from thresher.pipeline.io import QuarantineRecord, ReadDocuments, encode_record
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}
MUTANTS = 24  # per base file; about 300 damaged files in all
RUN_SAMPLE = 6  # damaged files per format that also go through a whole run


def records(n=40):
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "naïve", "日本語", "emoji 🙂", "quote\"d", "tab\there", "line\nbreak"]
    return [{"id": f"r{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 60))),
             "meta": {"n": i}} for i in range(n)]


def warc_record(url: str, html: str, status: str = "200 OK") -> bytes:
    body = f"<html><head><title>{url}</title></head><body><p>{html}</p></body></html>".encode()
    http = f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n".encode() + body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.UUID(int=len(url) * 7919 + len(html))}>\r\n"
            f"WARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n").encode()
    return head + http + b"\r\n\r\n"


def base_files(tmp_path):
    """(input format, file name, bytes) of an intact file per reader."""
    docs = records()
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=10)
    arrow_file, arrow_stream = pa.BufferOutputStream(), pa.BufferOutputStream()
    with pa.ipc.new_file(arrow_file, table.schema) as writer:
        writer.write_table(table, max_chunksize=10)
    with pa.ipc.new_stream(arrow_stream, table.schema) as writer:
        writer.write_table(table, max_chunksize=10)
    pages = [warc_record(f"https://example.org/{i}", docs[i]["text"].replace("\n", " ") * 3,
                         "200 OK" if i % 5 else "404 Not Found") for i in range(12)]
    files = [
        ("jsonl", "plain.jsonl", lines),
        ("jsonl", "gzip.jsonl.gz", gzip.compress(lines, mtime=0)),
        ("jsonl", "zstd.jsonl.zst", zstandard.ZstdCompressor().compress(lines)),
        ("jsonl", "bzip2.jsonl.bz2", bz2.compress(lines)),
        ("jsonl", "xz.jsonl.xz", lzma.compress(lines)),
        ("text_lines", "lines.txt", "\n".join(d["text"].replace("\n", " ") for d in docs).encode()),
        ("text", "whole.txt.gz", gzip.compress(docs[0]["text"].encode() * 20, mtime=0)),
        ("parquet", "table.parquet", sink.getvalue().to_pybytes()),
        ("arrow", "file.arrow", arrow_file.getvalue().to_pybytes()),
        ("arrow", "stream.arrow", arrow_stream.getvalue().to_pybytes()),
        ("warc", "generated.warc", b"".join(pages)),
        ("warc", "generated.warc.gz", b"".join(gzip.compress(p, mtime=0) for p in pages)),  # a member per record
    ]
    for real in sorted((SHARED_DATA / "web").glob("*.warc.gz"))[:1]:
        files.append(("warc", real.name, real.read_bytes()))
    return files


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["flip", "flips", "zero_run", "truncate", "flip_truncate"])
    out = bytearray(data)
    if kind in ("flip", "flips", "flip_truncate"):
        for _ in range(1 if kind == "flip" else rng.randint(2, 16)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    if kind == "zero_run":
        start = rng.randrange(len(out))
        out[start:start + rng.randint(1, 64)] = bytes(min(64, len(out) - start))[: len(out[start:start + 64])]
    if kind in ("truncate", "flip_truncate"):
        out = out[: rng.randrange(len(out))]
    return kind, bytes(out)


def check_item(item, where):
    if isinstance(item, QuarantineRecord):
        assert isinstance(item["error"], str) and item["error"], where
        assert isinstance(item["raw_base64"], str), where
    else:
        assert set(item) == {"id", "text", "source", "meta", "origin"}, where
        assert isinstance(item["origin"], str) and item["origin"].startswith(item["source"] + ":"), where
        assert isinstance(item["id"], str) and isinstance(item["source"], str) and isinstance(item["meta"], dict), where
        assert isinstance(item["text"], str) and item["text"].strip(), where
        item["text"].encode("utf-8")  # writable: no lone surrogates
    encode_record(item)  # the writers can encode it


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """Every damaged file, by format: [(path, description)]."""
    root = tmp_path_factory.mktemp("fuzz")
    found: dict[str, list] = {}
    for index, (fmt, name, data) in enumerate(base_files(root)):
        rng = random.Random(1000 + index)
        for number in range(MUTANTS):
            kind, mutated = mutate(data, rng)
            folder = root / fmt
            folder.mkdir(exist_ok=True)
            path = folder / f"{number:03d}-{kind}-{name}"
            path.write_bytes(mutated)
            found.setdefault(fmt, []).append((path, f"{name} mutant {number} ({kind}, seed {1000 + index})"))
    return found


def test_no_damaged_file_crashes_a_reader(damaged):
    start = time.perf_counter()
    seen = {"documents": 0, "quarantined": 0}
    for fmt, files in damaged.items():
        fn = ReadDocuments(InputConfig(paths=["unused"], format=fmt))
        fn.setup()
        for path, where in files:
            for item in fn.process((str(path), path.name)):
                item = item.value if isinstance(item, TaggedOutput) else item
                check_item(item, where)
                seen["quarantined" if isinstance(item, QuarantineRecord) else "documents"] += 1
    assert seen["documents"] > 1000 and seen["quarantined"] > 100  # the damage was neither nil nor total
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize("fmt", ["jsonl", "text_lines", "text", "parquet", "arrow", "warc"])
def test_a_run_over_damaged_files_accounts_for_every_record(damaged, tmp_path, fmt):
    files = damaged[fmt]
    picked = [files[i] for i in random.Random(fmt).sample(range(len(files)), RUN_SAMPLE)]
    folder = tmp_path / "in"
    folder.mkdir()
    for path, _ in picked:
        (folder / path.name).write_bytes(path.read_bytes())
    fn = ReadDocuments(InputConfig(paths=["unused"], format=fmt))
    fn.setup()
    expected = sum(1 for path, _ in picked for _ in fn.process((str(path), path.name)))
    config = validate_config({"input": {"paths": [str(folder / "*")], "format": fmt}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY, "stages": [{"name": "normalize"}, {"name": "gopher_quality"}]})
    totals = run_pipeline(config).stats["totals"]
    assert totals["read"] == expected and totals["accounted"], (totals, [w for _, w in picked])
    assert totals["read"] == totals["kept"] + totals["rejected"] + totals["quarantined"]


def test_hostile_json_lines_are_quarantined_and_the_run_goes_on(tmp_path):
    deep_meta = '{"a":' * 900 + "1" + "}" * 900
    lines = [
        '{"id": "big-int", "text": "x", "n": ' + "9" * 5000 + "}",        # int() refuses > 4300 digits
        "[" * 100_000 + "]" * 100_000,                                    # json.loads recursion
        '{"id": "deep-meta", "text": "valid JSON, meta 900 deep", "meta": ' + deep_meta + "}",
        '{"id": "fine", "text": "an ordinary document"}',
    ]
    (tmp_path / "hostile.jsonl").write_text("\n".join(lines) + "\n")
    config = validate_config({"input": {"paths": [str(tmp_path / "hostile.jsonl")]}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY, "stages": [{"name": "exact_dedup"}]})
    totals = run_pipeline(config).stats["totals"]
    assert totals == {"read": 4, "generated": 0, "kept": 1, "rejected": 0, "quarantined": 3, "accounted": True}
    from conftest import read_output

    errors = {q["line"]: q["error"] for q in read_output(tmp_path / "out", "quarantine")}
    assert "digits" in errors[1] and "recursion" in errors[2] and "nested more than 64" in errors[3]
