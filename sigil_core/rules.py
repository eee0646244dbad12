"""A safe evaluator for contract rules, such as ``0 <= value <= 100`` or ``len(value) >= 2``.

Rules are parsed with :mod:`ast` and only a whitelist of node types is evaluated: literals,
names bound by the caller (``value``, ``output``), comparisons, boolean and arithmetic
operators, subscripts and a few pure functions. Never ``eval``. We write this rather than use a
library: the rule language is a dozen node types, and we want attribute access, comprehensions
and calls to anything else to be impossible, not merely discouraged.
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMPOPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_FUNCS = {
    "len": len, "min": min, "max": max, "abs": abs, "round": round, "lower": str.lower,
    "all": all, "any": any, "sum": sum,
    "matches": lambda pattern, text: re.search(pattern, str(text)) is not None,
    "isinstance_str": lambda v: isinstance(v, str),
}
_MAX_LEN = 500


class RuleError(ValueError):
    """The rule is not valid rule syntax, or uses something the evaluator does not allow."""


def evaluate(rule: str, names: dict[str, Any]) -> bool:
    """Evaluate a rule; RuleError for a bad rule, False when evaluation fails on the data."""
    if len(rule) > _MAX_LEN:
        raise RuleError(f"rule longer than {_MAX_LEN} characters")
    try:
        tree = ast.parse(rule, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"rule {rule!r} is not valid: {exc.msg}") from None
    try:
        return bool(_eval(tree.body, names))
    except RuleError:
        raise
    except Exception:  # noqa: BLE001 - a type error on the data means the rule does not hold
        return False


def _eval(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise RuleError(f"unknown name {node.id!r} in rule (use 'value' or 'output')")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_eval(e, names) for e in node.elts]
        return set(items) if isinstance(node, ast.Set) else items
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, names) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, names), _eval(node.right, names))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, names)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        return _eval(node.value, names)[_eval(node.slice, names)]
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)) and len(node.generators) == 1:
        gen = node.generators[0]
        if not isinstance(gen.target, ast.Name) or gen.is_async:
            raise RuleError("only `for name in ...` comprehensions are allowed in rules")
        items = []
        for item in list(_eval(gen.iter, names))[:10_000]:
            scope = {**names, gen.target.id: item}
            if all(_eval(cond, scope) for cond in gen.ifs):
                items.append(_eval(node.elt, scope))
        return items
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        if node.keywords:
            raise RuleError("keyword arguments are not allowed in rules")
        return _FUNCS[node.func.id](*(_eval(a, names) for a in node.args))
    raise RuleError(f"{type(node).__name__} is not allowed in rules")
