"""The template generator: Jinja2 templates in YAML with slot generators (numbers, dates, names,
units, tables, facts from CSV/JSON), for verifiable data. Each example carries its answer and a
``check`` in ``meta``; ``thresher.pipeline.synthetic.checks.check_example`` recomputes the answer
with independent Python code. Example ``n`` is seeded from (seed, n) with a stable hash."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import posixpath
import random
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from thresher.filters import storage
from thresher.filters.augment_ops import stable_seed
from thresher.pipeline.synthetic.base import Generated, read_yaml
from thresher.pipeline.synthetic.checks import CHECKERS
from thresher.pipeline.synthetic.vocab import UNITS, WORD_LISTS, plural

BUILTIN_FACTS = {"elements": "elements.csv"}


def format_number(value: float, digits: int = 4) -> str:
    """``value`` rounded to ``digits`` decimals, without trailing zeros ("2.5", "3", "-0.125")."""
    rounded = round(float(value), digits)
    if rounded == int(rounded) and abs(rounded) < 1e15:
        return str(int(rounded))
    return f"{rounded:.{digits}f}".rstrip("0").rstrip(".")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# --- facts -------------------------------------------------------------------------------------


def _typed(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def load_facts(spec: str | list, base_dir: str | Path | None = None) -> list[dict]:
    """Rows from a built-in fact set name, a CSV file (numbers typed), a JSON file (a list of
    objects, or JSON lines), or an inline list of mappings. A relative file name is taken
    relative to ``base_dir`` (the template file's directory, a path or a URL)."""
    if isinstance(spec, list):
        rows = spec
    elif spec in BUILTIN_FACTS:
        text = resources.files("thresher.pipeline.synthetic").joinpath("data", BUILTIN_FACTS[spec]).read_text(encoding="utf-8")
        rows = [{k: _typed(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())]
    else:
        path = spec
        if not storage.is_remote(spec) and not Path(spec).is_absolute() and base_dir is not None:
            path = storage.join(os.fspath(base_dir), spec)
        if not storage.isfile(path):
            raise ValueError(f"facts file {path} does not exist (built-in fact sets: {sorted(BUILTIN_FACTS)})")
        text = storage.read_bytes(path).decode("utf-8")
        if path.endswith(".csv"):
            rows = [{k: _typed(v) for k, v in r.items()} for r in csv.DictReader(text.splitlines())]
        else:
            try:
                data = json.loads(text)
                rows = data if isinstance(data, list) else [data]
            except json.JSONDecodeError:
                try:
                    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
                except json.JSONDecodeError as exc:
                    raise ValueError(f"facts file {path}: neither JSON nor JSON lines ({exc})") from None
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"facts {spec if isinstance(spec, str) else '(inline)'}: need a non-empty list of objects")
    return [dict(r) for r in rows]


# --- slots -------------------------------------------------------------------------------------

SLOT_KINDS = ("int", "float", "choice", "from", "date", "unit", "table", "facts")


class TemplateError(ValueError):
    """A template set that cannot be used; the message names the template and the field."""


class SlotSampler:
    """Draws one slot value from its YAML spec (exactly one of ``SLOT_KINDS`` plus options)."""

    def __init__(self, where: str, spec: Any, base_dir: str | Path | None):
        if not isinstance(spec, dict):
            raise TemplateError(f"{where}: a slot must be a mapping like {{int: [1, 10]}}, got {spec!r}")
        kinds = [k for k in SLOT_KINDS if k in spec]
        if len(kinds) != 1:
            raise TemplateError(f"{where}: a slot needs exactly one of {list(SLOT_KINDS)}, got {sorted(spec)}")
        self.where, self.kind, self.spec = where, kinds[0], spec
        unknown = sorted(set(spec) - set(SLOT_KINDS) - {"digits", "rows", "distinct_from"})
        if unknown:
            raise TemplateError(f"{where}: unknown slot options {unknown} (digits, rows, distinct_from)")
        distinct = spec.get("distinct_from", [])
        self.distinct_from = [distinct] if isinstance(distinct, str) else list(distinct)
        arg = spec[self.kind]
        if self.kind in ("int", "float"):
            if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(x, (int, float)) for x in arg)
                    and arg[0] <= arg[1]):
                raise TemplateError(f"{where}.{self.kind}: expected [low, high] numbers, got {arg!r}")
        elif self.kind == "choice":
            if not isinstance(arg, list) or not arg:
                raise TemplateError(f"{where}.choice: expected a non-empty list")
        elif self.kind == "from":
            if arg not in WORD_LISTS:
                raise TemplateError(f"{where}.from: unknown list {arg!r}; built-in lists: {sorted(WORD_LISTS)}")
        elif self.kind == "date":
            try:
                self.start, self.end = (dt.date.fromisoformat(str(x)) for x in arg)
            except (TypeError, ValueError):
                raise TemplateError(f"{where}.date: expected [YYYY-MM-DD, YYYY-MM-DD], got {arg!r}") from None
            if self.end < self.start:
                raise TemplateError(f"{where}.date: end before start")
        elif self.kind == "unit":
            if arg != "any" and arg not in UNITS:
                raise TemplateError(f"{where}.unit: unknown category {arg!r}; known: any, {', '.join(UNITS)}")
        elif self.kind == "facts":
            try:
                self.rows = load_facts(arg, base_dir)
            except ValueError as exc:
                raise TemplateError(f"{where}.facts: {exc}") from None
            self.count = self._row_range(spec.get("rows", [3, 3]), len(self.rows))
        elif self.kind == "table":
            if not isinstance(arg, dict) or not isinstance(arg.get("columns"), dict) or not arg["columns"]:
                raise TemplateError(f"{where}.table: expected {{columns: {{name: slot, ...}}, rows: [lo, hi]}}")
            self.columns = {name: SlotSampler(f"{where}.table.columns.{name}", col, base_dir)
                            for name, col in arg["columns"].items()}
            self.unique = list(arg.get("unique", []))
            missing = [u for u in self.unique if u not in self.columns]
            if missing:
                raise TemplateError(f"{where}.table.unique: {missing} are not columns")
            self.count = self._row_range(arg.get("rows", [3, 3]), None)

    def _row_range(self, rows: Any, limit: int | None) -> tuple[int, int]:
        if isinstance(rows, int):
            rows = [rows, rows]
        if not (isinstance(rows, list) and len(rows) == 2 and all(isinstance(x, int) for x in rows)
                and 1 <= rows[0] <= rows[1]):
            raise TemplateError(f"{self.where}.rows: expected [low, high] with 1 <= low <= high, got {rows!r}")
        if limit is not None and rows[1] > limit:
            raise TemplateError(f"{self.where}.rows: asks for up to {rows[1]} rows, the facts have {limit}")
        return rows[0], rows[1]

    def sample(self, rng: random.Random) -> Any:
        arg = self.spec[self.kind]
        if self.kind == "int":
            return rng.randint(int(arg[0]), int(arg[1]))
        if self.kind == "float":
            return round(rng.uniform(arg[0], arg[1]), int(self.spec.get("digits", 2)))
        if self.kind == "choice":
            return rng.choice(arg)
        if self.kind == "from":
            return rng.choice(WORD_LISTS[arg])
        if self.kind == "date":
            return self.start + dt.timedelta(days=rng.randint(0, (self.end - self.start).days))
        if self.kind == "unit":
            category = rng.choice(sorted(UNITS)) if arg == "any" else arg
            src, dst = rng.sample(sorted(UNITS[category]), 2)
            factor = UNITS[category][src] / UNITS[category][dst]
            return {"category": category, "from": src, "to": dst, "from_plural": plural(src),
                    "to_plural": plural(dst), "factor": factor}
        if self.kind == "facts":
            return [dict(r) for r in rng.sample(self.rows, rng.randint(*self.count))]
        return self._table(rng)

    def _table(self, rng: random.Random) -> list[dict]:
        rows: list[dict] = []
        seen: dict[str, set] = {u: set() for u in self.unique}
        target = rng.randint(*self.count)
        tries = 0
        while len(rows) < target:
            tries += 1
            if tries > 100 * target:
                raise TemplateError(f"{self.where}.table: cannot draw {target} rows unique in {self.unique}")
            row = {name: col.sample(rng) for name, col in self.columns.items()}
            if any(row[u] in seen[u] for u in self.unique):
                continue
            for u in self.unique:
                seen[u].add(row[u])
            rows.append(row)
        return rows


# --- templates ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _jinja_env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.globals.update(days=lambda n: dt.timedelta(days=int(n)), num=format_number,
                       markdown_table=markdown_table, plural=plural)
    return env


class Template:
    """One template: slots, derived values (``let``), question phrasings, answer, check."""

    def __init__(self, data: dict, default_formats: list[str], base_dir: str | Path | None):
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise TemplateError(f"every template needs a name, got {data!r}"[:200])
        self.name = data["name"]
        where = f"template {self.name!r}"
        known = {"name", "task", "weight", "slots", "let", "question", "answer", "check", "formats"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TemplateError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
        env = _jinja_env()
        self.task = str(data.get("task", self.name))
        self.weight = float(data.get("weight", 1.0))
        if self.weight <= 0:
            raise TemplateError(f"{where}.weight: must be > 0")
        self.slots = {name: SlotSampler(f"{where}.slots.{name}", spec, base_dir)
                      for name, spec in (data.get("slots") or {}).items()}
        try:
            self.let = {name: env.compile_expression(str(expr)) for name, expr in (data.get("let") or {}).items()}
            questions = data.get("question")
            questions = [questions] if isinstance(questions, str) else questions
            if not questions or not all(isinstance(q, str) for q in questions):
                raise TemplateError(f"{where}.question: a string or a non-empty list of strings")
            self.questions = [env.from_string(q) for q in questions]
            if not isinstance(data.get("answer"), str):
                raise TemplateError(f"{where}.answer: a Jinja string is required")
            self.answer = env.from_string(data["answer"])
            check = data.get("check")
            if check is not None and (not isinstance(check, dict) or check.get("kind") not in CHECKERS):
                raise TemplateError(f"{where}.check: a mapping with kind one of {sorted(CHECKERS)}")
            self.check = {k: env.from_string(v) if isinstance(v, str) else v for k, v in (check or {}).items()}
            formats = data.get("formats") or default_formats
            self.formats = [env.from_string(f) for f in formats]
        except TemplateError:
            raise
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends
            raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from None

    def render(self, rng: random.Random) -> tuple[str, dict]:
        values: dict[str, Any] = {}
        for name, slot in self.slots.items():
            value = slot.sample(rng)
            for _ in range(100):
                if all(values.get(other) != value for other in slot.distinct_from):
                    break
                value = slot.sample(rng)
            else:
                raise TemplateError(f"template {self.name!r}: slot {name!r} keeps equalling {slot.distinct_from}")
            values[name] = value
        try:
            for name, expr in self.let.items():
                values[name] = expr(**values)
            question = rng.choice(self.questions).render(**values).strip()
            answer = self.answer.render(**values).strip()
            check = {k: v.render(**values) if hasattr(v, "render") else v for k, v in self.check.items()}
            text = rng.choice(self.formats).render(question=question, answer=answer, **values).strip()
        except Exception as exc:
            raise TemplateError(f"template {self.name!r}: rendering failed: {type(exc).__name__}: {exc}") from None
        meta = {"task": self.task, "template": self.name, "question": question, "answer": answer,
                "slots": {k: _jsonable(v) for k, v in values.items() if k in self.slots}}
        if check:
            meta["check"] = check
        return text, meta


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class TemplateSet:
    def __init__(self, templates: list[Template]):
        if not templates:
            raise TemplateError("the template set is empty")
        names = [t.name for t in templates]
        if len(set(names)) != len(names):
            raise TemplateError(f"template names must be unique: {sorted({n for n in names if names.count(n) > 1})}")
        self.templates = templates
        self.weights = [t.weight for t in templates]

    @classmethod
    def from_data(cls, data: Any, base_dir: str | Path | None = None, origin: str = "templates") -> "TemplateSet":
        if not isinstance(data, dict) or not isinstance(data.get("templates"), list):
            raise TemplateError(f"{origin}: expected a mapping with a `templates` list")
        formats = data.get("formats") or ["{{ question }}\n{{ answer }}"]
        return cls([Template(t, formats, base_dir) for t in data["templates"]])

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TemplateSet":
        """A template file (a path or a gs:// / s3:// URL); its facts files are relative to it."""
        location = os.fspath(path)
        base_dir = posixpath.dirname(location) if storage.is_remote(location) else Path(location).expanduser().parent
        return cls.from_data(read_yaml(location, location, TemplateError), base_dir, location)

    @classmethod
    def builtin(cls) -> "TemplateSet":
        text = resources.files("thresher.pipeline.synthetic").joinpath("data", "synthetic_templates.yaml").read_text(encoding="utf-8")
        return cls.from_data(yaml.safe_load(text), origin="built-in templates")

    def merged(self, other: "TemplateSet") -> "TemplateSet":
        return TemplateSet(self.templates + other.templates)

    def only(self, names: Sequence[str]) -> "TemplateSet":
        """The templates whose name or task is in ``names``."""
        chosen = [t for t in self.templates if t.name in names or t.task in names]
        if not chosen:
            known = sorted({t.name for t in self.templates} | {t.task for t in self.templates})
            raise TemplateError(f"no template matches {list(names)}; names and tasks: {known}")
        return TemplateSet(chosen)


class TemplateGenerator:
    name = "template"

    def __init__(self, templates: TemplateSet, seed: int):
        self.templates = templates
        self.seed = seed

    def generate(self, indices: Sequence[int]) -> list[Generated]:
        out = []
        for n in indices:
            rng = random.Random(stable_seed(self.seed, "template", n))
            template = rng.choices(self.templates.templates, weights=self.templates.weights, k=1)[0]
            text, meta = template.render(rng)
            out.append(Generated(text, meta))
        return out
