"""Synthetic documents, Beam-free: three generators that turn example indices into documents.

- ``TemplateGenerator``: Jinja2 templates in YAML with slot generators (numbers, dates, names,
  units, tables, facts from CSV/JSON), for verifiable data. Each example carries its answer and a
  ``check`` in ``meta``; ``check_example`` recomputes the answer with independent Python code.
- ``LocalLMGenerator``: samples from a local causal LM, thresher's own checkpoint
  (``thresher.training``) or a Hugging Face ``transformers`` model directory.
- ``OpenAIGenerator``: any OpenAI-compatible HTTP endpoint through ``OpenAIClient`` (bounded
  concurrency, retries with exponential backoff, timeouts, an on-disk cache keyed by a hash of
  the request, the API key from an environment variable only).

Every generator maps example index ``n`` to the same output whatever batch or worker it lands in
(the LM generators: whatever worker; their batches are fixed by the index ranges), seeded from
(seed, n) with a stable hash.
"""

from __future__ import annotations

import ast
import concurrent.futures
import csv
import datetime as dt
import hashlib
import json
import math
import operator
import os
import posixpath
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from thresher.filters import storage
from thresher.filters.augment_ops import stable_seed

# --- built-in slot vocabularies ----------------------------------------------------------------

WORD_LISTS: dict[str, tuple[str, ...]] = {
    "names": ("Aisha", "Alejandro", "Amara", "Anders", "Ananya", "Ben", "Carmen", "Chen", "Chloe", "Dmitri",
              "Elena", "Emeka", "Farah", "Fatima", "Finn", "Gabriel", "Hana", "Hiroshi", "Ines", "Ivan",
              "Jamal", "Jin", "Kai", "Keiko", "Lars", "Leila", "Lucas", "Maya", "Mateo", "Mei", "Nadia",
              "Nikhil", "Noah", "Olga", "Omar", "Priya", "Rafael", "Rosa", "Sami", "Sara", "Sofia",
              "Tariq", "Tomas", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zara", "Zoe"),
    "items": ("apples", "pencils", "books", "oranges", "marbles", "stickers", "notebooks", "cookies",
              "tickets", "candles", "bottles", "stamps", "shells", "cards", "coins", "buttons",
              "bananas", "cupcakes", "balloons", "crayons", "plates", "envelopes", "batteries", "lemons",
              "tomatoes", "socks", "keys", "rulers", "mugs", "seeds"),
    "cities": ("Accra", "Amsterdam", "Athens", "Bogota", "Cairo", "Chicago", "Dakar", "Delhi", "Dublin",
               "Hanoi", "Helsinki", "Jakarta", "Kyoto", "Lagos", "Lima", "Lisbon", "Madrid", "Manila",
               "Melbourne", "Montreal", "Nairobi", "Oslo", "Prague", "Quito", "Seoul", "Tunis", "Vienna",
               "Warsaw", "Zagreb", "Zurich"),
}

#: unit -> size in the category's base unit (metre, gram, litre, second, byte)
UNITS: dict[str, dict[str, float]] = {
    "length": {"millimetre": 0.001, "centimetre": 0.01, "metre": 1.0, "kilometre": 1000.0, "inch": 0.0254,
               "foot": 0.3048, "yard": 0.9144, "mile": 1609.344},
    "mass": {"milligram": 0.001, "gram": 1.0, "kilogram": 1000.0, "tonne": 1e6, "ounce": 28.349523125,
             "pound": 453.59237},
    "volume": {"millilitre": 0.001, "litre": 1.0, "cubic metre": 1000.0, "US gallon": 3.785411784,
               "US fluid ounce": 0.0295735295625},
    "time": {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0, "week": 604800.0},
    "data": {"byte": 1.0, "kilobyte": 1e3, "megabyte": 1e6, "gigabyte": 1e9, "kibibyte": 1024.0,
             "mebibyte": 1048576.0},
}
_IRREGULAR_PLURALS = {"inch": "inches", "foot": "feet"}

BUILTIN_FACTS = {"elements": "elements.csv"}


def plural(unit: str) -> str:
    return _IRREGULAR_PLURALS.get(unit, unit + "s")


def unit_category(unit: str) -> str | None:
    return next((cat for cat, units in UNITS.items() if unit in units), None)


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
        text = resources.files("thresher.filters").joinpath("data", BUILTIN_FACTS[spec]).read_text(encoding="utf-8")
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
        text = resources.files("thresher.filters").joinpath("data", "synthetic_templates.yaml").read_text(encoding="utf-8")
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


@dataclass
class Generated:
    """One synthetic example: its text and what goes into ``meta``."""

    text: str
    meta: dict


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


# --- checkers ----------------------------------------------------------------------------------

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def safe_eval(expression: str) -> float:
    """Evaluate an arithmetic expression of numbers, + - * / // % ** and parentheses, nothing else."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)[:80]}")

    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expression!r}: {exc.msg}") from None
    return walk(tree)


def _number(text: str) -> float:
    try:
        return float(str(text).replace(",", "").strip())
    except ValueError:
        raise ValueError(f"answer {text!r} is not a number") from None


def _numbers_equal(answer: str, expected: float, digits: int | None) -> bool:
    got = _number(answer)
    if digits is not None:
        # within half a unit of the last digit of the exact value, with float slack: a value on a
        # rounding tie may be rounded either way by two different float computations
        return abs(got - expected) <= 0.5 * 10.0 ** -digits * (1 + 1e-6) + 8 * math.ulp(expected)
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)


def _digits(check: dict) -> int | None:
    return int(check["digits"]) if check.get("digits") not in (None, "") else None


def _check_expression(check: dict, meta: dict) -> tuple[bool, str]:
    expected = safe_eval(check["expression"])
    return _numbers_equal(meta["answer"], expected, _digits(check)), str(expected)


def _check_unit(check: dict, meta: dict) -> tuple[bool, str]:
    src, dst = check["from"], check["to"]
    category = unit_category(src)
    if category is None or unit_category(dst) != category:
        raise ValueError(f"units {src!r} and {dst!r} are not of one known category")
    expected = float(check["value"]) * UNITS[category][src] / UNITS[category][dst]
    return _numbers_equal(meta["answer"], expected, _digits(check)), str(expected)


def _check_date_add(check: dict, meta: dict) -> tuple[bool, str]:
    expected = (dt.date.fromisoformat(check["start"]) + dt.timedelta(days=int(check["days"])))
    text = expected.strftime(check.get("format") or "%Y-%m-%d")
    return meta["answer"] == text, text


def _check_date_diff(check: dict, meta: dict) -> tuple[bool, str]:
    expected = (dt.date.fromisoformat(check["end"]) - dt.date.fromisoformat(check["start"])).days
    return _numbers_equal(meta["answer"], expected, None), str(expected)


def _check_weekday(check: dict, meta: dict) -> tuple[bool, str]:
    names = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    expected = names[dt.date.fromisoformat(check["date"]).weekday()]
    return meta["answer"] == expected, expected


def _rows(check: dict, meta: dict) -> list[dict]:
    rows = (meta.get("slots") or {}).get(check["slot"])
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"slot {check['slot']!r} holds no table rows")
    return rows


def _check_table_extreme(pick: Callable) -> Callable[[dict, dict], tuple[bool, str]]:
    def check_fn(check: dict, meta: dict) -> tuple[bool, str]:
        rows = _rows(check, meta)
        best = pick(float(r[check["column"]]) for r in rows)
        winners = [str(r[check["label"]]) for r in rows if float(r[check["column"]]) == best]
        return meta["answer"] in winners and len(winners) == 1, "/".join(winners)
    return check_fn


def _check_table_sum(check: dict, meta: dict) -> tuple[bool, str]:
    expected = sum(float(r[check["column"]]) for r in _rows(check, meta))
    return _numbers_equal(meta["answer"], expected, _digits(check)), str(expected)


def _check_table_text(check: dict, meta: dict) -> tuple[bool, str]:
    """Every listed column value of every row appears in the answer, rows in table order."""
    columns = [c.strip() for c in str(check["columns"]).split(",") if c.strip()]
    answer, position = meta["answer"], 0
    for row in _rows(check, meta):
        first = answer.find(str(row[columns[0]]), position)
        if first < 0:
            return False, f"row {row} missing"
        sentence_end = answer.find(".", first + len(str(row[columns[0]])))
        sentence = answer[first: sentence_end if sentence_end >= 0 else len(answer)]
        if not all(str(row[c]) in sentence for c in columns):
            return False, f"row {row} incomplete"
        position = first + 1
    return True, "every row described"


def _check_exact(check: dict, meta: dict) -> tuple[bool, str]:
    return meta["answer"] == str(check["expected"]), str(check["expected"])


CHECKERS: dict[str, Callable[[dict, dict], tuple[bool, str]]] = {
    "expression": _check_expression,
    "unit_conversion": _check_unit,
    "date_add": _check_date_add,
    "date_diff": _check_date_diff,
    "weekday": _check_weekday,
    "table_argmax": _check_table_extreme(max),
    "table_argmin": _check_table_extreme(min),
    "table_sum": _check_table_sum,
    "table_text": _check_table_text,
    "exact": _check_exact,
}


def check_example(meta: dict) -> tuple[bool, str]:
    """Recompute a template example's answer from ``meta["check"]``: (correct, expected). An
    example without a check is (True, "unchecked"); a malformed check raises ValueError."""
    check = meta.get("check")
    if not check:
        return True, "unchecked"
    try:
        return CHECKERS[check["kind"]](check, meta)
    except KeyError as exc:
        raise ValueError(f"check {check.get('kind')!r}: missing field {exc}") from None


# --- local causal LM ---------------------------------------------------------------------------


def read_yaml(path: str | Path, name: str, error: type[Exception]) -> Any:
    """``yaml.safe_load`` of a file (a path or a URL); an unreadable or invalid file raises
    ``error`` naming it."""
    try:
        return yaml.safe_load(storage.read_bytes(path).decode("utf-8"))
    except OSError as exc:
        raise error(f"{name}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{name}: not UTF-8 ({exc})") from None
    except yaml.YAMLError as exc:
        raise error(f"{name}: not valid YAML ({exc})") from None


def load_prompts(spec: str | Sequence[str]) -> list[str]:
    """Prompts inline (a list) or from a YAML file: a list of strings or ``{prompts: [...]}``."""
    if not isinstance(spec, str):
        prompts = list(spec)
    else:
        data = read_yaml(spec, f"prompts file {spec}", ValueError)
        prompts = data.get("prompts") if isinstance(data, dict) else data
        if not isinstance(prompts, list):
            raise ValueError(f"prompts file {spec}: expected a list of strings or {{prompts: [...]}}")
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts: need a non-empty list of strings")
    return prompts


def detect_model_kind(path: str | Path) -> str:
    """"thresher" for a thresher checkpoint (or a training OUT with checkpoints/), "hf" for a
    directory with a Hugging Face config.json; a path or a URL."""
    location = os.fspath(path)
    if storage.isfile(storage.join(location, "model.safetensors")) and \
            storage.isfile(storage.join(location, "trainer.pt")):
        return "thresher"
    if storage.isdir(storage.join(location, "checkpoints")):
        return "thresher"
    if storage.isfile(storage.join(location, "config.json")):
        return "hf"
    raise ValueError(f"{location}: neither a thresher checkpoint (model.safetensors + trainer.pt) "
                     "nor a Hugging Face model directory (config.json)")


def _batches_by_prompt(indices: Sequence[int], n_prompts: int, batch_size: int) -> list[tuple[int, list[int]]]:
    """Indices grouped by their prompt (n mod prompts) and cut into batches: a batch shares one
    prompt, so no padding is needed and a batch's content depends only on the index range."""
    groups: dict[int, list[int]] = {}
    for n in indices:
        groups.setdefault(n % n_prompts, []).append(n)
    out = []
    for prompt_index in sorted(groups):
        members = groups[prompt_index]
        out += [(prompt_index, members[i:i + batch_size]) for i in range(0, len(members), batch_size)]
    return out


def sample_next(logits, temperature: float, top_p: float, generator):
    """Next token ids (batch,) from last-position logits (batch, vocab): greedy at temperature 0,
    else nucleus sampling."""
    import torch

    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        drop = cumulative - sorted_probs > top_p  # keeps the token that crosses top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class LocalLMGenerator:
    """Samples continuations of ``prompts`` from a local causal LM. Example ``n`` uses prompt
    ``n mod len(prompts)``; each batch's sampler is seeded from (seed, first index of the batch)."""

    name = "lm"

    def __init__(self, model: str, prompts: Sequence[str], seed: int, kind: str = "auto",
                 tokenizer: str | None = None, temperature: float = 0.8, top_p: float = 0.95,
                 max_tokens: int = 128, batch_size: int = 8, device: str = "auto",
                 include_prompt: bool = True):
        self.model_path = model
        self.prompts = list(prompts)
        self.seed = seed
        self.kind = detect_model_kind(model) if kind == "auto" else kind
        self.tokenizer_path = tokenizer
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.batch_size, self.device_name, self.include_prompt = batch_size, device, include_prompt
        self._loaded = False

    def _load(self) -> None:
        import torch

        self.device = torch.device("cuda" if self.device_name == "auto" and torch.cuda.is_available()
                                   else ("cpu" if self.device_name == "auto" else self.device_name))
        if self.kind == "thresher":
            self._load_thresher()
        elif self.kind == "hf":
            self._load_hf()
        else:
            raise ValueError(f"unknown model kind {self.kind!r} (auto, thresher, hf)")
        self._loaded = True

    def _load_thresher(self) -> None:
        import sentencepiece as spm

        from thresher.training.checkpoint import load_model_weights, saved_config
        from thresher.training.config import parse_train_config
        from thresher.training.model import GPT

        ckpt = storage.local_checkpoint(self.model_path)
        if ckpt is None or not (ckpt / "model.safetensors").is_file():
            raise ValueError(f"{self.model_path}: no complete checkpoint (model.safetensors) found")
        cfg = parse_train_config(saved_config(ckpt))
        tokenizer = self.tokenizer_path or storage.join(cfg.shards, "tokenizer.model")
        if not storage.isfile(tokenizer):
            raise ValueError(f"tokenizer {tokenizer} not found: give lm.tokenizer (the tokenizer.model of the shards)")
        self.sp = spm.SentencePieceProcessor(model_proto=storage.read_bytes(tokenizer))
        if self.sp.get_piece_size() > cfg.model.vocab_size:
            raise ValueError(f"tokenizer has {self.sp.get_piece_size()} pieces, the model only {cfg.model.vocab_size}")
        self.model = GPT(cfg.model, cfg.attention.name, cfg.attention.params()).to(self.device)
        load_model_weights(ckpt, self.model)
        self.model.eval()
        self.context = cfg.seq_len

    def _load_hf(self) -> None:
        try:
            import transformers
        except ImportError:
            raise ValueError("lm generator: the model is a Hugging Face directory but `transformers` is not "
                             "installed (pip install transformers)") from None
        local = str(storage.local_copy(self.model_path))
        self.hf_tokenizer = transformers.AutoTokenizer.from_pretrained(local, local_files_only=True)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(local, local_files_only=True)
        self.model.to(self.device).eval()

    def generate(self, indices: Sequence[int]) -> list[Generated]:
        import torch

        if not self._loaded:
            self._load()
        found: dict[int, Generated] = {}
        for prompt_index, batch in _batches_by_prompt(indices, len(self.prompts), self.batch_size):
            prompt = self.prompts[prompt_index]
            generator = torch.Generator(device="cpu").manual_seed(stable_seed(self.seed, "lm", batch[0]) % 2**63)
            with torch.no_grad():
                sample = self._sample_thresher if self.kind == "thresher" else self._sample_hf
                completions = sample(prompt, len(batch), generator)
            for n, completion in zip(batch, completions):
                text = (prompt + completion) if self.include_prompt else completion
                found[n] = Generated(text.strip(), {"prompt": prompt, "prompt_index": prompt_index,
                                                    "model": str(self.model_path)})
        return [found[n] for n in indices]

    def _sample_thresher(self, prompt: str, n: int, generator) -> list[str]:
        import torch

        eos = self.sp.eos_id()
        # documents follow EOS in the shards the model was trained on
        start = ([eos] if eos >= 0 else []) + self.sp.encode(prompt)
        if not start:
            raise ValueError("empty prompt and a tokenizer without EOS: nothing to condition on")
        ids = torch.tensor([start] * n, dtype=torch.long, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        new: list[list[int]] = [[] for _ in range(n)]
        for _ in range(self.max_tokens):
            logits, _ = self.model(ids[:, -self.context:])
            last = logits[:, -1, :].float().cpu()
            last[:, self.sp.get_piece_size():] = float("-inf")  # a vocabulary padded past the tokenizer's
            step = sample_next(last, self.temperature, self.top_p, generator).to(self.device)
            for row in range(n):
                if not done[row]:
                    if int(step[row]) == eos:
                        done[row] = True
                    else:
                        new[row].append(int(step[row]))
            if bool(done.all()):
                break
            ids = torch.cat([ids, step[:, None]], dim=1)
        return [self.sp.decode(tokens) for tokens in new]

    def _sample_hf(self, prompt: str, n: int, generator) -> list[str]:
        import torch

        # transformers samples with the global torch RNG; seed it from this batch's generator
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        encoded = self.hf_tokenizer([prompt] * n, return_tensors="pt").to(self.device)
        kwargs = {"max_new_tokens": self.max_tokens, "pad_token_id": self.hf_tokenizer.eos_token_id}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False)
        output = self.model.generate(**encoded, **kwargs)
        start = encoded["input_ids"].shape[1]
        return [self.hf_tokenizer.decode(row[start:], skip_special_tokens=True) for row in output]


# --- OpenAI-compatible endpoint ----------------------------------------------------------------


class OpenAIError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIClient:
    """Chat or text completions from an OpenAI-compatible server.

    Retries 408/409/425/429/5xx, time-outs, dropped connections and malformed responses up to
    ``max_retries`` times with exponential backoff (``backoff * 2**attempt``, capped at
    ``max_backoff``, jittered; a ``Retry-After`` header wins when shorter than the cap). Other
    4xx answers fail at once. Successful results are cached on disk under a sha256 of the request
    body and URL, so a re-run sends nothing it already has an answer for.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 endpoint: str = "chat", system: str | None = None, temperature: float = 0.7,
                 top_p: float = 1.0, max_tokens: int = 256, concurrency: int = 4, max_retries: int = 5,
                 backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 60.0,
                 cache_dir: str | None = None, extra_body: dict | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be chat or completions, got {endpoint!r}")
        self.url = base_url.rstrip("/") + ("/chat/completions" if endpoint == "chat" else "/completions")
        self.model, self.endpoint, self.system = model, endpoint, system
        self.params = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens, **(extra_body or {})}
        self.api_key_env = api_key_env
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff, self.max_backoff, self.timeout = backoff, max_backoff, timeout
        self.cache_dir = cache_dir or None  # a directory path or URL (gs://, s3://)
        self.sleep = sleep
        self.requests_sent = 0
        self.cache_hits = 0
        self.retries = 0

    def body(self, prompt: str, seed: int | None) -> dict:
        body: dict[str, Any] = {"model": self.model, **self.params}
        if self.endpoint == "chat":
            messages = ([{"role": "system", "content": self.system}] if self.system else [])
            body["messages"] = messages + [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if seed is not None:
            body["seed"] = seed
        return body

    def cache_key(self, body: dict) -> str:
        return hashlib.sha256(json.dumps({"url": self.url, "body": body}, sort_keys=True).encode()).hexdigest()

    def _cache_path(self, key: str) -> str | None:
        return storage.join(self.cache_dir, key[:2], f"{key}.json") if self.cache_dir else None

    def complete(self, prompt: str, seed: int | None = None) -> str:
        body = self.body(prompt, seed)
        key = self.cache_key(body)
        path = self._cache_path(key)
        if path is not None and storage.isfile(path):
            try:
                self.cache_hits += 1
                return json.loads(storage.read_bytes(path))["text"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                self.cache_hits -= 1  # a damaged entry: ask again and overwrite it
        text = self._request(body)
        if path is not None:
            storage.write_bytes(path, json.dumps({"request": body, "text": text}, ensure_ascii=False).encode("utf-8"))
        return text

    def complete_many(self, requests: Sequence[tuple[str, int | None]]) -> list[str]:
        """Completions of (prompt, seed) pairs, in order, at most ``concurrency`` in flight."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda r: self.complete(*r), requests))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
        if retry_after:
            try:
                delay = min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass
        self.retries += 1
        self.sleep(delay)

    def _request(self, body: dict) -> str:
        data = json.dumps(body).encode()
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            retry_after = None
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return self._parse(raw)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                last_error = f"HTTP {exc.code} from {self.url}: {detail}"
                if exc.code not in RETRYABLE_STATUS:
                    raise OpenAIError(last_error) from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
            except (socket.timeout, TimeoutError):
                last_error = f"timed out after {self.timeout}s waiting for {self.url}"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                    last_error = f"timed out after {self.timeout}s waiting for {self.url}"
                else:
                    last_error = f"cannot reach {self.url}: {exc.reason}"
            except (ConnectionError, OSError) as exc:
                last_error = f"connection to {self.url} failed: {exc}"
            except _Malformed as exc:
                last_error = f"malformed response from {self.url}: {exc}"
            if attempt < self.max_retries:
                self._wait(attempt, retry_after)
        raise OpenAIError(f"gave up after {self.max_retries + 1} attempts: {last_error}")

    def _parse(self, raw: bytes) -> str:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Malformed(f"not JSON ({exc}): {raw[:120]!r}") from None
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise _Malformed(f"no choices[0].{'message.content' if self.endpoint == 'chat' else 'text'} "
                             f"in {str(data)[:120]}") from None
        if not isinstance(text, str):
            raise _Malformed(f"completion is {type(text).__name__}, not a string")
        return text


class _Malformed(Exception):
    pass


class OpenAIGenerator:
    """Example ``n``: prompt ``n mod len(prompts)``, request seed from (seed, n). With ``on_error:
    skip`` a prompt that fails for good yields no document (``failed`` counts it)."""

    name = "openai"

    def __init__(self, client: OpenAIClient, prompts: Sequence[str], seed: int, on_error: str = "fail"):
        self.client = client
        self.prompts = list(prompts)
        self.seed = seed
        self.on_error = on_error
        self.failed = 0
        self._lock = threading.Lock()

    def generate(self, indices: Sequence[int]) -> list[Generated | None]:
        def one(n: int) -> Generated | None:
            prompt = self.prompts[n % len(self.prompts)]
            try:
                text = self.client.complete(prompt, stable_seed(self.seed, "openai", n) % 2**31)
            except OpenAIError:
                if self.on_error == "skip":
                    with self._lock:
                        self.failed += 1
                    return None
                raise
            return Generated(text.strip(), {"prompt": prompt, "prompt_index": n % len(self.prompts),
                                            "model": self.client.model})

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, self.client.concurrency)) as pool:
            return list(pool.map(one, indices))
