"""Unit tests of the core's small pieces: the rule evaluator, the DAG checks, JSON Schema
generation from attrs classes, and the event bus (buffering, flushing, failing sinks)."""

from __future__ import annotations

import asyncio
from typing import Literal

import attrs
import pytest

from sigil_core import Plan, PlanStep
from sigil_core.dag import final_step, plan_levels, topological_order, validate_plan
from sigil_core.errors import PlanError
from sigil_core.events import EventBus, new_event_id
from sigil_core.model import LogEvent
from sigil_core.rules import RuleError, evaluate
from sigil_core.schema import json_schema, parse_structured

# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("rule,value,holds", [
    ("0 <= value <= 100", 42, True),
    ("0 <= value <= 100", 142, False),
    ("value in ['hot', 'warm', 'cold']", "warm", True),
    ("len(value) >= 3 and all(isinstance_str for isinstance_str in value)", ["a", "b"], False),
    ("lower(value) == 'yes'", "YES", True),
    ("sum(value) > 10 or max(value) == 9", [1, 9], True),
    ("value['score'] >= 70", {"score": 71}, True),
    ("value.score >= 70", {"score": 71}, None),  # attribute access is not allowed
])
def test_rules_evaluate_comparisons_and_refuse_attribute_access(rule, value, holds):
    if holds is None:
        with pytest.raises(RuleError, match="not allowed"):
            evaluate(rule, {"value": value})
    else:
        assert evaluate(rule, {"value": value}) is holds


@pytest.mark.parametrize("rule", [
    "__import__('os').system('true')", "(lambda: 1)()", "open('/etc/passwd')",
    "[x for x in value for y in value]", "value if True else 1 +",
])
def test_rules_that_could_escape_or_do_not_parse_are_rule_errors(rule):
    with pytest.raises(RuleError):
        evaluate(rule, {"value": [1]})


def test_a_rule_failing_on_the_data_does_not_hold():
    assert evaluate("value > 3", {"value": "text"}) is False  # TypeError on the data
    with pytest.raises(RuleError, match="unknown name"):
        evaluate("missing > 3", {"value": 1})


# --------------------------------------------------------------------------- DAG


def plan(*steps: tuple[str, list[str]], contract: str | None = None) -> Plan:
    return Plan(goal="g", steps=[PlanStep(n, n, dependencies=d, needs_contract=n == contract)
                                 for n, d in steps])


def test_plan_levels_group_the_steps_that_can_run_together():
    lead = plan(("research_lead", []), ("assess_bant", []),
                ("generate_recommendation", ["research_lead", "assess_bant"]))
    assert plan_levels(lead) == [["research_lead", "assess_bant"], ["generate_recommendation"]]
    diamond = plan(("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", []), ("e", ["a"]))
    assert plan_levels(diamond) == [["a"], ["b", "c", "e"], ["d"]]
    assert plan_levels(plan(("x", []))) == [["x"]]


@pytest.mark.parametrize("bad,problem", [
    (plan(), "no steps"),
    (plan(("a", []), ("a", [])), "used by two steps"),
    (plan(("a", ["ghost"])), "unknown step 'ghost'"),
    (plan(("a", ["a"])), "depends on itself"),
    (plan(("a", ["b"]), ("b", ["a"]), ("c", [])), "cycle among: a, b"),
    (plan(("Not Snake", [])), "not a snake_case identifier"),
])
def test_plans_that_are_not_dags_are_rejected_saying_why(bad, problem):
    with pytest.raises(PlanError, match=problem):
        validate_plan(bad)


def test_topological_order_is_stable_and_the_final_step_is_the_contracted_sink():
    p = plan(("report", ["research", "score"]), ("research", []), ("score", ["research"]),
             ("notes", ["research"]), contract="report")
    validate_plan(p)
    assert topological_order(p) == ["research", "score", "notes", "report"]
    assert final_step(p).name == "report"
    # Without a contracted step: the last sink in topological order.
    assert final_step(plan(("a", []), ("b", ["a"]), ("c", ["a"]))).name == "c"


# --------------------------------------------------------------------------- schemas


@attrs.define
class Inner:
    """A nested part."""

    size: int


@attrs.define
class Answer:
    """The answer, first line of the doc."""

    name: str
    level: Literal["low", "high"]
    parts: list[Inner]
    scores: dict[str, float] = attrs.Factory(dict)
    note: str | None = None


def test_json_schema_from_attrs_classes():
    schema = json_schema(Answer)
    assert schema["required"] == ["name", "level", "parts"]
    assert schema["additionalProperties"] is False
    assert schema["description"] == "The answer, first line of the doc."
    props = schema["properties"]
    assert props["level"] == {"type": "string", "enum": ["low", "high"]}
    assert props["parts"]["items"]["properties"]["size"] == {"type": "integer"}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["note"] == {"type": "string"}


def test_structured_answers_are_parsed_and_errors_name_the_path():
    value = parse_structured({"name": "n", "level": "low", "parts": [{"size": 2}]}, Answer)
    assert value.parts == [Inner(2)]
    with pytest.raises(ValueError, match=r"parts\[0\]"):
        parse_structured({"name": "n", "level": "low", "parts": [{"size": "big"}]}, Answer)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with pytest.raises(ValueError, match=r"@ \$\.n"):
        parse_structured({"n": "x"}, schema)


# --------------------------------------------------------------------------- event bus


def event(level: str = "info") -> LogEvent:
    return LogEvent(new_event_id(), "2026-01-01T00:00:00.000Z", level, "system", "op", "m",
                    "s", "s", "op_1")


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.batches: list[list[LogEvent]] = []

    def write(self, events):
        self.batches.append(list(events))


class Broken:
    name = "broken"

    def write(self, events):
        raise RuntimeError("no")


def test_the_bus_batches_until_full_and_flushes_errors_at_once():
    sink = Collect()
    bus = EventBus([sink], buffer_size=3)
    bus.emit(event())
    bus.emit(event())
    assert sink.batches == []  # no loop running: only size or level flushes
    bus.emit(event())
    assert [len(b) for b in sink.batches] == [3]
    bus.emit(event("error"))
    assert [len(b) for b in sink.batches] == [3, 1]


def test_the_bus_filters_by_level_and_keeps_every_event_it_accepts():
    bus = EventBus([], min_level="info")
    bus.emit(event("debug"))
    bus.emit(event("warning"))
    assert [e.level for e in bus.events] == ["warning"]


async def test_the_bus_flushes_after_the_interval_and_drops_a_failing_sink(capsys):
    good, bad = Collect(), Broken()
    bus = EventBus([bad, good], buffer_size=100, flush_interval_ms=10)
    bus.emit(event())
    await asyncio.sleep(0.2)
    assert [len(b) for b in good.batches] == [1]
    assert bus.sinks == [good]
    assert "log sink 'broken' failed and was disabled" in capsys.readouterr().err


# --------------------------------------------------------------------------- LLM gateway


async def test_a_failed_llm_call_is_recorded_with_its_error(sigil_home):
    from sigil_core import LLMError
    from sigil_core.testing import ScriptedProvider, make_run

    run = make_run(provider=ScriptedProvider([LLMError("overloaded (529)", recoverable=True)]))
    with pytest.raises(LLMError):
        await run.llm.generate("hello", purpose="probe", component="reasoning")
    [event] = [e for e in run.bus.events if e.operation == "llm_call"]
    assert event.level == "debug" and event.duration_ms is not None
    assert event.error_info.error_type == "LLMError" and "529" in event.error_info.error_message
    assert event.metadata["failed"] is True and event.metadata["provider"] == "scripted"
    assert "input_tokens" not in event.metadata  # nothing was billed
    assert run.budget.snapshot().used == 0  # the reservation was released


def test_memory_settings_are_read_once_per_section_and_handed_out_as_copies(monkeypatch):
    """A run reads its memory settings ~8 times: the checked answer is kept for the same
    section and SIGIL_MEMORY_BACKEND, and each caller gets its own copy."""
    import pytest

    from sigil_core import memory
    from sigil_core.errors import ConfigError
    from sigil_core.memory import MemorySettings

    class Config:
        def __init__(self, section: dict) -> None:
            self.memory = section

        def section(self, name: str) -> dict:
            return self.memory

    monkeypatch.delenv("SIGIL_MEMORY_BACKEND", raising=False)
    checks = []
    real = MemorySettings._checked.__func__

    def counted(cls, section):
        checks.append(dict(section))
        return real(cls, section)

    monkeypatch.setattr(MemorySettings, "_checked", classmethod(counted))
    memory._SETTINGS.clear()
    config = Config({"k": 7, "backend": "sqlite"})
    first = MemorySettings.from_config(config)
    first.k = 99  # the caller's own copy
    again = MemorySettings.from_config(config)
    assert (again.k, again.backend) == (7, "sqlite") and again is not first
    assert len(checks) == 1
    config.memory["k"] = 8  # a changed section is read again
    assert MemorySettings.from_config(config).k == 8 and len(checks) == 2
    monkeypatch.setenv("SIGIL_MEMORY_BACKEND", "pgvector")
    assert MemorySettings.from_config(config).backend == "pgvector"
    for bad in ({"k": 0}, {"k": [1]}, {"nope": 1}):  # refused every time, never kept
        for _ in range(2):
            with pytest.raises(ConfigError):
                MemorySettings.from_config(Config(bad))
