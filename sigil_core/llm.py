"""The LLM gateway: the one door every plugin goes through to reach a model.

For each call it picks the model, estimates the input, reserves budget (refusing a call that
cannot fit and capping ``max_tokens`` to what is left), calls the provider, books the reported
usage to the current operation and component, parses structured output (one re-ask with the
parse error when the answer is malformed) and emits a debug event.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

import attrs

from .errors import LLMError, StructuredOutputError
from .model import ErrorInfo, TokenUsage
from .prompts import system_prompt
from .schema import extract_json, parse_structured, schema_dict

if TYPE_CHECKING:
    from .budget import Reservation
    from .protocols import Provider
    from .run import Run


@attrs.define
class LLMRequest:
    """What a provider is asked. ``schema`` is a JSON Schema the answer must match."""

    messages: list[dict[str, Any]]
    system: str | None = None
    max_tokens: int = 1024
    schema: dict[str, Any] | None = None
    schema_name: str = "output"
    model: str | None = None
    temperature: float | None = None
    component: str = "orchestrator"
    purpose: str = "generate"
    hints: dict[str, Any] = attrs.Factory(dict)
    #: Tools the model may call natively, as ``{"name", "description", "input_schema"}``; a
    #: provider with native tool calling sends them (OpenAI function tools), others ignore
    #: them. Messages continue a tool exchange with ``{"role": "assistant", "tool_calls":
    #: [...]}`` and ``{"role": "tool", "tool_call_id": ID, "content": RESULT}``.
    tools: list[dict[str, Any]] = attrs.Factory(list)

    def text(self) -> str:
        """All prompt text, for estimates."""
        parts = [self.system or ""]
        for m in self.messages:
            content = m.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return "\n".join(parts)


@attrs.define
class LLMResponse:
    """A provider's answer. ``data`` holds natively structured output (e.g. tool-use input)."""

    text: str
    usage: TokenUsage
    model: str
    data: Any = None
    stop_reason: str | None = None
    #: Native tool calls the model made: ``{"id", "name", "arguments"}`` (arguments decoded).
    tool_calls: list[dict[str, Any]] = attrs.Factory(list)


@attrs.define
class LLMResult:
    """What ``run.llm.generate`` returns: text, the parsed value, and the usage of every call."""

    text: str
    value: Any
    usage: TokenUsage
    model: str
    calls: int = 1
    #: The tool calls of the answer, when ``generate`` was given ``tools``.
    tool_calls: list[dict[str, Any]] = attrs.Factory(list)


def tool_spec(tool: Any) -> dict[str, Any]:
    """``{"name", "description", "input_schema"}`` of a registered tool (or such a dict)."""
    if isinstance(tool, dict):
        return {"name": tool["name"], "description": tool.get("description", ""),
                "input_schema": tool.get("input_schema") or {"type": "object"}}
    return {"name": tool.name, "description": getattr(tool, "description", "") or "",
            "input_schema": getattr(tool, "input_schema", None) or {"type": "object"}}


from .constants import estimate_tokens

#: A request whose estimate is above this share of what is left gets an exact count first,
#: when the provider can count (``count_input_tokens``).
EXACT_COUNT_SHARE = 0.8


class Gateway:
    """Bound to one run; ``run.llm``."""

    def __init__(self, run: Run, provider: Provider) -> None:
        self._run = weakref.ref(run)  # the run holds its gateway: no cycle (see Run.__init__)
        self.provider = provider
        self.calls = 0

    @property
    def run(self) -> Run:
        """The run this gateway belongs to."""
        run = self._run()
        if run is None:  # only after the run itself is gone
            raise RuntimeError("this gateway's run no longer exists")
        return run

    @property
    def provider_name(self) -> str:
        return self.provider.name

    def model_for(self, component: str) -> str | None:
        cfg = self.run.config.llm
        return cfg.models.get(component) or cfg.model

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: list[dict[str, Any]] | None = None,
        system: str | None = None,
        schema: type | dict[str, Any] | None = None,
        max_tokens: int | None = None,
        purpose: str = "generate",
        component: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        hints: dict[str, Any] | None = None,
        tools: list[Any] | None = None,
    ) -> LLMResult:
        """Ask the model. With ``schema`` (attrs class or JSON-Schema dict) ``value`` is parsed.
        With ``tools`` (registered tools or their specs) a provider with native tool calling
        may answer with ``tool_calls`` instead of text.

        Raises BudgetExhaustedError before sending a call that cannot fit, LLMError when the
        provider fails, StructuredOutputError when the answer does not parse twice.
        """
        if messages is None:
            if prompt is None:
                raise ValueError("generate() needs a prompt or messages")
            messages = [{"role": "user", "content": prompt}]
        op = self.run.current_operation()
        component = component or (op.component if op else "orchestrator")
        sdict = schema_dict(schema)
        request = LLMRequest(
            messages=list(messages),
            system=system if system is not None else system_prompt(component),
            max_tokens=max_tokens or self.run.config.llm.max_tokens,
            schema=sdict,
            schema_name=(schema.__name__ if isinstance(schema, type) else "output"),
            model=model or self.model_for(component),
            temperature=temperature if temperature is not None else self.run.config.llm.temperature,
            component=component,
            purpose=purpose,
            hints=dict(hints or {}),
            tools=[tool_spec(t) for t in tools or ()],
        )
        response = await self._call(request)
        usage = response.usage
        calls = 1
        if schema is None:
            return LLMResult(response.text, None, usage, response.model, calls,
                             list(response.tool_calls))
        try:
            value = self._parse(response, schema)
        except ValueError as first_error:
            self.run.event(
                "warning", component, "llm_call",
                f"Malformed structured answer for {purpose}; asking again",
                metadata={"purpose": purpose, "error": str(first_error)[:500]},
            )
            retry = attrs.evolve(request, messages=request.messages + [
                {"role": "assistant", "content": response.text or "(empty)"},
                {"role": "user", "content": (
                    f"Your answer could not be used: {first_error}. Reply again with only a "
                    f"JSON value that matches the schema {request.schema_name}."
                )},
            ], hints={**request.hints, "reask": True, "error": str(first_error)})
            response = await self._call(retry)
            usage = usage + response.usage
            calls += 1
            try:
                value = self._parse(response, schema)
            except ValueError as second_error:
                raise StructuredOutputError(
                    f"the model's answer for {purpose} did not match {request.schema_name} "
                    f"after one re-ask: {second_error}",
                    context={"purpose": purpose},
                ) from None
        return LLMResult(response.text, value, usage, response.model, calls)

    @staticmethod
    def _parse(response: LLMResponse, schema: type | dict[str, Any]) -> Any:
        data = response.data if response.data is not None else extract_json(response.text)
        return parse_structured(data, schema)

    async def _call(self, request: LLMRequest) -> LLMResponse:
        run = self.run
        run.check_stop()  # a stopping run sends nothing new
        estimate = self.provider.estimate_input_tokens(request)
        counter = getattr(self.provider, "count_input_tokens", None)
        if counter is not None and estimate >= EXACT_COUNT_SHARE * run.budget.available:
            estimate = await counter(request)
        op = run.current_operation()
        reservation = run.budget.reserve(
            request.component, estimate, request.max_tokens,
            operation=op.name if op else None,
        )
        if reservation.max_tokens != request.max_tokens:
            request = attrs.evolve(request, max_tokens=reservation.max_tokens)
        listener = run.state.get("on_llm_call")
        if listener is not None:
            listener(request)  # e.g. the orchestrator planning while the router asks
        t0 = time.perf_counter()
        try:
            response = await self.provider.complete(request)
        except BaseException as exc:
            # A call that failed part-way (e.g. a cut stream) may still have been billed: the
            # provider says so in the error's context, and those tokens are booked too.
            partial = getattr(exc, "context", {}).get("partial_usage") if isinstance(
                exc, LLMError) else None
            if isinstance(partial, TokenUsage):
                run.book_usage(reservation, partial)
            elif isinstance(exc, asyncio.CancelledError):
                self._book_cut_short(request, reservation)
            else:
                run.budget.release(reservation)
            if isinstance(exc, Exception):
                self._failed_call(request, exc, t0, partial)
            raise
        if not isinstance(response, LLMResponse):
            run.budget.release(reservation)
            raise LLMError(f"provider {self.provider.name!r} returned {type(response).__name__}, "
                           "not an LLMResponse")
        duration_ms = round((time.perf_counter() - t0) * 1000.0, 3)
        if not response.usage.total_tokens and (response.text or response.data is not None
                                                or response.tool_calls):
            response = self._estimate_missing_usage(request, response, estimate)
        run.book_usage(reservation, response.usage)
        self.calls += 1
        recorder = run.state.get("cassette")
        if recorder is not None:
            recorder.record_llm(self.provider.name, request, response)
        # The call's own facts (duration, provider, requested model, stop reason) let a trace
        # sink draw it as a span; the request and response ride along in memory only.
        run.event(
            "debug", request.component, "llm_call",
            f"LLM call for {request.purpose}: {response.usage.total_tokens} tokens",
            metadata={
                "purpose": request.purpose,
                "provider": self.provider.name,
                "model": response.usage.model or response.model,
                "request_model": request.model,
                "input_tokens": response.usage.input_tokens,
                "output_tokens": response.usage.output_tokens,
                "cache_read_tokens": response.usage.cache_read_tokens,
                "cache_write_tokens": response.usage.cache_write_tokens,
                "max_tokens": request.max_tokens,
                "stop_reason": response.stop_reason,
            },
            duration_ms=duration_ms,
            payload=(request, response),
        )
        return response

    def _failed_call(self, request: LLMRequest, exc: Exception, t0: float,
                     partial: Any) -> None:
        """The record of a call the provider failed: a trace sink draws it as a call with an
        error (a debug event, as a successful call's: the failure itself reaches the user
        through the operation that made the call)."""
        usage = partial if isinstance(partial, TokenUsage) else None
        self.run.event(
            "debug", request.component, "llm_call",
            f"LLM call for {request.purpose} failed: {type(exc).__name__}",
            metadata={
                "purpose": request.purpose,
                "provider": self.provider.name,
                "request_model": request.model,
                "max_tokens": request.max_tokens,
                "failed": True,
                **({"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
                   if usage is not None else {}),
            },
            error_info=ErrorInfo.from_exception(exc),
            duration_ms=round((time.perf_counter() - t0) * 1000.0, 3),
        )

    def _estimate_missing_usage(self, request: LLMRequest, response: LLMResponse,
                                input_estimate: int) -> LLMResponse:
        """An answer with text but no usage (a proxy or server that drops the block) is booked
        at the request's estimate plus the answer's, never 0, and the run is told."""
        import json

        shown = response.text or json.dumps(
            response.data if response.data is not None else response.tool_calls, default=str)
        # Output is capped at max_tokens: no model bills more, and the reservation holds.
        usage = TokenUsage(input_estimate, min(estimate_tokens(shown), request.max_tokens),
                           model=response.usage.model or response.model)
        usage = attrs.evolve(usage, estimated_tokens=usage.total_tokens)
        self.run.event(
            "warning", request.component, "llm_call",
            f"The provider reported no token usage for {request.purpose}; booked the estimate "
            f"({usage.input_tokens} in, {usage.output_tokens} out)",
            metadata={"purpose": request.purpose, "provider": self.provider.name,
                      "estimated_input_tokens": usage.input_tokens,
                      "estimated_output_tokens": usage.output_tokens},
        )
        return attrs.evolve(response, usage=usage)

    def _book_cut_short(self, request: LLMRequest, reservation: Reservation) -> None:
        """A call cancelled after it was sent (its run stopped) may still be billed by the
        provider, which no longer tells us how much: book the whole reservation (input estimate
        plus ``max_tokens``, an upper bound on what it can bill), marked estimated, and say so."""
        run = self.run
        input_estimate = reservation.tokens - reservation.max_tokens
        usage = TokenUsage(input_estimate, reservation.max_tokens,
                           model=request.model or self.provider.name,
                           estimated_tokens=reservation.tokens)
        run.book_usage(reservation, usage)
        self.calls += 1
        run.event(
            "warning", request.component, "llm_call",
            f"LLM call for {request.purpose} cut short "
            + ("when the run stopped" if run.stop_reason else "(its answer was no longer needed)")
            + f": booked its reservation of {reservation.tokens} tokens as an estimate",
            metadata={"purpose": request.purpose, "estimated": True,
                      "input_tokens": input_estimate, "output_tokens": reservation.max_tokens,
                      "stop_reason": run.stop_reason},
        )
