"""The provider against the local Messages API server, through the real SDK."""

from __future__ import annotations

import json

import pytest
from sigil_provider_anthropic.provider import AnthropicProvider
from sigil_provider_anthropic.settings import AnthropicSettings
from sigil_provider_anthropic.testing.server import Fault

from sigil_core import Config, ConfigError, LLMError, LLMRequest

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


async def test_structured_answer_through_forced_tool_use(anthropic_provider, anthropic_server):
    response = await anthropic_provider.complete(route_request())
    assert response.data["intent"] == "execute_task"
    assert 0 <= response.data["complexity"] <= 1
    assert json.loads(response.text) == response.data
    assert response.model == "anthropic:claude-test-1"
    assert response.usage.model == "anthropic:claude-test-1"
    assert response.stop_reason == "tool_use"
    [call] = anthropic_server.message_calls()
    assert call["tool"] == "RouteAnswer"
    u = call["usage"]
    assert (response.usage.input_tokens, response.usage.output_tokens,
            response.usage.cache_read_tokens, response.usage.cache_write_tokens) == (
        u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"],
        u["cache_creation_input_tokens"])


async def test_non_object_schema_is_wrapped_and_unwrapped(anthropic_provider):
    schema = {"type": "array", "items": {"type": "object", "properties": {
        "content": {"type": "string"}}, "required": ["content"]}, "minItems": 2}
    response = await anthropic_provider.complete(route_request(schema=schema, schema_name="facts"))
    assert isinstance(response.data, list) and len(response.data) == 2
    assert all("content" in item for item in response.data)


async def test_second_identical_call_reads_the_prompt_cache(anthropic_provider):
    first = await anthropic_provider.complete(route_request())
    second = await anthropic_provider.complete(route_request())
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens
    assert second.usage.cache_write_tokens == 0
    # Cached tokens are still tokens the budget pays for: totals agree.
    assert first.usage.total_tokens == second.usage.total_tokens


async def test_cache_can_be_switched_off(anthropic_server):
    provider = AnthropicProvider(AnthropicSettings(api_key="k", base_url=anthropic_server.url,
                                                   cache=False))
    await provider.complete(route_request())
    again = await provider.complete(route_request())
    assert again.usage.cache_read_tokens == 0 and again.usage.cache_write_tokens == 0


async def test_exact_count_matches_what_the_call_is_charged(anthropic_provider):
    request = route_request()
    counted = await anthropic_provider.count_input_tokens(request)
    bound = anthropic_provider.estimate_input_tokens(request)
    response = await anthropic_provider.complete(request)
    charged_input = (response.usage.input_tokens + response.usage.cache_read_tokens
                     + response.usage.cache_write_tokens)
    assert charged_input <= counted <= charged_input + -(-charged_input // 100) + 4
    assert bound >= counted


async def test_streams_long_generations_with_cumulative_usage(anthropic_provider,
                                                              anthropic_server):
    anthropic_server.options.output_tokens = 700
    request = LLMRequest(messages=[{"role": "user", "content": "Write the full report"}],
                         max_tokens=20_000, component="reasoning", purpose="reason")
    response = await anthropic_provider.complete(request)
    [call] = anthropic_server.message_calls()
    assert call["stream"] is True
    # message_delta restates totals; summing them would double count.
    assert response.usage.output_tokens == 700 == call["usage"]["output_tokens"]
    assert response.usage.input_tokens == call["usage"]["input_tokens"]
    assert len(response.text) == 700 * 4
    assert response.stop_reason == "end_turn"


async def test_max_tokens_cap_is_respected(anthropic_provider, anthropic_server):
    anthropic_server.options.output_tokens = 500
    request = LLMRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=40)
    response = await anthropic_provider.complete(request)
    assert response.usage.output_tokens == 40
    assert response.stop_reason == "max_tokens"


@pytest.mark.parametrize("kind", ["429", "529", "500", "drop"])
async def test_sdk_retries_transient_failures(anthropic_provider, anthropic_server, kind):
    anthropic_server.inject(Fault(kind, retry_after_s=0.01))
    response = await anthropic_provider.complete(route_request())
    assert response.data is not None
    statuses = [c["status"] for c in anthropic_server.calls]
    assert statuses == [kind, 200]


async def test_malformed_body_is_a_recoverable_error(anthropic_provider, anthropic_server):
    anthropic_server.inject("malformed")
    with pytest.raises(LLMError) as info:
        await anthropic_provider.complete(route_request())
    assert info.value.recoverable is True
    assert "malformed" in str(info.value)


async def test_large_retry_after_is_not_waited_for(anthropic_provider, anthropic_server):
    anthropic_server.inject(Fault("429", retry_after_s=3600))
    with pytest.raises(LLMError) as info:
        await anthropic_provider.complete(route_request())
    err = info.value
    assert err.recoverable is True
    assert err.retry_after_ms == 3_600_000
    assert "wait bound" in str(err)
    assert len(anthropic_server.calls) == 1  # gave up at once instead of sleeping an hour


async def test_persistent_overload_ends_after_bounded_retries(anthropic_provider,
                                                              anthropic_server):
    anthropic_server.inject(*[Fault("529", retry_after_s=0.01)] * 10)
    with pytest.raises(LLMError) as info:
        await anthropic_provider.complete(route_request())
    assert info.value.recoverable is True
    assert "HTTP 529" in str(info.value)
    assert len(anthropic_server.calls) == 4  # 1 + max_retries


async def test_server_down_is_a_clear_recoverable_error(anthropic_server):
    url = anthropic_server.url
    anthropic_server.stop()
    provider = AnthropicProvider(AnthropicSettings(api_key="sk-ant-test-SECRET", base_url=url,
                                                   max_retries=2, max_total_wait_s=10))
    with pytest.raises(LLMError) as info:
        await provider.complete(route_request())
    assert info.value.recoverable is True
    assert "cannot reach the Anthropic API" in str(info.value)
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value.context)


async def test_bad_key_is_not_retried_and_not_echoed(anthropic_server):
    anthropic_server.options.api_key = "the-right-key"
    provider = AnthropicProvider(AnthropicSettings(api_key="sk-ant-wrong-SECRET",
                                                   base_url=anthropic_server.url))
    with pytest.raises(LLMError) as info:
        await provider.complete(route_request())
    assert info.value.recoverable is False
    assert "credentials" in str(info.value)
    assert "SECRET" not in str(info.value)
    assert len(anthropic_server.calls) == 1


async def test_cut_stream_reports_partial_usage(anthropic_provider, anthropic_server):
    anthropic_server.options.output_tokens = 400
    anthropic_server.inject("stream_drop")
    request = LLMRequest(messages=[{"role": "user", "content": "long"}], max_tokens=9000)
    with pytest.raises(LLMError) as info:
        await anthropic_provider.complete(request)
    assert info.value.recoverable is True
    assert info.value.context["partial_usage"]["input_tokens"] > 0


def test_available_from_env_or_config(monkeypatch):
    provider = AnthropicProvider()
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert provider.available(Config()) is False
    assert provider.available(Config(sections={"anthropic": {"api_key": "k"}})) is True
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    assert provider.available(Config()) is True


def test_settings_models_per_component_and_env_precedence(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    s = AnthropicSettings.from_section({"model": "claude-big", "api_key": "file-key",
                                        "base_url": "http://ignored",
                                        "models": {"router": "claude-small"}})
    assert s.base_url == "http://127.0.0.1:1"
    assert s.api_key == "file-key" and "file-key" not in repr(s)
    assert s.model_for("router", None, None) == "claude-small"
    assert s.model_for("planner", None, None) == "claude-big"
    assert s.model_for("planner", "claude-global", "claude-global") == "claude-global"
    assert s.model_for("router", "claude-global", "claude-global") == "claude-small"
    assert s.model_for("router", "claude-explicit", "claude-global") == "claude-explicit"


@pytest.mark.parametrize("section, key", [
    ({"modle": "x"}, "modle"), ({"timeout": -1}, "timeout"), ({"max_retries": "3"}, "max_retries"),
    ({"models": {"router": 3}}, "models"), ({"cache": "yes"}, "cache"),
])
def test_bad_settings_name_the_key(section, key):
    with pytest.raises(ConfigError) as info:
        AnthropicSettings.from_section(section, "/tmp/config.yaml")
    assert f"anthropic.{key}" in str(info.value)
