"""The config reference, generated from the schema: every top-level key and every stage's
parameters with type, default and constraints. `docs/config-reference.md` is its output
(`python -m thresher.pipeline.reference > docs/config-reference.md`); a test keeps them in sync."""

from __future__ import annotations

import inspect
import sys

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from thresher.pipeline import registry
from thresher.pipeline.config import InputConfig, OutputConfig, PipelineConfig, RunnerConfig


def _type_name(annotation) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "thresher.filters.", "thresher.pipeline.", "<class '", "'>"):
        text = text.replace(noise, "")
    return text.replace("NoneType", "None")


def _constraints(info) -> str:
    parts = []
    for item in info.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _default(info) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"`{value!r}`" if not isinstance(value, str) else f'`"{value}"`'


def _field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Descriptions from ``Field(description=...)`` or the ``#:`` comment above a field."""
    docs = {name: info.description for name, info in model.model_fields.items() if info.description}
    try:
        source = inspect.getsource(model).splitlines()
    except (OSError, TypeError):
        return docs
    pending: list[str] = []
    for line in source:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        name = stripped.split(":", 1)[0].strip()
        if pending and name in model.model_fields:
            docs.setdefault(name, " ".join(pending))
        pending = []
    return docs


def model_table(model: type[BaseModel]) -> list[str]:
    docs = _field_docs(model)
    rows = ["| key | type | default | constraints | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        meaning = (docs.get(name) or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{_type_name(info.annotation)}` | {_default(info)} | {_constraints(info)} | {meaning} |")
    return rows


def _nested(annotation) -> type[BaseModel] | None:
    """The parameter model of a field typed as one (``X`` or ``X | None``)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def stage_tables(name: str, model: type[BaseModel]) -> list[str]:
    """The stage's table, then one table per nested parameter group (``name.key``)."""
    lines = model_table(model)
    for key, info in model.model_fields.items():
        nested = _nested(info.annotation)
        if nested is not None:
            lines += ["", f"`{name}.{key}`:", "", *model_table(nested)]
    return lines


def render_reference() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated from the schema by `python -m thresher.pipeline.reference`; do not edit by hand.",
        "Unknown keys are errors. `thresher validate CONFIG` checks a file against all of this.",
        "",
        "## Top level",
        "",
        *model_table(PipelineConfig),
        "",
        "`stages` is a list; each entry is `{name: STAGE, ...its parameters}`, run in order.",
    ]
    for title, model in (("input", InputConfig), ("runner", RunnerConfig), ("output_options", OutputConfig)):
        lines += ["", f"## `{title}`", "", *model_table(model)]
    lines += ["", "## Stages", "",
              "Built-in stages below. A stage of your own is named by its class, `name: package.module:Class`, or by",
              "the name an installed plugin registers in the `thresher.stages` entry-point group (docs/filters.md,",
              "\"Stages of your own\"); `thresher stages` lists every stage this installation has.", ""]
    for name in sorted(registry.STAGES):
        lines += stage_section(name)
    return "\n".join(lines).rstrip() + "\n"


def stage_section(name: str) -> list[str]:
    cls = registry.stage_class(name)
    return [f"### `{name}` ({cls.kind} stage)", "", summary(cls), "", *model_table(cls), ""]


def summary(cls: type) -> str:
    return (inspect.getdoc(cls) or "").strip().split("\n\n")[0].replace("\n", " ")


def stages_command(argv: list[str]) -> int:
    """`thresher stages [NAME ...]`: every stage this installation has (built-in, plugin), or the
    keys of the named ones (a name may also be a "module:Class" reference)."""
    import argparse

    parser = argparse.ArgumentParser(prog="thresher stages", description="List the stages, or show one's keys.")
    parser.add_argument("names", nargs="*", help="stage names or package.module:Class references")
    args = parser.parse_args(argv)
    if args.names:
        for name in args.names:
            try:
                print("\n".join(stage_section(name)))
            except (registry.StageNotFound, TypeError) as exc:
                print(f"thresher stages: {exc}", file=sys.stderr)
                return 1
        return 0
    names = registry.stage_names()
    width = max(len(n) for n in names)
    sources = {name: registry.stage_source(name) for name in names}
    source_width = max(len(v) for v in sources.values())
    for name in names:
        try:
            cls = registry.stage_class(name)
            first = summary(cls).split(". ")[0]
            line = f"{cls.kind:<8}  {first if len(first) <= 90 else first[:89] + '…'}"
        except TypeError as exc:  # a broken plugin is listed with its problem, not hidden
            line = f"BROKEN    {exc}"
        print(f"{name:<{width}}  {sources[name]:<{source_width}}  {line}")
    return 0


if __name__ == "__main__":
    sys.stdout.write(render_reference())
