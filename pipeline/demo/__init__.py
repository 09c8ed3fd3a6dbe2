"""`thresher demo`: generate the built-in demo corpus, run configs/demo.yaml over it, train the
tiny model on the shards it wrote (configs/train-tiny.yaml), and write the HTML report. Needs no
download: language id uses cld3, whose model is inside its wheel, and the classifiers ship with
the package."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from thresher.pipeline.commands import print_problems, print_summary
from thresher.pipeline.config import ConfigError, apply_overrides, load_yaml, validate_config

DEMO_CONFIG = "demo.yaml"
DEMO_TRAIN_CONFIG = "train-tiny.yaml"


def demo_config_path(name: str = DEMO_CONFIG) -> Path:
    return Path(str(resources.files("thresher.configs").joinpath(name)))


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thresher demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo-out", help="output directory (default: demo-out)")
    parser.add_argument("--docs", type=int, default=3000, help="documents in the generated corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None,
                        help="DirectRunner worker processes (default: the local runner's choice: one process for "
                             "the demo's few MB)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--train-steps", type=int, default=200, help="steps of the tiny training run (0: skip)")
    args = parser.parse_args(argv)

    from thresher.pipeline.demo.corpus import generate_demo_corpus, write_jsonl
    from thresher.pipeline.run import run_pipeline

    out = Path(args.out).resolve()
    corpus = out / "input" / "demo.jsonl.gz"
    count = write_jsonl(generate_demo_corpus(args.docs, args.seed), corpus)
    print(f"generated {count:,} demo documents -> {corpus}")

    reference = out / "input" / "poisoning-reference.npz"
    train_poisoning_reference(reference, args.docs, args.seed)
    poisoning = _stage_index(load_yaml(demo_config_path()), "poisoning")
    overrides = [f"input.paths=['{corpus}']", f"output={out}", f"seed={args.seed}",
                 f"stages.{poisoning}.reference_model={reference}"]
    if args.workers:
        overrides.append(f"runner.options.direct_num_workers={args.workers}")
        if args.workers > 1:
            overrides.append("runner.options.direct_running_mode=multi_processing")
    try:
        config = validate_config(apply_overrides(load_yaml(demo_config_path()), overrides + args.set))
        result = run_pipeline(config, show_progress=True)
    except ConfigError as exc:
        print_problems(str(demo_config_path()), exc)
        return 1
    print_summary(result.stats, result.output_dir)
    if not result.accounted:
        return 3
    if args.train_steps:
        train_demo_model(out, args.train_steps, args.seed)
    from thresher.pipeline.report import ReportBuilder

    report = ReportBuilder(seed=args.seed).write(str(out), None)
    print(f"\nkept documents: {out}/kept/   rejections with reasons: {out}/rejected/   stats: {out}/stats.json")
    print(f"token shards: {out}/shards/   model: {out}/train/   report: {report}")
    return 0


def _stage_index(config: dict, name: str) -> int:
    return next(i for i, stage in enumerate(config["stages"]) if stage["name"] == name)


def train_poisoning_reference(path: Path, docs: int, seed: int) -> None:
    """The poisoning stage's idea of ordinary text: a word trigram model of vetted clean text. Here
    that is a separately generated sample of the demo's articles (another seed, never poisoned);
    with real data, use text you trust (`thresher poisoning train-reference`)."""
    from thresher.filters.ngram_lm import NgramLM
    from thresher.pipeline.demo.corpus import iter_corpus

    clean = (d["text"] for d in iter_corpus(docs, seed=seed + 10_007, mix={"article": 1.0}, id_prefix="ref"))
    NgramLM.train(clean).save(path)


def train_demo_model(out: Path, steps: int, seed: int) -> None:
    """The tiny model of configs/train-tiny.yaml on the demo's shards, on CPU in a few minutes."""
    import json
    import shutil

    from thresher.training.config import load_train_config
    from thresher.training.loop import train

    vocab = json.loads((out / "shards" / "manifest.json").read_text())["vocab_size"]
    cfg = load_train_config(demo_config_path(DEMO_TRAIN_CONFIG), {
        "shards": str(out / "shards"), "out": str(out / "train"), "steps": steps, "seed": seed,
        "model.vocab_size": vocab, "resume": False})
    shutil.rmtree(out / "train", ignore_errors=True)  # the demo always trains from scratch
    print(f"\ntraining the tiny model for {steps} steps on {out / 'shards'} ...")
    final = train(cfg)
    summary = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items())
    print(f"training done: {summary}")


if __name__ == "__main__":
    sys.exit(demo_command(sys.argv[1:]))
