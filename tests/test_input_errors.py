"""An input file that fails to read half-way (a network fault) fails the bundle so that the runner
retries it; only bad content is quarantined (issue 15)."""

import gzip
import io
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import TaggedOutput

from conftest import SHARED_DATA, write_jsonl
from thresher.pipeline import io as tio
from thresher.pipeline.config import InputConfig, validate_config
from thresher.pipeline.io import InputReadError, QuarantineRecord, ReadDocuments
from thresher.pipeline.run import run_pipeline

IN_MEMORY = {"name": "direct", "options": {"direct_num_workers": 1, "direct_running_mode": "in_memory"}}
WARC = SHARED_DATA / "web" / "sample-0000.warc.gz"


class FlakyFile(io.RawIOBase):
    """A remote file whose connection drops after ``fail_after`` bytes; reads return at most 4 KiB,
    as network reads do."""

    def __init__(self, data: bytes, fail_after: int | None):
        self.data, self.position, self.fail_after = data, 0, fail_after

    def readable(self):
        return True

    def read(self, size=-1):
        end = len(self.data) if size is None or size < 0 else min(len(self.data), self.position + size, self.position + 4096)
        if self.fail_after is not None and end > self.fail_after:
            raise ConnectionResetError(104, "Connection reset by peer")
        chunk = self.data[self.position:end]
        self.position = end
        return chunk

    def readinto(self, target):
        chunk = self.read(len(target))
        target[: len(chunk)] = chunk
        return len(chunk)


@pytest.fixture
def flaky(monkeypatch):
    """FileSystems.open of a path in ``failures`` drops the connection half-way through the file
    on the first open; later opens (the runner's retry) read it whole."""
    failures: dict[str, int] = {}
    real_open = FileSystems.open

    def open_(path, *args, **kwargs):
        if path in failures:
            with real_open(path, *args, **kwargs) as fh:
                data = fh.read()
            return FlakyFile(data, failures.pop(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(open_))
    return failures


def docs(n):
    return [{"id": f"d{i}", "text": f"document number {i} " + "filler words " * 40} for i in range(n)]


def make_inputs(tmp_path):
    """(format, path) of one ~40 KB file per reader, each holding the same 60 documents."""
    records = docs(60)
    raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    files = {}
    files["jsonl"] = write_jsonl(tmp_path / "a.jsonl", records)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(raw, mtime=0))
    files["jsonl.gz"] = tmp_path / "b.jsonl.gz"
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    files["jsonl.zst"] = tmp_path / "c.jsonl.zst"
    table = pa.table({"id": [r["id"] for r in records], "text": [r["text"] for r in records]})
    pq.write_table(table, tmp_path / "d.parquet", compression="none")
    files["parquet"] = tmp_path / "d.parquet"
    with pa.ipc.new_file(str(tmp_path / "e.arrow"), table.schema) as writer:
        writer.write_table(table)
    files["arrow"] = tmp_path / "e.arrow"
    (tmp_path / "f.txt").write_text(records[0]["text"] * 50)
    files["text"] = tmp_path / "f.txt"
    return files


FORMATS = {"jsonl": "jsonl", "jsonl.gz": "jsonl", "jsonl.zst": "jsonl", "parquet": "parquet", "arrow": "arrow",
           "text": "text", "warc": "warc"}


def unwrap(item):
    return item.value if isinstance(item, TaggedOutput) else item


def read_all(path, fmt):
    fn = ReadDocuments(InputConfig(paths=[str(path)], format=fmt))
    fn.setup()
    return [unwrap(item) for item in fn.process((str(path), path.name))]


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_a_connection_dropped_mid_file_fails_the_bundle_and_the_retry_reads_it_whole(tmp_path, flaky, kind):
    if kind == "warc":
        if not WARC.exists():
            pytest.skip(f"{WARC} is absent")
        path = tmp_path / WARC.name
        shutil.copy(WARC, path)
    else:
        path = make_inputs(tmp_path)[kind]
    fmt = FORMATS[kind]
    clean = read_all(path, fmt)
    assert clean and not any(isinstance(item, QuarantineRecord) for item in clean if kind != "warc")

    flaky[str(path)] = path.stat().st_size // 2
    emitted = []
    with pytest.raises(InputReadError, match="Connection reset"):
        fn = ReadDocuments(InputConfig(paths=[str(path)], format=fmt))
        fn.setup()
        for item in fn.process((str(path), path.name)):
            emitted.append(unwrap(item))
    # nothing of the failure became data: no quarantine record speaks of the connection
    assert not any("Connection reset" in str(item) for item in emitted)
    assert read_all(path, fmt) == clean  # the runner's retry of the bundle


def test_a_file_that_vanished_after_listing_fails_the_run_instead_of_being_quarantined(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "d.jsonl", docs(3))
    config = validate_config({"input": {"paths": [str(tmp_path / "d.jsonl")]}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY})
    real_match = tio.match_inputs

    def match_then_vanish(cfg):
        found = real_match(cfg)
        (tmp_path / "d.jsonl").unlink()
        return found

    monkeypatch.setattr("thresher.pipeline.run.match_inputs", match_then_vanish)
    with pytest.raises(Exception, match="cannot open"):
        run_pipeline(config)
    assert not (tmp_path / "out" / "stats.json").exists()


def test_a_read_error_fails_the_run_instead_of_ending_in_quarantine(tmp_path, flaky):
    write_jsonl(tmp_path / "d.jsonl", docs(60))
    flaky[str(tmp_path / "d.jsonl")] = 10_000
    config = validate_config({"input": {"paths": [str(tmp_path / "d.jsonl")]}, "output": str(tmp_path / "out"),
                              "runner": IN_MEMORY})
    with pytest.raises(Exception, match="Connection reset"):
        run_pipeline(config)
    assert not (tmp_path / "out" / "stats.json").exists()


def test_bad_content_is_still_quarantined(tmp_path):
    raw = "".join(json.dumps(r) + "\n" for r in docs(30)).encode()
    (tmp_path / "cut.jsonl.gz").write_bytes(gzip.compress(raw, mtime=0)[:-200])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    items = read_all(tmp_path / "cut.jsonl.gz", "jsonl") + read_all(tmp_path / "bad.parquet", "parquet")
    errors = [item["error"] for item in items if isinstance(item, QuarantineRecord)]
    assert len(errors) == 2 and "truncated gzip" in errors[0] and "parquet" in errors[1]
