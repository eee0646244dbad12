"""Structured answers are checked by compiled schemas (fastjsonschema) when a schema uses only
keywords that mean the same in draft 7 and 2020-12; jsonschema (draft 2020-12) stays the judge:
whatever the fast check accepts, jsonschema accepts, and everything else is jsonschema's verdict
and messages."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigil_core import schema as schema_mod
from sigil_core.schema import _fast_check, _fast_eligible, parse_structured

TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"]


def schemas(depth: int = 2) -> st.SearchStrategy[Any]:
    """Schemas made of the eligible keywords (and sometimes one that is not)."""
    leaf = st.fixed_dictionaries({}, optional={
        "type": st.one_of(st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), min_size=1,
                                                           max_size=3, unique=True)),
        "minimum": st.integers(-5, 5), "maximum": st.one_of(st.integers(-5, 5),
                                                            st.floats(-5, 5)),
        "exclusiveMinimum": st.integers(-5, 5),
        "minLength": st.integers(0, 4), "maxLength": st.integers(0, 6),
        "minItems": st.integers(0, 3), "maxItems": st.integers(0, 4),
        "minProperties": st.integers(0, 2),
        "enum": st.lists(st.sampled_from(["a", "b", "1", "true", ""]), max_size=3),
        "pattern": st.sampled_from(["^a", "b$", "[0-9]", ".*"]),
        "description": st.text(max_size=5),
        # Not eligible: the schema goes to jsonschema alone.
        "format": st.sampled_from(["email", "date"]),
        "const": st.sampled_from([1, "a", True]),
    })
    if depth == 0:
        return st.one_of(leaf, st.booleans())
    sub = schemas(depth - 1)
    return st.one_of(leaf, st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["object", "array"]),
        "properties": st.dictionaries(st.sampled_from(["a", "b", "c"]), sub, max_size=3),
        "required": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True),
        "additionalProperties": sub,
        "items": sub,
        "anyOf": st.lists(sub, min_size=1, max_size=2),
        "oneOf": st.lists(sub, min_size=1, max_size=2),
        "not": sub,
    }))


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-6, 6), st.floats(-6, 6),
              st.sampled_from([0.0, 1.0, 2.0]), st.sampled_from(["", "a", "ab", "b1", "true"])),
    # Tuples too: an array to fastjsonschema, not to jsonschema (a provider plugin may hand
    # Python values over instead of decoded JSON).
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.lists(children, max_size=3).map(tuple),
                               st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children,
                                               max_size=4)),
    max_leaves=8)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas(), st.lists(values, min_size=1, max_size=6))
def test_the_verdict_is_always_jsonschemas(schema: Any, instances: list[Any]) -> None:
    if isinstance(schema, bool):
        schema = {"not": {}} if not schema else {}
    reference = jsonschema.Draft202012Validator(schema)
    for data in instances:
        expected = reference.is_valid(data)
        try:
            parse_structured(data, schema)
        except ValueError:
            got = False
        else:
            got = True
        assert got == expected, (schema, data)


def test_what_is_eligible() -> None:
    assert _fast_eligible({"type": "object", "properties": {"tier": {
        "type": "string", "enum": ["hot", "warm"], "description": "d"}}, "required": ["tier"]})
    for schema in ({"type": "string", "format": "email"}, {"const": 1}, {"enum": [1, "a"]},
                   {"items": [{"type": "string"}]}, {"$ref": "#/$defs/a", "$defs": {"a": {}}},
                   {"type": "custom"}, {"minimum": True}, {"uniqueItems": True},
                   {"properties": {"a": {"multipleOf": 0.1}}}):
        assert not _fast_eligible(schema), schema
        assert _fast_check(schema) is None


def test_checks_are_kept_by_content_not_by_object() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}},
                              "required": ["n"]}
    first = _fast_check(schema)
    assert first is not None
    assert _fast_check({"required": ["n"], "properties": {"n": {"type": "integer"}},
                        "type": "object"}) is first  # same content, another dict
    schema["properties"]["n"]["minimum"] = 5  # changed in place: not the old check
    assert _fast_check(schema) is not first
    with pytest.raises(ValueError, match="less than the minimum of 5"):
        parse_structured({"n": 3}, schema)


def test_whether_a_schema_is_eligible_is_decided_once_per_content(monkeypatch) -> None:
    """The walk over the schema cost more than the compiled check (every structured answer
    of every run asked it again): it is kept with the check, by content."""
    walks = []
    real = schema_mod._fast_eligible

    def counted(schema: Any) -> bool:
        if isinstance(schema, dict) and "title" in schema:  # the top of a walk
            walks.append(1)
        return real(schema)

    monkeypatch.setattr(schema_mod, "_fast_eligible", counted)
    for schema in ({"type": "object", "properties": {"k": {"type": "string"}}, "title": "t1"},
                   {"type": "string", "format": "email", "title": "t2"}):
        first = _fast_check(schema)
        assert _fast_check(dict(schema)) is first  # another dict, the same content
        assert len(walks) == 1
        walks.clear()


def test_failures_keep_jsonschemas_messages() -> None:
    schema = {"type": "object", "properties": {"score": {"type": "integer", "maximum": 100},
                                               "tier": {"enum": ["hot", "cold"]}},
              "required": ["score", "tier"]}
    with pytest.raises(ValueError) as err:
        parse_structured({"score": 120, "tier": "lukewarm"}, schema)
    assert str(err.value) == ("120 is greater than the maximum of 100 @ $.score; "
                              "'lukewarm' is not one of ['hot', 'cold'] @ $.tier")


def test_the_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(schema_mod, "_FAST_SIZE", 3)
    monkeypatch.setattr(schema_mod, "_FAST", type(schema_mod._FAST)())
    for n in range(6):
        assert _fast_check({"type": "string", "maxLength": n}) is not None
    assert len(schema_mod._FAST) == 3


def test_valid_answers_do_not_import_jsonschema() -> None:
    """jsonschema's import (~60 ms of CPU) is left to an answer that fails the check."""
    code = """
import sys
from sigil_core.schema import parse_structured
schema = {"type": "object", "properties": {"tier": {"type": "string", "enum": ["hot"]}},
          "required": ["tier"]}
parse_structured({"tier": "hot"}, schema)
assert "jsonschema" not in sys.modules, "imported for a valid answer"
try:
    parse_structured({"tier": "cold"}, schema)
except ValueError as exc:
    print(exc)
assert "jsonschema" in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "'cold' is not one of ['hot'] @ $.tier"
