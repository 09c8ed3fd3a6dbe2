"""The output writers under Beam's contract: a bundle may run twice (a retry, or a duplicate attempt on
another worker), so nothing it reads may be gone and every file it writes must come out the same;
spill objects grow with bundles, not bundles x shards."""

import gzip
import json
import os
import threading
from pathlib import Path

import pytest

from thresher.filters.storage import atomic_write, atomic_writer
from thresher.pipeline.io import SpillRecords, WriteShard


def _spill(tmp_path: Path, records: list[dict], shards: int) -> list:
    spill = SpillRecords(str(tmp_path), "kept", shards)
    spill.start_bundle()
    out = [item for record in records for item in spill.process(record)]
    return out + [wv.value for wv in spill.finish_bundle()]


def test_a_retried_writer_bundle_writes_the_same_files_and_deletes_nothing(tmp_path):
    records = [{"id": f"doc{i:04d}", "text": f"text {i}"} for i in range(500)]
    refs = _spill(tmp_path, records[:250], 4) + _spill(tmp_path, records[250:], 4)
    spilled = sorted(p for p in (tmp_path / "_spill").rglob("*") if p.is_file())
    by_shard: dict[int, list] = {}
    for shard, ref in refs:
        by_shard.setdefault(shard, []).append(ref)
    writer = WriteShard(str(tmp_path), "kept", 4, 1)

    def write_all() -> dict[str, bytes]:
        for element in sorted(by_shard.items()):
            assert list(writer.process(element)) == [f"part-{element[0]:05d}-of-00004.jsonl.gz"]
        return {p.name: p.read_bytes() for p in sorted((tmp_path / "kept").iterdir())}

    first = write_all()
    assert sorted(p for p in (tmp_path / "_spill").rglob("*") if p.is_file()) == spilled  # still there
    second = write_all()  # the retry
    assert first == second and len(first) == 4
    lines = [json.loads(line) for data in first.values() for line in gzip.decompress(data).splitlines()]
    assert sorted(r["id"] for r in lines) == [r["id"] for r in records]
    for data in first.values():  # each shard sorted by id
        ids = [json.loads(line)["id"] for line in gzip.decompress(data).splitlines()]
        assert ids == sorted(ids)
    assert not list((tmp_path / "kept").glob(".tmp-*"))


def test_spill_objects_grow_with_bundles_not_shards(tmp_path):
    records = [{"id": f"doc{i:05d}", "text": "x"} for i in range(3000)]
    refs = _spill(tmp_path, records, 1000)
    assert len({path for _, (path, _, _) in refs}) == 1  # one object for the bundle
    assert len({shard for shard, _ in refs}) > 900  # with a segment for each shard it touched


def test_atomic_writer_temp_names_are_unique_per_attempt(tmp_path):
    """Two attempts writing the same file at once (a retried bundle and its duplicate) both
    finish, the file holds one whole version, and no temporary file is left."""
    target = tmp_path / "out" / "part-00000-of-00001.jsonl.gz"
    barrier = threading.Barrier(2)
    errors = []

    def attempt(payload: bytes) -> None:
        try:
            with atomic_writer(str(target)) as fh:
                fh.write(payload[:10])
                barrier.wait(timeout=10)  # both temp files open at the same time
                fh.write(payload[10:])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(bytes([n]) * 1000,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert target.read_bytes() in (b"\x01" * 1000, b"\x02" * 1000)
    assert os.listdir(target.parent) == [target.name]


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "stats.json"
    atomic_write(str(target), b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(str(target)) as fh:
            fh.write(b"half")
            raise RuntimeError("worker died")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["stats.json"]
