"""Two plain Python tools that work offline: ``calculator`` and ``current_time``.

The calculator never uses ``eval``: it walks the expression's AST and allows numbers, the
arithmetic operators, parentheses and a fixed set of math functions and constants, with bounds
on exponent and result size so ``9**9**9`` is an error instead of a frozen process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sigil_core import ToolError

BUILTIN_SERVER = "builtin"
MAX_EXPRESSION = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300
MAX_INT_BITS = 4096

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max, "sqrt": math.sqrt, "floor": math.floor,
    "ceil": math.ceil, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "degrees": math.degrees, "radians": math.radians,
    "factorial": math.factorial, "gcd": math.gcd, "hypot": math.hypot,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


class CalculationError(ValueError):
    """The expression is not allowed or cannot be computed."""


def _check(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculationError(f"unsupported value {value!r}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError("result too large")
    if isinstance(value, float) and (math.isinf(value) or abs(value) > MAX_MAGNITUDE):
        raise CalculationError("result too large")
    if isinstance(value, float) and math.isnan(value):
        raise CalculationError("result is not a number")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculationError(f"unknown name {node.id!r}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculationError(f"exponent {right} is too large (max {MAX_EXPONENT})")
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int) \
                and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise CalculationError("result too large")
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except OverflowError:
            raise CalculationError("result too large") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise CalculationError(f"unknown function {node.func.id!r}; known: "
                                   f"{', '.join(sorted(_FUNCTIONS))}")
        args = [_eval(a) for a in node.args]
        if fn is math.factorial and (not args or not isinstance(args[0], int) or args[0] > 1000):
            raise CalculationError("factorial needs an integer up to 1000")
        try:
            return _check(fn(*args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise CalculationError(f"{node.func.id}: {exc}") from None
    raise CalculationError(f"unsupported syntax: {type(node).__name__}")


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely (``^`` is accepted as power)."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculationError("empty expression")
    if len(text) > MAX_EXPRESSION:
        raise CalculationError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not an arithmetic expression: {exc.msg}") from None
    value = _eval(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value) if "." not in text and "/" not in text else value
    return value


class CalculatorTool:
    """Arithmetic without eval: ``{"expression": "(2 + 3) * 4"}`` -> ``{"result": 20}``."""

    name = "calculator"
    tool_name = "calculator"
    server = BUILTIN_SERVER
    #: No side effects: a resumed session may run a call again.
    idempotent = True
    description = ("Evaluate an arithmetic expression: numbers, + - * / // % ** (or ^), "
                   "parentheses, math functions (sqrt, log, sin, round, min, max, ...) and "
                   "the constants pi, e, tau. Use it for any arithmetic or math calculation.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "expression": {"type": "string", "minLength": 1, "maxLength": MAX_EXPRESSION,
                           "description": "The arithmetic expression, e.g. '(2 + 3) * 4'"},
        },
        "required": ["expression"],
        "additionalProperties": False,
    }

    async def call(self, arguments: dict[str, Any]) -> dict[str, Any]:
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolError("calculator needs a string 'expression'", code="TOOL_005")
        try:
            value = calculate(expression)
        except CalculationError as exc:
            raise ToolError(f"calculator: {exc} in {expression!r}", code="TOOL_002",
                            context={"tool_name": self.name, "tool_server": self.server}) from None
        return {"expression": expression, "result": value}


class CurrentTimeTool:
    """The current date and time in an IANA timezone (UTC by default)."""

    name = "current_time"
    tool_name = "current_time"
    server = BUILTIN_SERVER
    #: No side effects: a resumed session may run a call again.
    idempotent = True
    description = ("Get the current date and time (clock, today's date, day of the week) in an "
                   "IANA timezone such as 'UTC' or 'Europe/Paris'.")
    input_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "default": "UTC",
                         "description": "IANA timezone name, e.g. 'America/New_York'"},
        },
        "additionalProperties": False,
    }

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(UTC))

    async def call(self, arguments: dict[str, Any]) -> dict[str, Any]:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        name = arguments.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ToolError(f"current_time: unknown timezone {name!r}; use an IANA name such as "
                            f"'UTC' or 'Europe/Paris'", code="TOOL_002",
                            context={"tool_name": self.name, "tool_server": self.server}) from None
        now = self._clock().astimezone(zone)
        return {
            "timezone": name,
            "datetime": now.isoformat(timespec="seconds"),
            "date": now.date().isoformat(),
            "time": now.strftime("%H:%M:%S"),
            "day_of_week": now.strftime("%A"),
            "unix": int(now.timestamp()),
        }


def builtin_tools() -> list[Any]:
    return [CalculatorTool(), CurrentTimeTool()]
