"""exact_dedup and minhash_dedup as Beam stages: the shared fixtures, keep policies, verification
modes, a 100-copy boilerplate bucket, stats, and identical output with 1 and 2 workers."""

import json
import pickle
import random
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from pydantic import ValidationError

from conftest import shared_file
from thresher.pipeline.dedup import ExactDedup, MinHashDedup, normalise_for_exact, size_bucket
from thresher.pipeline.stage_api import StageContext


def ctx(label: str, output_dir: str) -> StageContext:
    return StageContext(index=0, label=label, output_dir=output_dir, seed=0, config_hash="x")


def doc(doc_id, text, **meta):
    return {"id": doc_id, "text": text, "source": "test", "meta": meta}


def fixture_docs(folder: str) -> list[dict]:
    directory = shared_file(f"fixtures/{folder}")
    return [doc(f.stem, f.read_text(encoding="utf-8")) for f in sorted(Path(directory).iterdir())]


def summary(result, name):
    """("kept", id, None) and ("rejected", id, duplicate_of) elements."""
    kept = result.kept | f"{name}Kept" >> beam.Map(lambda d: ("kept", d["id"], None))
    rejected = result.rejected | f"{name}Rejected" >> beam.Map(lambda r: ("rejected", r["id"], r["duplicate_of"]))
    return (kept, rejected) | f"{name}Summary" >> beam.Flatten()


def wiki_articles(n):
    text = shared_file("wiki/wikitext-2-valid.txt").read_text(encoding="utf-8")
    return [a for a in text.split("\n = ") if 2000 < len(a) < 8000][:n]


def near_duplicate(text, rng, rate):
    words = text.split()
    for i in rng.sample(range(len(words)), int(rate * len(words))):
        words[i] = words[i][::-1] + "x"
    return " ".join(words)


def test_helpers():
    assert normalise_for_exact("  Ｃafe\u0301\tCAFÉ \n x ") == "ｃafé café x"
    assert [size_bucket(n) for n in (2, 3, 4, 5, 8, 9, 100)] == ["2", "3-4", "3-4", "5-8", "5-8", "9-16", "65-128"]
    with pytest.raises(ValidationError, match="bands and rows"):
        MinHashDedup(bands=4)
    with pytest.raises(ValidationError, match="exceeds num_perm"):
        MinHashDedup(bands=20, rows=10)
    with pytest.raises(ValidationError, match="score_field"):
        MinHashDedup(keep="meta_score")
    with pytest.raises(ValidationError):
        MinHashDedup(thresholds=0.8)


def test_minhash_fixtures_policies_and_boilerplate_bucket(tmp_path):
    licences = fixture_docs("documents_with_fuzzy_duplicates")
    exact_copy = dict(licences[1], id="zz_exact_copy_of_rails")
    # 100 copies of one page, each with its own visit counter: one LSH bucket of 100 in every band
    boilerplate = [doc(f"bp{i:04d}", licences[0]["text"] + f"\nvisited {i} times") for i in range(100)]
    articles = wiki_articles(4)
    rng = random.Random(1)
    scored = [doc("s1", articles[0], quality=0.2), doc("s2", near_duplicate(articles[0], rng, 0.004), quality=0.9),
              doc("s3", articles[1] + " extra words at the end of this one", quality=None),
              doc("s4", articles[1], quality=0.1)]
    longest = [doc("l1", articles[2]), doc("l2", articles[2] + " and a longer tail for this copy")]
    with BeamTestPipeline() as p:
        # The MIT pair's true word-5-gram Jaccard is 0.919. At threshold 0.7 (b=14, r=9) LSH pairs it
        # with probability 0.9998; at the 0.8 default (b=9, r=13) with 0.974, and seed 1 happens to
        # fall in the other 2.6% (its 128-perm estimate is 0.88, no band of 13 rows agrees fully).
        res = MinHashDedup(threshold=0.7, max_rounds=3).expand(p | "CreateLicences" >> beam.Create(licences + [exact_copy]), ctx("lic", str(tmp_path)))
        assert_that(summary(res, "lic"), equal_to([
            ("kept", "pytorch_license", None), ("kept", "rails_mit_license", None),
            ("rejected", "react_mit_license", "rails_mit_license"),
            ("rejected", "zz_exact_copy_of_rails", "rails_mit_license")]), label="licences")
        assert_that(res.stats, equal_to([{"clusters": 1, "duplicates_removed": 2,
                                          "cluster_size_histogram": {"3-4": 1}}]), label="licence stats")
        assert_that(res.rejected | "Records" >> beam.Map(lambda r: (r["id"], r["reason"], r["stage"], r["value"] > 0.7,
                                                       r["text"] == exact_copy["text"] or "MIT" in r["text"])),
                    equal_to([("react_mit_license", "duplicate", "minhash_dedup", True, True),
                              ("zz_exact_copy_of_rails", "duplicate", "minhash_dedup", True, True)]),
                    label="records")

        res = MinHashDedup(verify="jaccard", max_rounds=3).expand(p | "CreateBp" >> beam.Create(boilerplate), ctx("bp", str(tmp_path)))
        assert_that(res.stats, equal_to([{"clusters": 1, "duplicates_removed": 99,
                                          "cluster_size_histogram": {"65-128": 1}}]), label="bp stats")
        assert_that(res.kept | "BpIds" >> beam.Map(lambda d: d["id"]), equal_to(["bp0000"]), label="bp kept")

        res = MinHashDedup(keep="meta_score", score_field="quality", verify="none", max_rounds=3).expand(
            p | "CreateScored" >> beam.Create(scored), ctx("scored", str(tmp_path)))
        assert_that(summary(res, "scored"), equal_to([("kept", "s2", None), ("rejected", "s1", "s2"),
                                            ("kept", "s4", None), ("rejected", "s3", "s4")]), label="meta_score")
        res = MinHashDedup(keep="longest", max_rounds=3).expand(p | "CreateLong" >> beam.Create(longest), ctx("long", str(tmp_path)))
        assert_that(summary(res, "long"), equal_to([("kept", "l2", None), ("rejected", "l1", "l2")]), label="longest")


def test_exact_dedup_documents_and_ccnet_lines(tmp_path):
    licences = fixture_docs("documents_with_fuzzy_duplicates")
    variants = [doc("b", "Hello   World\n"), doc("a", "hello world"), doc("c", "HELLO WORLD "), doc("d", "hello, world")]
    line_docs = fixture_docs("documents_with_line_duplicates")
    expected = {d["id"]: d["text"] for d in fixture_docs("documents_line_deduplicated")}
    with BeamTestPipeline() as p:
        res = ExactDedup().expand(p | "CreateVariants" >> beam.Create(variants + licences), ctx("exact", str(tmp_path)))
        assert_that(summary(res, "exact"), equal_to(
            [("kept", "a", None), ("kept", "d", None), ("rejected", "b", "a"), ("rejected", "c", "a")]
            + [("kept", d["id"], None) for d in licences]), label="exact")
        assert_that(res.stats, equal_to([{"clusters": 1, "duplicates_removed": 2,
                                          "cluster_size_histogram": {"3-4": 1}}]), label="exact stats")

        res = ExactDedup(document=False, line_dedup_min_count=2, drop_empty=False).expand(
            p | "CreateLines" >> beam.Create(line_docs), ctx("lines", str(tmp_path)))
        assert_that(res.kept | "LineTexts" >> beam.Map(lambda d: (d["id"], d["text"])), equal_to(sorted(expected.items())),
                    label="line fixture")
        assert_that(res.stats, equal_to([{"lines_removed": 6, "docs_with_lines_removed": 4}]), label="line stats")

        res = ExactDedup(line_dedup_min_count=2).expand(p | "CreateBoth" >> beam.Create(line_docs), ctx("both", str(tmp_path)))
        # doc2 is an exact copy of doc1 and goes first; doc1's line then occurs once and stays
        assert_that(summary(res, "both"), equal_to([("kept", "doc1", None), ("rejected", "doc2", "doc1"),
                                            ("kept", "doc3", None), ("kept", "doc4", None), ("kept", "doc5", None)]),
                    label="doc then line")
        assert_that(res.kept | "LineMeta" >> beam.Map(lambda d: (d["id"], d["meta"].get("line_dedup_removed", 0))),
                    equal_to([("doc1", 0), ("doc3", 2), ("doc4", 2), ("doc5", 0)]), label="line meta")


def _run_to_file(tmp_path: Path, docs: list[dict], options: PipelineOptions, name: str) -> list[str]:
    out = tmp_path / name
    with beam.Pipeline(options=options) as p:
        res = MinHashDedup(max_rounds=3).expand(p | beam.Create(docs), ctx("mp", str(tmp_path)))
        lines = ((res.kept | "K" >> beam.Map(lambda d: json.dumps(["kept", d["id"], None])),
                  res.rejected | "R" >> beam.Map(lambda r: json.dumps(["rej", r["id"], r["duplicate_of"], r["value"]])))
                 | beam.Flatten())
        _ = lines | beam.io.WriteToText(str(out), num_shards=1, shard_name_template="")
    return sorted(out.read_text().splitlines())


def test_one_and_two_workers_give_identical_output(tmp_path):
    rng = random.Random(7)
    articles = wiki_articles(30)
    docs = [doc(f"a{i:03d}", a) for i, a in enumerate(articles)]
    docs += [doc(f"n{rng.randrange(10 ** 6):06d}", near_duplicate(rng.choice(articles), rng, 0.005)) for _ in range(40)]
    rng.shuffle(docs)
    one = _run_to_file(tmp_path, docs, PipelineOptions(direct_num_workers=1), "one")
    two = _run_to_file(tmp_path, docs, PipelineOptions(direct_num_workers=2, direct_running_mode="multi_processing"), "two")
    assert one == two
    assert sum(line.startswith('["rej"') for line in one) >= 35


def test_repeated_id_is_a_clear_error(tmp_path):
    articles = wiki_articles(2)
    docs = [dict(doc("same", articles[0]), origin="a.jsonl:3"), dict(doc("same", articles[1]), origin="b.jsonl:7")]
    with pytest.raises(Exception, match=r"document id 'same' occurs 2 times \(read at a.jsonl:3, b.jsonl:7\); ids must "
                                        r"be unique.*input.make_ids_unique"):
        with BeamTestPipeline() as p:
            MinHashDedup(max_rounds=2).expand(p | beam.Create(docs), ctx("rep", str(tmp_path)))


def test_a_repeated_id_never_removes_the_wrong_document(tmp_path):
    """Removals go to the parked row of the removed document, not to whatever carries its id: two
    documents share the id "7"; only the copy of the kept text is removed."""
    docs = [doc("7", "the kept text"), doc("7", "a different text"), doc("1", "The  kept text")]
    with BeamTestPipeline() as p:
        res = ExactDedup().expand(p | beam.Create(docs), ctx("rows", str(tmp_path)))
        assert_that(res.kept | beam.Map(lambda d: (d["id"], d["text"])),
                    equal_to([("1", "The  kept text"), ("7", "a different text")]), label="kept")
        assert_that(res.rejected | "Rej" >> beam.Map(lambda r: (r["id"], r["text"], r["duplicate_of"])),
                    equal_to([("7", "the kept text", "1")]), label="rejected")


def test_documents_travel_through_parked_files_not_the_shuffle(tmp_path):
    """The documents are parked under OUT/_spill/<label>/ and read back once per file: a decision
    routed to a row or a file that does not exist is an error, not a silent drop."""
    from thresher.pipeline.dedup import _removal_outputs
    from thresher.pipeline.parking import DocumentParking, _ApplyToFile

    parking = DocumentParking(str(tmp_path))
    token, row = parking.add(doc("x1", "first text"))
    assert parking.add(doc("x2", "second text")) == (token, 1) and row == 0
    assert parking.flush() == token and parking.flush() is None
    apply = _ApplyToFile(str(tmp_path), "exact_dedup", _removal_outputs("exact_dedup"))
    out = list(apply(token, [[(1, ("x2", "x1", 1.0))], [None]]))
    assert out[0] == doc("x1", "first text")
    assert out[1].tag == "rejected" and out[1].value["duplicate_of"] == "x1" and out[1].value["text"] == "second text"
    with pytest.raises(RuntimeError, match="row 5 of parked file"):
        list(apply(token, [[(5, ("x9", "x1", 1.0))], [None]]))
    with pytest.raises(RuntimeError, match="holds 'x1', not the removed document 'x9'"):
        list(apply(token, [[(0, ("x9", "x1", 1.0))], [None]]))
    with pytest.raises(RuntimeError, match="which no bundle wrote"):
        list(apply("0" * 32, [[(0, ("x1", "x2", 1.0))], []]))

    with BeamTestPipeline() as p:
        res = ExactDedup().expand(p | beam.Create([doc("a", "same text"), doc("b", "Same  text")]), ctx("park", str(tmp_path)))
        assert_that(summary(res, "park"), equal_to([("kept", "a", None), ("rejected", "b", "a")]))
    parked = list((tmp_path / "_spill" / "park").glob("*.pkl"))
    assert parked and sum(len(pickle.loads(f.read_bytes())) for f in parked) == 2


def test_a_candidate_without_its_signature_is_lost_data_not_a_missing_pair():
    from thresher.pipeline.dedup import _AttachLeft, _ClusterMembers, _VerifyPairs

    attach = _AttachLeft("minhash_dedup", use_sets=False)
    node = (b"s", None, ("u",), "tok", 0, "f.jsonl:1")
    assert attach("u", [[node], []]) is None
    assert attach("u", [[node], ["v", "v"]]) == [("v", ("u", b"s"))]
    with pytest.raises(RuntimeError, match="'u' has no signature: data was lost"):
        attach("u", [[], ["v"]])
    with pytest.raises(RuntimeError, match="'v' has no signature"):
        _VerifyPairs("minhash_dedup", False, lambda a, b: 1.0, 0.8)("v", [[], [("u", b"s")]])
    with pytest.raises(RuntimeError, match="clustered document 'k' has no node record"):
        _ClusterMembers("minhash_dedup")("k", [[], ["r"]])
    assert _ClusterMembers("minhash_dedup")("k", [[], []]) is None
