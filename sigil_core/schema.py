"""JSON Schemas for structured LLM output, and parsing model answers against them.

A schema is either an attrs class (turned into a JSON Schema here and structured back by the
cattrs converter, so errors name the path) or a JSON-Schema dict (validated with ``jsonschema``,
draft 2020-12; see :func:`parse_structured` for the compiled fast path).
"""

from __future__ import annotations

import collections
import functools
import json
import re
import threading
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from .model import structure

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    Any: {},
}


@functools.lru_cache(maxsize=256)
def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of an attrs class (fields without a default are required). Cached:
    treat the result as read-only."""
    attrs.resolve_types(cls)  # string annotations (PEP 563) to types; a no-op once done
    props: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        props[field.name] = _type_schema(field.type)
        if field.metadata.get("description"):
            props[field.name] = {**props[field.name],
                                 "description": field.metadata["description"]}
        if field.default is attrs.NOTHING:
            required.append(field.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    doc = (cls.__doc__ or "").strip()
    if doc:
        out["description"] = doc.splitlines()[0]
    return out


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        return {"type": "string", "enum": list(args)} if all(isinstance(a, str) for a in args) \
            else {"enum": list(args)}
    if origin in (list, tuple, typing.Sequence, set):
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1]) if args else {}}
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _type_schema(non_none[0])
        return {"anyOf": [_type_schema(a) for a in non_none]}
    if attrs.has(tp):
        return json_schema(tp)
    return {}


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The first JSON value in a model's answer (tolerates code fences and prose around it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    m = _FENCE.search(text)
    if m:
        try:
            return json.loads(m.group(1))
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
                return value
            except ValueError:
                continue
    raise ValueError("the answer contains no JSON value")


def parse_structured(data: Any, schema: type | dict[str, Any]) -> Any:
    """Validate/structure already-decoded JSON against the schema; ValueError names the path.

    A dict schema is checked by ``jsonschema`` (draft 2020-12), the reference validator:
    its verdict and its messages are the ones a caller gets. A schema made only of keywords
    whose meaning draft 7 and 2020-12 share (what Sigil's own schemas use: types, properties,
    required, items, bounds, string enums...; see :func:`_fast_eligible`) is first checked by
    ``fastjsonschema``, which compiles it to Python once (cached by content): an answer it
    accepts is accepted without ``jsonschema``, any other is judged by ``jsonschema``. Every
    run's answers are checked: 13-84 us each with jsonschema against ~1-4 us compiled, and
    a run that only meets valid answers never imports jsonschema (~50 ms of a cold start)."""
    if isinstance(schema, dict):
        check = _fast_check(schema)
        if check is not None and not _holds_tuple(data):
            try:
                check(data)
            except Exception:  # noqa: BLE001, S110 - invalid, or not understood: judged below
                pass
            else:
                return data
        validator = _validator(schema)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            parts = []
            for err in errors[:5]:
                path = "$" + "".join(
                    f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path
                )
                parts.append(f"{err.message} @ {path}")
            raise ValueError("; ".join(parts))
        return data
    return structure(data, schema, what="answer")


_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per schema object (kept with its schema so the id stays valid)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    if len(_VALIDATORS) > 512:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


#: Keywords with the same meaning in draft 7 (what fastjsonschema compiles) and 2020-12, given
#: the value checks in _fast_eligible. Left out, among others: format (asserted by
#: fastjsonschema, an annotation for jsonschema), const, uniqueItems and non-string enums
#: (Python's 1 == True), $ref/$defs, items as a list, multipleOf.
_FAST_KEYWORDS = frozenset({
    "type", "properties", "required", "items", "additionalProperties", "not", "anyOf",
    "allOf", "oneOf", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "description", "title", "examples", "default", "$comment"})
_JSON_TYPE_NAMES = frozenset({"null", "boolean", "object", "array", "number", "integer",
                              "string"})
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not"})
_SCHEMA_LISTS = frozenset({"anyOf", "allOf", "oneOf"})
_COUNTS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties",
                     "maxProperties"})
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _fast_eligible(schema: Any) -> bool:
    """Whether fastjsonschema's verdict on ``schema`` can be trusted when it accepts."""
    if isinstance(schema, bool):
        return True
    return isinstance(schema, dict) and all(
        key in _FAST_KEYWORDS and _fast_value_ok(key, value) for key, value in schema.items())


def _fast_value_ok(key: str, value: Any) -> bool:
    if key == "properties":
        return isinstance(value, dict) and all(_fast_eligible(v) for v in value.values())
    if key in _SUBSCHEMA:
        return isinstance(value, (dict, bool)) and _fast_eligible(value)
    if key in _SCHEMA_LISTS:
        return isinstance(value, list) and bool(value) and all(_fast_eligible(v) for v in value)
    if key == "type":
        names = value if isinstance(value, list) else [value]
        return bool(names) and all(isinstance(n, str) and n in _JSON_TYPE_NAMES for n in names)
    if key in ("enum", "required"):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if key == "pattern":
        return isinstance(value, str)
    if key in _COUNTS:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if key in _BOUNDS:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True  # an annotation (description, title, examples, default, $comment)


def _holds_tuple(data: Any) -> bool:
    """Whether a tuple is anywhere in ``data``: an array to fastjsonschema, not to jsonschema
    (decoded JSON has none; a provider plugin may hand Python values over)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, tuple):
            return True
    return False


_FAST: collections.OrderedDict[bytes, Any] = collections.OrderedDict()
_FAST_SIZE = 256
_FAST_LOCK = threading.Lock()  # runs on several threads (Ray actors, tools) share the cache


def _fast_check(schema: dict[str, Any]) -> Any:
    """The compiled check of ``schema`` (raises when the data does not match), or None when
    the schema is not eligible or does not compile. Kept by content, not by object: runs
    build the same schemas anew (the contract's, the planner's), compiling costs 1-5 ms, and
    a schema changed in place must not keep an old check. A schema found not eligible is
    kept too (as False): the walk that decides it cost more than the check itself (~60 us
    for a contract's schema, on every structured answer)."""
    import orjson

    try:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    with _FAST_LOCK:
        check = _FAST.get(key)
        if check is not None:
            _FAST.move_to_end(key)
            return check or None
    if not _fast_eligible(schema):
        check = False
    else:
        import fastjsonschema

        try:
            check = fastjsonschema.compile(schema, use_default=False, use_formats=False,
                                           detailed_exceptions=False)
        except Exception:  # noqa: BLE001 - a schema it refuses: jsonschema's to judge
            check = False
    with _FAST_LOCK:
        _FAST[key] = check
        if len(_FAST) > _FAST_SIZE:
            _FAST.popitem(last=False)
    return check or None


def schema_dict(schema: type | dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or isinstance(schema, dict):
        return schema
    return json_schema(schema)


# --------------------------------------------------------------------------- native structured output

#: The property a non-object schema is wrapped in, for APIs whose structured output (tool input,
#: function arguments, response_format) must be a JSON object.
WRAP_KEY = "value"

_ANSWER_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def answer_name(schema_name: str | None, purpose: str) -> str:
    """The name a structured answer goes by in a provider's API (tool, function, schema name):
    the schema's class name, else ``<purpose>_answer``; ``[a-zA-Z0-9_-]{1,64}`` as the APIs
    require."""
    raw = schema_name if schema_name and schema_name != "output" else f"{purpose}_answer"
    return _ANSWER_NAME.sub("_", raw)[:64] or "answer"


def needs_wrapping(schema: dict[str, Any]) -> bool:
    return schema.get("type") != "object"


def object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema for the API: a non-object schema goes under :data:`WRAP_KEY`;
    definitions stay at the root so ``$ref`` still resolves."""
    if not needs_wrapping(schema):
        return schema
    inner = {k: v for k, v in schema.items() if k not in ("$defs", "definitions", "$schema")}
    outer: dict[str, Any] = {"type": "object", "properties": {WRAP_KEY: inner},
                             "required": [WRAP_KEY]}
    for key in ("$defs", "definitions"):
        if key in schema:
            outer[key] = schema[key]
    return outer


def unwrap(data: Any, schema: dict[str, Any]) -> Any:
    """The answer inside an :func:`object_schema` object (None if it is not there)."""
    if not needs_wrapping(schema):
        return data
    return data.get(WRAP_KEY) if isinstance(data, dict) else None
