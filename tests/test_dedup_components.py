"""Distributed connected components (large-star / small-star in Beam) against a union-find oracle."""

import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from thresher.pipeline.components import ConnectedComponents


def union_find_labels(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        if a != b:
            parent[max(a, b)] = min(a, b)
    groups = {}
    for node in {x for e in edges for x in e}:
        groups.setdefault(find(node), []).append(node)
    return sorted((node, min(group)) for group in groups.values() for node in group)


def adversarial_graphs(rng):
    """Disjoint graphs (ids prefixed per graph) in one edge list: one pipeline covers them all."""
    edges = []
    ids = [f"p{rng.randrange(10 ** 9):09d}" for _ in range(2000)]  # path in random id order
    edges += [(ids[i], ids[i + 1]) for i in range(len(ids) - 1)]
    edges += [(f"q{i:05d}", f"q{i + 1:05d}") for i in range(500)]  # sorted path, reversed edges below
    edges += [(f"r{i + 1:05d}", f"r{i:05d}") for i in range(500)]
    edges += [("s00000", f"s{i:05d}") for i in range(1, 1500)]  # star centred on the minimum
    edges += [(f"t{i:05d}", "t99999") for i in range(1500)]  # star centred on the maximum
    nodes = [f"g{i:04d}" for i in range(600)]  # sparse random graph: many components
    edges += [(rng.choice(nodes), rng.choice(nodes)) for _ in range(450)]
    for c in range(300):  # many small clusters (pairs and triangles)
        a, b, d = f"c{c:03d}a", f"c{c:03d}b", f"c{c:03d}d"
        edges += [(a, b)] if c % 2 else [(a, b), (b, d), (d, a)]
    edges += [("dup1", "dup2")] * 5 + [("dup2", "dup1"), ("self", "self"), ("self", "dup1")]
    rng.shuffle(edges)
    return edges


def test_components_match_union_find_on_adversarial_graphs():
    edges = adversarial_graphs(random.Random(0))
    with BeamTestPipeline() as p:
        labels = p | beam.Create(edges) | ConnectedComponents(max_rounds=12)
        assert_that(labels, equal_to(union_find_labels(edges)))


def test_not_converging_within_max_rounds_fails_loudly():
    edges = [(f"n{i:03d}", f"n{i + 1:03d}") for i in range(200)]
    with pytest.raises(Exception, match="did not converge in 2 .*raise max_rounds"):
        with BeamTestPipeline() as p:
            _ = p | beam.Create(edges) | ConnectedComponents(max_rounds=2)


def test_a_100k_bucket_and_a_100k_neighbourhood_stay_linear():
    from thresher.pipeline.components import _LargeStar, _SmallStar
    from thresher.pipeline.dedup import _bucket_star

    ids = [f"doc{i:06d}" for i in range(100_000)]
    random.Random(3).shuffle(ids)
    edges = _bucket_star(np.full(len(ids), 7, dtype=np.uint64), ids)
    assert len(edges) == 99_999 and {u for u, _ in edges} == {"doc000000"}
    # large-star at the centre of that star: one edge per neighbour, nothing pairwise
    out = _LargeStar(count_changes=True)("doc000000", [[v for _, v in edges]])
    assert len(out) == 99_999 and all(m == "doc000000" for _, m in out)
    # small-star at a node with 100k smaller neighbours: each relinked to the minimum once
    out = _SmallStar(count_changes=True, both_ways=False)("zzz", [ids])
    edges_out = [e for e in out if isinstance(e, tuple)]
    assert len(edges_out) == 100_000 and all(m == "doc000000" for m, _ in edges_out)
    assert [e.value for e in out if not isinstance(e, tuple)] == [99_999]


def test_results_do_not_depend_on_the_number_of_partitions():
    edges = adversarial_graphs(random.Random(1))
    expected = union_find_labels(edges)
    for partitions in (1, 7, 64):
        with BeamTestPipeline() as p:
            labels = p | beam.Create(edges) | ConnectedComponents(max_rounds=12, partitions=partitions)
            assert_that(labels, equal_to(expected))
