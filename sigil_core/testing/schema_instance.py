"""Build a valid instance of a JSON Schema, deterministically.

The test server answers a forced tool call with the tool's ``input_schema`` filled in, so any
structured request Sigil makes (route, plan, contract check, extraction, ...) gets an answer its
schema accepts without the server knowing the purpose. A few choices lean towards answers that
keep a run going: enums prefer ``execute_task``/``moderate``, numbers sit high in their range,
booleans are true and arrays whose name says they point at other items (``depends_on``) stay
empty so a generated plan is a valid DAG.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

#: Enum values preferred when present (the full flow, a middling step).
PREFERRED_ENUM_VALUES = ("execute_task", "moderate", "fact", "pass", "passed", "approve")
#: Array properties that reference other items; left at their minimum size.
REFERENCE_ARRAYS = frozenset({"depends_on", "dependencies", "requires", "parents", "after",
                              "blocked_by", "indices"})


class InstanceBuilder:
    """Fills a schema; strings are numbered snake_case words, unique within one answer."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self._counter = itertools.count(1)

    def build(self, schema: Any, name: str = "value", depth: int = 0) -> Any:
        if not isinstance(schema, dict) or depth > 12:
            return None
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            values = schema["enum"]
            for preferred in PREFERRED_ENUM_VALUES:
                if preferred in values:
                    return preferred
            return values[0]
        if schema.get("examples") and isinstance(schema["examples"], list):
            return schema["examples"][0]
        if "default" in schema and not isinstance(schema["default"], (dict, list)):
            return schema["default"]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                options = [self._resolve(o) for o in schema[key]]
                # Prefer a non-null branch: an answer with content is more useful.
                chosen = next((o for o in options if o.get("type") != "null"), options[0])
                return self.build(chosen, name, depth + 1)
        if schema.get("allOf"):
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                part = self._resolve(part)
                for k, v in part.items():
                    if k in ("properties",) and k in merged:
                        merged[k] = {**merged[k], **v}
                    elif k == "required" and k in merged:
                        merged[k] = list(dict.fromkeys([*merged[k], *v]))
                    else:
                        merged[k] = v
            return self.build(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else ("array" if "items" in schema else "string")
        return getattr(self, f"_{kind}", self._string)(schema, name, depth)

    # ----------------------------------------------------------------- kinds

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prop, sub in (schema.get("properties") or {}).items():
            out[prop] = self.build(sub, prop, depth + 1)
        if not out and schema.get("additionalProperties") is not False:
            # A free-form object: an empty one usually reads as "missing".
            out[f"{name}_note"] = f"{name}_{next(self._counter)}"
        return out

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        items = self._resolve(schema.get("items") or {"type": "string"})
        # Lists of plain strings are mostly references (tools, inputs, dependencies): an
        # invented name would point at nothing, so they stay at their minimum size.
        scalar = items.get("type") in ("string", None) and "properties" not in items
        count = low if (name in REFERENCE_ARRAYS or scalar) else max(low, 1)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        singular = name.removesuffix("s")
        return [self.build(items, singular, depth + 1) for _ in range(count)]

    def _string(self, schema: dict[str, Any], name: str, depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date-time":
            return "2026-01-11T14:30:00Z"
        if fmt == "date":
            return "2026-01-11"
        if fmt in ("uri", "url"):
            return f"https://example.com/{name}"
        if fmt == "email":
            return f"{name}@example.com"
        # snake_case: valid wherever Sigil expects an identifier, readable as text.
        text = f"{name}_{next(self._counter)}"
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(text) < low:
            text = text + "x" * (low - len(text))
        if high is not None:
            text = text[: int(high)]
        return text

    def _number(self, schema: dict[str, Any], name: str, depth: int) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is not None and high is not None:
            return cast("float", round(low + 0.85 * (high - low), 4))
        if low is not None:
            return float(low) + 1.0
        if high is not None:
            return float(high) - 1.0
        return 0.85

    def _integer(self, schema: dict[str, Any], name: str, depth: int) -> int:
        low = schema.get("minimum")
        high = schema.get("maximum")
        if schema.get("exclusiveMinimum") is not None:
            low = schema["exclusiveMinimum"] + 1
        if schema.get("exclusiveMaximum") is not None:
            high = schema["exclusiveMaximum"] - 1
        if low is not None and high is not None:
            return int(low + round(0.85 * (high - low)))
        if low is not None:
            return int(low)
        if high is not None:
            return int(min(high, 1))
        return 1

    def _boolean(self, schema: dict[str, Any], name: str, depth: int) -> bool:
        return True

    def _null(self, schema: dict[str, Any], name: str, depth: int) -> None:
        return None

    # ----------------------------------------------------------------- refs

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 20:
            seen += 1
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                return {}
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**node, **extra}
        return schema if isinstance(schema, dict) else {}


def instance_for(schema: dict[str, Any]) -> Any:
    """A deterministic instance of ``schema`` (a JSON Schema dict)."""
    return InstanceBuilder(schema).build(schema)
