"""Property: with the real gateway, BudgetTracker and this provider, a run never ends above its
budget, whatever the budget and whatever usage the API reports; a call that cannot fit is never
sent (TOKEN_001)."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigil_provider_anthropic.provider import AnthropicProvider
from sigil_provider_anthropic.settings import AnthropicSettings
from sigil_provider_anthropic.testing.server import (
    MessagesServer,
    ServerOptions,
    Tokenizer,
)

from sigil_core import (
    MIN_OUTPUT_TOKENS,
    BudgetExhaustedError,
    Config,
    LLMRequest,
    PluginHost,
)
from sigil_core.testing import make_run

_SHARED: dict = {}


def shared() -> tuple[MessagesServer, AnthropicProvider, asyncio.AbstractEventLoop]:
    # One server, provider and loop for every example: a new SDK client per example would
    # dominate the run time (the client belongs to its event loop).
    if not _SHARED:
        server = MessagesServer(ServerOptions(min_cache_tokens=0)).start()
        provider = AnthropicProvider(AnthropicSettings(api_key="k", base_url=server.url,
                                                       max_retries=0), global_model=None)
        _SHARED.update(server=server, provider=provider, loop=asyncio.new_event_loop())
    return _SHARED["server"], _SHARED["provider"], _SHARED["loop"]


def teardown_module(module) -> None:
    if _SHARED:
        loop = _SHARED["loop"]
        loop.run_until_complete(_SHARED["provider"].aclose())
        loop.close()
        _SHARED["server"].stop()
        _SHARED.clear()


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 0,
                                                     "maximum": 100},
                                           "notes": {"type": "string"}},
          "required": ["score", "notes"]}

call_st = st.fixed_dictionaries({
    "prompt_chars": st.integers(1, 6000),
    "system_chars": st.integers(0, 3000),
    "max_tokens": st.integers(1, 4000),
    "structured": st.booleans(),
    "component": st.sampled_from(["router", "planner", "reasoning", "memory", "contracts"]),
})


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(budget=st.integers(20, 30_000),
       chars_per_token=st.floats(1.0, 6.0),
       output_tokens=st.one_of(st.none(), st.integers(1, 5000)),
       calls=st.lists(call_st, min_size=1, max_size=6))
def test_used_never_exceeds_budget_and_unfit_calls_are_refused(budget, chars_per_token,
                                                               output_tokens, calls):
    server, provider, loop = shared()
    server.reset()
    server.options.output_tokens = output_tokens
    server.tokenizer = Tokenizer(chars_per_token)
    loop.run_until_complete(_run(server, provider, budget, calls))


async def _run(server: MessagesServer, provider: AnthropicProvider, budget: int,
               calls: list[dict]) -> None:
    run = make_run(provider=provider, config=Config(), host=PluginHost(load_entry_points=False),
                   task="t", budget=budget, session_id="sess_prop")
    tracker = run.budget
    for n, spec in enumerate(calls):
        prompt = ("lead " * spec["prompt_chars"])[: spec["prompt_chars"]]
        system = ("rules " * spec["system_chars"])[: spec["system_chars"]] or None
        request_kw = {"messages": [{"role": "user", "content": prompt}], "system": system,
                          "max_tokens": spec["max_tokens"], "component": spec["component"],
                          "purpose": "prop", "schema": SCHEMA if spec["structured"] else None}

        probe = LLMRequest(**request_kw)
        exact = server.account(provider.params(probe), use_cache=False).total
        available = tracker.available
        cannot_fit = exact + min(MIN_OUTPUT_TOKENS, spec["max_tokens"]) > available
        before = len(server.message_calls())
        try:
            # Straight to the gateway's call path: no schema parsing, so a truncated
            # structured answer does not trigger a re-ask that would muddle the counts.
            await run.llm._call(probe)
        except BudgetExhaustedError as exc:
            assert exc.code == "TOKEN_001"
            assert len(server.message_calls()) == before, "a refused call was sent"
            assert tracker.used <= budget
            continue
        assert not cannot_fit, (
            f"call {n} needed {exact}+{MIN_OUTPUT_TOKENS} with {available} left, yet was sent")
        assert tracker.used <= budget, f"used {tracker.used} > budget {budget}"
    # Every token the server reported was booked, nothing more.
    reported = sum(c["usage"]["input_tokens"] + c["usage"]["output_tokens"]
                   + c["usage"]["cache_read_input_tokens"]
                   + c["usage"]["cache_creation_input_tokens"]
                   for c in server.message_calls())
    assert tracker.used == reported
    assert tracker.reserved == 0
