"""The provider against the local Chat Completions server, through the real ``openai`` SDK."""

from __future__ import annotations

import json
import socket
from typing import ClassVar

import pytest
from sigil_provider_openai.provider import OpenAIProvider
from sigil_provider_openai.settings import OpenAISettings
from sigil_provider_openai.translate import strict_compatible

from sigil_core import (
    Config,
    ConfigError,
    LLMError,
    LLMRequest,
    PluginHost,
    Run,
    StructuredOutputError,
    testing,
)
from sigil_core.testing.server import Fault

ROUTE_SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["simple_query", "execute_task"]},
        "complexity": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string"},
    },
    "required": ["intent", "complexity", "rationale"],
}
SYSTEM = "You route requests for Sigil. Classify intent and complexity. " * 20


def route_request(**kw) -> LLMRequest:
    base = {"messages": [{"role": "user", "content": "Qualify lead John from Acme"}],
            "system": SYSTEM, "schema": ROUTE_SCHEMA, "schema_name": "RouteAnswer",
            "purpose": "route", "component": "router"}
    base.update(kw)
    return LLMRequest(**base)


def reported(call: dict) -> tuple[int, int, int]:
    u = call["usage"]
    return u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"]


def booked(response) -> tuple[int, int, int]:
    u = response.usage
    return u.input_tokens + u.cache_read_tokens, u.output_tokens, u.cache_read_tokens


def make_run(provider, budget: int = 100_000) -> Run:
    return testing.make_run(provider=provider, config=Config(),
                            host=PluginHost(load_entry_points=False), task="t", budget=budget,
                            session_id="sess_openai")


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("max_tokens", [256, 5000], ids=["json", "sse"])
async def test_usage_is_exactly_what_the_server_reported(openai_server, openai_provider_for,
                                                         max_tokens):
    provider = openai_provider_for(openai_server)
    first = await provider.complete(route_request(max_tokens=max_tokens))
    second = await provider.complete(route_request(max_tokens=max_tokens))
    calls = openai_server.completion_calls()
    assert [c["stream"] for c in calls] == [max_tokens >= 4096] * 2
    assert [booked(first), booked(second)] == [reported(c) for c in calls]
    assert second.usage.cache_read_tokens > 0, "the repeated prefix is reported as cached"
    assert second.usage.total_tokens == calls[1]["usage"]["total_tokens"]
    assert first.model == first.usage.model == "openai:gpt-test-1"
    assert first.data is None and json.loads(first.text)["intent"] == "execute_task"
    assert calls[0]["response_format"] == "json_schema"


async def test_streamed_text_keeps_usage_through_include_usage(openai_server,
                                                               openai_provider_for):
    provider = openai_provider_for(openai_server)
    openai_server.options.output_tokens = 300
    response = await provider.complete(LLMRequest(messages=[{"role": "user", "content": "go"}],
                                                  max_tokens=6000))
    [call] = openai_server.completion_calls()
    assert call["stream"] and call["usage"] is not None
    assert booked(response) == reported(call)
    assert response.usage.output_tokens == 300 and len(response.text) == 1200
    assert response.stop_reason == "stop"


async def test_a_server_refusing_stream_options_is_streamed_without_them(
        openai_server_factory, openai_provider_for):
    server = openai_server_factory(stream_options=False)
    run = make_run(openai_provider_for(server))
    run.activate()
    result = await run.llm.generate("hello", max_tokens=5000, component="router")
    assert [c["status"] for c in server.calls] == [400, 200]
    [call] = server.completion_calls()
    assert call["stream"] and call["usage"] is None  # no include_usage, so no usage chunk
    assert result.usage.total_tokens > 0  # booked the gateway's estimate instead
    await run.llm.generate("again", max_tokens=5000, component="router")
    assert [c["status"] for c in server.calls] == [400, 200, 200], "remembered"


async def test_the_gateway_caps_max_tokens_for_the_parameter_the_server_takes(
        openai_server_factory, openai_provider_for):
    server = openai_server_factory(completion_tokens_param_only=True)
    provider = openai_provider_for(server)
    run = make_run(provider, budget=2_000)
    run.activate()
    result = await run.llm.generate("hello", max_tokens=50_000, component="router")
    assert result.usage.total_tokens > 0
    refused, *answered = server.calls
    assert refused["status"] == 400
    [call] = [c for c in answered if c["status"] == 200]
    assert call["max_tokens"] is None
    assert 16 <= call["max_completion_tokens"] < 2_000  # capped to what the budget has left
    # Learnt: the next call goes straight to max_completion_tokens.
    await run.llm.generate("again", max_tokens=100, component="router")
    assert [c["status"] for c in server.calls][-1] == 200 and len(server.calls) == 3


async def test_missing_usage_books_the_estimate_with_a_warning(openai_server_factory,
                                                               openai_provider_for):
    server = openai_server_factory(usage=False)
    provider = openai_provider_for(server)
    run = make_run(provider)
    run.activate()
    events = []
    run.bus.listeners.append(events.append)
    async with run.operation("router", "route"):
        result = await run.llm.generate("Qualify lead John", component="router")
    assert server.completion_calls()[0]["usage"] is None
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert run.budget.used == result.usage.total_tokens > 0
    run.bus.flush()
    warnings = [e for e in events if e.level == "warning" and "no token usage" in e.message]
    assert len(warnings) == 1
    assert result.usage.input_tokens == warnings[0].metadata["estimated_input_tokens"]


# --------------------------------------------------------------------------- structured output


async def test_without_json_schema_it_falls_back_to_function_calling_and_remembers(
        openai_server_factory, openai_provider_for, tmp_path):
    server = openai_server_factory(json_schema=False)
    provider = openai_provider_for(server)
    response = await provider.complete(route_request())
    assert response.data["intent"] == "execute_task"
    assert [c["status"] for c in server.calls] == [400, 200]
    assert server.calls[1]["tool"] == "RouteAnswer"
    await provider.complete(route_request())
    assert [c["status"] for c in server.calls] == [400, 200, 200], "detected once per endpoint"
    # Another process (same SIGIL_HOME) starts from what this one learnt.
    cache = json.loads((tmp_path / "home" / "cache" / "openai_endpoints.json").read_text())
    assert cache[f"{server.base_url}|gpt-test-1"]["structured"] == "tools"
    from sigil_provider_openai import provider as module

    module._LEARNT.clear()
    await openai_provider_for(server).complete(route_request())
    assert [c["status"] for c in server.calls] == [400, 200, 200, 200]


async def test_without_json_schema_or_tools_it_uses_json_mode_validated_by_the_gateway(
        openai_server_factory, openai_provider_for):
    server = openai_server_factory(json_schema=False, tools=False)
    provider = openai_provider_for(server)
    run = make_run(provider)
    run.activate()
    result = await run.llm.generate("Qualify lead John", schema=ROUTE_SCHEMA, component="router")
    assert result.value["intent"] == "execute_task" and result.calls == 1
    statuses = [(c["status"], c.get("response_format")) for c in server.calls]
    assert statuses == [(400, None), (400, None), (200, "json_object")]


async def test_function_names_with_spaces_are_accepted(openai_server_factory,
                                                       openai_provider_for):
    server = openai_server_factory(json_schema=False, spaced_names=True)
    provider = openai_provider_for(server, structured="tools")
    response = await provider.complete(route_request(schema_name="route_answer"))
    assert response.data["intent"] == "execute_task"


async def test_malformed_json_is_reasked_once_then_fails_cleanly(openai_server,
                                                                 openai_provider_for):
    provider = openai_provider_for(openai_server)
    run = make_run(provider)
    run.activate()
    openai_server.inject(Fault("truncated"))
    result = await run.llm.generate("Qualify", schema=ROUTE_SCHEMA, component="router")
    assert result.calls == 2 and result.value["intent"] == "execute_task"
    openai_server.inject(Fault("truncated"), Fault("bad_answer"))
    with pytest.raises(StructuredOutputError, match="after one re-ask"):
        await run.llm.generate("Qualify", schema=ROUTE_SCHEMA, component="router")
    answered = openai_server.completion_calls()
    assert len(answered) == 4
    assert run.budget.used == sum(c["usage"]["total_tokens"] for c in answered)


def test_strict_only_for_schemas_that_meet_the_strict_rules():
    closed = {"type": "object", "additionalProperties": False, "required": ["a"],
              "properties": {"a": {"type": "string"}}}
    assert strict_compatible(closed)
    assert not strict_compatible(ROUTE_SCHEMA)
    assert not strict_compatible({**closed, "required": []})


async def test_non_object_schema_is_wrapped_and_unwrapped(openai_server_factory,
                                                          openai_provider_for):
    schema = {"type": "array", "items": {"type": "object", "properties": {
        "content": {"type": "string"}}, "required": ["content"]}, "minItems": 2}
    for options in ({}, {"json_schema": False}):
        server = openai_server_factory(**options)
        response = await openai_provider_for(server).complete(
            route_request(schema=schema, schema_name="facts"))
        assert isinstance(response.data, list) and len(response.data) == 2


# --------------------------------------------------------------------------- failures


async def test_retries_are_warning_events_and_the_call_completes(openai_server,
                                                                 openai_provider_for):
    provider = openai_provider_for(openai_server)
    run = make_run(provider)
    run.activate()
    events = []
    run.bus.listeners.append(events.append)
    openai_server.inject(Fault("429", retry_after_s=0.02), Fault("500"), Fault("503"))
    async with run.operation("router", "route"):
        result = await run.llm.generate("hello", component="router")
    run.bus.flush()
    assert result.usage.total_tokens == openai_server.completion_calls()[0]["usage"][
        "total_tokens"]
    warnings = [e for e in events if e.level == "warning" and e.error_info]
    assert [w.metadata["status"] for w in warnings] == [429, 500, 503]
    assert warnings[0].error_info.retry_after_ms == 20
    assert all(w.error_info.recoverable for w in warnings)
    assert "OpenAI-compatible call failed (HTTP 429 rate limited); retry 1/3" in \
        warnings[0].message


async def test_a_retry_after_beyond_the_bound_fails_at_once(openai_server, openai_provider_for):
    provider = openai_provider_for(openai_server, max_total_wait_s=1.0)
    openai_server.inject(Fault("429", retry_after_s=3600))
    with pytest.raises(LLMError) as info:
        await provider.complete(route_request())
    assert info.value.recoverable and info.value.retry_after_ms == 3_600_000
    assert "beyond the 1 s wait bound" in str(info.value)
    assert len(openai_server.calls) == 1


async def test_unknown_model_lists_what_the_server_offers(openai_server_factory,
                                                          openai_provider_for):
    server = openai_server_factory(models=("llama3.1:8b", "qwen2.5:7b"))
    provider = openai_provider_for(server, model="llama9")
    with pytest.raises(LLMError) as info:
        await provider.complete(route_request())
    assert str(info.value) == (f"model 'llama9' is not served by {server.base_url}; it offers: "
                               "llama3.1:8b, qwen2.5:7b (set openai.model, llm.model or "
                               "SIGIL_MODEL)")
    assert not info.value.recoverable


async def test_unreachable_server_is_one_clear_line(openai_provider_for, openai_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    openai_server.stop()
    provider = OpenAIProvider(OpenAISettings(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                             max_retries=1, max_total_wait_s=5))
    with pytest.raises(LLMError) as info:
        await provider.complete(route_request())
    message = str(info.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}/v1: is the server running?")
    assert "\n" not in message and info.value.recoverable
    ollama = OpenAIProvider(OpenAISettings(base_url="http://localhost:11434/v1"))
    assert ollama._hint() == "is Ollama running?"


async def test_timeouts_and_cut_streams_are_recoverable_errors(openai_server,
                                                               openai_provider_for):
    provider = openai_provider_for(openai_server, timeout=0.3, max_retries=0)
    openai_server.inject(Fault("slow", delay_s=1.5))
    with pytest.raises(LLMError, match=r"did not answer within 0.3 s \(after 1 attempt\)") as info:
        await provider.complete(route_request())
    assert info.value.recoverable
    openai_server.inject(Fault("stream_drop"))
    with pytest.raises(LLMError, match="was cut off") as info:
        await openai_provider_for(openai_server).complete(route_request(max_tokens=5000))
    assert info.value.recoverable


async def test_malformed_response_body_is_a_recoverable_error(openai_server,
                                                              openai_provider_for):
    openai_server.inject(Fault("malformed"))
    with pytest.raises(LLMError, match="sent a malformed response") as info:
        await openai_provider_for(openai_server, max_retries=0).complete(route_request())
    assert info.value.recoverable


async def test_a_rejected_key_is_reported_without_the_key(openai_server_factory,
                                                          openai_provider_for):
    server = openai_server_factory(api_key="the-right-key")
    with pytest.raises(LLMError) as info:
        await openai_provider_for(server).complete(route_request())
    assert "rejected the credentials (HTTP 401)" in str(info.value)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.context)


# --------------------------------------------------------------------------- settings


def test_environment_wins_for_the_default_endpoint_and_never_reaches_a_profile(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-SECRET")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env.example/v1")
    section = {"api_key": "sk-file", "model": "gpt-4o", "models": {"router": "gpt-4o-mini"},
               "profiles": {"ollama": {"base_url": "http://localhost:11434/v1",
                                       "model": "llama3.1"},
                            "gateway": {"base_url": "http://gw/v1",
                                        "api_key_env": "OPENAI_API_KEY"}}}
    default = OpenAISettings.from_section(section)
    assert (default.api_key, default.base_url) == ("sk-env-SECRET", "http://env.example/v1")
    ollama = OpenAISettings.from_section(section, profile="ollama")
    assert ollama.api_key is None and ollama.url == "http://localhost:11434/v1"
    assert ollama.model_for("planner", None, "claude-sonnet-4-6") == "llama3.1"
    assert ollama.model_for("router", None, None) == "gpt-4o-mini"
    assert OpenAISettings.from_section(section, profile="gateway").api_key == "sk-env-SECRET"
    assert "SECRET" not in repr(default)


@pytest.mark.parametrize("section, message", [
    ({"modle": "x"}, "openai.modle: unknown setting"),
    ({"timeout": "soon"}, "openai.timeout: must be a number of seconds"),
    ({"structured": "xml"}, "openai.structured: must be one of auto, json_schema"),
    ({"profiles": {"ollama": {"url": "x"}}}, "openai.profiles.ollama.url: unknown setting"),
    ({"profiles": ["ollama"]}, "openai.profiles: must map profile names"),
])
def test_bad_settings_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        OpenAISettings.from_section(section, where="config.yaml")


def test_the_sdk_is_not_imported_by_the_plugin():
    import subprocess
    import sys

    code = ("import sys, sigil_provider_openai.plugin, sigil_provider_openai.provider; "
            "print('openai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


# --------------------------------------------------------------------------- native tool calls


class Adder:
    """A registered tool's shape (sigil_core.protocols.Tool); its name is not a valid
    OpenAI function name."""

    name = "calc.add"
    description = "Add two numbers"
    input_schema: ClassVar[dict] = {"type": "object", "properties": {"a": {"type": "number"},
                                                     "b": {"type": "number"}},
                    "required": ["a", "b"]}


async def test_tools_are_sent_as_function_tools_and_calls_come_back(openai_server_factory,
                                                                    openai_provider_for):
    server = openai_server_factory(answers={"calc_add": {"a": 2, "b": 3}})
    run = make_run(openai_provider_for(server))
    run.activate()
    first = await run.llm.generate("Use calc_add for 2 + 3", tools=[Adder()],
                                   component="reasoning")
    [call] = first.tool_calls
    assert (call["name"], call["arguments"]) == ("calc.add", {"a": 2, "b": 3})
    assert call["id"].startswith("call_")
    # The strategy runs the tool and continues the exchange.
    second = await run.llm.generate(messages=[
        {"role": "user", "content": "Use calc_add for 2 + 3"},
        {"role": "assistant", "content": "", "tool_calls": first.tool_calls},
        {"role": "tool", "tool_call_id": call["id"], "content": "5"},
        {"role": "user", "content": "What is the result?"}], tools=[Adder()],
        component="reasoning")
    assert second.tool_calls == [] and second.text.startswith("Simulated answer")
    calls = server.completion_calls()
    assert calls[0]["tool"] == "calc_add" and calls[1]["tool"] is None
    assert run.budget.used == sum(c["usage"]["total_tokens"] for c in calls)


async def test_a_tool_call_without_usage_is_still_booked(openai_server_factory,
                                                         openai_provider_for):
    server = openai_server_factory(usage=False)
    run = make_run(openai_provider_for(server))
    run.activate()
    result = await run.llm.generate("Use calc_add for 2 + 3", tools=[Adder()],
                                    component="reasoning")
    assert result.tool_calls and result.text == ""
    assert result.usage.output_tokens > 0 and run.budget.used == result.usage.total_tokens
