"""The builtin tools and the mcp_servers config section."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sigil_tools_mcp.builtin import CalculatorTool, CurrentTimeTool, calculate
from sigil_tools_mcp.settings import parse_servers
from sigil_tools_mcp.tools import validate_arguments

from sigil_core import ConfigError, ToolError


@pytest.mark.parametrize("expression, expected", [
    ("(17 + 4) * 3", 63),
    ("2 ^ 10", 1024),
    ("7 // 2 + 7 % 2", 4),
    ("-3 ** 2", -9),
    ("sqrt(16) + abs(-2)", 6),
    ("round(pi, 3)", 3.142),
    ("max(1, 5, 3) - min(4, 2)", 3),
    ("1 / 4", 0.25),
    ("10 × 3 ÷ 4", 7.5),
])
def test_calculator_evaluates_arithmetic(expression, expected):
    assert calculate(expression) == pytest.approx(expected)


@pytest.mark.parametrize("expression, message", [
    ("__import__('os')", "unknown function '__import__'"),
    ("__import__('os').system('true')", "unsupported syntax"),
    ("(1).__class__", "unsupported syntax"),
    ("x + 1", "unknown name"),
    ("9 ** 9 ** 9", "too large"),
    ("10 ** 400 * 1.0", "too large"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "sqrt"),
    ("factorial(100000)", "factorial"),
    ("[1, 2]", "unsupported syntax"),
    ("'a' * 3", "unsupported value"),
    ("1 +", "not an arithmetic expression"),
    ("", "empty"),
])
def test_calculator_refuses_what_is_not_safe_arithmetic(expression, message):
    with pytest.raises(ValueError, match=message):
        calculate(expression)


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6),
       st.sampled_from(["+", "-", "*"]))
def test_calculator_agrees_with_python_on_integers(a, b, op):
    assert calculate(f"{a} {op} ({b})") == {"+": a + b, "-": a - b, "*": a * b}[op]


async def test_calculator_tool_results_and_errors():
    tool = CalculatorTool()
    assert await tool.call({"expression": "6 * 7"}) == {"expression": "6 * 7", "result": 42}
    with pytest.raises(ToolError) as err:
        await tool.call({"expression": "1/0"})
    assert err.value.code == "TOOL_002" and err.value.recoverable
    with pytest.raises(ToolError) as err:
        validate_arguments(tool.input_schema, {"expr": "1"}, tool.name)
    assert err.value.code == "TOOL_005" and "expression" in err.value.message


def test_a_broken_input_schema_is_tool_005_not_a_crash():
    with pytest.raises(ToolError) as err:
        validate_arguments({"type": "object", "properties": {"a": {"type": "integr"}}},
                           {"a": 1}, "srv.tool")
    assert err.value.code == "TOOL_005" and "invalid input schema" in err.value.message
    with pytest.raises(ToolError) as err:
        validate_arguments({"type": "object"}, ["not", "an", "object"], "srv.tool")
    assert err.value.code == "TOOL_005"


async def test_current_time_in_a_timezone():
    fixed = datetime(2026, 1, 15, 12, 30, tzinfo=UTC)
    tool = CurrentTimeTool(clock=lambda: fixed)
    tokyo = await tool.call({"timezone": "Asia/Tokyo"})
    assert tokyo["datetime"] == "2026-01-15T21:30:00+09:00"
    assert tokyo["day_of_week"] == "Thursday" and tokyo["unix"] == int(fixed.timestamp())
    assert (await tool.call({}))["timezone"] == "UTC"
    with pytest.raises(ToolError) as err:
        await tool.call({"timezone": "Mars/Olympus"})
    assert err.value.code == "TOOL_002" and "Mars/Olympus" in err.value.message


def test_current_time_uses_the_real_clock_by_default():
    import asyncio

    before = datetime.now(UTC).timestamp()
    value = asyncio.run(CurrentTimeTool().call({"timezone": "UTC"}))
    assert math.isclose(value["unix"], before, abs_tol=5)


# --------------------------------------------------------------------------- config


def test_config_section_is_parsed():
    servers = parse_servers({
        "time": {"command": "uvx", "args": ["mcp-server-time"], "timeout": 5,
                 "allow": ["get_current_time"], "env": {"TZ": "UTC"}},
        "web": {"url": "http://127.0.0.1:9000/mcp"},
        "off": {"command": "x", "enabled": False},
    })
    assert set(servers) == {"time", "web"}
    assert servers["time"].transport == "stdio" and servers["web"].transport == "http"
    assert servers["time"].timeout == 5.0 and servers["time"].allows("get_current_time")
    assert not servers["time"].allows("convert_time")
    assert servers["time"].env == (("TZ", "UTC"),)


def test_env_values_expand_variables(monkeypatch):
    monkeypatch.setenv("TOOLS_MCP_SECRET", "s3cret")
    servers = parse_servers({"x": {"command": "srv", "env": {"KEY": "${TOOLS_MCP_SECRET}"}}})
    assert dict(servers["x"].env) == {"KEY": "s3cret"}


@pytest.mark.parametrize("section, message", [
    ({"t": {"args": ["x"]}}, "mcp_servers.t: give exactly one of 'command'"),
    ({"t": {"command": "a", "url": "http://x"}}, "give exactly one"),
    ({"t": {"command": "a", "timout": 3}}, "mcp_servers.t: unknown key 'timout'"),
    ({"t": {"command": "a", "timeout": -1}}, "mcp_servers.t.timeout"),
    ({"t": {"command": "a", "allow": "get_time"}}, "mcp_servers.t.allow"),
    ({"t": {"url": "ftp://x"}}, "mcp_servers.t.url"),
    ({"builtin": {"command": "a"}}, "invalid server name 'builtin'"),
    ({"a.b": {"command": "a"}}, "invalid server name"),
    (["time"], "expected a mapping"),
])
def test_bad_config_names_the_key(section, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_servers(section)
