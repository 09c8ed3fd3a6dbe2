"""The `thresher` command. Each subcommand is "module:function" taking argv and returning an exit
code, imported only when used, so `thresher validate` never pays for torch or fastText."""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", one-line help)
    "models": ("thresher.filters.model_store:models_main", "models fetch NAME [--dest DIR]: download a model (lid176), verify its sha256"),
    "train-embeddings": ("thresher.filters.embeddings:main", "train fastText skip-gram embeddings on a corpus, write a synonym table for augment"),
    "train-classifier": ("thresher.filters.classifier_training:main", "train a fastText classifier from labelled files, print held-out P/R/F1"),
    "shards": ("thresher.tokenization.verify:shards_command", "shards verify DIR: check shard checksums, counts and tokens"),
    "run": ("thresher.pipeline.commands:run_command", "run a curation pipeline from a YAML config"),
    "demo": ("thresher.pipeline.demo:demo_command", "generate the demo corpus and run the demo pipeline on it"),
    "validate": ("thresher.pipeline.commands:validate_command", "check a config, list every problem with its YAML path"),
    "stages": ("thresher.pipeline.reference:stages_command", "stages [NAME ...]: list the built-in and plugin stages, or show a stage's keys"),
    "train": ("thresher.training.loop:train_command", "train a GPT on token shards from a training YAML (torchrun for ddp/fsdp)"),
    "report": ("thresher.pipeline.report:report_command", "report OUT_DIR: write a self-contained HTML report (funnel, reasons, scores, PII, dedup, tokens, training)"),
    "score": ("thresher.training.loop:score_command", "write per-document reference losses of a trained checkpoint over shards"),
    "manifest": ("thresher.pipeline.manifest_cmd:manifest_main", "write an id/URL -> sha256 integrity manifest from a run's kept/ output"),
    "poisoning": ("thresher.pipeline.manifest_cmd:poisoning_main", "poisoning train-reference FILES -o MODEL.npz: train the n-gram reference model"),
}


def _usage() -> str:
    width = max((len(n) for n in COMMANDS), default=8)
    lines = ["usage: thresher COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in sorted(COMMANDS.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"thresher: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
