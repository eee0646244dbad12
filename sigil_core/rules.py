"""A safe evaluator for contract rules, such as ``0 <= value <= 100`` or ``len(value) >= 2``.

Rules are parsed with :mod:`ast` and only a whitelist of node types is evaluated: literals,
names bound by the caller (``value``, ``output``), comparisons, boolean and arithmetic
operators, subscripts and a few pure functions. Never ``eval``. We write this rather than use a
library: the rule language is a dozen node types, and we want attribute access, comprehensions
and calls to anything else to be impossible, not merely discouraged.

Rules may be written by a model (``create_agent``), so evaluation is bounded: at most
``MAX_STEPS`` nodes evaluated, no string or list built past ``MAX_SIZE`` items, and
``matches()`` runs on RE2 (google-re2), whose matching time is linear in the text, so a
pattern like ``(a+)+$`` cannot backtrack for minutes. A rule over a bound is a RuleError.
"""

from __future__ import annotations

import ast
import functools
import itertools
import operator
from collections.abc import Callable
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
_MAX_LEN = 500
#: Nodes one rule may evaluate (comprehensions count each item).
MAX_STEPS = 100_000
#: Longest string or list a rule may build (``'a' * n``, ``+``) or match a pattern against.
MAX_SIZE = 1_000_000


class RuleError(ValueError):
    """The rule is not valid rule syntax, uses something the evaluator does not allow, or
    goes past a bound (too many steps, too large a value, a pattern RE2 cannot run)."""


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> Any:
    import re2  # google-re2: linear-time matching, no catastrophic backtracking

    options = re2.Options()
    options.log_errors = False  # a bad pattern is our RuleError, not a line on stderr
    try:
        return re2.compile(pattern, options)
    except Exception as exc:  # noqa: BLE001 - re2.error has no stable public name
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise RuleError(f"pattern {pattern!r} is not supported ({detail}); rules use RE2 "
                        "syntax (no backreferences or lookarounds)") from None


def _matches(pattern: Any, text: Any) -> bool:
    if not isinstance(pattern, str):
        raise RuleError("matches() takes a pattern string first")
    text = str(text)
    if len(text) > MAX_SIZE:
        raise RuleError(f"matches() on a text longer than {MAX_SIZE:,} characters")
    return _pattern(pattern).search(text) is not None


_FUNCS: dict[str, Callable[..., Any]] = {
    "len": len, "min": min, "max": max, "abs": abs, "round": round, "lower": str.lower,
    "all": all, "any": any, "sum": sum,
    "matches": _matches,
    "isinstance_str": lambda v: isinstance(v, str),
}


def _sized(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, bytes)) and len(value) > MAX_SIZE:
        raise RuleError(f"the rule builds a value longer than {MAX_SIZE:,} items")
    return value


def _times(a: Any, b: Any) -> Any:
    # Check the size before building it: 'a' * 10**8 * 100 must never be allocated.
    for seq, n in ((a, b), (b, a)):
        if (isinstance(seq, (str, list, tuple, bytes)) and isinstance(n, int)
                and len(seq) * max(n, 0) > MAX_SIZE):
            raise RuleError(f"the rule builds a value longer than {MAX_SIZE:,} items")
    return a * b


def _modulo(a: Any, b: Any) -> Any:
    if isinstance(a, (str, bytes)):  # '%999999999d' % 1 would build a gigabyte
        raise RuleError("string formatting with % is not allowed in rules")
    return a % b


_BINOPS[ast.Mult] = _times
_BINOPS[ast.Mod] = _modulo


def evaluate(rule: str, names: dict[str, Any]) -> bool:
    """Evaluate a rule; RuleError for a bad rule, False when evaluation fails on the data."""
    if len(rule) > _MAX_LEN:
        raise RuleError(f"rule longer than {_MAX_LEN} characters")
    try:
        body = _parse(rule)
    except SyntaxError as exc:
        raise RuleError(f"rule {rule!r} is not valid: {exc.msg}") from None
    try:
        return bool(_eval(body, names, [MAX_STEPS]))
    except RuleError:
        raise
    except RecursionError:
        raise RuleError("the rule nests too deeply") from None
    except Exception:  # noqa: BLE001 - a type error on the data means the rule does not hold
        return False


@functools.lru_cache(maxsize=1024)
def _parse(rule: str) -> ast.expr:
    """A rule's syntax tree, parsed once per process (a contract's rules are checked on every
    run; the evaluator only reads the tree)."""
    return ast.parse(rule, mode="eval").body


def _eval(node: ast.AST, names: dict[str, Any], meter: list[int]) -> Any:
    meter[0] -= 1
    if meter[0] < 0:
        raise RuleError(f"the rule takes more than {MAX_STEPS:,} steps to evaluate")
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise RuleError(f"unknown name {node.id!r} in rule (use 'value' or 'output')")
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_eval(e, names, meter) for e in node.elts]
        return set(items) if isinstance(node, ast.Set) else items
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, names, meter) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, names, meter)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, names, meter), _eval(node.right, names, meter)
        return _sized(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, names, meter)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, names, meter)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Subscript):
        return _eval(node.value, names, meter)[_eval(node.slice, names, meter)]
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)) and len(node.generators) == 1:
        gen = node.generators[0]
        if not isinstance(gen.target, ast.Name) or gen.is_async:
            raise RuleError("only `for name in ...` comprehensions are allowed in rules")
        items = []
        for item in itertools.islice(_eval(gen.iter, names, meter), 10_000):
            scope = {**names, gen.target.id: item}
            if all(_eval(cond, scope, meter) for cond in gen.ifs):
                items.append(_eval(node.elt, scope, meter))
        return items
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
        if node.keywords:
            raise RuleError("keyword arguments are not allowed in rules")
        return _FUNCS[node.func.id](*(_eval(a, names, meter) for a in node.args))
    raise RuleError(f"{type(node).__name__} is not allowed in rules")
