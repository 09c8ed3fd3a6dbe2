"""Checkers of template examples: each recomputes an example's answer from ``meta["check"]`` with
code independent of the template that produced it."""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
from typing import Callable

from thresher.pipeline.synthetic.vocab import UNITS, unit_category

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
