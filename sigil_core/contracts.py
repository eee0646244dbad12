"""Contracts: checking an output's deliverables and rules, and describing them to a model."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable
from typing import Any

from .model import Contract, ValidationResult
from .rules import RuleError, evaluate

#: Marks text the offline model made up in place of a real answer (see builtin/offline.py).
PLACEHOLDER_MARK = "[offline placeholder]"


def has_placeholder(value: Any) -> bool:
    """Whether a value is, or contains, an offline placeholder string."""
    if isinstance(value, str):
        return PLACEHOLDER_MARK in value
    if isinstance(value, dict):
        return any(has_placeholder(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_placeholder(v) for v in value)
    return False

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def check_contract(output: Any, contract: Contract, attempt: int = 1) -> ValidationResult:
    """Deliverables present, of the right type, non-empty when required, and every rule holds."""
    result = ValidationResult(success=False, contract_name=contract.name, attempt=attempt)
    if not isinstance(output, dict):
        result.missing_deliverables = [d.name for d in contract.deliverables if d.required]
        result.failed_rules.append(
            f"the output must be a JSON object with the deliverables, got {type(output).__name__}")
        return result
    # A placeholder proves nothing (placeholder sources are no sources): the deliverable is
    # checked for shape, and the result says which deliverables were placeholders.
    result.placeholders = [d.name for d in contract.deliverables
                           if has_placeholder(output.get(d.name))]
    for d in contract.deliverables:
        value = output.get(d.name)
        if value is None or value == "" or value == [] or value == {}:
            if d.required:
                result.missing_deliverables.append(d.name)
            continue
        check = _TYPE_CHECKS.get(d.type, _TYPE_CHECKS["any"])
        if not check(value):
            result.failed_rules.append(f"{d.name}: expected {d.type}, got {type(value).__name__}")
            continue
        ok = True
        for rule in d.rules:
            try:
                holds = evaluate(rule, {"value": value, "output": output})
            except RuleError as exc:
                holds = False
                result.failed_rules.append(f"{d.name}: invalid rule: {exc}")
                ok = False
                continue
            if not holds:
                result.failed_rules.append(f"{d.name}: rule `{rule}` does not hold for {value!r}")
                ok = False
        if ok:
            result.passed_deliverables.append(d.name)
    result.success = not result.missing_deliverables and not result.failed_rules
    return result


_JSON_TYPES = {"string", "integer", "number", "boolean", "array", "object"}


_LEN_MIN = re.compile(r"^len\(value\)\s*(>=|>)\s*(\d+)$")
_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*<=\s*value\s*<=\s*(-?\d+(?:\.\d+)?)$")
_ENUM = re.compile(r"^value in (\[.*\])$")
_MATCHES = re.compile(r"^matches\(\s*(r?'[^']*'|r?\"[^\"]*\")\s*,\s*value\s*\)$")
_KEYS = re.compile(r"^all\(\s*k in value for k in (\[.*\])\s*\)$")


@functools.lru_cache(maxsize=1024)
def _literal(text: str) -> Any:
    """``ast.literal_eval``, once per process for each rule's literal (a contract's schema is
    built on every run). The callers copy what they keep, so the cached value is never changed."""
    return ast.literal_eval(text)


def _rule_keywords(rule: str, typ: str) -> dict[str, Any]:
    """The JSON-Schema form of the simplest rules, so a model sees them as constraints."""
    rule = rule.strip()
    if m := _LEN_MIN.match(rule):
        n = int(m.group(2)) + (1 if m.group(1) == ">" else 0)
        key = {"array": "minItems", "string": "minLength", "object": "minProperties"}.get(typ)
        return {key: n} if key else {}
    if (m := _RANGE.match(rule)) and typ in ("integer", "number"):
        return {"minimum": float(m.group(1)) if "." in m.group(1) else int(m.group(1)),
                "maximum": float(m.group(2)) if "." in m.group(2) else int(m.group(2))}
    if (m := _MATCHES.match(rule)) and typ == "string":
        try:
            pattern = _literal(m.group(1))
        except (ValueError, SyntaxError):
            return {}
        return {"pattern": pattern} if isinstance(pattern, str) else {}
    if (m := _KEYS.match(rule)) and typ == "object":
        try:
            keys = _literal(m.group(1))
        except (ValueError, SyntaxError):
            return {}
        if isinstance(keys, list) and all(isinstance(k, str) for k in keys):
            return {"properties": {k: {} for k in keys}, "required": list(keys)}
        return {}
    if m := _ENUM.match(rule):
        try:
            values = _literal(m.group(1))
        except (ValueError, SyntaxError):
            return {}
        return {"enum": list(values)} if isinstance(values, list) else {}
    return {}


def contract_schema(contract: Contract) -> dict[str, Any]:
    """A JSON Schema asking for the contract's deliverables. Simple rules (lengths, ranges,
    enums) become schema keywords; every rule is still checked by validation."""
    props: dict[str, Any] = {}
    for d in contract.deliverables:
        prop: dict[str, Any] = {"type": d.type} if d.type in _JSON_TYPES else {}
        for rule in d.rules:
            prop.update(_rule_keywords(rule, d.type))
        if d.properties or "required" in prop:
            # An object's keys, so a model that follows the schema cannot answer `{}`: the
            # described ones and every key a rule asks for, all required.
            keys = list(dict.fromkeys([*d.properties, *prop.get("required", [])]))
            prop["properties"] = {k: {"type": "string", "description": d.properties.get(
                k, f"The {k.replace('_', ' ')} of the {d.name.replace('_', ' ')}")}
                for k in keys}
            prop["required"] = keys
        if d.examples:
            prop["examples"] = list(d.examples)
        desc = d.description + (f" Rules: {'; '.join(d.rules)}." if d.rules else "")
        if desc.strip():
            prop["description"] = desc.strip()
        props[d.name] = prop
    return {
        "type": "object",
        "properties": props,
        "required": [d.name for d in contract.deliverables if d.required],
    }


def describe_contract(contract: Contract) -> str:
    lines = [f"Contract {contract.name}: {contract.description}".rstrip(": ")]
    for d in contract.deliverables:
        req = "required" if d.required else "optional"
        rules = f" (rules: {'; '.join(d.rules)})" if d.rules else ""
        lines.append(f"- {d.name} ({d.type}, {req}): {d.description}{rules}")
    return "\n".join(lines)
