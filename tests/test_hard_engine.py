"""The engine under off-spec answers and hostile rules: usage never silently 0, rules bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigil_core.config import load_config
from sigil_core.llm import LLMResponse, estimate_tokens
from sigil_core.model import ExecutionContext, TokenUsage, utcnow
from sigil_core.plugins import PluginHost
from sigil_core.run import Run


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIGIL_HOME", str(tmp_path / "home"))
    for var in ("SIGIL_CONFIG", "SIGIL_OUTPUTS_DIR", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


class NoUsageProvider:
    """Answers like a proxy that drops the usage block: text, and zeros."""

    name = "no_usage"
    priority = 1000

    def available(self, config) -> bool:
        return True

    def estimate_input_tokens(self, request) -> int:
        return estimate_tokens(request.text())

    async def complete(self, request):
        return LLMResponse("A" * 400, TokenUsage.zero(), "proxy-model")


async def test_an_answer_without_usage_is_booked_at_the_estimate_with_a_warning(env):
    provider = NoUsageProvider()
    config = load_config()
    run = Run(ExecutionContext("sess_u", "sess_u", "task", 10_000, utcnow()), config,
              PluginHost(load_entry_points=False).load(), provider)
    async with run.operation("reasoning", "direct"):
        result = await run.llm.generate("x" * 800, system="s" * 80, purpose="reason")
    assert result.usage.output_tokens == 100
    assert result.usage.input_tokens > 200
    summary = run.summary()
    assert summary.total_tokens == result.usage.total_tokens > 0
    assert run.budget.snapshot().used == summary.total_tokens
    warning = [e for e in run.bus.events if e.level == "warning" and e.operation == "llm_call"]
    assert len(warning) == 1 and "no token usage" in warning[0].message


@pytest.mark.parametrize("rule, bound", [
    ("matches('(a+)+$', 'a' * 30 + 'b')", None),  # would backtrack for minutes on `re`
    ("len('a' * 100000000 * 100) > 0", "longer than"),
    ("len([1] * 100000000) > 0", "longer than"),
    ("sum([len([c for c in value]) for d in value]) > 0", "steps"),
    ("len('%999999999d' % 1) > 0", "formatting"),
    ("matches('(a)\\\\1', value)", "RE2"),
], ids=["backtracking", "repetition", "list_repetition", "nested_loops", "formatting",
        "backreference"])
def test_hostile_rules_end_quickly_as_rule_errors(rule, bound):
    from sigil_core.contracts import check_contract
    from sigil_core.model import Contract, Deliverable
    from sigil_core.rules import RuleError, evaluate

    value = "x" * 5_000
    if bound is None:
        assert evaluate(rule, {"value": value, "output": {}}) is False
        return
    with pytest.raises(RuleError, match=bound):
        evaluate(rule, {"value": value, "output": {}})
    contract = Contract("c", [Deliverable("v", "string", rules=[rule])])
    result = check_contract({"v": value}, contract)
    assert not result.success and "invalid rule" in result.problems[0]


def test_ordinary_rules_still_hold():
    from sigil_core.rules import evaluate

    assert evaluate(r"matches('^\\d{4}-\\d{2}-\\d{2}$', value)", {"value": "2026-03-14"})
    assert evaluate("all(k in value for k in ['a', 'b'])", {"value": {"a": 1, "b": 2}})
    assert evaluate("len(value * 3) == 6", {"value": "ab"})
