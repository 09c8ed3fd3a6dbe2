"""The graph is ready for a remote runner without submitting anything: every DoFn pickles, the
pipeline converts to its runner-API proto, and DataflowRunner builds the job in --dry_run mode."""

import importlib.util

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions

from thresher.pipeline.config import apply_overrides, load_yaml, validate_config
from thresher.pipeline.demo import demo_config_path
from thresher.pipeline.graph import build_graph

REMOTE_OUT = "gs://thresher-example-bucket/run-1"
FILES = [("gs://thresher-example-bucket/input/part-0.jsonl.gz", "part-0.jsonl.gz")]


def demo_config():
    data = apply_overrides(load_yaml(demo_config_path()), [f"output={REMOTE_OUT}",
                                                          "input.paths=['gs://thresher-example-bucket/input/*.jsonl.gz']"])
    return validate_config(data, check_files=False)


def all_dofns(pipeline):
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                found.append((node.full_label, node.transform.fn))

    pipeline.visit(Visitor())
    return found


def test_every_dofn_pickles_and_the_graph_converts_to_the_runner_api():
    config = demo_config()
    pipeline = beam.Pipeline(options=PipelineOptions(runner="DirectRunner"))
    build_graph(pipeline, config, FILES, REMOTE_OUT)
    dofns = all_dofns(pipeline)
    assert any("ReadDocuments" in label for label, _ in dofns)
    for label, fn in dofns:
        restored = pickler.loads(pickler.dumps(fn))
        assert type(restored) is type(fn), label
    proto = pipeline.to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"ReadDocuments", "WriteKept", "WriteRejected", "WriteQuarantine"} <= names


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package ("google.cloud") is missing
        return False


@pytest.mark.skipif(not (_installed("google.cloud.storage") and _installed("apitools")),
                    reason="apache-beam[gcp] is not installed")
def test_dataflow_runner_builds_the_job_offline_with_dry_run():
    config = demo_config()
    options = PipelineOptions([
        "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=thresher-example",
        "--region=us-central1", "--temp_location=gs://thresher-example-bucket/tmp",
    ])
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, config, FILES, REMOTE_OUT)
    result = pipeline.run()
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    assert "ReadDocuments" in names and "WriteKept/WriteShard" in names
    assert any(name.startswith("Apply[") for name in names)
