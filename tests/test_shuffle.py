"""Grouping in batches gives exactly GroupByKey / CoGroupByKey's groups, whatever the partition
count or flush size, and a grouping that lost a batch is reported."""

import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from thresher.pipeline import shuffle
from thresher.pipeline.shuffle import ArrayPacker, GroupArrays, GroupInBatches, check_shuffle_counts


def _records(rng, n, keys):
    return [(rng.choice(keys), rng.randrange(1000)) for _ in range(n)]


def _sorted_groups(element):
    key, values = element
    if values and isinstance(values[0], list):  # co-grouped: one list per tag
        return key, [sorted(v) for v in values]
    return key, sorted(values)


@pytest.mark.parametrize("partitions,flush", [(1, 200_000), (5, 7), (64, 200_000)])
def test_same_groups_as_groupbykey(monkeypatch, partitions, flush):
    monkeypatch.setattr(shuffle, "FLUSH_ITEMS", flush)
    rng = random.Random(partitions)
    keys = [f"k{i}" for i in range(60)] + [b"\x00bytes", 7, ("a", 1)]
    left, right = _records(rng, 900, keys), _records(rng, 300, keys[:20] + ["only-right"])
    expected_one = {}
    for k, v in left:
        expected_one.setdefault(k, []).append(v)
    expected_two = {k: [sorted(v), []] for k, v in expected_one.items()}
    for k, v in right:
        expected_two.setdefault(k, [[], []])[1].append(v)
    with BeamTestPipeline() as p:
        lefts = p | "L" >> beam.Create(left)
        rights = p | "R" >> beam.Create(right)
        one = lefts | "One" >> GroupInBatches("one", partitions)
        two = (lefts, rights) | "Two" >> GroupInBatches("two", partitions)
        assert_that(one | "S1" >> beam.Map(_sorted_groups),
                    equal_to([(k, sorted(v)) for k, v in expected_one.items()]), label="one")
        assert_that(two | "S2" >> beam.Map(_sorted_groups),
                    equal_to([(k, [sorted(v[0]), sorted(v[1])]) for k, v in expected_two.items()]), label="two")


def test_reduce_runs_once_per_key_with_tagged_outputs():
    def reduce(key, values):
        yield (key, sum(values[0]))
        yield beam.pvalue.TaggedOutput("sizes", len(values[0]))

    with BeamTestPipeline() as p:
        out = (p | beam.Create([("a", 1), ("b", 2), ("a", 3)])
               | GroupInBatches("r", 3, reduce, with_outputs=("sizes",), main="sums"))
        assert_that(out.sums, equal_to([("a", 4), ("b", 2)]), label="sums")
        assert_that(out.sizes, equal_to([2, 1]), label="sizes")


def test_array_packer_groups_uint64_keys():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, 2000, dtype=np.uint64)
    values = [f"v{i}" for i in range(2000)]

    def counts(keys, values):
        uniq, n = np.unique(keys, return_counts=True)
        assert len(values) == len(keys)
        return list(zip(uniq.tolist(), n.tolist()))

    class Pack(beam.DoFn):
        def process(self, chunk):
            packer = ArrayPacker("arrays", 4)
            packer.add(keys[chunk:chunk + 500], values[chunk:chunk + 500])
            yield from packer.batches()

    with BeamTestPipeline() as p:
        out = p | beam.Create([0, 500, 1000, 1500]) | beam.ParDo(Pack()) | GroupArrays("arrays", counts)
        uniq, n = np.unique(keys, return_counts=True)
        assert_that(out, equal_to(list(zip(uniq.tolist(), n.tolist()))))


def test_a_grouping_that_received_fewer_records_than_were_packed_is_reported():
    counters = {"shuffle/s/bands/packed": 90, "shuffle/s/bands/unpacked/s/buckets": 90,
                "shuffle/s/nodes/packed": 10, "shuffle/s/nodes/unpacked/s/join": 10,
                "shuffle/s/nodes/unpacked/s/members": 4}
    (problem,) = check_shuffle_counts(counters)
    assert "'s/members' received 4 of the 10 records 's/nodes' packed" in problem
    assert check_shuffle_counts({k: v for k, v in counters.items() if not k.endswith("members")}) == []


def test_counts_reach_the_run_stats(tmp_path):
    from conftest import write_jsonl
    from thresher.pipeline.config import validate_config
    from thresher.pipeline.run import run_pipeline

    docs = [{"id": f"d{i}", "text": f"same words in every one of these documents {i % 3}"} for i in range(30)]
    write_jsonl(tmp_path / "in.jsonl", docs)
    config = validate_config({"input": {"paths": [str(tmp_path / "in.jsonl")]}, "output": str(tmp_path / "out"),
                              "stages": [{"name": "exact_dedup"}]})
    result = run_pipeline(config)
    assert result.accounted and result.stats["shuffle_problems"] == [] and result.stats["totals"]["rejected"] == 27


def test_unique_and_drive_visit_what_the_reduce_needs():
    """drive=(1,): only keys with tag-1 values are visited, and a key repeated in a unique tag is
    always visited with all its values (the repeated-id check depends on it)."""
    from thresher.pipeline.shuffle import Packer, unpack

    nodes, edges = Packer("nodes", 1, tag=0), Packer("edges", 1, tag=1)
    for key in ("a", "b", "c", "d"):
        nodes.add(key, f"node-{key}")
    nodes.add("d", "another-d")
    edges.add("a", "x")
    edges.add("zz", "y")
    blobs = [blob for _, blob in nodes.batches() + edges.batches()]
    counts = {}
    seen = dict(unpack(blobs, 2, counts, unique=(0,), drive=(1,)))
    assert seen == {"a": [["node-a"], ["x"]], "zz": [[], ["y"]], "d": [["node-d", "another-d"], []]}
    assert counts == {"nodes": 5, "edges": 2}
    everything = dict(unpack(blobs, 2))
    assert sorted(everything) == ["a", "b", "c", "d", "zz"] and sorted(everything["d"][0]) == ["another-d", "node-d"]
